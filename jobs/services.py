"""Writes to jobs: submitting, running and finishing them.

A Job row is the truth a person sees; the broker only carries "go run job <id>".
"""

import copy
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from fnmatch import fnmatchcase
from functools import partial
from pathlib import Path, PurePath

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django_celery_results.models import TaskResult

from jobs import audit, broker, failures, limits, rollups
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

# Each delivery stores its archive under a name of its own (its task id): one that was superseded
# (cancelled, recovered from a lost worker) and stores or deletes late only touches its own file,
# never the archive of the delivery that finished the job.
ARCHIVE_FILENAME = "thumbnails-{task_id}.zip"
RETRYABLE = [Job.Status.FAILED, Job.Status.CANCELLED]
ACTIVE = [Job.Status.QUEUED, Job.Status.RUNNING]  # waiting or running
CANCELLABLE = ACTIVE
# A running job's progress is written at most this often (seconds of wall time).
PROGRESS_INTERVAL = 0.25
# Worth another attempt: the database or the storage failed under the job, not its input.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, OSError)
TEMPORARY_PROBLEM_MESSAGE = "A temporary problem interrupted this job; it will be tried again."
INTERNAL_ERROR_MESSAGE = (
    "Parroter could not finish this job because of an internal error. "
    "Operators can see the details; retrying may help."
)


class JobFailed(Exception):
    """Raised from the task so its TaskResult reads FAILURE with the person-facing message."""


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


def job_output(job: Job) -> thumbnails.Output:
    """The output options a job was submitted with (jobs from before them: the defaults)."""
    params = job.params.get("output")
    if not params:
        return thumbnails.DEFAULT_OUTPUT
    return thumbnails.Output(
        format=params["format"],
        quality=params["quality"],
        fit=params["fit"],
        background=tuple(bytes.fromhex(params["background"][1:])),
        transparent=params["transparent"],
    )


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
            _pending_archive_path(job.pk, job.task_id).unlink(missing_ok=True)
        if job.attempts >= job.max_attempts:
            _fail(job, _interrupted_message(job.attempts), Job.FailureKind.INTERRUPTED)
            counts["failed"] += 1
        else:
            _requeue(job)
            counts["requeued"] += 1
    return counts


def release_interrupted_job(*, job_id: str, task_id: str, message_kept: bool) -> bool:
    """Put a running job back in the queue under the same task id: its worker process died (or
    a temporary error stopped it) and its message is about to be delivered again. Unless that
    message is the one already in the broker (message_kept), the dispatcher counts the job as
    unpublished until a new one is recorded, so a failed re-publish cannot strand it."""
    changes = {} if message_kept else {"published_at": None}
    return (
        _running(Job(pk=job_id, task_id=task_id)).update(
            **changes,
            status=Job.Status.QUEUED,
            progress=0,
            queued_at=timezone.now(),
            started_at=None,
            error=TEMPORARY_PROBLEM_MESSAGE,
            updated_at=timezone.now(),
        )
        == 1
    )


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


def discard_partial_outputs(*, job_id: uuid.UUID | str, task_id: str) -> None:
    """What a terminated delivery of a job left: its pending archive, and an archive moved
    into place whose success was never recorded (even if the job was retried since: the name
    is this delivery's own). Runs on the worker's host."""
    _pending_archive_path(job_id, task_id).unlink(missing_ok=True)
    if not Job.objects.filter(pk=job_id, task_id=task_id, status=Job.Status.SUCCEEDED).exists():
        _discard_archive(Job(pk=job_id, task_id=task_id))


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


def _interrupted_message(attempts: int) -> str:
    return (
        f"The job was interrupted {attempts} times (the worker stopped, a temporary error, or "
        "the job ran out of time or memory) and was given up."
    )


