"""Writes to jobs: submitting and sending them to the broker, recovering work that was lost,
and what people and operators do to them (retry, cancel, delete, pause a queue).

A Job row is the truth a person sees; the broker only carries "go run job <id>". Running one
delivery on the worker, from its claim to its finish, is jobs.running.
"""

import logging
import math
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import PurePath

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django_celery_results.models import TaskResult

from jobs import audit, broker, limits, rollups, running
from jobs.audit import Actor
from jobs.kinds import thumbnails
from jobs.models import (
    AuditEntry,
    FailureGroup,
    Job,
    Preferences,
    Preset,
    QueuePause,
    Rerun,
    job_file_path,
)

logger = logging.getLogger(__name__)

RETRYABLE = [Job.Status.FAILED, Job.Status.CANCELLED]
ACTIVE = [Job.Status.QUEUED, Job.Status.RUNNING]  # waiting or running
CANCELLABLE = ACTIVE


@dataclass(frozen=True)
class Upload:
    """One uploaded image of a job: the file, its name as the client sent it (shown only) and
    the extension of its real format (stored names are chosen here, never the client's); and
    the point of it a crop keeps, as fractions of its width and height (None: the kind
    chooses)."""

    file: File
    name: str
    extension: str
    focus: tuple[float, float] | None = None


def submit_job(
    *,
    owner: AbstractBaseUser,
    uploads: Sequence[Upload],
    boxes: Sequence[thumbnails.Box],
    output: thumbnails.Output = thumbnails.DEFAULT_OUTPUT,
    refused: Sequence[tuple[str, str]] = (),
    rerun_of: Job | None = None,
) -> Job:
    """Store the uploads and a queued Job together; the worker is told only once both exist.

    `refused` are (name, reason) of files the upload left out, listed with the job's outcome;
    `rerun_of` is the job whose images these are again (copies: each job owns its files).
    """
    first = uploads[0]
    job = Job(
        owner=owner,
        kind=Job.Kind.THUMBNAILS,
        source_name=first.name[:255],
        task_id=str(uuid.uuid4()),
    )
    storage = job.source.storage
    try:
        job.source.save(f"source.{first.extension}", first.file, save=False)
        stored = [job.source.name]
        for number, upload in enumerate(uploads[1:], start=2):
            name = job_file_path(job, f"source-{number}.{upload.extension}")
            stored.append(storage.save(name, upload.file))
        job.params = {
            "sizes": [[box.width, box.height] for box in boxes],
            "output": _output_params(output),
            "images": [
                {"name": upload.name[:255], "file": name}
                | ({"focus": list(upload.focus)} if upload.focus else {})
                for upload, name in zip(uploads, stored, strict=True)
            ],
            "refused": [{"name": name[:255], "error": error} for name, error in refused],
        }
        with transaction.atomic():
            job.save(force_insert=True)
            if rerun_of is not None:
                Rerun.objects.create(original=rerun_of, rerun=job)
            _enqueue_on_commit(job)
    except BaseException:
        # Everything under the job's folder, a file cut off midway included; a failure here is
        # logged, not raised over the error that matters (the orphan sweep gets what is left).
        try:
            delete_job_files(job_id=job.pk)
        except Exception:
            logger.exception(
                "could not remove the files of job %s, which was not submitted", job.pk
            )
        raise
    return job


def quota_refusal(*, owner: AbstractBaseUser, images: int) -> str:
    """Why `owner` may not start a job of `images` images now, or "" after counting them against
    today's images (PARROTER_MAX_QUEUED_PER_USER, PARROTER_MAX_IMAGES_PER_DAY)."""
    most_waiting = settings.PARROTER_MAX_QUEUED_PER_USER
    if most_waiting:
        waiting = Job.objects.filter(owner=owner, status=Job.Status.QUEUED).count()
        if waiting >= most_waiting:
            return (
                f"You have {waiting:,} jobs waiting to run, the most one person may have at once. "
                "Start this one when some of them have started, or cancel some."
            )
    most_images = settings.PARROTER_MAX_IMAGES_PER_DAY
    if not most_images:
        return ""
    over = limits.take(
        scope=limits.IMAGES,
        user_id=owner.pk,
        rate=limits.Rate(most_images, limits.DAY),
        amount=images,
    )
    if over is None:
        return ""
    hours, minutes = divmod(math.ceil(over.wait / 60), 60)
    resets = f"the count starts again at midnight UTC, in {hours} h {minutes} min"
    left = most_images - over.used
    if left <= 0:
        return f"You have started {most_images:,} images today, the most per day; {resets}."
    return (
        f"This job has {images:,} images and you can start {left:,} more today "
        f"(at most {most_images:,} a day); {resets}."
    )


