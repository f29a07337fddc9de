"""Reads of job history from the rollups (jobs.rollups): finished attempts and retries over
time for the console's counters and charts, and all-time totals for /metrics. Never the jobs
table: the cost stays flat however many jobs there are."""

import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.core.cache import cache
from django.db import connection
from django.db.models import ExpressionWrapper, F, IntegerField, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from jobs import rollups
from jobs.models import (
    DURATION_BUCKETS,
    RUN_BUCKET_FIELDS,
    WAIT_BUCKET_FIELDS,
    Job,
    JobRollup,
    PendingFinish,
)

BUCKET_FIELDS = [*RUN_BUCKET_FIELDS, *WAIT_BUCKET_FIELDS]


@dataclass
class Slot:
    """Attempts that finished in one time slot (counts by status, duration histograms), and
    the jobs a person retried in it (from any outcome)."""

    start: datetime
    counts: dict[str, int] = field(default_factory=dict)
    retried: int = 0
    run_seconds: float = 0.0
    wait_seconds: float = 0.0
    run_buckets: list[int] = field(default_factory=lambda: [0] * DURATION_BUCKETS)
    wait_buckets: list[int] = field(default_factory=lambda: [0] * DURATION_BUCKETS)
    # Quantiles asked for so far (the charts and the hover data both ask): (buckets, q) -> value.
    _quantiles: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    @property
    def failure_rate(self) -> float | None:
        done = self.counts.get(Job.Status.SUCCEEDED, 0) + self.counts.get(Job.Status.FAILED, 0)
        return self.counts.get(Job.Status.FAILED, 0) / done if done else None

    def run_quantile(self, q: float) -> float | None:
        return self._quantile("run", q)

    def wait_quantile(self, q: float) -> float | None:
        return self._quantile("wait", q)

    def _quantile(self, metric: str, q: float) -> float | None:
        if (metric, q) not in self._quantiles:
            buckets = self.run_buckets if metric == "run" else self.wait_buckets
            self._quantiles[(metric, q)] = rollups.quantile(q, buckets)
        return self._quantiles[(metric, q)]


@dataclass(frozen=True)
class History:
    window: timedelta
    slot: timedelta
    total: Slot
    slots: list[Slot]

    @property
    def per_minute(self) -> float:
        return self.total.finished / (self.window.total_seconds() / 60)

    @property
    def peak(self) -> tuple[float, datetime] | None:
        """The busiest slot's finished attempts per minute, and when that slot began (None
        when nothing finished). A slot of five minutes or an hour gives its average minute."""
        busiest = max(self.slots, key=lambda slot: slot.finished, default=None)
        if busiest is None or not busiest.finished:
            return None
        return busiest.finished / (self.slot.total_seconds() / 60), busiest.start


