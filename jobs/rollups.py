"""The arithmetic of JobRollup rows: which minute and histogram bucket a finished attempt
counts in, how it gets there (a PendingFinish written with the finish, added in batches), the
retries counted beside them, and percentiles from a histogram.

Finished attempts reach the rollups in two steps. The transition that finishes a job writes a
PendingFinish in that transition's transaction (record, record_if_updated): an INSERT, so
concurrent finishes do not queue on the lock of their minute's row. add_pending moves them into
their rows in batches, in transactions of their own: the monitor every round, and every reader
first (rows()), so what a page shows counts every finish committed before it asked (unless a
backlog is beyond a reader's bound or a lock holds it up: then the monitor's next round).
Rows only ever grow: history is what happened, so a later retry, cancel or delete never takes
an attempt back out of the minute it finished in. A minute's row per kind and outcome is spread
over shards (see shard()), which every reader sums and compaction merges into shard 0.
"""

import contextlib
import logging
import threading
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import QuerySet, Sum

from jobs.models import (
    DURATION_BOUNDS,
    RUN_BUCKET_FIELDS,
    WAIT_BUCKET_FIELDS,
    Job,
    JobRollup,
    PendingFinish,
)

logger = logging.getLogger(__name__)

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
    """The cache key of all-time totals over the days before this one (jobs.history). Rows of
    earlier days change no more once none of their finishes is pending (compaction keeps their
    sums), so they are summed once a day. (v2: the cached lists gained the retried column.)"""
    return f"rollup-totals-v2-before:{day_start_minute}"


# What the rollups need of a finished attempt: minute, kind, status, run and wait seconds
# (None for both when it never started), as a PendingFinish holds it.
Attempt = tuple[int, str, str, float | None, float | None]
ATTEMPT_FIELDS = ("minute", "kind", "status", "run_seconds", "wait_seconds")
# Pending finishes moved per statement; a reader moves at most READER_BATCHES of them before it
# reads, so a backlog (the monitor down for a long while) never makes a page wait on all of it.
ADD_BATCH = 5_000
READER_BATCHES = 4
READER_LOCK_WAIT = 0.2  # seconds


def record(jobs: Iterable[Job]) -> None:
    """Write the jobs' finished attempts as pending finishes (one statement for them all).

    Call inside the transaction that moves the jobs into a finished state, with their fields as
    they are once finished.
    """
    PendingFinish.objects.bulk_create(
        PendingFinish(**dict(zip(ATTEMPT_FIELDS, attempt, strict=True)))
        for attempt in map(attempt_of, jobs)
        if attempt is not None
    )


def record_if_updated(job: Job, update: tuple[str, list]) -> bool:
    """Run `update` (SQL and parameters of an UPDATE that finishes the job, if its row still
    matches) and, if it changed the row, write the finished attempt as record() does; whether
    it did. `job` has its fields as they are once finished.

    On PostgreSQL one statement, the UPDATE in a WITH and the INSERT selecting from what it
    returned: one round trip and one statement to parse, as a finish without history (README,
    `make bench-finishes`). SQLite allows no UPDATE in a WITH; its writers take turns anyway.
    Call inside a transaction.
    """
    attempt = attempt_of(job)
    if attempt is None:
        raise ValueError("record_if_updated needs the job as it is once finished")
    quote = connection.ops.quote_name
    insert = (  # names from the model and this module; values are parameters
        f"INSERT INTO {quote(PendingFinish._meta.db_table)} "  # noqa: S608
        f"({', '.join(map(quote, ATTEMPT_FIELDS))}) SELECT %s, %s, %s, %s, %s"
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"WITH updated AS ({update[0]} RETURNING 1) {insert} FROM updated",
                update[1] + list(attempt),
            )
            return cursor.rowcount == 1
        cursor.execute(*update)
        if cursor.rowcount != 1:
            return False
        cursor.execute(insert, list(attempt))
    return True


