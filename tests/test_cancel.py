"""What a terminated delivery leaves is removed by the worker's main process."""

import uuid
from types import SimpleNamespace

import pytest
from celery.signals import task_revoked
from django.conf import settings
from django.core.files.base import ContentFile

from jobs import services
from jobs.models import Job
from jobs.tasks import run_job

pytestmark = pytest.mark.django_db


def job_with_leftovers(owner, status: str) -> tuple[Job, list]:
    job = Job.objects.create(
        owner=owner, status=status, source_name="a.jpg", task_id=str(uuid.uuid4())
    )
    pending = settings.FILE_UPLOAD_TEMP_DIR / f"{job.pk}-{job.task_id}.zip.part"
    pending.write_bytes(b"PK half an archive")
    archive = f"jobs/{job.pk}/{services.ARCHIVE_FILENAME}"
    job.archive.storage.save(archive, ContentFile(b"PK a whole archive"))
    return job, [pending, archive]


def revoke(job: Job, *, terminated: bool) -> None:
    """What the worker's main process announces when it revokes a task."""
    request = SimpleNamespace(id=job.task_id, args=[str(job.pk)])
    task_revoked.send(sender=run_job, request=request, terminated=terminated, signum=15)


def test_a_terminated_cancelled_job_leaves_no_pending_or_unrecorded_archive(user):
    job, (pending, archive) = job_with_leftovers(user, Job.Status.CANCELLED)
    revoke(job, terminated=True)
    assert not pending.exists()
    assert not job.archive.storage.exists(archive)


def test_a_revoked_but_not_terminated_task_or_a_succeeded_job_keeps_its_files(user):
    waiting, (pending, archive) = job_with_leftovers(user, Job.Status.CANCELLED)
    revoke(waiting, terminated=False)  # dropped before it ran: it wrote nothing
    assert pending.exists() and waiting.archive.storage.exists(archive)
    pending.unlink()

    done, (pending, archive) = job_with_leftovers(user, Job.Status.SUCCEEDED)
    revoke(done, terminated=True)  # too late to stop: its archive is the result
    assert not pending.exists()
    assert done.archive.storage.exists(archive)
