"""What one job costs the database in the worker: its writes are few and its progress is
written at most every PROGRESS_INTERVAL of wall time."""

from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from jobs import running, services
from jobs.kinds import thumbnails
from jobs.models import Job
from tests.conftest import image_bytes, run_in_process, submit_image

pytestmark = pytest.mark.django_db


def queued_job(owner) -> Job:
    return Job.objects.create(
        owner=owner,
        source=SimpleUploadedFile("source.jpg", image_bytes((1600, 1200))),
        source_name="photo.jpg",
        params={"sizes": [[512, 512], [256, 256], [128, 128]]},
        task_id="t-1",
    )


def writes(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].split(None, 1)[0] in ("INSERT", "UPDATE", "WITH")]


def test_a_short_job_writes_its_claim_and_its_outcome_only(user, monkeypatch):
    # A job shorter than the progress interval (the interval is stretched here so that a slow
    # machine cannot make this one longer).
    monkeypatch.setattr(running, "PROGRESS_INTERVAL", 60)
    job = queued_job(user)
    with CaptureQueriesContext(connection) as queries:
        outcome = running.run_job(job_id=str(job.pk), task_id=job.task_id)
    assert len(outcome["thumbnails"]) == 3
    statements = writes(queries)
    job_updates = [sql for sql in statements if 'UPDATE "jobs_job" ' in sql]
    # The claim and the outcome; no progress in between.
    assert len(job_updates) == 2, job_updates
    # And its pending finish for the history (on PostgreSQL in the outcome's own statement);
    # no rollup row is written or locked by the job itself.
    assert len([sql for sql in statements if 'INSERT INTO "jobs_pendingfinish"' in sql]) == 1
    assert not [sql for sql in statements if "jobs_jobrollup" in sql]
    assert len(statements) == (2 if connection.vendor == "postgresql" else 3), statements


