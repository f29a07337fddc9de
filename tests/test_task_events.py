"""Task events are a choice (PARROTER_TASK_EVENTS, settings): on by default, so Flower lists every
task; off, at rates where their cost counts, no worker sends any, Flower does not switch them
back on, and workers still send the heartbeats the monitor and the console go by. On, a worker
sends them in batches (parroter.celery_app.BatchTaskEvents)."""

import base64
import json
import os
import threading
import time
import urllib.error
import urllib.request

import pytest
from kombu import Connection

from parroter.celery_app import app as celery_app
from tests.conftest import (
    celery_process,
    checkout_path,
    image_bytes,
    procfile,
    service_env,
    start_service,
    stop_process,
    submit_image,
    wait_for_job,
    wait_until_answering,
    worker_arguments,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
FLOWER_ENABLES_EVERY = 5  # seconds: flower.events.Events.events_enable_interval


class EventLog:
    """Every event on the broker's event exchange, from a receiver in a thread of its own."""

    def __init__(self, broker_url: str) -> None:
        self.events: list[dict] = []
        self.messages: list[list[str]] = []  # the types of the events each message carried
        self.connection = Connection(broker_url)
        self.receiver = celery_app.events.Receiver(
            self.connection, handlers={"*": self.events.append}
        )
        receive = self.receiver._receive  # a batch of events comes as one message, a list

        def receive_counting(body, message) -> None:
            self.messages.append(
                [event["type"] for event in (body if isinstance(body, list) else [body])]
            )
            receive(body, message)

        self.receiver._receive = receive_counting
        self.thread = threading.Thread(target=self._capture, daemon=True)

    def _capture(self) -> None:
        self.receiver.capture(limit=None, timeout=None, wakeup=False)

    def __enter__(self) -> "EventLog":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.receiver.should_stop = True
        self.thread.join(timeout=5)
        self.connection.release()

    def of(self, hostname: str) -> list[str]:
        return [event["type"] for event in list(self.events) if event["hostname"] == hostname]

    def wait_for_heartbeat(self, hostname: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while "worker-heartbeat" not in self.of(hostname):
            assert time.monotonic() < deadline, f"no heartbeat from {hostname}"
            time.sleep(0.1)


def run_one_job(user, events: EventLog, worker_name: str) -> None:
    job = wait_for_job(submit_image(user, image_bytes((80, 60))))
    assert job.status == "succeeded" and job.worker == worker_name
    time.sleep(1)  # the worker's last events of the job reach the receiver


def test_workers_send_task_events_by_default(user, own_broker, media_root, tmp_path):
    name = f"events-on-{os.getpid()}@host"
    worker = celery_process(
        worker_arguments(name), log=tmp_path / "w.log", REDIS_URL=own_broker.url
    )
    try:
        with EventLog(own_broker.url) as events:
            wait_until_answering(worker, name)
            events.wait_for_heartbeat(name)
            run_one_job(user, events, name)
            assert {"task-received", "task-started", "task-succeeded"} <= set(events.of(name))
    finally:
        stop_process(worker)


def test_a_worker_sends_its_task_events_in_batches_and_what_it_holds_when_it_stops(
    user, own_broker, media_root, tmp_path
):
    name = f"events-batched-{os.getpid()}@host"
    worker = celery_process(
        worker_arguments(name),
        log=tmp_path / "w.log",
        REDIS_URL=own_broker.url,
        PARROTER_TASK_EVENTS_BATCH_SECONDS="600",
    )
    try:
        with EventLog(own_broker.url) as events:
            wait_until_answering(worker, name)
            events.wait_for_heartbeat(name)
            for _ in range(3):
                run_one_job(user, events, name)
            assert not [kind for kind in events.of(name) if kind.startswith("task-")]
            stop_process(worker)  # a warm shutdown: the batch goes before the worker does
            deadline = time.monotonic() + 10
            while events.of(name).count("task-succeeded") < 3:
                assert time.monotonic() < deadline, events.of(name)
                time.sleep(0.1)
            tasks = [kind for kind in events.of(name) if kind.startswith("task-")]
            assert sorted(tasks) == sorted(["task-received", "task-started", "task-succeeded"] * 3)
            batches = [kinds for kinds in events.messages if "task-received" in kinds]
            assert [sorted(kinds) for kinds in batches] == [sorted(tasks)]  # all in one message
    finally:
        stop_process(worker)


def test_a_batch_the_broker_missed_is_sent_whole_once_it_is_back(own_broker):
    def dispatcher():  # the app's, as a worker makes it, on a connection of its own
        return celery_app.events.Dispatcher(
            Connection(own_broker.url), hostname="batch@test", buffer_group=["task"]
        )

    first = dispatcher()
    for kind in ("task-received", "task-started", "task-succeeded"):
        first.send(kind, uuid="a-task")
    own_broker.stop()
    first.flush()  # the publish fails: the batch is kept for the next connection
    own_broker.start()
    with EventLog(own_broker.url) as events:
        probe = dispatcher()
        while not events.of("batch@test"):  # the log listens once it sees a probe
            probe.send("probe-listening")
            time.sleep(0.1)
        second = dispatcher()
        second.extend_buffer(first)  # as a worker's consumer does once it is connected again
        second.flush()
        deadline = time.monotonic() + 10
        while "task-succeeded" not in events.of("batch@test"):
            assert time.monotonic() < deadline, events.of("batch@test")  # Celery's: sent empty
            time.sleep(0.1)
        tasks = [kind for kind in events.of("batch@test") if kind.startswith("task-")]
        assert tasks == ["task-received", "task-started", "task-succeeded"]


def flower_api(flower, path: str):
    """Flower's JSON API under /flower/, with its login; None for a 404."""
    request = urllib.request.Request(f"{flower.url}/flower/api/{path}")  # noqa: S310
    token = base64.b64encode(flower.credentials.encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (loopback)
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def test_flower_lists_a_jobs_task_from_the_batched_events(user, celery_worker, flower):
    deadline = time.monotonic() + 15
    while not any((flower_api(flower, "workers?status=1") or {}).values()):
        # Flower answers before it listens to events: a worker's heartbeat says it listens.
        assert time.monotonic() < deadline, "Flower saw no worker's heartbeat"
        time.sleep(0.2)
    job = wait_for_job(submit_image(user, image_bytes((80, 60))))
    assert job.status == "succeeded"
    deadline = time.monotonic() + 10  # the batch goes within 0.25 s
    while (task := flower_api(flower, f"task/info/{job.task_id}") or {}).get("state") != "SUCCESS":
        assert time.monotonic() < deadline, task
        time.sleep(0.2)


def test_with_task_events_off_only_heartbeats_are_sent_even_with_flower_running(
    user, own_broker, media_root, tmp_path
):
    off = {"REDIS_URL": own_broker.url, "PARROTER_TASK_EVENTS": "false"}
    name = f"events-off-{os.getpid()}@host"
    worker = celery_process(worker_arguments(name), log=tmp_path / "w.log", **off)
    flower_env = service_env(
        **off, PYTHONPATH=checkout_path(), FLOWER_PORT="0", FLOWER_BASIC_AUTH="operator:long-secret"
    )
    flower = start_service(
        ["/bin/sh", "-c", procfile()["flower"]], log=tmp_path / "f.log", env=flower_env
    )
    try:
        with EventLog(own_broker.url) as events:
            wait_until_answering(worker, name)
            events.wait_for_heartbeat(name)
            time.sleep(FLOWER_ENABLES_EVERY + 1)  # Flower's timer would have switched them on
            assert flower.alive, flower.output()[-2000:]
            run_one_job(user, events, name)
            sent = set(events.of(name))
            assert "worker-heartbeat" in sent
            assert not {kind for kind in sent if kind.startswith("task-")}, sent
    finally:
        stop_process(flower)
        stop_process(worker)
