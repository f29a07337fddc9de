"""What the broker, its queues and the workers say about themselves.

One process watches the cluster (`manage.py monitor`, a line of the Procfile and of compose) and
writes what it sees into the ClusterReport row every REPORT_EVERY; pages, probes and /metrics
only read that row, so no request ever waits on the broker.

How liveness is decided: every Celery worker sends a heartbeat event every 2 s (with or without
-E); Celery's own events State counts a worker alive until about two missed heartbeats, so a
worker that is SIGKILLed, SIGSTOPped or cut off from the broker shows as offline within ~5 s of
its last heartbeat, and the report a page reads is at most REPORT_EVERY older. Which queues a
worker consumes comes from Celery's inspect (active_queues), asked outside any request, and a
queue is served while an online worker consumes it: the housekeeping worker keeps its own
queue alive, not the jobs'. A report older than STALE_AFTER means the monitor itself is not
running, and then nothing is claimed about workers at all.

The monitor also puts back what a lost worker held. A job worker not heard from for
PARROTER_WORKER_LOST_AFTER (its host died, or was cut off) has its running jobs run again
elsewhere under new task ids, and the job messages nobody renews for as long (taken by a worker
that died before it claimed their jobs) go back to their queue: a dead host's jobs run again
within seconds, not after Redis's visibility timeout of an hour.
"""

import logging
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.utils import timezone

from jobs import broker, rollups, services
from jobs.models import ClusterReport
from parroter.celery_app import app

logger = logging.getLogger(__name__)

REPORT_NAME = "cluster"
REPORT_EVERY = 2.0  # seconds
# Pending finishes added per round, in batches of rollups.ADD_BATCH: 100,000 (~0.4 s) per round
# is far above any finish rate, and a backlog (the monitor was down) never holds up the report.
PENDING_BATCHES_PER_ROUND = 20
# A report this old was not written by a running monitor: its facts are no longer facts.
STALE_AFTER = timedelta(seconds=10)
INSPECT_EVERY = 10.0  # seconds; sooner when a worker appears
INSPECT_TIMEOUT = 1.0
# Workers that stopped sending heartbeats stay listed (as offline) this long.
REMEMBER_FOR = timedelta(days=1)


@dataclass(frozen=True)
class WorkerFacts:
    name: str
    online: bool
    last_heartbeat: datetime | None = None
    queues: tuple[str, ...] = ()  # () until inspect has answered for it
    concurrency: int | None = None
    active: int | None = None  # tasks it runs now, as its last heartbeat said
    processed: int = 0
    pid: int | None = None
    started_at: datetime | None = None

    @property
    def uptime_seconds(self) -> float | None:
        if not self.online or self.started_at is None:
            return None
        return max((timezone.now() - self.started_at).total_seconds(), 0.0)


@dataclass(frozen=True)
class QueueFacts:
    name: str
    messages: int | None  # None when the broker did not answer
    consumers: int  # online workers consuming it


@dataclass(frozen=True)
class ClusterFacts:
    checked_at: datetime
    broker_error: str = ""
    queues: list[QueueFacts] = field(default_factory=list)
    workers: list[WorkerFacts] = field(default_factory=list)
    stale: bool = False  # set when read: the monitor has not reported for STALE_AFTER

    @property
    def broker_ok(self) -> bool:
        return not self.broker_error

    @property
    def online(self) -> list[WorkerFacts]:
        return [worker for worker in self.workers if worker.online]

    @property
    def unserved(self) -> list[QueueFacts]:
        """Queues no online worker consumes (known only from a fresh report)."""
        return [] if self.stale else [queue for queue in self.queues if not queue.consumers]

    @property
    def age_seconds(self) -> float:
        return max((timezone.now() - self.checked_at).total_seconds(), 0.0)

    def queue(self, name: str) -> QueueFacts | None:
        return next((queue for queue in self.queues if queue.name == name), None)


def job_queue() -> str:
    """The queue jobs are sent to (run_job has no route: Celery's default queue)."""
    return app.conf.task_default_queue


def queue_names() -> list[str]:
    """The default queue and every queue a route sends to (jobs, housekeeping)."""
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    return sorted({job_queue(), *routed})


# --- Reading (requests) ----------------------------------------------------------------------


