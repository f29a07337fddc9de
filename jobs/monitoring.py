"""What the broker and the workers say about themselves: queue depths and Celery's inspect.

Asking costs a broadcast that waits for replies, so the answer is cached for a few seconds
in the shared cache and only one process at a time asks again; many open dashboards and job
pages cost the workers one broadcast per FRESH_FOR. Nothing here ever raises: a broker that
cannot be reached is a fact to show, and pages still render from the database.
"""

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from kombu.exceptions import ChannelError

from parroter.celery_app import app

logger = logging.getLogger(__name__)

CACHE_KEY = "monitoring:cluster"
LOCK_KEY = "monitoring:refreshing"
FRESH_FOR = timedelta(seconds=5)
INSPECT_TIMEOUT = 0.5
# Workers that stopped answering stay listed (as offline) this long.
REMEMBER_FOR = timedelta(days=1)


@dataclass(frozen=True)
class WorkerFacts:
    name: str
    last_seen: datetime
    online: bool = True
    concurrency: int | None = None
    active: int | None = None
    processed: int = 0
    uptime_seconds: int | None = None
    pid: int | None = None


@dataclass(frozen=True)
class ClusterFacts:
    checked_at: datetime
    broker_error: str = ""
    queues: dict[str, int] = field(default_factory=dict)
    workers: list[WorkerFacts] = field(default_factory=list)

    @property
    def broker_ok(self) -> bool:
        return not self.broker_error

    @property
    def online(self) -> list[WorkerFacts]:
        return [worker for worker in self.workers if worker.online]


def cluster_facts(*, refresh: bool = True) -> ClusterFacts | None:
    """The latest facts; asks the cluster again when they are older than FRESH_FOR, unless
    refresh=False (pages that must answer fast take what is cached, or None)."""
    try:
        cached = cache.get(CACHE_KEY)
    except Exception as exc:  # the cache is the broker's Redis: down, most likely, with it
        if not refresh:
            return ClusterFacts(checked_at=timezone.now(), broker_error=_describe(exc))
        cached = None
    if not refresh or (cached and timezone.now() - cached.checked_at < FRESH_FOR):
        return cached
    if cached and not _take_refresh_turn():
        return cached  # another process is asking right now
    facts = _ask_cluster(previous=cached)
    try:
        cache.set(CACHE_KEY, facts, timeout=int(REMEMBER_FOR.total_seconds()))
    except Exception:  # the cache is Redis, which may be the broker that is down
        logger.debug("could not cache cluster facts", exc_info=True)
    return facts


def _take_refresh_turn() -> bool:
    try:
        return cache.add(LOCK_KEY, True, timeout=int(FRESH_FOR.total_seconds()))
    except Exception:
        return True


def _ask_cluster(*, previous: ClusterFacts | None) -> ClusterFacts:
    now = timezone.now()
    try:
        with app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=1)
            queues = {name: _depth(connection, name) for name in _queue_names()}
            replies = app.control.inspect(timeout=INSPECT_TIMEOUT, connection=connection).stats()
    except Exception as exc:
        logger.info("broker unreachable: %s", exc)
        return ClusterFacts(
            checked_at=now,
            broker_error=_describe(exc),
            workers=_gone(previous, now, answered=set()),
        )
    workers = [_worker(name, stats, now) for name, stats in sorted((replies or {}).items())]
    answered = {worker.name for worker in workers}
    return ClusterFacts(
        checked_at=now, queues=queues, workers=workers + _gone(previous, now, answered)
    )


def _describe(exc: Exception) -> str:
    return f"{exc.__class__.__name__}: {exc}"[:300]


def _queue_names() -> list[str]:
    """The default queue and every queue a route sends to (jobs, housekeeping)."""
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    return sorted({app.conf.task_default_queue, *routed})


def _depth(connection, queue: str) -> int:
    try:
        return connection.default_channel.queue_declare(queue=queue, passive=True).message_count
    except ChannelError:  # Redis drops an empty list: the queue is simply empty
        return 0


def _worker(name: str, stats: dict, now: datetime) -> WorkerFacts:
    pool = stats.get("pool") or {}
    inqueues = (pool.get("writes") or {}).get("inqueues") or {}
    return WorkerFacts(
        name=name,
        last_seen=now,
        concurrency=pool.get("max-concurrency"),
        active=inqueues.get("active"),
        processed=sum((stats.get("total") or {}).values()),
        uptime_seconds=stats.get("uptime"),
        pid=stats.get("pid"),
    )


def _gone(previous: ClusterFacts | None, now: datetime, answered: set[str]) -> list[WorkerFacts]:
    """Workers seen before that did not answer this time: offline, until forgotten."""
    if previous is None:
        return []
    return [
        replace(worker, online=False, active=None)
        for worker in previous.workers
        if worker.name not in answered and now - worker.last_seen < REMEMBER_FOR
    ]
