"""No request waits on the broker: with the broker down, hung (it accepts and never answers) or
slow, the probes, /metrics, the console's partials, the job page's poll, an upload and every API
call answer within a probe's budget (1.5 s), never with a 500; /readyz says 503. The monitor
keeps reporting, and says the broker is unreachable."""

import time

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from jobs import monitoring, tokens
from jobs.models import Job
from parroter.local_redis import free_port
from tests.broker_fakes import HungServer, PausableProxy
from tests.conftest import image_bytes, run_in_process

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


def test_the_api_answers_json_without_waiting_on_a_bad_broker(client, user, staff, faulty_broker):
    """Its rate limits count in the broker's Redis: they let requests through uncounted rather
    than fail them, as the upload page takes jobs then too."""
    failed = Job.objects.create(
        owner=user, source_name="failed.jpg", status=Job.Status.FAILED, params={"sizes": [[64, 64]]}
    )
    queued = Job.objects.create(owner=user, source_name="queued.jpg", params={"sizes": [[64, 64]]})
    done = Job.objects.create(
        owner=user,
        source=SimpleUploadedFile("done.jpg", image_bytes((60, 40))),
        source_name="done.jpg",
        params={"sizes": [[32, 32]]},
        task_id="done",
    )
    run_in_process(done)
    _, plain = tokens.create_api_token(user=user, name="script")
    script = {"HTTP_AUTHORIZATION": f"Bearer {plain}"}

    # First, so it waits out the cache's read timeout (once: then the cache fails fast) before
    # the publish's, which the upload page waits too.
    upload = {"images": SimpleUploadedFile("a.jpg", image_bytes((300, 200))), "sizes": "128"}
    response, took = timed(lambda: client.post("/api/jobs", upload, **script))
    assert response.status_code == 201, (faulty_broker, response.content)
    cache_timeout = settings.CACHES["default"]["OPTIONS"]["socket_timeout"]
    assert took < BUDGET + cache_timeout, (faulty_broker, took)
    submitted = Job.objects.get(pk=response.json()["id"])
    assert (submitted.status, submitted.published_at) == (Job.Status.QUEUED, None)

    calls = [
        ("get", "/api/jobs", 200),
        ("get", f"/api/jobs/{queued.pk}", 200),
        ("get", f"/api/jobs/{queued.pk}/status", 200),
        ("get", f"/api/jobs/{done.pk}/archive", 200),
        ("post", f"/api/jobs/{failed.pk}/retry", 200),
        ("post", f"/api/jobs/{queued.pk}/cancel", 200),
        ("post", f"/api/jobs/{queued.pk}/cancel", 409),
        ("get", "/api/openapi.json", 200),
        ("get", "/api/no-such-path", 404),
    ]
    for method, url, status in calls:
        response, took = timed(
            lambda method=method, url=url: getattr(client, method)(url, **script)
        )
        assert response.status_code == status and took < BUDGET, (faulty_broker, url, took)
        if url.endswith("/archive"):
            assert response["Content-Type"] == "application/zip"
        else:
            assert response["Content-Type"].startswith("application/json"), (url, response)
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert (statuses[failed.pk], statuses[queued.pk]) == (Job.Status.QUEUED, Job.Status.CANCELLED)

    _, scraper = tokens.create_api_token(user=staff, name="prometheus")
    response, took = timed(
        lambda: client.get(reverse("metrics"), HTTP_AUTHORIZATION=f"Bearer {scraper}")
    )
    assert response.status_code == 200 and took < BUDGET, (faulty_broker, took)