def run_job(*, job_id: str, task_id: str, worker: str = "") -> dict:
    """Run one delivery of a job; the work is done once however often a message is delivered.

    Returns {"cancelled": True} when an operator cancelled the job while it ran, and
    {"skipped": True} for a delivery that is not the job's to run (another delivery is running
    it, or the job was retried since). A delivery of a finished job returns its outcome again.
    Raises one of TRANSIENT_ERRORS, with the job back in the queue, when it is worth retrying.
    """
    job = _claim(job_id=job_id, task_id=task_id, worker=worker)
    if job is None:
        return _outcome_of_earlier_delivery(job_id=job_id, task_id=task_id)
    if job.attempts > job.max_attempts:
        message = _interrupted_message(job.attempts - 1)
        _fail(job, message, Job.FailureKind.INTERRUPTED)
        raise JobFailed(message)
    try:
        archive_name, made = _make_thumbnail_archive(job)
    except thumbnails.ThumbnailError as exc:
        # Bad input is an expected outcome: one line in the log, no traceback.
        logger.warning("job %s failed: %s", job_id, exc)
        _fail(job, str(exc), exc.kind)
        raise JobFailed(str(exc)) from exc
    except TRANSIENT_ERRORS as exc:
        logger.warning("job %s hit a temporary problem and will be retried: %r", job_id, exc)
        release_interrupted_job(job_id=job_id, task_id=task_id, message_kept=False)
        raise
    except SoftTimeLimitExceeded as exc:
        _discard_archive(job)
        limit = settings.CELERY_TASK_SOFT_TIME_LIMIT
        message = f"The job took longer than {limit} seconds and was stopped."
        _fail(job, message, Job.FailureKind.TIME_LIMIT)
        raise JobFailed(message) from exc
    except Exception:
        logger.exception("job %s failed unexpectedly", job_id)
        _fail(job, INTERNAL_ERROR_MESSAGE, Job.FailureKind.INTERNAL)
        raise
    result = {
        "thumbnails": [_thumbnail_row(item) for item in made.thumbnails],
        "images": [_image_row(item) for item in made.images],
    }
    if not _finish(job, status=Job.Status.SUCCEEDED, archive=archive_name, result=result):
        # Cancelled or superseded before it was recorded: keep nothing (the name is this
        # delivery's own, so a newer delivery's archive is never the one deleted).
        job.archive.storage.delete(archive_name)
        return {"job": job_id, "cancelled": True}
    if job.attempts > 1:  # only a later attempt can find an earlier one's archive
        _remove_earlier_archives(job, keep=archive_name)
    return {"job": job_id, **result}


def _outcome_of_earlier_delivery(*, job_id: str, task_id: str) -> dict:
    job = Job.objects.filter(pk=job_id, task_id=task_id).first()
    if job is None or not job.is_finished:
        return {"job": job_id, "skipped": True}
    if job.status == Job.Status.FAILED:
        raise JobFailed(job.error)
    if job.status == Job.Status.CANCELLED:
        return {"job": job_id, "cancelled": True}
    return {"job": job_id, **job.result}


def _claim(*, job_id: str, task_id: str, worker: str) -> Job | None:
    # Only the current message of a waiting job runs it: one for an older attempt (the job was
    # retried since), a second copy of a message while the first runs, or one for a finished
    # job is not this delivery's to run. One conditional UPDATE decides, atomically on either
    # database, without a transaction around a locking read; its RETURNING (SQLite >= 3.35,
    # PostgreSQL; the ORM's update() has none) hands back the claimed row instead of a second
    # query reading it again, which took more than half of the claim's time on either database.
    now = timezone.now()
    changes = {
        "status": Job.Status.RUNNING,
        "progress": 0,
        "result": {},  # nothing of an interrupted attempt's progress
        "error": "",
        "worker": worker[:255],
        "started_at": now,
        "updated_at": now,
    }
    sql, params = _update_of_delivery(
        job_id, task_id, Job.Status.QUEUED, changes, also="attempts = attempts + 1"
    )
    columns = ", ".join(connection.ops.quote_name(f.column) for f in Job._meta.concrete_fields)
    # Read to its end: SQLite then ends the UPDATE.
    claimed = list(Job.objects.raw(f"{sql} RETURNING {columns}", params))
    return claimed[0] if claimed else None


def _running(job: Job) -> QuerySet[Job]:
    return Job.objects.filter(pk=job.pk, task_id=job.task_id, status=Job.Status.RUNNING)