def test_progress_is_written_once_per_interval_of_wall_time(user, monkeypatch):
    job = queued_job(user)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING)
    clock = iter([0.0, 0.1, 0.2, 0.3, 0.35, 0.6, 0.61])
    monkeypatch.setattr(running, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    report = running._ProgressWriter(job)  # created at 0.0, as the claim was written
    with CaptureQueriesContext(connection) as queries:
        for percent in (10, 20, 30, 40, 50, 60):  # at 0.1 0.2 0.3 0.35 0.6 0.61
            report(percent, percent // 20)
    assert len(writes(queries)) == 2  # at 0.3 (30 %) and at 0.6 (50 %)
    job.refresh_from_db()
    assert (job.progress, job.images_done) == (50, 2)


def test_the_kind_reports_progress_to_whoever_asks(tmp_path):
    seen = []
    with (tmp_path / "a.zip").open("w+b") as archive:
        thumbnails.make_thumbnails(
            SimpleUploadedFile("a.jpg", image_bytes((800, 600))),
            [thumbnails.Box(64, 64)],
            archive,
            max_pixels=10**8,
            progress=seen.append,
        )
    assert seen and seen[-1] == 100


@pytest.mark.django_db(transaction=True)  # outside a test transaction, closing really closes
def test_a_task_keeps_its_database_connection_for_the_next_one():
    from celery.fixups.django import DjangoWorkerFixup

    from parroter.celery_app import app, reuse_database_connections

    Job.objects.exists()
    opened = connection.connection
    # What the worker does around each task: Celery's fixup, then Django's own checks.
    DjangoWorkerFixup(app).close_database()
    reuse_database_connections()
    assert connection.connection is opened is not None
    # A connection past its age is closed, as between requests.
    connection.close_at = 0
    reuse_database_connections()
    assert connection.connection is None


def test_a_claim_forgets_how_far_an_interrupted_attempt_got(user):
    job = queued_job(user)
    Job.objects.filter(pk=job.pk).update(result={"images_done": 37})  # an earlier attempt's
    claimed = running._claim(job_id=str(job.pk), task_id=job.task_id, worker="celery@here")
    assert (claimed.status, claimed.progress, claimed.images_done) == ("running", 0, 0)


def test_a_claim_is_one_statement_that_hands_back_the_row_as_the_orm_reads_it(user):
    job = queued_job(user)
    Job.objects.filter(pk=job.pk).update(attempts=2, result={"images_done": 3})
    with CaptureQueriesContext(connection) as queries:
        claimed = running._claim(job_id=str(job.pk), task_id=job.task_id, worker="celery@here")
    assert len(queries) == 1
    assert (claimed.status, claimed.attempts, claimed.worker) == ("running", 3, "celery@here")
    stored = Job.objects.get(pk=job.pk)
    fields = [field.attname for field in Job._meta.concrete_fields]
    assert [getattr(claimed, name) for name in fields] == [getattr(stored, name) for name in fields]
    # Running now: neither this message again nor another one claims it.
    assert running._claim(job_id=str(job.pk), task_id=job.task_id, worker="w") is None
    Job.objects.filter(pk=job.pk).update(status=Job.Status.QUEUED)
    assert running._claim(job_id=str(job.pk), task_id="an-older-message", worker="w") is None


def test_a_superseded_delivery_leaves_the_newer_deliverys_archive_alone(user, monkeypatch):
    # The old delivery's revoke was lost: the job was cancelled and retried while it ran, and the
    # new delivery finished first. The old one then must not delete or replace its archive.
    job = submit_image(user, image_bytes((300, 200)), sizes=(64,))
    real = thumbnails.make_archive
    newer = {}

    def superseded_midway(*args, **kwargs):
        made = real(*args, **kwargs)
        if not newer:
            newer["started"] = True
            services.cancel_job(job_id=job.pk)
            services.retry_job(job_id=job.pk)
            newer["outcome"] = run_in_process(job)
        return made

    monkeypatch.setattr(thumbnails, "make_archive", superseded_midway)
    old_task = job.task_id
    assert running.run_job(job_id=str(job.pk), task_id=old_task, worker="celery@old") == {
        "job": str(job.pk),
        "cancelled": True,
    }
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.task_id != old_task
    assert "thumbnails" in newer["outcome"]
    # Its own archive, and not the old delivery's, which that one stored and then removed.
    assert sorted(job.archive.storage.listdir(f"jobs/{job.pk}")[1]) == [
        "source.jpg",
        f"thumbnails-{job.task_id}.zip",
    ]
    with job.archive.open("rb") as archive:
        assert archive.read(2) == b"PK"


def test_a_submit_that_fails_midway_leaves_no_file_and_no_job(user, media_root, monkeypatch):
    from django.core.files.base import ContentFile
    from django.core.files.storage import FileSystemStorage

    from jobs.kinds import thumbnails

    real_save = FileSystemStorage.save
    calls = []

    def disk_full_at_the_third(self, name, content, *args, **kwargs):
        calls.append(name)
        if len(calls) == 3:  # the disk fills up partway through the third file
            Path(self.path(name)).write_bytes(content.read(100))
            raise OSError(28, "No space left on device")
        return real_save(self, name, content, *args, **kwargs)

    monkeypatch.setattr(FileSystemStorage, "save", disk_full_at_the_third)
    uploads = [
        services.Upload(ContentFile(image_bytes((40, 30))), f"p{n}.jpg", "jpg") for n in range(4)
    ]
    with pytest.raises(OSError, match="No space"):
        services.submit_job(owner=user, uploads=uploads, boxes=[thumbnails.Box(16, 16)])
    assert not Job.objects.exists()
    assert len(calls) == 3
    folder = media_root / Path(calls[0]).parent  # jobs/<id>/ of the job that never was
    assert not folder.exists() or not any(folder.iterdir())


def test_a_tasks_result_is_stored_in_one_statement_and_a_second_store_updates_it():
    from celery import states
    from django_celery_results.models import TaskResult

    from jobs.results import ResultBackend
    from parroter.celery_app import app

    backend = app.backend
    assert isinstance(backend, ResultBackend)
    request = SimpleNamespace(
        argsrepr="['a-job']", kwargsrepr="{}", task="jobs.run_job", hostname="celery@here",
        periodic_task_name=None, children=[], group=None, chord=None, ignore_result=False,
    )  # fmt: skip
    with CaptureQueriesContext(connection) as queries:
        backend.store_result("t-9", {"job": "a-job"}, states.SUCCESS, request=request)
    assert [q["sql"].split(None, 1)[0] for q in queries] == ["INSERT"]
    stored = TaskResult.objects.get(task_id="t-9")
    assert (stored.status, stored.task_name, stored.worker) == (
        "SUCCESS",
        "jobs.run_job",
        "celery@here",
    )
    assert stored.task_args == "\"['a-job']\"" and stored.result == '{"job": "a-job"}'
    created = stored.date_created

    backend.store_result(
        "t-9", ValueError("no"), states.FAILURE, traceback="Traceback...", request=request
    )
    again = TaskResult.objects.get(task_id="t-9")
    assert (again.status, again.traceback, again.date_created) == (
        "FAILURE",
        "Traceback...",
        created,
    )
    assert again.date_done >= stored.date_done
    assert TaskResult.objects.count() == 1
    assert backend.get_task_meta("t-9")["status"] == "FAILURE"  # read back as the library does