@dataclass(frozen=True)
class StoredImage:
    """One of a job's stored images, copied into its re-run: the stored file, the name it was
    uploaded as, and its focus (see Upload)."""

    file: str
    name: str
    focus: tuple[float, float] | None = None


def rerun_job(
    *,
    job: Job,
    images: Sequence[Upload | StoredImage],
    boxes: Sequence[thumbnails.Box],
    output: thumbnails.Output,
) -> Job:
    """Queue a new job of `job`'s owner, linked to it, made from its stored images (copied,
    so that deleting either job leaves the other whole) and new files that replace some."""
    storage = job.source.storage
    with ExitStack() as opened:
        uploads = [
            image
            if isinstance(image, Upload)
            else Upload(
                file=opened.enter_context(storage.open(image.file, "rb")),
                name=image.name,
                extension=PurePath(image.file).suffix.lstrip("."),
                focus=image.focus,
            )
            for image in images
        ]
        return submit_job(
            owner=job.owner, uploads=uploads, boxes=boxes, output=output, rerun_of=job
        )


def _output_params(output: thumbnails.Output) -> dict:
    return {
        "format": output.format,
        "quality": output.quality,
        "fit": output.fit,
        "background": "#{:02x}{:02x}{:02x}".format(*output.background),
        "transparent": output.transparent,
    }


def after_commit(func: Callable[..., object], *args: object, **kwargs: object) -> None:
    """Call func once the transaction commits; a failure is logged, never raised."""

    def call() -> None:
        func(*args, **kwargs)

    call.__qualname__ = func.__qualname__  # what Django logs (a functools.partial has none)
    transaction.on_commit(call, robust=True)


def _enqueue_on_commit(job: Job) -> None:
    # After commit, so the worker finds the row; robust, so a broker outage does not fail the
    # request: the job stays queued and dispatch_waiting_jobs sends it later.
    after_commit(_enqueue, job.pk, job.task_id, job.owner_id)


def _enqueue(job_id: uuid.UUID, task_id: str, owner_id: int) -> None:
    from jobs.tasks import run_job  # tasks import this module

    priority = dispatch_priority(owner_id=owner_id) if settings.PARROTER_FAIR_DISPATCH else 0
    # Heard before publishing (at most broker.RUN_ID_MAX_AGE ago): if the broker restarts after
    # that, the run id recorded is the old one and the dispatcher sends the job again (at worst
    # once too often, never lost).
    run_id = broker.recent_run_id()
    run_job.apply_async(args=[str(job_id)], task_id=task_id, priority=priority)
    Job.objects.filter(pk=job_id, task_id=task_id).update(
        published_at=timezone.now(), broker_run_id=run_id
    )


TOP_PRIORITY_FROM = 256  # other active jobs of an owner from which theirs enter list 9


def dispatch_priority(*, owner_id: int) -> int:
    """The priority list a job of this owner enters (0, taken first, to 9): how many other jobs
    of theirs are waiting or running, on a doubling scale (none: 0; 1: 1; 2-3: 2; 4-7: 3; ...;
    256 or more: 9). So a person's first jobs go ahead of the backlog of someone with hundreds,
    and between two people with backlogs the smaller one's jobs go first; within a list the
    queue is first in, first out. Set when the job is sent (submit, retry, re-dispatch)."""
    # Counted only as far as the top list needs (256 others), so a publish for someone with
    # thousands waiting reads 257 index entries, not all of theirs.
    active = Job.objects.filter(owner_id=owner_id, status__in=ACTIVE)
    others = active[: TOP_PRIORITY_FROM + 1].count() - 1
    return min(max(others, 0).bit_length(), 9)


