"""The arithmetic of JobRollup rows: which minute and histogram bucket a finished job counts
in, the upsert that adds it (or takes it away again), and percentiles from a histogram.

Only jobs.services writes rollups, inside the transaction of the job's own transition.
"""

import logging
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from jobs.models import (
    DURATION_BOUNDS,
    RUN_BUCKET_FIELDS,
    WAIT_BUCKET_FIELDS,
    Job,
    JobRollup,
)

logger = logging.getLogger(__name__)

KEY_FIELDS = ("minute", "kind", "status")


def minute_of(moment: datetime) -> int:
    return int(moment.timestamp() // 60)


def bucket_of(seconds: float) -> int:
    """Index of the first bound >= seconds (Prometheus' "le"); past the last, the +inf bucket."""
    return bisect_left(DURATION_BOUNDS, seconds)


def start_of_day(moment: datetime) -> int:
    """The minute (since the epoch, UTC) at which the day of `moment` began."""
    return minute_of(moment) // 1440 * 1440


def settled_totals_key(day_start_minute: int) -> str:
    """The cache key of all-time totals over the days before this one (jobs.selectors)."""
    return f"rollup-totals-before:{day_start_minute}"


def forget_settled_totals() -> None:
    """Drop today's cached totals of earlier days: a retry took a job out of one of them."""
    try:
        cache.delete(settled_totals_key(start_of_day(timezone.now())))
    except Exception:  # the cache is down: nothing is cached to be wrong either
        logger.warning("could not drop the cached rollup totals")


def record(jobs: Iterable[Job], *, sign: int) -> None:
    """Add finished jobs to their rollup rows (sign=+1), or take them out again (sign=-1).

    Call inside the transaction that moves the jobs into (or out of) a finished state, with
    their fields as they are (or were) while finished.
    """
    deltas: dict[tuple, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for job in jobs:
        if job.finished_at is None:  # never finished (e.g. made by hand): in no bucket
            continue
        delta = deltas[(minute_of(job.finished_at), job.kind, job.status)]
        delta["jobs"] += sign
        run, wait = _durations(job)
        if run is not None:
            delta["run_seconds"] += sign * run
            delta[RUN_BUCKET_FIELDS[bucket_of(run)]] += sign
        if wait is not None:
            delta["wait_seconds"] += sign * wait
            delta[WAIT_BUCKET_FIELDS[bucket_of(wait)]] += sign
    for key, delta in deltas.items():
        _add(key, delta)
    today = start_of_day(timezone.now())
    if sign < 0 and any(minute < today for minute, _kind, _status in deltas):
        transaction.on_commit(forget_settled_totals, robust=True)


def _durations(job: Job) -> tuple[float | None, float | None]:
    """(run time, queue wait) of a finished job, from its fields alone: the data migration
    that backfills rollups passes historical models, which have no properties."""
    if job.started_at is None:  # cancelled while it waited
        return None, None
    run = max((job.finished_at - job.started_at).total_seconds(), 0.0)
    return run, max((job.started_at - job.queued_at).total_seconds(), 0.0)


def compact_day(day_start_minute: int) -> int:
    """Merge one day's rows into a single row per kind and outcome, at the day's first minute;
    returns how many rows were merged away. Totals and histograms are unchanged; only the
    minute of each job within that day is forgotten (charts never look back that far)."""
    day = (day_start_minute, day_start_minute + 1440)
    rows = JobRollup.objects.filter(minute__gte=day[0], minute__lt=day[1])
    columns = [f.name for f in JobRollup._meta.fields if f.name not in ("id", *KEY_FIELDS)]
    with transaction.atomic():
        before = rows.count()
        merged = list(
            rows.values("kind", "status").annotate(**{f"sum_{c}": Sum(c) for c in columns})
        )
        if before <= len(merged):
            return 0  # already one row per kind and outcome
        rows.delete()
        for group in merged:
            delta = {c: group[f"sum_{c}"] for c in columns if group[f"sum_{c}"]}
            _add((day_start_minute, group["kind"], group["status"]), delta or {"jobs": 0})
    return before - len(merged)


def _add(key: tuple, delta: dict[str, float]) -> None:
    # One statement, atomic on both SQLite and PostgreSQL: concurrent finishes in the same
    # minute add up instead of racing between a read and a write.
    quote = connection.ops.quote_name
    table = quote(JobRollup._meta.db_table)
    columns = [*KEY_FIELDS, *delta]
    updates = ", ".join(f"{quote(c)} = {table}.{quote(c)} + excluded.{quote(c)}" for c in delta)
    # Identifiers come from the model and this module, never from input; values are parameters.
    sql = (
        f"INSERT INTO {table} ({', '.join(map(quote, columns))}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({', '.join(map(quote, KEY_FIELDS))}) DO UPDATE SET {updates}"
    )
    # Columns a delta does not name take their database default (0) on insert.
    with connection.cursor() as cursor:
        cursor.execute(sql, [*key, *(_number(c, v) for c, v in delta.items())])


def _number(column: str, value: float) -> float | int:
    return value if column.endswith("_seconds") else int(value)


def quantile(q: float, buckets: Sequence[int]) -> float | None:
    """The q-quantile of a histogram over DURATION_BOUNDS, interpolated within its bucket
    (as Prometheus' histogram_quantile does). None when the histogram is empty; a quantile in
    the +inf bucket is reported as the largest bound."""
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(buckets):
        if count > 0 and seen + count >= rank:
            if index == len(DURATION_BOUNDS):
                return float(DURATION_BOUNDS[-1])
            lower = DURATION_BOUNDS[index - 1] if index else 0.0
            upper = DURATION_BOUNDS[index]
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    return float(DURATION_BOUNDS[-1])
