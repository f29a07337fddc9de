"""No request waits on the broker: with the broker down, hung (it accepts and never answers) or
slow, the probes, /metrics, the console's partials, the job page's poll and an upload answer
within a probe's budget (1.5 s), never with a 500; /readyz says 503. The monitor keeps
reporting, and says the broker is unreachable."""

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from jobs import monitoring
from jobs.models import Job
from parroter.local_redis import free_port
from tests.broker_fakes import HungServer, PausableProxy
from tests.conftest import image_bytes

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BUDGET = 1.5  # seconds: a readiness probe's timeout


@pytest.fixture(params=["down", "hung", "slow"])
def faulty_broker(request, redis_url, switch_broker, user):
    """The broker and cache in one of three bad states, after the monitor last saw it well."""
    monitoring.save_report(monitoring.ClusterMonitor().observe())
    if request.param == "down":
        switch_broker(f"redis://127.0.0.1:{free_port()}/0")
        yield request.param
    elif request.param == "hung":
        server = HungServer()
        switch_broker(server.url)
        yield request.param
        server.close()
    else:  # every reply of the real Redis 3 s late
        proxy = PausableProxy(int(redis_url.rsplit(":", 1)[1].split("/")[0]), reply_delay=3)
        switch_broker(proxy.url)
        yield request.param
        proxy.close()


def timed(call) -> tuple[object, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_nothing_a_person_or_a_probe_asks_waits_on_a_bad_broker(client, staff, user, faulty_broker):
    job = Job.objects.create(owner=user, source_name="waiting.jpg", params={"sizes": [[64, 64]]})

    ready, took = timed(lambda: client.get(reverse("readyz")))
    assert ready.status_code == 503 and took < BUDGET, (faulty_broker, took)
    assert ready.json()["broker"]["status"] == "error"
    assert ready.json()["database"]["status"] == "ok"

    client.force_login(user)
    for url in (
        reverse("dashboard:job", args=[job.pk]),
        reverse("dashboard:job_panel", args=[job.pk]),
    ):
        response, took = timed(lambda url=url: client.get(url))
        assert response.status_code == 200 and took < BUDGET, (faulty_broker, url, took)
    upload = {"images": SimpleUploadedFile("a.jpg", image_bytes((300, 200))), "sizes": "128"}
    response, took = timed(lambda: client.post(reverse("dashboard:upload"), upload))
    assert response.status_code == 302 and took < BUDGET, (faulty_broker, "upload", took)
    submitted = Job.objects.exclude(pk=job.pk).get()
    assert (submitted.status, submitted.published_at) == (Job.Status.QUEUED, None)

    client.force_login(staff)
    for url in [
        *(reverse(f"dashboard:{name}") for name in ("ops", "ops_stats", "ops_jobs", "ops_workers")),
        reverse("metrics"),
    ]:
        response, took = timed(lambda url=url: client.get(url))
        assert response.status_code == 200 and took < BUDGET, (faulty_broker, url, took)


def test_the_monitor_reports_a_bad_broker_within_its_round(faulty_broker):
    facts, took = timed(lambda: monitoring.ClusterMonitor().observe())
    assert took < BUDGET, (faulty_broker, took)
    assert facts.broker_error and all(queue.messages is None for queue in facts.queues)


def test_an_operators_cancel_and_retry_do_not_wait_on_a_bad_broker(
    client, staff, user, faulty_broker
):
    queued = Job.objects.create(owner=user, source_name="queued.jpg", params={"sizes": [[64, 64]]})
    failed = Job.objects.create(
        owner=user, source_name="failed.jpg", status=Job.Status.FAILED, params={"sizes": [[64, 64]]}
    )
    client.force_login(staff)
    for action, job in (("ops_cancel", queued), ("ops_retry", failed)):
        url = reverse(f"dashboard:{action}", args=[job.pk])
        response, took = timed(lambda url=url: client.post(url))
        assert response.status_code == 302 and took < BUDGET, (faulty_broker, action, took)
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert (statuses[queued.pk], statuses[failed.pk]) == (Job.Status.CANCELLED, Job.Status.QUEUED)