def _send_again(job: Job) -> None:
    """Send a queued job again under a new task id, so any older message for it is ignored."""
    job.task_id = str(uuid.uuid4())
    job.published_at = None
    job.save(update_fields=["task_id", "published_at", "updated_at"])
    _enqueue_on_commit(job)


def _requeue(job: Job) -> None:
    """Put a job back in the queue as if new: a fresh task id, wait and run timed anew."""
    job.status = Job.Status.QUEUED
    job.task_id = str(uuid.uuid4())
    job.progress = 0
    job.error = job.failure_kind = job.failure_signature = ""
    job.result = {}
    job.queued_at = timezone.now()
    job.started_at = job.finished_at = job.published_at = None
    job.save(
        update_fields=[
            "status", "task_id", "progress", "error", "result", "queued_at", "started_at",
            "finished_at", "published_at", "max_attempts", "failure_kind", "failure_signature",
            "updated_at",
        ]
    )  # fmt: skip
    _enqueue_on_commit(job)


def dispatch_waiting_jobs(*, unpublished_for: timedelta) -> int:
    """Send again the queued jobs whose message is provably not in the broker: its publish never
    succeeded (the broker was down at submit, the process died first), or it went to a Redis
    that has restarted since (the private Redis keeps nothing). A long queue is left alone, so
    a backlog finishes in the order it came. Oldest first; returns how many were sent."""
    run_id = broker.run_id()
    cutoff = timezone.now() - unpublished_for
    never_published = Q(published_at__isnull=True, updated_at__lt=cutoff)
    published_elsewhere = Q(published_at__isnull=False) & ~Q(broker_run_id=run_id)
    lost = Job.objects.filter(never_published | published_elsewhere, status=Job.Status.QUEUED)
    count = 0
    for job in _each_locked(lost.order_by("queued_at")):
        _send_again(job)
        count += 1
    return count


def reap_stuck_jobs(*, running_longer_than: timedelta) -> dict[str, int]:
    """Jobs "running" past the hard time limit lost their worker: run them again or give up."""
    cutoff = timezone.now() - running_longer_than
    return _requeue_or_give_up(Job.objects.filter(status=Job.Status.RUNNING, started_at__lt=cutoff))


def recover_jobs_of_lost_worker(*, worker: str, on_its_host: bool) -> dict[str, int]:
    """The jobs a worker was running when it was lost run again now (under a new task id, so
    whatever that worker still does with them is not recorded), not after the reaper: called
    when a worker starts under a name that was running jobs (its previous life died with them;
    node names are unique among live workers), and by the monitor when a worker has not been
    heard from for PARROTER_WORKER_LOST_AFTER. Only on the worker's own host can what those
    deliveries were writing be removed; elsewhere that host's temporary sweep does it."""
    running_there = Job.objects.filter(status=Job.Status.RUNNING, worker=worker)
    return _requeue_or_give_up(running_there, discard_pending=on_its_host)


def _requeue_or_give_up(
    interrupted: QuerySet[Job], *, discard_pending: bool = False
) -> dict[str, int]:
    counts = {"requeued": 0, "failed": 0}
    for job in _each_locked(interrupted):
        if discard_pending:
            running.pending_archive_path(job.pk, job.task_id).unlink(missing_ok=True)
        if job.attempts >= job.max_attempts:
            running.record_failure(
                job, running.interrupted_message(job.attempts), Job.FailureKind.INTERRUPTED
            )
            counts["failed"] += 1
        else:
            _requeue(job)
            counts["requeued"] += 1
    return counts


def retry_jobs(
    *,
    jobs: QuerySet[Job],
    actor: Actor | None = None,
    details: dict | None = None,
    force: bool = False,
) -> int:
    """Queue failed and cancelled jobs again; returns how many. Others are left as they are,
    and so are jobs that failed for good (their input cannot succeed) unless `force`. A
    person's retry is recorded in the audit log, once, with the jobs it changed."""
    changed = []
    for batch in _locked_batches(retryable(jobs, force=force)):
        # History keeps the outcome they leave and counts the retry beside it, in this minute.
        rollups.record_retries(batch, at=timezone.now())
        for job in batch:
            if job.attempts >= job.max_attempts:  # a person asked: give it a fresh allowance
                job.max_attempts = job.attempts + settings.PARROTER_MAX_ATTEMPTS
            _requeue(job)
        changed += [job.pk for job in batch]
    _audit(actor, AuditEntry.Action.RETRY, "Retried", changed, details)
    return len(changed)