def cluster_facts() -> ClusterFacts | None:
    """The monitor's last report (None before its first): one primary-key read, never the
    broker. A report older than STALE_AFTER comes back marked stale."""
    report = ClusterReport.objects.filter(name=REPORT_NAME).first()
    if report is None:
        return None
    facts = _from_json(report.reported_at, report.facts)
    return replace(facts, stale=timezone.now() - report.reported_at > STALE_AFTER)


def job_queue_served(facts: ClusterFacts | None) -> bool | None:
    """Whether an online worker consumes the jobs' queue; None when nobody knows (no monitor)."""
    if facts is None or facts.stale:
        return None
    queue = facts.queue(job_queue())
    return bool(queue and queue.consumers)


def save_report(facts: ClusterFacts) -> None:
    ClusterReport.objects.update_or_create(
        name=REPORT_NAME, defaults={"reported_at": facts.checked_at, "facts": _to_json(facts)}
    )


def _to_json(facts: ClusterFacts) -> dict:
    data = asdict(facts)
    del data["checked_at"], data["stale"]  # the row's reported_at; decided when read
    for worker in data["workers"]:
        for key in ("last_heartbeat", "started_at"):
            worker[key] = worker[key].isoformat() if worker[key] else None
    return data


def _from_json(checked_at: datetime, data: dict) -> ClusterFacts:
    def moment(text: str | None) -> datetime | None:
        return datetime.fromisoformat(text) if text else None

    workers = [
        WorkerFacts(
            **{
                **worker,
                "queues": tuple(worker["queues"]),
                "last_heartbeat": moment(worker["last_heartbeat"]),
                "started_at": moment(worker["started_at"]),
            }
        )
        for worker in data.get("workers", [])
    ]
    return ClusterFacts(
        checked_at=checked_at,
        broker_error=data.get("broker_error", ""),
        queues=[QueueFacts(**queue) for queue in data.get("queues", [])],
        workers=workers,
    )


# --- Watching (the monitor process) ----------------------------------------------------------


