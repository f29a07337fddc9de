"""Pausing a queue during an incident, with real workers: they stop taking its messages within
seconds, one that starts while it is paused takes none, and all take them again on resume."""

import time

import pytest
from django.urls import reverse

from jobs import services
from jobs.audit import Actor
from jobs.models import AuditEntry, Job
from parroter.celery_app import app as celery_app
from tests.conftest import (
    celery_process,
    image_bytes,
    stop_process,
    submit_image,
    wait_for_job,
    wait_until_answering,
    worker_arguments,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CHECK = 0.5  # the workers' PARROTER_QUEUE_PAUSE_CHECK_SECONDS here


def consuming(hostname: str) -> set[str]:
    answer = celery_app.control.inspect(destination=[hostname], timeout=1).active_queues() or {}
    return {queue["name"] for queue in answer.get(hostname, [])}


def wait_for_queues(hostname: str, expected: set[str], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (seen := consuming(hostname)) != expected:
        assert time.monotonic() < deadline, f"{hostname} consumes {seen}, not {expected}"
        time.sleep(0.2)


def stays_queued(job: Job, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status != Job.Status.QUEUED:
            return False
        time.sleep(0.2)
    return True


def test_workers_leave_a_paused_queue_and_take_it_again_on_resume(
    own_broker, user, staff, media_root, tmp_path
):
    started = []

    def worker(name: str):
        hostname = f"{name}@pausetest"
        process = celery_process(
            worker_arguments(hostname), log=tmp_path / f"{name}.log",
            REDIS_URL=own_broker.url, PARROTER_QUEUE_PAUSE_CHECK_SECONDS=str(CHECK),
        )  # fmt: skip
        started.append(process)
        wait_until_answering(process, hostname)
        return hostname

    operator = Actor(staff, reason="disk full")
    try:
        first = worker("first")
        assert wait_for_job(submit_image(user, image_bytes((64, 48)))).status == "succeeded"

        assert services.pause_queue(queue="celery", actor=operator)
        assert not services.pause_queue(queue="celery", actor=operator)  # once
        wait_for_queues(first, set(), timeout=5 * CHECK + 5)
        waiting = submit_image(user, image_bytes((64, 48)))
        assert stays_queued(waiting, 3)

        # A worker that starts while it is paused takes nothing either.
        second = worker("second")
        assert consuming(second) == set()
        assert stays_queued(waiting, 2)

        assert services.resume_queue(queue="celery", actor=operator)
        assert wait_for_job(waiting, timeout=15).status == Job.Status.SUCCEEDED
        wait_for_queues(first, {"celery"})
        wait_for_queues(second, {"celery"})
    finally:
        services.resume_queue(queue="celery", actor=operator)
        for process in started:
            stop_process(process)
    assert list(AuditEntry.objects.order_by("id").values_list("action", "reason")) == [
        ("pause", "disk full"),
        ("resume", "disk full"),
    ]


def test_the_console_and_the_owners_page_say_a_queue_is_paused(client, staff, user):
    job = Job.objects.create(owner=user, source_name="waiting.jpg", params={"sizes": [[64, 64]]})
    client.force_login(staff)
    question = client.get(reverse("dashboard:ops_queue", args=["celery", "pause"]))
    assert "Pause <code>celery</code>?" in question.content.decode()
    client.post(reverse("dashboard:ops_queue", args=["celery", "pause"]), {"reason": "bad deploy"})
    console = client.get(reverse("dashboard:ops")).content.decode()
    assert "<code>celery</code> is paused</strong> by olivia" in console
    assert "(“bad deploy”)" in console and "1 job waits" in console

    client.force_login(user)
    page = client.get(reverse("dashboard:job", args=[job.pk])).content.decode()
    assert "Jobs are paused by the operators for now" in page

    client.force_login(staff)
    client.post(reverse("dashboard:ops_queue", args=["celery", "resume"]))
    assert "is paused" not in client.get(reverse("dashboard:ops")).content.decode()
    client.force_login(user)
    page = client.get(reverse("dashboard:job", args=[job.pk])).content.decode()
    assert "Jobs are paused" not in page


def test_the_api_pauses_and_resumes_for_operators_only(client, staff, user):
    from jobs import tokens

    _, mine = tokens.create_api_token(user=user, name="owner")
    _, theirs = tokens.create_api_token(user=staff, name="ops")
    refused = client.post("/api/queues/celery/pause", HTTP_AUTHORIZATION=f"Bearer {mine}")
    assert refused.status_code == 403
    paused = client.post(
        "/api/queues/celery/pause", {"reason": "maintenance"}, HTTP_AUTHORIZATION=f"Bearer {theirs}"
    )
    assert paused.status_code == 200
    body = paused.json()
    assert (body["paused"], body["paused_by"], body["reason"]) == (True, "olivia", "maintenance")
    resumed = client.post("/api/queues/celery/resume", HTTP_AUTHORIZATION=f"Bearer {theirs}")
    assert resumed.json()["paused"] is False
    unknown = client.post("/api/queues/nope/pause", HTTP_AUTHORIZATION=f"Bearer {theirs}")
    assert (
        unknown.status_code == 404
        and "the queues are celery, housekeeping" in unknown.json()["message"]
    )