def cancel_jobs(
    *, jobs: QuerySet[Job], actor: Actor | None = None, details: dict | None = None
) -> int:
    """Cancel queued and running jobs; returns how many. Their tasks are revoked, running
    ones terminated on their worker, whose main process then removes what they left. A
    person's cancel is recorded in the audit log, once, with the jobs it changed."""
    changed = []
    reason = _cancelled_by(actor)
    for batch in _locked_batches(jobs.filter(status__in=CANCELLABLE)):
        now = timezone.now()
        for job in batch:
            job.status, job.finished_at, job.error = Job.Status.CANCELLED, now, reason
            job.save(update_fields=["status", "finished_at", "error", "updated_at"])
        rollups.record(batch)
        after_commit(_revoke, [job.task_id for job in batch])
        changed += [job.pk for job in batch]
    _audit(actor, AuditEntry.Action.CANCEL, "Cancelled", changed, details)
    return len(changed)


def _cancelled_by(actor: Actor | None) -> str:
    """What the owner reads on the cancelled job: who, and why if they said."""
    if actor is None:
        return "Cancelled."
    return (
        f"Cancelled by {actor.name}: {actor.reason}"
        if actor.reason
        else (f"Cancelled by {actor.name}.")
    )


def retryable(jobs: QuerySet[Job], *, force: bool = False) -> QuerySet[Job]:
    """The jobs of `jobs` a retry changes."""
    jobs = jobs.filter(status__in=RETRYABLE)
    return jobs if force else jobs.exclude(failure_kind__in=Job.PERMANENT_FAILURES)


def retry_job(*, job_id: uuid.UUID | str, actor: Actor | None = None, force: bool = False) -> bool:
    if force and actor is not None:
        actor = Actor(actor.user, actor.address, f"forced: {actor.reason}".rstrip(": "))
    return retry_jobs(jobs=Job.objects.filter(pk=job_id), actor=actor, force=force) == 1


def cancel_job(*, job_id: uuid.UUID | str, actor: Actor | None = None) -> bool:
    return cancel_jobs(jobs=Job.objects.filter(pk=job_id), actor=actor) == 1


def _audit(
    actor: Actor | None, action: AuditEntry.Action, verb: str, job_ids: list, details: dict | None
) -> None:
    """One entry for an action of a person on jobs (none when it changed nothing)."""
    if actor is None or not job_ids:
        return
    what = f"job {job_ids[0].hex[:8]}" if len(job_ids) == 1 else f"{len(job_ids):,} jobs"
    where = f" matching {details['filter']}" if details and details.get("filter") else ""
    audit.record(
        actor=actor,
        action=action,
        summary=f"{verb} {what}{where}",
        job_ids=job_ids,
        details=details,
    )


def _revoke(task_ids: list[str]) -> None:
    from parroter.celery_app import app

    try:
        broker.ping()  # half a second at most: a broadcast to a bad broker retries for seconds
    except Exception as exc:
        # The jobs are cancelled all the same: a waiting message is skipped when delivered (it
        # no longer claims a queued job), and a running job's outcome is not recorded.
        logger.warning("not revoking %d cancelled job(s): the broker did not answer (%r)",
                       len(task_ids), exc)  # fmt: skip
        return

    # A waiting message is dropped when delivered. A running task's pool process gets
    # SIGTERM (Celery's terminate) and exits through its finally blocks, which remove the
    # pending archive; tasks.remove_partial_outputs then removes an archive it had already
    # moved into place. (SIGUSR1 would not do: billiard marks a process it signals this way
    # as terminated, and when that process dies later its job would not be delivered again.)
    app.control.revoke(task_ids, terminate=True)


