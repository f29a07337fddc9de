"""Every submitted job reaches a state a person can see, with exactly one archive per success
and nothing left behind, while faults are injected: workers killed under load, the broker down
at submit, a message delivered twice, temporary storage errors, a cancel mid-run.

Each test that kills or stops something runs its own Redis and its own worker processes, so
the session's worker and broker stay untouched."""

import io
import os
import re
import shutil
import signal
import socket
import time
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from django_celery_results.models import TaskResult
from PIL import Image

from jobs import housekeeping, running, services
from jobs.models import Job
from jobs.tasks import run_job
from tests.conftest import (
    celery_process,
    finished_task_result,
    image_bytes,
    start_held_job,
    stop_process,
    submit_image,
    wait_for_job,
    wait_until_answering,
    worker_arguments,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
HOST = socket.gethostname()


def slow_png(size=(4000, 3000)) -> bytes:
    """A small file that takes the worker a noticeable moment (~0.15 s): 12 MP of smooth
    gradients, which PNG compresses well but the worker must decode in full (no draft)."""
    ramp = Image.linear_gradient("L").resize(size)
    image = Image.merge("RGB", (ramp, ramp.transpose(Image.Transpose.FLIP_LEFT_RIGHT), ramp))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def submit_png(owner, data: bytes, name: str = "photo.png") -> Job:
    return submit_image(owner, data, name=name, extension="png", sizes=(256, 64))


def wait_for_all(jobs: list[Job], timeout: float) -> list[Job]:
    ids = [job.pk for job in jobs]
    deadline = time.monotonic() + timeout
    while True:
        unfinished = Job.objects.filter(pk__in=ids).exclude(status__in=Job.FINISHED)
        if not unfinished.exists():
            return list(Job.objects.filter(pk__in=ids))
        if time.monotonic() > deadline:
            states = list(unfinished.values_list("status", "attempts", "worker")[:10])
            pytest.fail(f"{unfinished.count()} jobs not finished after {timeout}s: {states}")
        time.sleep(0.2)


def assert_exactly_one_valid_archive(job: Job) -> None:
    folder = Path(settings.MEDIA_ROOT) / "jobs" / str(job.pk)
    archive_name = f"thumbnails-{job.task_id}.zip"  # the delivery that finished it
    assert sorted(path.name for path in folder.iterdir()) == ["source.png", archive_name]
    with zipfile.ZipFile(folder / archive_name) as archive:
        assert archive.testzip() is None
        assert len(archive.namelist()) == len(job.params["sizes"])
    leftovers = list(Path(settings.FILE_UPLOAD_TEMP_DIR).glob(f"{job.pk}-*"))
    assert leftovers == [], leftovers


def kill_pool(worker) -> None:
    for pid in pool_processes(worker.process.pid):
        os.kill(pid, signal.SIGKILL)


def pool_processes(master: int) -> list[int]:
    return [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def wait_until_running(job_ids: list, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while Job.objects.filter(pk__in=job_ids, status=Job.Status.RUNNING).count() < at_least:
        if time.monotonic() > deadline:
            pytest.fail("the jobs never started")
        time.sleep(0.01)


def test_jobs_survive_workers_killed_under_load(user, own_broker, tmp_path):
    source = slow_png()
    jobs = [submit_png(user, source) for _ in range(60)]
    ids = [job.pk for job in jobs]
    # A redelivered message goes back to the head of the queue, so one job can be hit by every
    # kill below; here each job may be interrupted more often than the default allows.
    Job.objects.filter(pk__in=ids).update(max_attempts=10)
    name = f"load@{HOST}"
    # A short visibility timeout: a message the killed worker had taken but not yet started
    # comes back within the test (in production that window is milliseconds and the timeout
    # an hour, longer than any job may run).
    env = {"REDIS_URL": own_broker.url, "CELERY_VISIBILITY_TIMEOUT": "20"}
    log = tmp_path / "worker.log"
    kills = []  # (jobs running just before, when)

    def kill(kill_processes) -> None:
        wait_until_running(ids, at_least=1)
        running = set(
            Job.objects.filter(pk__in=ids, status=Job.Status.RUNNING).values_list("pk", flat=True)
        )
        kill_processes()
        kills.append((running, timezone.now()))

    worker = celery_process(worker_arguments(name, concurrency=2), log=log, **env)
    try:
        wait_until_answering(worker, name)
        # Twice, the pool processes die mid-run; the worker replaces them and puts their
        # jobs back in the queue.
        for _ in range(2):
            kill(lambda: kill_pool(worker))
            time.sleep(0.5)
        # Then the whole worker dies mid-run, and a new one starts under the same name.
        kill(lambda: stop_process(worker, kill=True))
        worker = celery_process(worker_arguments(name, concurrency=2), log=log, **env)
        finished = {job.pk: job for job in wait_for_all(jobs, timeout=150)}
    finally:
        stop_process(worker)

    assert {job.status for job in finished.values()} == {Job.Status.SUCCEEDED}, worker.output()[
        -3000:
    ]
    for job in finished.values():
        assert_exactly_one_valid_archive(job)
        assert 1 <= job.attempts <= job.max_attempts
    # A job running when a kill came, and not finished before it, was interrupted and ran
    # again: its attempts say so. (A job can look running to two kills in a row while the
    # worker has not yet put it back after the first, so hits are counted per job.)
    hits = {pk for running, when in kills for pk in running if finished[pk].finished_at > when}
    assert hits, "no kill interrupted a job"
    for pk in hits:
        assert finished[pk].attempts >= 2


def test_jobs_submitted_while_the_broker_is_down_finish_once_it_is_back(
    client, user, own_broker, tmp_path
):
    # A worker and beat as `make run` has them (the dispatcher on its own queue), with a short
    # dispatch interval for the test; both must reconnect by themselves.
    housekeeping.seed_periodic_tasks()
    every_second, _ = IntervalSchedule.objects.get_or_create(
        every=1, period=IntervalSchedule.SECONDS
    )
    PeriodicTask.objects.filter(task="jobs.dispatch_waiting_jobs").update(interval=every_second)
    PeriodicTask.objects.exclude(task="jobs.dispatch_waiting_jobs").update(enabled=False)
    env = {"REDIS_URL": own_broker.url, "PARROTER_REDISPATCH_AFTER": "1"}
    name = f"reconnect@{HOST}"
    log = tmp_path / "services.log"
    worker = celery_process(
        worker_arguments(name, concurrency=2, queues="celery,housekeeping"), log=log, **env
    )
    beat = celery_process(
        [
            "beat",
            "-S",
            "django_celery_beat.schedulers:DatabaseScheduler",
            "--schedule",
            str(tmp_path / "beat-schedule"),
        ],
        log=log,
        **env,
    )
    try:
        wait_until_answering(worker, name)
        own_broker.stop()
        client.force_login(user)
        pages = []
        for number in range(20):
            photo = io.BytesIO(image_bytes((400, 300)))
            photo.name = f"photo-{number}.jpg"
            response = client.post(reverse("dashboard:upload"), {"images": photo, "sizes": ["128"]})
            assert response.status_code == 302, response.content.decode()[-2000:]
            pages.append(client.get(response.url).content.decode())
        jobs = list(Job.objects.filter(owner=user))
        assert len(jobs) == 20
        assert {job.status for job in jobs} == {Job.Status.QUEUED}
        assert all(job.published_at is None for job in jobs)
        assert all("Queued" in page for page in pages)

        time.sleep(2)  # worker and beat find the broker gone
        own_broker.start()
        finished = wait_for_all(jobs, timeout=120)
    finally:
        stop_process(beat)
        stop_process(worker)
    assert {job.status for job in finished} == {Job.Status.SUCCEEDED}, log.read_text()[-3000:]
    assert all(job.attempts == 1 for job in finished)


def test_a_message_delivered_twice_runs_the_job_once(user, own_broker, tmp_path):
    job = start_job_without_sending(user)
    name = f"twice@{HOST}"
    worker = celery_process(
        worker_arguments(name, concurrency=2), log=tmp_path / "w.log", REDIS_URL=own_broker.url
    )
    try:
        # Both copies are waiting before the worker (two slots) starts: they run side by side.
        for _ in range(2):
            run_job.apply_async(args=[str(job.pk)], task_id=job.task_id)
        wait_until_answering(worker, name)
        job = wait_for_job(job)
        time.sleep(1)  # let the second copy finish too
    finally:
        stop_process(worker)
    assert (job.status, job.attempts) == (Job.Status.SUCCEEDED, 1)
    assert_exactly_one_valid_archive(job)
    task = TaskResult.objects.get(task_id=job.task_id)
    assert task.status == "SUCCESS"
    assert "Traceback" not in worker.output()


def start_job_without_sending(owner) -> Job:
    job = Job.objects.create(
        owner=owner, source_name="photo.png", params={"sizes": [[64, 64]]}, task_id="t-1"
    )
    job.source.save("source.png", ContentFile(slow_png((800, 600))))
    return job


def test_a_temporary_storage_error_is_retried_with_backoff_and_succeeds(
    user, celery_worker, media_root
):
    job = start_job_without_sending(user)
    # A delivery of this message ran once and died after storing its archive; where that
    # archive is, a folder stands, so replacing it fails with an OSError, as a full disk or a
    # storage hiccup would. The job goes back to the queue and is retried.
    Job.objects.filter(pk=job.pk).update(max_attempts=10, attempts=1)
    blocker = media_root / "jobs" / str(job.pk) / f"thumbnails-{job.task_id}.zip"
    blocker.mkdir()
    (blocker / "in-the-way").write_bytes(b"")  # not empty, so storage cannot remove it
    services._enqueue(job.pk, job.task_id, job.owner_id)
    deadline = time.monotonic() + 30
    while (job := Job.objects.get(pk=job.pk)).attempts < 3 or job.status != Job.Status.QUEUED:
        assert time.monotonic() < deadline, f"not retried: {job.status} {job.attempts} {job.error}"
        time.sleep(0.01)
    assert job.error == running.TEMPORARY_PROBLEM_MESSAGE  # what the owner sees meanwhile
    shutil.rmtree(blocker)  # the problem goes away

    job = wait_for_job(job)
    assert job.status == Job.Status.SUCCEEDED
    assert job.attempts >= 4 and job.error == ""
    retries = re.findall(
        rf"Task jobs.run_job\[{job.task_id}\] retry: Retry in (\d+)s", celery_worker.output()
    )
    assert len(retries) == job.attempts - 2  # every delivery of this test's but the last
    assert_exactly_one_valid_archive(job)


def test_a_broken_image_fails_at_once_without_retries(user, celery_worker):
    tracebacks_before = celery_worker.output().count("Traceback")
    job = submit_png(user, image_bytes((400, 300), fmt="PNG")[:200], name="broken.png")
    job = wait_for_job(job)
    assert (job.status, job.attempts) == (Job.Status.FAILED, 1)
    assert "truncated or corrupt" in job.error
    task = finished_task_result(job.task_id)
    assert task.status == "FAILURE"
    # An expected failure is one line in the log, never retried, without a traceback.
    log = celery_worker.output()
    assert f"job {job.pk} failed: {job.error}" in log
    assert f"{job.task_id}] retry" not in log
    assert log.count("Traceback") == tracebacks_before


def test_cancelling_a_running_job_leaves_no_archive_and_no_temporary_file(
    user, celery_worker, media_root
):
    job = start_held_job(user, media_root)
    assert services.cancel_job(job_id=job.pk)
    task = finished_task_result(job.task_id)
    assert task.status == "REVOKED"
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED and not job.archive
    folder = media_root / "jobs" / str(job.pk)
    assert [path.name for path in folder.iterdir()] == ["source.png"]
    # The worker's main process removes the pending archive once it has reported the revoke.
    deadline = time.monotonic() + 10
    while list(Path(settings.FILE_UPLOAD_TEMP_DIR).glob(f"{job.pk}-*")):
        assert time.monotonic() < deadline, "the pending archive was left behind"
        time.sleep(0.05)
    assert celery_worker.alive
