"""Which archive a delivery of a job stores and removes: its own, named after its task id, so a
superseded delivery that stores or deletes late never touches the archive of the delivery that
finished the job; and what an earlier delivery stored and never recorded goes once a later one
finishes."""

import logging
import zipfile

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage

from jobs import running, services
from jobs.models import Job
from tests.conftest import image_bytes, run_in_process, submit_image

pytestmark = pytest.mark.django_db


def folder_files(job: Job) -> list[str]:
    return sorted(default_storage.listdir(f"jobs/{job.pk}")[1])


def archive_of(job: Job, task_id: str) -> str:
    return f"jobs/{job.pk}/thumbnails-{task_id}.zip"


def assert_archive_of_its_task(job: Job) -> None:
    """The job's archive is a whole ZIP, named after its current task id, alone in its folder
    beside the source."""
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert job.archive.name == archive_of(job, job.task_id)
    assert folder_files(job) == ["source.jpg", f"thumbnails-{job.task_id}.zip"]
    with job.archive.open("rb") as stored, zipfile.ZipFile(stored) as archive:
        assert archive.testzip() is None and len(archive.namelist()) == 1


def test_a_delivery_recovered_from_while_it_stored_leaves_the_finished_archive_alone(
    user, settings, monkeypatch
):
    # As S3 does (and the cluster runs on it), a store replaces whatever is at its name.
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"allow_overwrite": True},
        },
    }
    job = submit_image(user, image_bytes((300, 200)), sizes=(64,))
    old_task = job.task_id
    real_save = FileSystemStorage.save
    newer = {}

    def cut_off_while_storing(self, name, content, *args, **kwargs):
        # The old delivery had made its archive when its worker was cut off and found lost:
        # the job ran again elsewhere and finished; then the old store goes through.
        if name.startswith(f"jobs/{job.pk}/thumbnails-") and not newer:
            newer["recovered"] = services.recover_jobs_of_lost_worker(
                worker="celery@old", on_its_host=False
            )
            newer["outcome"] = run_in_process(job)
            job.refresh_from_db()
            with job.archive.open("rb") as finished:
                newer["bytes"] = finished.read()
        return real_save(self, name, content, *args, **kwargs)

    monkeypatch.setattr(FileSystemStorage, "save", cut_off_while_storing)
    outcome = running.run_job(job_id=str(job.pk), task_id=old_task, worker="celery@old")

    assert outcome == {"job": str(job.pk), "cancelled": True}  # its finish was refused
    assert newer["recovered"] == {"requeued": 1, "failed": 0}
    assert "thumbnails" in newer["outcome"]
    assert job.task_id != old_task
    assert_archive_of_its_task(job)  # the old delivery's own archive is gone
    with job.archive.open("rb") as finished:
        assert finished.read() == newer["bytes"]


def test_a_later_attempt_removes_the_archive_an_earlier_one_stored_and_never_recorded(user):
    job = submit_image(user, image_bytes((300, 200)), sizes=(64,))
    first_task = job.task_id
    # The first delivery stored its archive, then its host died before recording the success.
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING, attempts=1, worker="w@gone")
    default_storage.save(archive_of(job, first_task), ContentFile(b"PK never recorded"))
    services.recover_jobs_of_lost_worker(worker="w@gone", on_its_host=False)

    assert "thumbnails" in run_in_process(job)
    assert_archive_of_its_task(job)
    assert job.task_id != first_task and job.attempts == 2


def test_a_message_delivered_again_replaces_what_its_dead_delivery_stored(user):
    job = submit_image(user, image_bytes((300, 200)), sizes=(64,))
    # Same task id: the pool process died after storing, and its message comes again.
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING, attempts=1)
    default_storage.save(archive_of(job, job.task_id), ContentFile(b"PK never recorded"))
    assert running.release_interrupted_job(
        job_id=str(job.pk), task_id=job.task_id, message_kept=True
    )

    assert "thumbnails" in run_in_process(job)
    assert_archive_of_its_task(job)  # a whole ZIP: the dead delivery's file was replaced
    assert job.attempts == 2


def test_a_first_attempt_neither_lists_nor_deletes_anything(user, monkeypatch):
    calls = []
    for method in ("listdir", "delete"):
        real = getattr(FileSystemStorage, method)

        def spy(self, name, real=real, method=method):
            calls.append(method)
            return real(self, name)

        monkeypatch.setattr(FileSystemStorage, method, spy)
    job = submit_image(user, image_bytes((300, 200)), sizes=(64,))
    assert "thumbnails" in run_in_process(job)
    assert calls == []
    monkeypatch.undo()
    assert_archive_of_its_task(job)


def test_an_earlier_archive_that_cannot_be_removed_leaves_the_job_succeeded(
    user, monkeypatch, caplog
):
    job = submit_image(user, image_bytes((300, 200)), sizes=(64,))
    Job.objects.filter(pk=job.pk).update(attempts=1)  # a later attempt: it looks for leftovers

    def unreachable(self, path):
        raise OSError("storage unreachable")

    monkeypatch.setattr(FileSystemStorage, "listdir", unreachable)
    with caplog.at_level(logging.WARNING, logger="jobs.running"):
        assert "thumbnails" in run_in_process(job)
    monkeypatch.undo()
    assert f"could not remove earlier archives of job {job.pk}" in caplog.text
    assert_archive_of_its_task(job)


def test_a_terminated_delivery_removes_its_archive_even_after_the_job_was_retried(user):
    job = submit_image(user, image_bytes((300, 200)), sizes=(64,))
    old_task = job.task_id
    default_storage.save(archive_of(job, old_task), ContentFile(b"PK never recorded"))
    services.cancel_job(job_id=job.pk)
    services.retry_job(job_id=job.pk)  # a new task id before the worker cleans up

    running.discard_partial_outputs(job_id=job.pk, task_id=old_task)
    assert folder_files(job) == ["source.jpg"]
