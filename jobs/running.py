"""A delivery's life on the worker: claim, progress, finish, archives.

Each message for a job is one delivery (its task id). Only the job's current message runs it:
run_job claims the job with one conditional UPDATE, writes its progress now and then, and
records its outcome only if the job is still that delivery's. The archive a delivery makes is
stored under a name of its own, so one that was superseded never touches another's.
"""

import copy
import logging
import time
import uuid
from fnmatch import fnmatchcase
from functools import partial
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files import File
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from jobs import failures, rollups
from jobs.kinds import thumbnails
from jobs.models import FailureGroup, Job, job_file_path

logger = logging.getLogger(__name__)

# Each delivery stores its archive under a name of its own (its task id): one that was superseded
# (cancelled, recovered from a lost worker) and stores or deletes late only touches its own file,
# never the archive of the delivery that finished the job.
ARCHIVE_FILENAME = "thumbnails-{task_id}.zip"
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
        message = interrupted_message(job.attempts - 1)
        record_failure(job, message, Job.FailureKind.INTERRUPTED)
        raise JobFailed(message)
    try:
        archive_name, made = _make_thumbnail_archive(job)
    except thumbnails.ThumbnailError as exc:
        # Bad input is an expected outcome: one line in the log, no traceback.
        logger.warning("job %s failed: %s", job_id, exc)
        record_failure(job, str(exc), exc.kind)
        raise JobFailed(str(exc)) from exc
    except TRANSIENT_ERRORS as exc:
        logger.warning("job %s hit a temporary problem and will be retried: %r", job_id, exc)
        release_interrupted_job(job_id=job_id, task_id=task_id, message_kept=False)
        raise
    except SoftTimeLimitExceeded as exc:
        _discard_archive(job)
        limit = settings.CELERY_TASK_SOFT_TIME_LIMIT
        message = f"The job took longer than {limit} seconds and was stopped."
        record_failure(job, message, Job.FailureKind.TIME_LIMIT)
        raise JobFailed(message) from exc
    except Exception:
        logger.exception("job %s failed unexpectedly", job_id)
        record_failure(job, INTERNAL_ERROR_MESSAGE, Job.FailureKind.INTERNAL)
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


def record_failure(job: Job, error: str, kind: str) -> bool:
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


def interrupted_message(attempts: int) -> str:
    """What the owner reads on a job given up after `attempts` interrupted attempts."""
    return (
        f"The job was interrupted {attempts} times (the worker stopped, a temporary error, or "
        "the job ran out of time or memory) and was given up."
    )


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


def pending_archive_path(job_id: uuid.UUID | str, task_id: str) -> Path:
    """Where a delivery builds its archive, on its worker's host, before storing it."""
    return Path(settings.FILE_UPLOAD_TEMP_DIR) / f"{job_id}-{task_id}.zip.part"


class _PendingArchive(File):
    """A finished temporary file that FileSystemStorage moves into place with a rename."""

    def temporary_file_path(self) -> str:
        return self.file.name


def discard_partial_outputs(*, job_id: uuid.UUID | str, task_id: str) -> None:
    """What a terminated delivery of a job left: its pending archive, and an archive moved
    into place whose success was never recorded (even if the job was retried since: the name
    is this delivery's own). Runs on the worker's host."""
    pending_archive_path(job_id, task_id).unlink(missing_ok=True)
    if not Job.objects.filter(pk=job_id, task_id=task_id, status=Job.Status.SUCCEEDED).exists():
        _discard_archive(Job(pk=job_id, task_id=task_id))


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
    pending_path = pending_archive_path(job.pk, job.task_id)
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