def add_pending(*, batches: int | None = None) -> int:
    """Move pending finishes into their rollup rows, ADD_BATCH per transaction, until none is
    left (or after `batches`); returns how many were moved.

    Each batch is deleted and added in one transaction, so a finish counts once whoever moves
    it. On PostgreSQL the batch's rows are locked in id order: a second mover (a page while the
    monitor moves) waits for the first's to commit and then finds them gone, so what it reads
    next includes them. Rollup rows are written in key order, so movers and retries never
    deadlock; compaction never merges a period a pending finish will add to
    (jobs.housekeeping.compact_rollups)."""
    moved = 0
    table = connection.ops.quote_name(PendingFinish._meta.db_table)
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    sql = (  # names from the model and this module; the batch size is a parameter
        f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} ORDER BY id LIMIT %s{lock})"  # noqa: S608
        f" RETURNING {', '.join(ATTEMPT_FIELDS)}"
    )
    while batches is None or batches > 0:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [ADD_BATCH])
            attempts = cursor.fetchall()
            _add_all(_deltas_of(attempts), into=shard())
        moved += len(attempts)
        if len(attempts) < ADD_BATCH:
            break
        batches = None if batches is None else batches - 1
    return moved


def rows() -> QuerySet[JobRollup]:
    """Every rollup row, once the pending finishes (up to READER_BATCHES of them) are added:
    what readers query, so a page counts every finish committed before it asked.

    A reader waits at most READER_LOCK_WAIT for a lock another mover or writer holds: past it,
    or on any database error while adding, it reads what is there, and the monitor adds the
    rest at its next round. A page is never held up by history's bookkeeping."""
    if PendingFinish.objects.exists():
        try:
            with _lock_wait_at_most(READER_LOCK_WAIT):
                add_pending(batches=READER_BATCHES)
        except DatabaseError as error:
            # Not the error's text: "database is locked" in a log means a failed write elsewhere.
            logger.warning("read history without adding its pending finishes first (%s)",
                           error.__class__.__name__)  # fmt: skip
    return JobRollup.objects.all()


@contextlib.contextmanager
def _lock_wait_at_most(seconds: float) -> Iterator[None]:
    """This connection waits at most `seconds` for a lock, then fails (PostgreSQL's
    lock_timeout, SQLite's busy timeout), and as long as it did before afterwards."""
    milliseconds = int(seconds * 1000)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW lock_timeout")
            (before,) = cursor.fetchone()
            setting = "SELECT set_config('lock_timeout', %s, false)"
            cursor.execute(setting, [f"{milliseconds}ms"])
            restore: tuple[str, list] = (setting, [before])
        else:  # a PRAGMA takes no parameters; both numbers are ints
            cursor.execute("PRAGMA busy_timeout")
            (before,) = cursor.fetchone()
            cursor.execute(f"PRAGMA busy_timeout = {milliseconds:d}")
            restore = (f"PRAGMA busy_timeout = {int(before):d}", [])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(*restore)


def attempt_of(job: Job) -> Attempt | None:
    """What the rollups count of a finished job; None if it never finished (e.g. made by
    hand): it is in no bucket."""
    if job.finished_at is None:
        return None
    run, wait = _durations(job)
    return minute_of(job.finished_at), job.kind, job.status, run, wait


def deltas(jobs: Iterable[Job]) -> dict[tuple, dict[str, float]]:
    """What finished jobs add to each rollup row: (minute, kind, status) -> column -> amount
    (a bulk load, such as the dashboard benchmark's, writes these itself, in shard 0)."""
    return _deltas_of(attempt for attempt in map(attempt_of, jobs) if attempt is not None)


def _deltas_of(attempts: Iterable[Attempt]) -> dict[tuple, dict[str, float]]:
    added: dict[tuple, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for minute, kind, status, run, wait in attempts:
        delta = added[(minute, kind, status)]
        delta["jobs"] += 1
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
    retried: dict[tuple, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for job in jobs:
        retried[(minute_of(at), job.kind, job.status)]["retried"] += 1
    _add_all(retried, into=shard())


def shard() -> int:
    """The shard the calling writer adds to. An upsert keeps its row locked until its
    transaction commits, so writers of one minute, kind and outcome (movers of pending finishes,
    retries) would queue on a single row's lock; on N rows, only writers that share a shard
    wait for each other.

    The thread's id (a process's pid) rather than a random number: a writer stays on one row,
    so a quiet one writes one row a minute, not N for readers to sum."""
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


def _add_all(deltas_by_key: dict[tuple, dict[str, float]], *, into: int) -> None:
    """Add each (minute, kind, status) -> delta to its row in shard `into`, in key order (so two
    writers' row locks are always taken in the same order)."""
    for key in sorted(deltas_by_key):
        _add((*key, into), deltas_by_key[key])


def _add(key: tuple, delta: dict[str, float]) -> None:
    """One statement, atomic on both SQLite and PostgreSQL: concurrent writers to the same row
    add up instead of racing between a read and a write."""
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