def acknowledge_failures(*, signature: str, actor: Actor) -> bool:
    """An operator has seen a failure group: it leaves the new ones until it fails again."""
    now = timezone.now()
    with transaction.atomic():
        group = FailureGroup.objects.select_for_update().filter(pk=signature).first()
        if group is None:
            return False
        group.acknowledged_at, group.acknowledged_by_name = now, actor.name
        group.save(update_fields=["acknowledged_at", "acknowledged_by_name"])
        audit.record(
            actor=actor,
            action=AuditEntry.Action.ACKNOWLEDGE,
            summary=f"Acknowledged failures: {group.pattern}"[:500],
            details={"signature": signature},
        )
    return True


def pause_queue(*, queue: str, actor: Actor) -> bool:
    """Pause a queue: workers stop taking its messages within seconds (each looks every
    PARROTER_QUEUE_PAUSE_CHECK_SECONDS) and one that starts meanwhile does not take them.
    False if it was paused already."""
    with transaction.atomic():
        _, made = QueuePause.objects.get_or_create(
            queue=queue,
            defaults={
                "paused_by": actor.user,
                "paused_by_name": actor.name,
                "reason": actor.reason,
            },
        )
        if made:
            audit.record(actor=actor, action=AuditEntry.Action.PAUSE, summary=f"Paused {queue}")
    return made


def resume_queue(*, queue: str, actor: Actor) -> bool:
    """Let workers take the queue's messages again; False if it was not paused."""
    with transaction.atomic():
        deleted, _ = QueuePause.objects.filter(queue=queue).delete()
        if deleted:
            audit.record(actor=actor, action=AuditEntry.Action.RESUME, summary=f"Resumed {queue}")
    return bool(deleted)


def remember_choices(*, owner: AbstractBaseUser, choices: dict, save_as: str = "") -> None:
    """Keep a job's settings as the person's last, which the upload page starts from, and as
    the preset `save_as` when named (replacing one of that name)."""
    Preferences.objects.update_or_create(user=owner, defaults={"last_choices": choices})
    if save_as:
        Preset.objects.update_or_create(owner=owner, name=save_as, defaults={"choices": choices})


def delete_job(*, job_id: uuid.UUID | str, actor: Actor | None = None) -> bool:
    """Delete a finished job with its task results; its files go once that is committed
    (jobs.signals). False if it is gone or not finished (a retry may have queued it again)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id, status__in=Job.FINISHED).first()
        if job is None:
            return False
        details = {"title": job.title, "owner": job.owner.get_username()}
        _audit(actor, AuditEntry.Action.DELETE, "Deleted", [job.pk], details)
        TaskResult.objects.filter(task_id=job.task_id).delete()
        job.delete()
    return True


def delete_job_files(*, job_id: uuid.UUID | str) -> None:
    """Remove everything stored under a job's folder (called once its row is deleted)."""
    storage = default_storage
    folder = job_file_path(Job(pk=job_id), "").rstrip("/")
    try:
        _, files = storage.listdir(folder)
    except FileNotFoundError:
        return
    for name in files:
        storage.delete(f"{folder}/{name}")
    storage.delete(folder)  # FileSystemStorage removes the empty folder; object stores ignore it


def _each_locked(candidates: QuerySet[Job]) -> Iterator[Job]:
    """Each candidate, locked in a transaction of its own and re-read so it still matches."""
    for job_id in candidates.values_list("pk", flat=True):
        with transaction.atomic():
            job = candidates.select_for_update().filter(pk=job_id).first()
            if job is not None:
                yield job


def _locked_batches(candidates: QuerySet[Job], size: int = 500) -> Iterator[list[Job]]:
    """The candidates in batches, each locked in one transaction and re-read so they still
    match: bounded memory and transaction size however many jobs a filter matches."""
    candidates = candidates.select_related(None)  # lock job rows, not their owners'
    after = None
    while True:
        page = candidates.order_by("pk")
        if after is not None:
            page = page.filter(pk__gt=after)
        ids = list(page.values_list("pk", flat=True)[:size])
        if not ids:
            return
        after = ids[-1]
        with transaction.atomic():
            batch = list(candidates.select_for_update().filter(pk__in=ids).order_by("pk"))
            if batch:
                yield batch
