"""A job worker lost whole (its host died or was cut off) has what it held run again within
seconds, by the monitor, not after Redis's visibility timeout of an hour: the jobs it was
running (under new task ids) and the messages it had taken before claiming their jobs."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from jobs import broker, services
from jobs.models import Job
from jobs.monitoring import ClusterFacts, ClusterMonitor, WorkerFacts
from parroter.celery_app import app as celery_app
from tests.conftest import (
    celery_process,
    image_bytes,
    start_held_job,
    start_monitor,
    stop_process,
    submit_image,
    wait_for_job,
    wait_for_report,
    wait_until_answering,
    worker_arguments,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
LOST_AFTER = 4  # seconds (PARROTER_WORKER_LOST_AFTER for the processes these tests start)
# Lost after LOST_AFTER, seen by the monitor within a round (2 s) and heartbeats' expiry (4 s);
# then a free worker starts the job at once. What is left is the machine's load.
BOUND = LOST_AFTER + 2 + 4 + 10


def lost_worker_env(broker_url: str) -> dict[str, str]:
    return {"REDIS_URL": broker_url, "PARROTER_WORKER_LOST_AFTER": str(LOST_AFTER)}


def unacked(broker_url: str) -> dict[bytes, bytes]:
    return redis.Redis.from_url(broker_url).hgetall("unacked")


def test_the_jobs_of_a_worker_killed_whole_run_again_on_another_within_seconds(
    user, own_broker, media_root, tmp_path
):
    env = lost_worker_env(own_broker.url)
    pid = os.getpid()
    doomed_name, other_name = f"doomed-{pid}@host-a", f"other-{pid}@host-b"
    doomed = celery_process(worker_arguments(doomed_name), log=tmp_path / "a.log", **env)
    other = monitor = None
    try:
        wait_until_answering(doomed, doomed_name)
        held = start_held_job(user, media_root)  # running on the doomed worker, waiting
        assert held.worker == doomed_name
        dead_delivery = held.task_id
        other = celery_process(worker_arguments(other_name), log=tmp_path / "b.log", **env)
        wait_until_answering(other, other_name)
        monitor = start_monitor(own_broker.url, log=tmp_path / "monitor.log", **env)
        both = {doomed_name, other_name}
        wait_for_report(lambda facts: {w.name for w in facts.online} == both, monitor=monitor)

        os.killpg(doomed.process.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        source = media_root / "jobs" / str(held.pk) / "source.png"
        source.unlink()  # the FIFO: the job's next run reads a real image
        source.write_bytes(image_bytes((300, 200), fmt="PNG"))
        job = wait_for_job(held, timeout=BOUND + 30)
        took = time.monotonic() - killed_at
    finally:
        for process in (monitor, other, doomed):
            if process is not None:
                stop_process(process)

    assert (job.status, job.worker, job.attempts) == (Job.Status.SUCCEEDED, other_name, 2)
    assert job.task_id != dead_delivery  # whatever the dead delivery did is not recorded
    # What the dead delivery was writing stays on its host until that host's temporary sweep;
    # here the hosts share a folder, so the test removes it for the tests that follow.
    leftover = Path(settings.FILE_UPLOAD_TEMP_DIR) / f"{job.pk}-{dead_delivery}.zip.part"
    assert leftover.exists()
    leftover.unlink()
    assert took < BOUND, f"run again {took:.1f} s after the kill (bound {BOUND} s)"
    assert f"worker {doomed_name} lost" in monitor.output()


def test_a_worker_renewing_what_it_holds_keeps_taking_messages(
    user, own_broker, media_root, tmp_path
):
    # Renewals every 0.5 s while the worker holds one message and waits for more on its other
    # process slot: they must not disturb the connection its event loop waits on.
    env = {**lost_worker_env(own_broker.url), "PARROTER_WORKER_LOST_AFTER": "1.5"}
    name = f"renewing-{os.getpid()}@host-a"
    worker = celery_process(worker_arguments(name, concurrency=2), log=tmp_path / "w.log", **env)
    try:
        wait_until_answering(worker, name)
        held = start_held_job(user, media_root)
        time.sleep(2)  # a few renewals of the held message
        later = [wait_for_job(submit_image(user, image_bytes((300, 200))), timeout=30)
                 for _ in range(3)]  # fmt: skip
        os.close(os.open(media_root / held.source.name, os.O_WRONLY))  # it ends (empty file)
        held = wait_for_job(held, timeout=30)
    finally:
        stop_process(worker)
    assert [job.status for job in later] == [Job.Status.SUCCEEDED] * 3
    assert "could not renew" not in worker.output()


TAKE_AND_DIE = """
import os, sys
from kombu import Connection
with Connection(sys.argv[1]) as connection:
    channel = connection.default_channel
    message = channel.basic_get("celery", no_ack=False)
    assert message is not None, "no message to take"
    os._exit(0)  # no ack, no restore at shutdown: as a worker killed before its job started
