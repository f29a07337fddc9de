"""Liveness per queue, from real worker processes and a real monitor process: a job worker that
is stopped, cut off from the broker or killed is seen as gone within 15 s everywhere (the owner's
job page, /ops/, /readyz, /metrics), while the housekeeping worker keeps only its own queue
alive."""

import os
import re
import signal
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from jobs import monitoring
from jobs.models import Job
from tests.broker_fakes import PausableProxy
from tests.conftest import (
    celery_process,
    consumers,
    start_monitor,
    stop_process,
    wait_for_report,
    wait_until_answering,
    worker_arguments,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SEEN_WITHIN = 15  # seconds, the bound for "shown as offline everywhere"


def queued_job(owner) -> Job:
    """A job waiting in the queue (its message is not sent: no worker may take it here)."""
    return Job.objects.create(owner=owner, source_name="waiting.jpg", params={"sizes": [[64, 64]]})


def served_everywhere(client, staff, job: Job) -> dict[str, bool]:
    """Whether each page says a worker consumes the jobs' queue."""
    client.force_login(job.owner)
    owner_page = client.get(reverse("dashboard:job_panel", args=[job.pk])).content.decode()
    client.force_login(staff)
    stats = client.get(reverse("dashboard:ops_stats")).content.decode()
    ready = client.get(reverse("readyz")).json()["workers"]["queues"]
    metrics = client.get(reverse("metrics")).content.decode()
    gauges = {
        sample.labels["queue"]: sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "parroter_queue_consumers"
        for sample in family.samples
    }
    assert ready["housekeeping"]["status"] == "ok" and gauges["housekeeping"] == 1
    return {
        "owner": "No worker is serving jobs right now" not in owner_page,
        "ops": "No worker is consuming <code>celery</code>" not in stats,
        "readyz": ready["celery"]["status"] == "ok",
        "metrics": gauges["celery"] == 1,
    }


def test_a_job_worker_stopped_cut_off_or_killed_is_seen_within_15_s_everywhere(
    client, staff, user, own_broker, tmp_path
):
    proxy = PausableProxy(own_broker.port)
    via_proxy = f"redis://127.0.0.1:{proxy.port}/0"
    hostname = f"jobs-{os.getpid()}@testhost"
    worker = celery_process(
        worker_arguments(hostname), log=tmp_path / "worker.log", REDIS_URL=via_proxy
    )
    housekeeping = celery_process(
        worker_arguments(f"housekeeping-{os.getpid()}@testhost", queues="housekeeping"),
        log=tmp_path / "housekeeping.log",
        REDIS_URL=own_broker.url,
    )
    monitor = start_monitor(own_broker.url, log=tmp_path / "monitor.log")
    job = queued_job(user)
    try:
        wait_until_answering(worker, hostname)

        def served(facts) -> bool:
            return consumers(facts, "celery") == 1 and consumers(facts, "housekeeping") == 1

        def job_queue_unserved(facts) -> bool:
            return consumers(facts, "celery") == 0 and consumers(facts, "housekeeping") == 1

        wait_for_report(served, monitor=monitor, timeout=60)
        assert served_everywhere(client, staff, job) == dict.fromkeys(
            ["owner", "ops", "readyz", "metrics"], True
        )

        os.killpg(worker.process.pid, signal.SIGSTOP)
        wait_for_report(job_queue_unserved, monitor=monitor, timeout=SEEN_WITHIN)
        assert served_everywhere(client, staff, job) == dict.fromkeys(
            ["owner", "ops", "readyz", "metrics"], False
        )
        stats = client.get(reverse("dashboard:ops_stats")).content.decode()
        assert "No worker is consuming <code>celery</code>:</strong>\n      1 job waiting." in stats

        os.killpg(worker.process.pid, signal.SIGCONT)
        wait_for_report(served, monitor=monitor, timeout=SEEN_WITHIN)
        assert all(served_everywhere(client, staff, job).values())

        proxy.pause()  # the job worker's host loses the broker; nothing is closed
        wait_for_report(job_queue_unserved, monitor=monitor, timeout=SEEN_WITHIN)
        assert not any(served_everywhere(client, staff, job).values())
        proxy.resume()
        wait_for_report(served, monitor=monitor, timeout=60)

        os.killpg(worker.process.pid, signal.SIGKILL)
        facts, _ = wait_for_report(job_queue_unserved, monitor=monitor, timeout=SEEN_WITHIN)
        gone = [w for w in facts.workers if w.name == hostname]
        assert [(w.online, w.queues) for w in gone] == [(False, ("celery",))]
        assert not any(served_everywhere(client, staff, job).values())
    finally:
        if worker.alive:
            os.killpg(worker.process.pid, signal.SIGCONT)  # a stopped process ignores SIGTERM
        for process in (monitor, housekeeping, worker):
            stop_process(process)
        proxy.close()


def test_a_report_the_monitor_stopped_writing_claims_nothing(client, staff, user):
    written = timezone.now() - timedelta(seconds=30)
    monitoring.save_report(
        monitoring.ClusterFacts(
            checked_at=written,
            queues=[monitoring.QueueFacts(name="celery", messages=3, consumers=0)],
            workers=[
                monitoring.WorkerFacts(name="celery@gone", online=False, last_heartbeat=written)
            ],
        )
    )
    job = queued_job(user)
    client.force_login(user)
    owner_page = client.get(reverse("dashboard:job_panel", args=[job.pk])).content.decode()
    assert "Waiting for a worker" in owner_page and "No worker is serving" not in owner_page
    client.force_login(staff)
    stats = client.get(reverse("dashboard:ops_stats")).content.decode()
    assert "The monitor last reported" in stats and "No worker is consuming" not in stats
    workers = client.get(reverse("readyz")).json()["workers"]
    assert workers["status"] == "unknown" and "monitor last reported 30 s ago" in workers["reason"]
    metrics = client.get(reverse("metrics")).content.decode()
    assert "parroter_queue_consumers" not in metrics and "parroter_broker_up" not in metrics
    age = re.search(r"^parroter_monitor_report_age_seconds (\S+)$", metrics, re.M)
    assert 30 <= float(age.group(1)) < 60