class ClusterMonitor:
    """Three threads, so that none waits on another: Celery's event receiver feeds a State
    (heartbeats), an inspector asks the workers which queues they consume, and the reporter
    (run()) pings the broker, counts its queues and writes the report. A hung broker stalls
    at most the first two; the reporter's own commands time out, so reports keep coming and
    say so."""

    def __init__(self) -> None:
        self.state = app.events.State()
        self.stopping = threading.Event()
        self.inspect_now = threading.Event()
        self.lock = threading.Lock()
        self.queues: dict[str, tuple[str, ...]] = {}
        self.stats: dict[str, dict] = {}
        self.last_heartbeat: dict[str, datetime] = {}
        previous = cluster_facts()
        self.remembered = {worker.name: worker for worker in previous.workers} if previous else {}
        self.started = time.monotonic()
        self.recovered: set[str] = set()  # lost workers whose jobs were put back

    def run(self) -> None:
        threads = [
            threading.Thread(target=self._receive_events, name="events", daemon=True),
            threading.Thread(target=self._inspect, name="inspect", daemon=True),
        ]
        for thread in threads:
            thread.start()
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                facts = self.observe()
                save_report(facts)
                self.put_back_lost_work(facts)
            except Exception:  # the database, most likely: try again at the next round
                logger.exception("could not write the cluster report or put back lost work")
            try:  # the finishes since the last round, into the console's history
                rollups.add_pending(batches=PENDING_BATCHES_PER_ROUND)
            except Exception:
                logger.exception("could not add the pending finishes to the rollups")
            self.stopping.wait(max(REPORT_EVERY - (time.monotonic() - started), 0.1))

    def stop(self) -> None:
        self.stopping.set()
        self.inspect_now.set()

    def observe(self) -> ClusterFacts:
        """The cluster as of now, from what the threads gathered and the broker's queues."""
        now = timezone.now()
        workers = self._workers(now)
        names = sorted({*queue_names(), *(q for worker in workers for q in worker.queues)})
        try:
            broker.ping()
            lengths: dict[str, int | None] = broker.queue_lengths(names)
            broker_error = ""
        except Exception as exc:
            logger.info("broker unreachable: %s", exc)
            lengths, broker_error = dict.fromkeys(names), f"{exc.__class__.__name__}: {exc}"[:300]
        queues = [
            QueueFacts(
                name=name,
                messages=lengths[name],
                consumers=sum(1 for w in workers if w.online and name in w.queues),
            )
            for name in names
        ]
        return ClusterFacts(
            checked_at=now, broker_error=broker_error, queues=queues, workers=workers
        )

    def put_back_lost_work(self, facts: ClusterFacts) -> None:
        """Run again the jobs of job workers lost for PARROTER_WORKER_LOST_AFTER, once per loss,
        and put back the job messages nobody holds any more. Only while the monitor hears the
        broker and some worker (when it hears none, it may be the one cut off), and not before
        it has been up that long itself (a live worker may not have been heard from yet)."""
        lost_after = settings.PARROTER_WORKER_LOST_AFTER
        if time.monotonic() - self.started < lost_after or not (facts.broker_ok and facts.online):
            return
        for worker in facts.workers:
            if worker.online:
                self.recovered.discard(worker.name)
            elif worker.name not in self.recovered and self._lost(worker, facts, lost_after):
                counts = services.recover_jobs_of_lost_worker(worker=worker.name, on_its_host=False)
                self.recovered.add(worker.name)
                if any(counts.values()):
                    logger.warning("worker %s lost: its jobs %s", worker.name, counts)
        restored = broker.restore_abandoned_messages(queues={job_queue()}, held_for=lost_after)
        if restored:
            logger.warning("%d job messages of lost workers put back in the queue", restored)

    @staticmethod
    def _lost(worker: WorkerFacts, facts: ClusterFacts, lost_after: float) -> bool:
        heard = worker.last_heartbeat
        return heard is not None and (facts.checked_at - heard).total_seconds() >= lost_after

    def _workers(self, now: datetime) -> list[WorkerFacts]:
        seen = {}
        for name, worker in list(self.state.workers.items()):
            beats = list(worker.heartbeats)  # the events thread may empty it meanwhile
            online = worker.alive and bool(beats)
            if online:
                self.last_heartbeat[name] = datetime.fromtimestamp(beats[-1], tz=UTC)
            with self.lock:
                queues, stats = self.queues.get(name), self.stats.get(name, {})
            if online and queues is None:
                self.inspect_now.set()  # a worker we have not asked yet
            seen[name] = WorkerFacts(
                name=name,
                online=online,
                last_heartbeat=self.last_heartbeat.get(name),
                queues=queues or (),
                concurrency=stats.get("concurrency"),
                active=worker.active if online else None,
                processed=worker.processed or 0,
                pid=worker.pid,
                started_at=stats.get("started_at"),
            )
        for name, worker in self.remembered.items():  # known before the monitor (re)started
            if name not in seen:
                seen[name] = replace(worker, online=False, active=None)
        return sorted(
            (
                worker
                for worker in seen.values()
                if worker.online
                or (worker.last_heartbeat and now - worker.last_heartbeat < REMEMBER_FOR)
            ),
            key=lambda worker: worker.name,
        )

    def _receive_events(self) -> None:
        while not self.stopping.is_set():
            try:
                with app.connection_for_read() as connection:
                    # Worker events only (heartbeats, online, offline): task events, sent
                    # several per job by workers run with -E, would cost CPU for nothing here.
                    receiver = app.events.Receiver(
                        connection, handlers={"*": self._on_event}, routing_key="worker.#"
                    )
                    receiver.capture(limit=None, timeout=None, wakeup=False)
            except Exception as exc:
                logger.info("event receiver stopped (%s); reconnecting", exc)
                self.stopping.wait(1)

    def _on_event(self, event: dict) -> None:
        self.state.event(event)
        if event.get("type") == "worker-online":
            self.inspect_now.set()  # a new or restarted worker: ask for its queues now

    def _inspect(self) -> None:
        while not self.stopping.is_set():
            self.inspect_now.wait(INSPECT_EVERY)
            self.inspect_now.clear()
            if self.stopping.is_set():
                return
            try:
                self._ask_workers()
            except Exception as exc:
                logger.info("inspect failed: %s", exc)
                self.stopping.wait(1)

    def _ask_workers(self) -> None:
        inspect = app.control.inspect(timeout=INSPECT_TIMEOUT)
        queues = inspect.active_queues() or {}
        stats = inspect.stats() or {}
        now = timezone.now()
        with self.lock:
            for name, consumed in queues.items():
                self.queues[name] = tuple(sorted(queue["name"] for queue in consumed))
            for name, worker_stats in stats.items():
                uptime = worker_stats.get("uptime")
                self.stats[name] = {
                    "concurrency": (worker_stats.get("pool") or {}).get("max-concurrency"),
                    "started_at": now - timedelta(seconds=uptime) if uptime is not None else None,
                }