def job_history(*, window: timedelta, slot: timedelta, now: datetime | None = None) -> History:
    """Finished jobs over the last `window`, in slots of `slot`, from the rollups: one query
    grouped by slot (at most window/slot rows), whatever the number of jobs."""
    slot_minutes = int(slot.total_seconds() // 60)
    end = rollups.minute_of(now or timezone.now()) // slot_minutes + 1  # the current slot, too
    start = end - int(window / slot)
    sums = {
        **{status: Coalesce(Sum("jobs", filter=Q(status=status)), 0) for status in Job.FINISHED},
        **{name: Sum(name) for name in ["retried", "run_seconds", "wait_seconds", *BUCKET_FIELDS]},
    }
    query = (
        rollups.rows()
        .filter(minute__gte=start * slot_minutes, minute__lt=end * slot_minutes)
        .annotate(slot=ExpressionWrapper(F("minute") / slot_minutes, output_field=IntegerField()))
        .values("slot")
        .annotate(**sums)
        .order_by()
        .values_list("slot", *sums)
    )
    # Plain sums need none of the ORM's per-value converters, which cost more than the query
    # itself over a week of slots: the ORM writes the SQL, a cursor reads the numbers.
    with connection.cursor() as cursor:
        cursor.execute(*query.query.sql_with_params())
        rows = cursor.fetchall()
    slots = {
        index: Slot(start=datetime.fromtimestamp(index * slot_minutes * 60, tz=UTC))
        for index in range(start, end)
    }
    for index, *values in rows:
        slots[index] = _slot(slots[index].start, values)
    columns = [sum(column) for column in zip(*(values for _, *values in rows), strict=True)]
    total = _slot(slots[start].start, columns) if rows else Slot(start=slots[start].start)
    return History(window=window, slot=slot, total=total, slots=list(slots.values()))


def recent_rate(*, minutes: int = 5, now: datetime | None = None) -> float:
    """Finished attempts per minute over the last `minutes` whole minutes, from the rollups (a
    range of the rollup key's index: a few rows)."""
    end = rollups.minute_of(now or timezone.now())
    finished = (
        rollups.rows()
        .filter(minute__gte=end - minutes, minute__lt=end)
        .aggregate(jobs=Coalesce(Sum("jobs"), 0))["jobs"]
    )
    return finished / minutes


def _slot(start: datetime, values: list) -> Slot:
    """A Slot from job_history's columns: a count per finished status, the retries, the two
    sums, then the run and wait histograms."""
    statuses, buckets = len(Job.FINISHED), len(RUN_BUCKET_FIELDS)
    counts = dict(zip(Job.FINISHED, values[:statuses], strict=True))
    retried, run_seconds, wait_seconds, *histograms = values[statuses:]
    return Slot(
        start=start,
        counts={status: count for status, count in counts.items() if count},
        retried=retried or 0,
        run_seconds=run_seconds or 0.0,
        wait_seconds=wait_seconds or 0.0,
        run_buckets=histograms[:buckets],
        wait_buckets=histograms[buckets:],
    )


@dataclass(frozen=True)
class RollupTotal:
    kind: str
    status: str
    jobs: int  # finished attempts
    retried: int  # jobs a person sent back to the queue from this outcome
    run_seconds: float
    wait_seconds: float
    run_buckets: list[int]  # per DURATION_BOUNDS bucket, the last one +inf (not cumulative)
    wait_buckets: list[int]


# Counting a backlog whole would make each scrape as slow as the backlog is long.
PENDING_COUNT_CAP = 100_000


def pending_finishes() -> int:
    """Finished attempts not yet added to the rollups, counted up to PENDING_COUNT_CAP: a few
    seconds' worth while the monitor keeps up, more when it falls behind or stops."""
    return PendingFinish.objects.all()[:PENDING_COUNT_CAP].count()


def rollup_totals(*, now: datetime | None = None) -> list[RollupTotal]:
    """Every attempt that ever finished (of deleted jobs too) and every retry, by kind and
    status, with duration sums and histograms, from the rollups, never the jobs table. Rows of
    earlier days change no more once none of their finishes is pending, so they are summed once
    a day and kept in the shared cache; only today's rows are summed on every call, and the cost
    stays flat however long they go back."""
    today = rollups.start_of_day(now or timezone.now())
    key = rollups.settled_totals_key(today)
    counted = rollups.rows()
    try:
        settled = cache.get(key)
    except Exception:  # the cache's Redis is down: sum everything, correct if slower
        settled = None
    if settled is None:
        settled = _rollup_sums(counted.filter(minute__lt=today))
        if not PendingFinish.objects.filter(minute__lt=today).exists():  # else: not settled yet
            with contextlib.suppress(Exception):
                cache.set(key, settled, timeout=2 * 86400)
    sums = dict(settled)
    for group, values in _rollup_sums(counted.filter(minute__gte=today)).items():
        before = sums.get(group, [0] * len(values))
        sums[group] = [a + b for a, b in zip(before, values, strict=True)]
    return [
        RollupTotal(
            kind=kind,
            status=status,
            jobs=int(jobs),
            retried=int(retried),
            run_seconds=float(run),
            wait_seconds=float(wait),
            run_buckets=[int(count) for count in buckets[:DURATION_BUCKETS]],
            wait_buckets=[int(count) for count in buckets[DURATION_BUCKETS:]],
        )
        for (kind, status), (jobs, retried, run, wait, *buckets) in sorted(sums.items())
    ]


def _rollup_sums(rows: QuerySet[JobRollup]) -> dict[tuple[str, str], list[float]]:
    columns = ["jobs", "retried", "run_seconds", "wait_seconds", *BUCKET_FIELDS]
    query = (
        rows.values("kind", "status")
        .annotate(**{f"total_{name}": Sum(name) for name in columns})
        .order_by()
        .values_list("kind", "status", *(f"total_{name}" for name in columns))
    )
    with connection.cursor() as cursor:  # plain sums: see job_history
        cursor.execute(*query.query.sql_with_params())
        return {(kind, status): list(values) for kind, status, *values in cursor.fetchall()}
