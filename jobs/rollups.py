"""The arithmetic of JobRollup rows: which minute and histogram bucket a finished attempt
counts in, the upserts that add it (and a retry, beside it), and percentiles from a histogram.

Only jobs.services writes rollups, inside the transaction of the job's own transition. Rows
only ever grow: history is what happened, so a later retry, cancel or delete never takes an
attempt back out of the minute it finished in. A minute's row per kind and outcome is spread
over shards (see shard()), which every reader sums and compaction merges into shard 0.
"""

import threading
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum

from jobs.models import (
    DURATION_BOUNDS,
    RUN_BUCKET_FIELDS,
    WAIT_BUCKET_FIELDS,
    Job,
    JobRollup,
)

KEY_FIELDS = ("minute", "kind", "status", "shard")


def minute_of(moment: datetime) -> int:
    return int(moment.timestamp() // 60)


def bucket_of(seconds: float) -> int:
    """Index of the first bound >= seconds (Prometheus' "le"); past the last, the +inf bucket."""
    return bisect_left(DURATION_BOUNDS, seconds)


def start_of_day(moment: datetime) -> int:
    """The minute (since the epoch, UTC) at which the day of `moment` began."""
    return minute_of(moment) // 1440 * 1440


def settled_totals_key(day_start_minute: int) -> str:
    """The cache key of all-time totals over the days before this one (jobs.selectors). Rows of
    earlier days never change (compaction keeps their sums), so they are summed once a day.
    (v2: the cached lists gained the retried column.)"""
    return f"rollup-totals-v2-before:{day_start_minute}"


def record(jobs: Iterable[Job]) -> None:
    """Add finished attempts to the rollup row of the minute they finished in.

    Call inside the transaction that moves the jobs into a finished state, with their fields as
    they are once finished.
    """
    into = shard()
    for key, delta in deltas(jobs).items():
        _add((*key, into), delta)


def record_if_updated(job: Job, update: tuple[str, list]) -> bool:
    """Run `update` (SQL and parameters of an UPDATE that finishes the job, if its row still
    matches) and, if it changed the row, add the finished attempt as record() does; whether it
    did. `job` has its fields as they are once finished.

    On PostgreSQL one statement, the UPDATE in a WITH and the upsert selecting from what it
    returned: a finish is one round trip and one statement to parse, as without history, so
    concurrent finishes keep their pace (README, `make bench-finishes`). SQLite allows no UPDATE
    in a WITH; its writers take turns anyway. Call inside a transaction.
    """
    ((key, delta),) = deltas([job]).items()
    key = (*key, shard())
    if connection.vendor == "postgresql":
        upsert, values = _upsert(key, delta, selecting_from="updated")
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH updated AS ({update[0]} RETURNING 1) {upsert}", update[1] + values
            )
            return cursor.rowcount == 1
    with connection.cursor() as cursor:
        cursor.execute(*update)
        if cursor.rowcount != 1:
            return False
    _add(key, delta)
    return True


