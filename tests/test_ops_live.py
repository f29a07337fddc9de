"""The console's actions and worker facts against the real stack: Redis, a Celery worker
process, the database."""

import os
import re
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django_celery_results.models import TaskResult

from jobs import monitoring, services
from jobs.models import Job
from parroter.local_redis import LocalRedis, free_port
from tests.conftest import (
    JOB_TIMEOUT,
    confirm_bulk,
    consumers,
    finished_task_result,
    image_bytes,
    start_held_job,
    submit_image,
    wait_for_job,
    wait_for_report,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def waiting_job(owner, media_root: Path, status=Job.Status.QUEUED) -> Job:
    """A job with a real source but no message in the broker: it stays as it is made."""
    job = Job.objects.create(
        owner=owner, status=status, source_name="held.jpg", params={"sizes": [[64, 64]]}
    )
    job.source.save("source.jpg", SimpleUploadedFile("s.jpg", image_bytes((120, 80))))
    return job


def test_a_failed_job_retried_from_the_console_succeeds_once_its_cause_is_gone(
    client, staff, user, celery_worker, media_root
):
    whole = image_bytes((900, 600))
    job = wait_for_job(submit_image(user, whole[: len(whole) // 3], sizes=(96,)))
    assert job.status == Job.Status.FAILED and "truncated" in job.error
    (media_root / job.source.name).write_bytes(whole)  # the cause goes away

    client.force_login(staff)  # it failed on its input: the operator who fixed it forces a retry
    response = client.post(
        reverse("dashboard:ops_retry", args=[job.pk]), {"next": "/ops/?status=failed", "force": "1"}
    )
    assert response.status_code == 302 and response.url == "/ops/?status=failed"
    job = wait_for_job(job)
    assert (job.status, job.attempts, job.error) == (Job.Status.SUCCEEDED, 2, "")
    assert finished_task_result(job.task_id).status == "SUCCESS"
    page = client.get(response.url).content.decode()
    assert "The job is queued again (forced)." in page

    again = client.post(reverse("dashboard:ops_retry", args=[job.pk]), follow=True)
    assert "Nothing to retry" in again.content.decode()  # a second click changes nothing
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED


def test_a_running_job_cancelled_from_the_console_stops_and_keeps_nothing(
    client, staff, user, celery_worker, media_root
):
    job = start_held_job(user, media_root)
    source = media_root / job.source.name
    pending = list((media_root / "tmp").iterdir())
    assert [path.name for path in pending] == [f"{job.pk}-{job.task_id}.zip.part"]

    client.force_login(staff)
    response = client.post(reverse("dashboard:ops_cancel", args=[job.pk]), follow=True)
    assert "The job is cancelled." in response.content.decode()
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED and job.error == "Cancelled by olivia."

    # The worker terminates the task's process, records REVOKED and removes its leftovers.
    assert finished_task_result(job.task_id).status == "REVOKED"
    deadline = time.monotonic() + JOB_TIMEOUT
    while pending[0].exists():
        assert time.monotonic() < deadline, "the partial archive was not removed"
        time.sleep(0.05)
    source.unlink()
    assert list(source.parent.iterdir()) == []  # and no archive
    job.refresh_from_db()
    assert (job.status, job.archive.name) == (Job.Status.CANCELLED, "")
    assert celery_worker.alive
    assert (
        wait_for_job(submit_image(user, image_bytes((300, 200)), sizes=(96,))).status
        == Job.Status.SUCCEEDED
    )

    again = client.post(reverse("dashboard:ops_cancel", args=[job.pk]), follow=True)
    assert "Nothing to cancel" in again.content.decode()


def test_bulk_actions_confirm_then_change_exactly_the_matching_jobs(
    client, staff, user, other_user, celery_worker, media_root
):
    alice_failed = [waiting_job(user, media_root, Job.Status.FAILED) for _ in range(2)]
    bob_failed = waiting_job(other_user, media_root, Job.Status.FAILED)
    alice_queued = waiting_job(user, media_root)
    bob_queued = [waiting_job(other_user, media_root) for _ in range(2)]
    client.force_login(staff)

    url = reverse("dashboard:ops_bulk", args=["retry"])
    confirm = client.get(url, {"owner": "alice"}).content.decode()
    assert "2 failed jobs" in confirm
    done = confirm_bulk(client, "retry", {"owner": "alice"}, follow=True).content.decode()
    assert "Retry: 2 jobs changed." in done
    for job in alice_failed:
        assert wait_for_job(job).status == Job.Status.SUCCEEDED
    bob_failed.refresh_from_db()
    assert bob_failed.status == Job.Status.FAILED
    again = client.get(url, {"owner": "alice"}).content.decode()  # none left to confirm
    assert "No failed job matches these filters: nothing to retry." in again

    url = reverse("dashboard:ops_bulk", args=["cancel"])
    assert "2 queued jobs" in client.get(url, {"owner": "bob"}).content.decode()
    # The console shows failed jobs: "cancel every queued job" among them matches none.
    assert "nothing to cancel" in client.get(url, {"status": "failed"}).content.decode()
    done = confirm_bulk(client, "cancel", {"owner": "bob"}, follow=True).content.decode()
    assert "Cancel: 2 jobs changed." in done
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert {statuses[job.pk] for job in bob_queued} == {Job.Status.CANCELLED}
    assert statuses[alice_queued.pk] == Job.Status.QUEUED


def test_the_workers_panel_shows_the_worker_its_queue_and_its_running_job(
    client, staff, user, monitor, media_root
):
    hostname = f"test-{os.getpid()}@"
    facts, _ = wait_for_report(lambda facts: consumers(facts, "celery"), monitor=monitor)
    ours = [worker for worker in facts.online if worker.name.startswith(hostname)]
    assert [(worker.concurrency, worker.queues) for worker in ours] == [(1, ("celery",))]
    held = start_held_job(user, media_root)
    try:
        client.force_login(staff)
        panel = client.get(reverse("dashboard:ops_workers")).content.decode()
        row = re.search(
            rf'<tr id="(worker-[^"]+)">\s*<td [^>]*>{re.escape(held.worker)}</td>(.*?)</tr>',
            panel,
            re.S,
        )
        assert row, panel
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(2), re.S)
        # State, queues, concurrency, running jobs: the held job is this worker's one job.
        assert cells[:4] == ['<span class="badge succeeded">online</span>', "celery", "1", "1"]
        assert re.search(r'class="mono">celery</td>\s*<td class="num">1</td>', panel)
        # The jobs table names the worker and links to its row in the workers panel.
        console = client.get(reverse("dashboard:ops")).content.decode()
        assert f'<tr id="{row.group(1)}">' in console
        assert f'href="/ops/#{row.group(1)}">{held.worker.split(".")[0]}</a>' in console
        ready = client.get(reverse("readyz")).json()
        assert ready["status"] == "ok" and ready["workers"]["queues"]["celery"]["consumers"] == 1
    finally:
        os.close(os.open(media_root / held.source.name, os.O_WRONLY))  # the job ends (empty file)
        wait_for_job(held)


def report_once() -> None:
    """What the monitor would write now, observed in this process against the current broker."""
    monitoring.save_report(monitoring.ClusterMonitor().observe())


@pytest.fixture
def lonely_broker(switch_broker, tmp_path):
    """A second Redis that no worker listens on, as broker and cache."""
    with LocalRedis(directory=tmp_path / "redis") as server:
        switch_broker(server.url)
        yield server


def test_the_owner_is_told_when_no_worker_is_running(client, user, lonely_broker, media_root):
    job = waiting_job(user, media_root)
    client.force_login(user)
    page = client.get(reverse("dashboard:job", args=[job.pk])).content.decode()
    assert "No worker is serving jobs right now" not in page  # no report: nothing is claimed
    report_once()
    page = client.get(reverse("dashboard:job", args=[job.pk])).content.decode()
    assert "No worker is serving jobs right now; yours will start as soon as one is back." in page
    ready = client.get(reverse("readyz"))
    assert ready.status_code == 200  # workers down must not take web out of rotation
    workers = ready.json()["workers"]
    assert (workers["status"], workers["online"]) == ("none", 0)
    assert workers["queues"]["celery"] == {"status": "none", "consumers": 0, "messages": 0}


def test_the_console_renders_from_the_database_when_the_broker_is_down(
    client, staff, user, switch_broker, celery_worker, media_root
):
    job = waiting_job(user, media_root, Job.Status.FAILED)
    switch_broker(f"redis://127.0.0.1:{free_port()}/0")
    report_once()
    client.force_login(staff)

    workers = client.get(reverse("dashboard:ops_workers")).content.decode()
    assert "The broker is unreachable." in workers
    page = client.get(reverse("dashboard:ops"))
    assert page.status_code == 200 and f'data-job="{job.pk}"' in page.content.decode()
    # Retrying still works: the job waits as queued until the broker is back.
    assert client.post(reverse("dashboard:ops_retry", args=[job.pk])).status_code == 302
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED
    ready = client.get(reverse("readyz"))
    assert ready.status_code == 503
    assert ready.json()["database"]["status"] == "ok"
    assert ready.json()["broker"]["status"] == "error"
    time.sleep(1)  # had a message gone out, the running worker would have taken it by now
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED
    assert not TaskResult.objects.filter(task_id=job.task_id).exists()


def test_the_counters_warn_at_the_top_when_the_broker_is_down(client, staff, switch_broker):
    switch_broker(f"redis://127.0.0.1:{free_port()}/0")
    report_once()
    client.force_login(staff)
    stats = client.get(reverse("dashboard:ops_stats")).content.decode()
    assert "The broker is unreachable." in stats
    assert "No worker is consuming" not in stats  # the cause, said once


def test_queue_depth_beside_queued_jobs_says_why_they_differ(
    client, staff, user, lonely_broker, media_root
):
    first, second = (submit_image(user, image_bytes((120, 80))) for _ in range(2))
    services.cancel_job(job_id=first.pk)  # its message stays until a worker skips it
    report_once()
    client.force_login(staff)
    panel = client.get(reverse("dashboard:ops_workers")).content.decode()
    numbers = r'\s*<td class="num">(.*?)</td>' * 3
    row = r'class="mono">celery</td>' + numbers
    assert re.search(row, panel).groups()[1:] == ("2", "1")
    assert "1 more message than queued jobs" in panel and "since cancelled or retried" in panel

    waiting_job(user, media_root)
    waiting_job(user, media_root)  # two queued jobs whose message was never sent
    report_once()
    panel = client.get(reverse("dashboard:ops_workers")).content.decode()
    assert re.search(row, panel).groups()[1:] == ("2", "3")
    assert "1 queued job with no message waiting" in panel
    assert second.status == Job.Status.QUEUED