"""


def test_a_message_taken_by_a_worker_that_died_before_claiming_its_job_goes_back(
    user, own_broker, tmp_path
):
    job = submit_image(user, image_bytes((300, 200)))
    subprocess.run([sys.executable, "-c", TAKE_AND_DIE, own_broker.url], check=True, timeout=30)
    assert len(unacked(own_broker.url)) == 1
    env = lost_worker_env(own_broker.url)
    name = f"survivor-{os.getpid()}@host-b"
    worker = celery_process(worker_arguments(name), log=tmp_path / "worker.log", **env)
    monitor = None
    try:
        wait_until_answering(worker, name)
        monitor = start_monitor(own_broker.url, log=tmp_path / "monitor.log", **env)
        job = wait_for_job(job, timeout=BOUND + 30)
    finally:
        for process in (monitor, worker):
            if process is not None:
                stop_process(process)
    # The very message that was taken ran the job: nothing was sent again.
    assert (job.status, job.attempts, job.worker) == (Job.Status.SUCCEEDED, 1, name)
    assert unacked(own_broker.url) == {}
    assert "1 job messages of lost workers put back" in monitor.output()


def test_only_messages_nobody_renews_go_back_and_only_those_of_job_queues(own_broker):
    with celery_app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in ("celery", "celery", "housekeeping"):
            connection.SimpleQueue(queue, channel=channel).put({"queue": queue})
        # This process takes all three and holds them, as a worker does.
        held = [channel.basic_get(queue, no_ack=False) for queue in ("celery", "celery")]
        chore = channel.basic_get("housekeeping", no_ack=False)
        assert None not in (*held, chore)
        time.sleep(0.6)
        assert broker.renew_held_messages(channel) == 3
        assert broker.restore_abandoned_messages(queues={"celery"}, held_for=0.5) == 0

        channel.basic_ack(held[0].delivery_tag)
        time.sleep(0.6)  # not renewed since: held by nobody, as far as the broker can tell
        assert broker.restore_abandoned_messages(queues={"celery"}, held_for=0.5) == 1
        client = channel.client
        assert client.llen("celery") == 1 and client.llen("housekeeping") == 0
        stored = [json.loads(value)[2] for value in client.hgetall("unacked").values()]
        assert stored == ["housekeeping"]  # a chore's message waits for the visibility timeout


def facts_with(*workers: WorkerFacts) -> ClusterFacts:
    return ClusterFacts(checked_at=timezone.now(), workers=list(workers))


def worker(name: str, *, online: bool, heard_ago: float) -> WorkerFacts:
    heard = timezone.now() - timedelta(seconds=heard_ago)
    return WorkerFacts(name=name, online=online, last_heartbeat=heard, queues=("celery",))


@pytest.fixture
def running_on_lost(user, own_broker) -> Job:
    job = submit_image(user, image_bytes((300, 200)))
    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.RUNNING, worker="lost@a", attempts=1, started_at=timezone.now()
    )
    return job


def test_the_monitor_puts_back_only_what_a_worker_lost_long_enough_held(running_on_lost):
    monitor = ClusterMonitor()
    monitor.started -= 3600  # up for an hour: it would have heard every live worker
    lost_after = settings.PARROTER_WORKER_LOST_AFTER
    alive = worker("alive@b", online=True, heard_ago=1)

    monitor.put_back_lost_work(facts_with(alive, worker("lost@a", online=False, heard_ago=3)))
    assert Job.objects.get(pk=running_on_lost.pk).status == Job.Status.RUNNING  # not yet

    # Hears no worker at all: the monitor may be the one cut off, so it does nothing.
    gone = worker("lost@a", online=False, heard_ago=lost_after + 1)
    monitor.put_back_lost_work(facts_with(gone, replace(alive, online=False)))
    assert Job.objects.get(pk=running_on_lost.pk).status == Job.Status.RUNNING

    monitor.put_back_lost_work(facts_with(alive, gone))
    job = Job.objects.get(pk=running_on_lost.pk)
    assert (job.status, job.worker) == (Job.Status.QUEUED, "lost@a")
    assert job.task_id != running_on_lost.task_id


def test_a_monitor_just_started_waits_before_calling_a_worker_lost(running_on_lost):
    monitor = ClusterMonitor()
    gone = worker("lost@a", online=False, heard_ago=3600)
    monitor.put_back_lost_work(facts_with(worker("alive@b", online=True, heard_ago=1), gone))
    assert Job.objects.get(pk=running_on_lost.pk).status == Job.Status.RUNNING
    assert services.recover_jobs_of_lost_worker(worker="lost@a", on_its_host=False) == {
        "requeued": 1,
        "failed": 0,
    }