def deltas(jobs: Iterable[Job]) -> dict[tuple, dict[str, float]]:
    """What finished attempts add to each rollup row: (minute, kind, status) -> column -> amount
    (a bulk load, such as the dashboard benchmark's, writes these itself, in shard 0)."""
    added: dict[tuple, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for job in jobs:
        if job.finished_at is None:  # never finished (e.g. made by hand): in no bucket
            continue
        delta = added[(minute_of(job.finished_at), job.kind, job.status)]
        delta["jobs"] += 1
        run, wait = _durations(job)
        if run is not None:
            delta["run_seconds"] += run
            delta[RUN_BUCKET_FIELDS[bucket_of(run)]] += 1
        if wait is not None:
            delta["wait_seconds"] += wait
            delta[WAIT_BUCKET_FIELDS[bucket_of(wait)]] += 1
    return added


def record_retries(jobs: Iterable[Job], *, at: datetime) -> None:
    """Count jobs that a person sent back to the queue at `at`, in that minute's row of the
    outcome they left (retried += 1, jobs unchanged): the failure stays where it happened.

    Call inside the transaction of the retry, with the jobs' status still the one they leave.
    """
    retried: dict[tuple, int] = defaultdict(int)
    into = shard()
    for job in jobs:
        retried[(minute_of(at), job.kind, job.status, into)] += 1
    for key, count in retried.items():
        _add(key, {"retried": count})


def shard() -> int:
    """The shard the calling finisher adds to. The upsert keeps its row locked until the job's
    transaction commits, so finishes of one minute, kind and outcome would queue on a single
    row's lock; on N rows, only finishers that share a shard wait for each other.

    The thread's id (a prefork pool process's pid) rather than a random number: a finisher
    stays on one row, so a quiet worker writes one row a minute, not N for readers to sum, and
    the ids the kernel hands out in turn put one host's pool processes on different rows."""
    return threading.get_native_id() % settings.PARROTER_ROLLUP_SHARDS


def _durations(job: Job) -> tuple[float | None, float | None]:
    """(run time, queue wait) of a finished job, from its fields alone: the data migration
    that backfills rollups passes historical models, which have no properties."""
    if job.started_at is None:  # cancelled while it waited
        return None, None
    run = max((job.finished_at - job.started_at).total_seconds(), 0.0)
    return run, max((job.started_at - job.queued_at).total_seconds(), 0.0)


def compact(start_minute: int, minutes: int) -> int:
    """Merge the rows of [start_minute, start_minute + minutes), every shard, into a single row
    per kind and outcome at start_minute (an hour's or a day's first minute) in shard 0; returns
    how many rows were merged away. Counts, sums and histograms are unchanged; only the minute
    of each attempt within that period, and its shard, are forgotten."""
    rows = JobRollup.objects.filter(minute__gte=start_minute, minute__lt=start_minute + minutes)
    columns = [f.name for f in JobRollup._meta.fields if f.name not in ("id", *KEY_FIELDS)]
    with transaction.atomic():
        if not rows.exclude(minute=start_minute, shard=0).exists():
            return 0  # already one row per kind and outcome, where merging puts it
        before = rows.count()
        merged = list(
            rows.values("kind", "status").annotate(**{f"sum_{c}": Sum(c) for c in columns})
        )
        rows.delete()
        for group in merged:
            delta = {c: group[f"sum_{c}"] for c in columns if group[f"sum_{c}"]}
            _add((start_minute, group["kind"], group["status"], 0), delta or {"jobs": 0})
    return before - len(merged)


def _add(key: tuple, delta: dict[str, float]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(*_upsert(key, delta))


def _upsert(key: tuple, delta: dict[str, float], selecting_from: str = "") -> tuple[str, list]:
    """One statement, atomic on both SQLite and PostgreSQL: concurrent finishes in the same
    minute add up instead of racing between a read and a write. With `selecting_from` (a WITH's
    name) it adds once per row that returned, so not at all when there was none."""
    quote = connection.ops.quote_name
    table = quote(JobRollup._meta.db_table)
    columns = [*KEY_FIELDS, *delta]
    updates = ", ".join(f"{quote(c)} = {table}.{quote(c)} + excluded.{quote(c)}" for c in delta)
    placeholders = ", ".join(["%s"] * len(columns))
    source = (
        f"SELECT {placeholders} FROM {selecting_from}"  # noqa: S608 - a WITH of ours
        if selecting_from
        else f"VALUES ({placeholders})"
    )
    # Identifiers come from the model and this module, never from input; values are parameters.
    sql = (
        f"INSERT INTO {table} ({', '.join(map(quote, columns))}) {source} "  # noqa: S608
        f"ON CONFLICT ({', '.join(map(quote, KEY_FIELDS))}) DO UPDATE SET {updates}"
    )
    # Columns a delta does not name take their database default (0) on insert.
    return sql, [*key, *(_number(c, v) for c, v in delta.items())]


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
