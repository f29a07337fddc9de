"""Writes to jobs: submitting, running and finishing them.

A Job row is the truth a person sees; the broker only carries "go run job <id>".
"""

import logging
import uuid
from collections.abc import Iterator, Sequence
from datetime import timedelta
from functools import partial

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files import File
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from jobs.kinds import thumbnails
from jobs.models import Job, job_file_path

logger = logging.getLogger(__name__)

ARCHIVE_FILENAME = "thumbnails.zip"
INTERNAL_ERROR_MESSAGE = (
    "Parroter could not finish this job because of an internal error. "
    "Operators can see the details; retrying may help."
)


class JobFailed(Exception):
    """Raised from the task so its TaskResult reads FAILURE with the person-facing message."""


def submit_job(
    *,
    owner: AbstractBaseUser,
    upload: File,
    source_name: str,
    extension: str,
    boxes: Sequence[thumbnails.Box],
) -> Job:
    """Store the upload and a queued Job together; the worker is told only once both exist."""
    job = Job(
        owner=owner,
        kind=Job.Kind.THUMBNAILS,
        source_name=source_name[:255],
        params={"sizes": [[box.width, box.height] for box in boxes]},
        task_id=str(uuid.uuid4()),
    )
    job.source.save(f"source.{extension}", upload, save=False)
    try:
        with transaction.atomic():
            job.save(force_insert=True)
            _enqueue_on_commit(job)
    except BaseException:
        job.source.delete(save=False)
        raise
    return job


def _enqueue_on_commit(job: Job) -> None:
    # After commit, so the worker finds the row; robust, so a broker outage does not fail the
    # request: the job stays queued and dispatch_waiting_jobs sends it later.
    transaction.on_commit(partial(_enqueue, job), robust=True)


def _enqueue(job: Job) -> None:
    from jobs.tasks import run_job  # tasks import this module

    run_job.apply_async(args=[str(job.pk)], task_id=job.task_id)


def _requeue(job: Job) -> None:
    """Send the job again under a new task id, so any older message for it is ignored."""
    job.status = Job.Status.QUEUED
    job.task_id = str(uuid.uuid4())
    job.progress = 0
    job.save(update_fields=["status", "task_id", "progress", "updated_at"])
    _enqueue_on_commit(job)


def dispatch_waiting_jobs(*, waiting_longer_than: timedelta) -> int:
    """Re-send queued jobs whose message may never have reached a worker (broker down at submit)."""
    cutoff = timezone.now() - waiting_longer_than
    count = 0
    for job in _each_locked(Job.objects.filter(status=Job.Status.QUEUED, updated_at__lt=cutoff)):
        _requeue(job)
        count += 1
    return count


def reap_stuck_jobs(*, running_longer_than: timedelta) -> int:
    """Jobs "running" past the hard time limit lost their worker: run them again or give up."""
    cutoff = timezone.now() - running_longer_than
    count = 0
    for job in _each_locked(Job.objects.filter(status=Job.Status.RUNNING, started_at__lt=cutoff)):
        if job.attempts >= settings.PARROTER_MAX_ATTEMPTS:
            _finish(job, status=Job.Status.FAILED, error=_interrupted_message(job.attempts))
        else:
            _requeue(job)
        count += 1
    return count


def _each_locked(candidates: QuerySet[Job]) -> Iterator[Job]:
    """Each candidate, locked in a transaction of its own and re-read so it still matches."""
    for job_id in candidates.values_list("pk", flat=True):
        with transaction.atomic():
            job = candidates.select_for_update().filter(pk=job_id).first()
            if job is not None:
                yield job


def _interrupted_message(attempts: int) -> str:
    return (
        f"The job was interrupted {attempts} times (the worker stopped, or the job ran out of "
        "time or memory) and was given up."
    )


def run_job(*, job_id: str, task_id: str) -> dict:
    """Run one delivery of a job. Safe to call again for the same message (acks_late)."""
    job = _claim(job_id=job_id, task_id=task_id)
    if job is None:
        return {"job": job_id, "skipped": True}
    if job.attempts > settings.PARROTER_MAX_ATTEMPTS:
        message = _interrupted_message(job.attempts - 1)
        _finish(job, status=Job.Status.FAILED, error=message)
        raise JobFailed(message)
    try:
        archive_name, made = _make_thumbnail_archive(job)
    except thumbnails.ThumbnailError as exc:
        _finish(job, status=Job.Status.FAILED, error=str(exc))
        raise JobFailed(str(exc)) from exc
    except SoftTimeLimitExceeded as exc:
        limit = settings.CELERY_TASK_SOFT_TIME_LIMIT
        message = f"The job took longer than {limit} seconds and was stopped."
        _finish(job, status=Job.Status.FAILED, error=message)
        raise JobFailed(message) from exc
    except Exception:
        logger.exception("job %s failed unexpectedly", job_id)
        _finish(job, status=Job.Status.FAILED, error=INTERNAL_ERROR_MESSAGE)
        raise
    result = {"thumbnails": [_thumbnail_row(item) for item in made]}
    if not _finish(job, status=Job.Status.SUCCEEDED, archive=archive_name, result=result):
        job.archive.storage.delete(archive_name)  # cancelled while running: keep nothing
    return {"job": job_id, **result}


def _claim(*, job_id: str, task_id: str) -> Job | None:
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        # A message for an older attempt (the job was retried since) or a finished job is stale.
        if job is None or job.task_id != task_id or job.is_finished:
            return None
        job.status = Job.Status.RUNNING
        job.attempts += 1
        job.progress = 0
        job.error = ""
        job.started_at = timezone.now()
        job.save(
            update_fields=["status", "attempts", "progress", "error", "started_at", "updated_at"]
        )
    return job


def _running(job: Job) -> QuerySet[Job]:
    return Job.objects.filter(pk=job.pk, task_id=job.task_id, status=Job.Status.RUNNING)


def _set_progress(job: Job, percent: int) -> None:
    _running(job).update(progress=min(percent, 99), updated_at=timezone.now())


def _finish(
    job: Job, *, status: str, error: str = "", archive: str = "", result: dict | None = None
) -> bool:
    """Record the outcome unless the job was cancelled or retried meanwhile."""
    now = timezone.now()
    fields = {"status": status, "error": error, "finished_at": now, "updated_at": now}
    if status == Job.Status.SUCCEEDED:
        fields.update(progress=100, archive=archive, result=result or {})
    return _running(job).update(**fields) == 1


def _make_thumbnail_archive(job: Job) -> tuple[str, list[thumbnails.Thumbnail]]:
    boxes = [thumbnails.Box(width, height) for width, height in job.params["sizes"]]
    # The ZIP is built in a temporary file on the media disk and moved into place whole,
    # so a crash or a bad image never leaves a partial archive behind.
    with (
        job.source.open("rb") as source,
        TemporaryUploadedFile(ARCHIVE_FILENAME, "application/zip", 0, None) as pending,
    ):
        made = thumbnails.make_thumbnails(
            source,
            boxes,
            pending.file,
            max_pixels=settings.PARROTER_MAX_PIXELS,
            progress=partial(_set_progress, job),
        )
        pending.flush()
        pending.seek(0)
        name = job_file_path(job, ARCHIVE_FILENAME)
        storage = job.archive.storage
        if storage.exists(name):  # left by an earlier delivery of this job
            storage.delete(name)
        return storage.save(name, pending), made


def _thumbnail_row(item: thumbnails.Thumbnail) -> dict:
    return {"name": item.name, "width": item.width, "height": item.height, "bytes": item.bytes}