class _ProgressWriter:
    """Writes a running job's progress at most every PROGRESS_INTERVAL of wall time: a job of a
    few milliseconds writes none (finishing sets 100), a long one still moves on its page, and
    a job of many images says how many are done."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.written_at = time.monotonic()  # the claim just wrote the job

    def __call__(self, percent: int, images_done: int) -> None:
        now = time.monotonic()
        if now - self.written_at >= PROGRESS_INTERVAL:
            self.written_at = now
            _running(self.job).update(
                progress=min(percent, 99),
                result={"images_done": images_done},
                updated_at=timezone.now(),
            )


def _fail(job: Job, error: str, kind: str) -> bool:
    """Record a failure with its kind and group (made when its first failure is recorded)."""
    signature = failures.signature(kind, error)
    group = FailureGroup(
        signature=signature, kind=kind, pattern=failures.pattern(error), example=error
    )
    return _finish(
        job,
        status=Job.Status.FAILED,
        error=error,
        failure={"failure_kind": kind, "failure_signature": signature},
        group=group,
    )


def _finish(
    job: Job,
    *,
    status: str,
    error: str = "",
    archive: str = "",
    result: dict | None = None,
    failure: dict | None = None,
    group: FailureGroup | None = None,
) -> bool:
    """Record the outcome unless the job was cancelled or retried meanwhile."""
    now = timezone.now()
    fields = {"status": status, "error": error, "finished_at": now, "updated_at": now}
    fields.update(failure or {"failure_kind": "", "failure_signature": ""})
    if status == Job.Status.SUCCEEDED:
        fields.update(progress=100, archive=archive, result=result or {})
    finished = copy.copy(job)
    for name, value in fields.items():
        setattr(finished, name, value)
    with transaction.atomic():
        if not rollups.record_if_updated(
            finished, _update_of_delivery(job.pk, job.task_id, Job.Status.RUNNING, fields)
        ):
            return False
        if group is not None:  # one statement, whoever records the group's first failure
            FailureGroup.objects.bulk_create([group], ignore_conflicts=True)
    for name, value in fields.items():
        setattr(job, name, value)
    return True


def _update_of_delivery(
    job_id: uuid.UUID | str, task_id: str, status: str, changes: dict, *, also: str = ""
) -> tuple[str, list]:
    """SQL and parameters of `Job.objects.filter(pk=job_id, task_id=task_id, status=status)
    .update(**changes)` (plus the assignment `also`), for the statements the ORM cannot make
    around it: a RETURNING (the claim), a WITH (the finish with its history, rollups)."""
    quote = connection.ops.quote_name
    fields = [Job._meta.get_field(name) for name in changes]
    assignments = [f"{quote(field.column)} = %s" for field in fields]
    if also:
        assignments.append(also)
    sql = (  # names from the model and this module; every value is a parameter
        f"UPDATE {quote(Job._meta.db_table)} SET {', '.join(assignments)}"  # noqa: S608
        " WHERE id = %s AND task_id = %s AND status = %s"
    )
    params = [field.get_db_prep_save(changes[field.name], connection) for field in fields]
    params += [Job._meta.pk.get_db_prep_value(job_id, connection), task_id, status]
    return sql, params


def _archive_name(job: Job) -> str:
    """Where this delivery (the job's current task id) stores its archive."""
    return job_file_path(job, ARCHIVE_FILENAME.format(task_id=job.task_id))


def _discard_archive(job: Job) -> None:
    # Both storages ignore a name that is not there.
    job.archive.storage.delete(_archive_name(job))


def _remove_earlier_archives(job: Job, *, keep: str) -> None:
    """The archives earlier deliveries of a job stored and never recorded (each died between
    storing and finishing), once a later one has finished it. The job has succeeded by then: a
    failure here is logged, and what is left goes with the job's folder."""
    storage = job.archive.storage
    folder = job_file_path(job, "").rstrip("/")
    pattern = ARCHIVE_FILENAME.format(task_id="*")
    try:
        _, files = storage.listdir(folder)
        for name in files:
            if fnmatchcase(name, pattern) and f"{folder}/{name}" != keep:
                storage.delete(f"{folder}/{name}")
    except Exception:
        logger.warning("could not remove earlier archives of job %s", job.pk, exc_info=True)


def _pending_archive_path(job_id: uuid.UUID | str, task_id: str) -> Path:
    return Path(settings.FILE_UPLOAD_TEMP_DIR) / f"{job_id}-{task_id}.zip.part"


class _PendingArchive(File):
    """A finished temporary file that FileSystemStorage moves into place with a rename."""

    def temporary_file_path(self) -> str:
        return self.file.name


def _make_thumbnail_archive(job: Job) -> tuple[str, thumbnails.Archive]:
    boxes = [thumbnails.Box(width, height) for width, height in job.params["sizes"]]
    storage = job.source.storage
    # Opened one at a time as the kind reaches them: a job of many images holds one.
    sources = [
        thumbnails.SourceImage(
            image["name"],
            partial(storage.open, image["file"], "rb"),
            tuple(image["focus"]) if image.get("focus") else None,
        )
        for image in job.images
    ]
    # The ZIP is built in a temporary file and moved into place whole, so a crash or a bad
    # image never leaves a partial archive behind. Its name says which delivery made it, so
    # the worker can remove it when the task is terminated (see discard_partial_outputs).
    pending_path = _pending_archive_path(job.pk, job.task_id)
    try:
        with pending_path.open("w+b") as pending:
            made = thumbnails.make_archive(
                sources,
                boxes,
                pending,
                output=job_output(job),
                max_pixels=settings.PARROTER_MAX_PIXELS,
                progress=_ProgressWriter(job),
                # Images started after this leave room for the last one before the soft time
                # limit, which would fail the whole job: a long batch keeps what it made.
                stop_after=time.monotonic() + settings.CELERY_TASK_SOFT_TIME_LIMIT * 0.8,
                let_through=(SoftTimeLimitExceeded, *TRANSIENT_ERRORS),
            )
            pending.flush()
            pending.seek(0)
            name = _archive_name(job)
            if job.attempts > 1:
                # A delivery of this same message may have stored it and died; the disk would
                # store beside it under another name instead of replacing it.
                storage.delete(name)
            return storage.save(name, _PendingArchive(pending)), made
    finally:
        pending_path.unlink(missing_ok=True)


def _thumbnail_row(item: thumbnails.Thumbnail) -> dict:
    return {
        "name": item.name,
        "width": item.width,
        "height": item.height,
        "bytes": item.bytes,
        "image": item.image,
    }


def _image_row(item: thumbnails.ImageOutcome) -> dict:
    return {"name": item.name, "folder": item.folder, "error": item.error, "note": item.note}
