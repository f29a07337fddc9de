"""Reads for the console's failure groups page: failures since a moment counted by their
signature (jobs.failures), each group with its trend over the range and its newest jobs, from
job_failures_idx alone."""

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import Count, Max, Min
from django.db.models.functions import Substr, Trunc
from django.utils import timezone

from jobs.models import FailureGroup, Job


@dataclass(frozen=True)
class FailureGroupRow:
    group: FailureGroup
    failures: int  # in the range
    first: datetime  # the first and last failure in the range
    last: datetime
    owners: int
    samples: list[uuid.UUID]  # its newest jobs
    trend: list[int]  # failures per slot of the range, oldest first

    @property
    def is_new(self) -> bool:
        """Not acknowledged since it last failed."""
        acknowledged = self.group.acknowledged_at
        return acknowledged is None or self.last > acknowledged


FAILURE_GROUPS_PER_PAGE = 20
FAILURE_SAMPLES = 3


def failure_groups(
    *, since: datetime, slot: str = "hour", by_count: bool = False, page: int = 1
) -> list[FailureGroupRow]:
    """A page of the failures since `since` by group, the most recent (or the most failures)
    first: counted from job_failures_idx alone (the group's signature was stored as each
    failure was). One more row than a page, when there is a next."""
    counts = (
        # Every failure has its signature (migration 0019 gave the earlier ones theirs); asking
        # for a non-empty one made SQLite walk job_failure_group_idx, all 50,000, not the range.
        Job.objects.filter(status=Job.Status.FAILED, finished_at__gte=since)
        .values("failure_signature")
        .annotate(
            failures=Count("failure_signature"),
            first=Min("finished_at"),
            last=Max("finished_at"),
            owners=Count("owner", distinct=True),
        )
        .order_by("-failures" if by_count else "-last", "failure_signature")
    )
    start = (page - 1) * FAILURE_GROUPS_PER_PAGE
    counts = counts[start : start + FAILURE_GROUPS_PER_PAGE + 1]
    counts = list(counts)
    signatures = [row["failure_signature"] for row in counts]
    groups = FailureGroup.objects.in_bulk(signatures)
    trends = _failure_trends(signatures, since=since, slot=slot)
    rows = []
    for row in counts:
        group = groups.get(row["failure_signature"])
        if group is None:  # recorded before its group row committed: next time
            continue
        samples = Job.objects.filter(failure_signature=group.pk, status=Job.Status.FAILED).order_by(
            "-created_at", "-id"
        )
        rows.append(
            FailureGroupRow(
                group=group,
                failures=row["failures"],
                first=row["first"],
                last=row["last"],
                owners=row["owners"],
                samples=list(samples.values_list("pk", flat=True)[:FAILURE_SAMPLES]),
                trend=trends[group.pk],
            )
        )
    return rows


SLOT_LENGTHS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1)}
# SQLite keeps times as text, "2026-12-05 14:05:59.123456" (UTC): a slot is its first 13 or 16
# characters, cut by SQLite itself. Its Trunc is a Python function called once per row: 66 ms
# for a week's 12,000 failures at a million jobs.
TEXT_SLOT_CHARACTERS = {"minute": 16, "hour": 13}


def _slot_of_finish(slot: str):
    if connection.vendor == "sqlite":
        return Substr("finished_at", 1, TEXT_SLOT_CHARACTERS[slot])
    return Trunc("finished_at", slot, tzinfo=UTC)


def _slot_start(value: datetime | str) -> datetime:
    if isinstance(value, datetime):
        return value
    seconds_missing = (len("2026-12-05 14:05:59") - len(value)) // 3  # ":00" each
    return datetime.fromisoformat(value + ":00" * seconds_missing).replace(tzinfo=UTC)


def _failure_trends(signatures: list[str], *, since: datetime, slot: str) -> dict[str, list[int]]:
    """Failures per slot (a minute or an hour, in UTC) of each group since `since`, in one
    query over each group's range of job_failures_idx."""
    length = SLOT_LENGTHS[slot]
    origin = since.astimezone(UTC).replace(second=0, microsecond=0)
    if slot == "hour":
        origin = origin.replace(minute=0)
    slots = max(1, math.ceil((timezone.now() - origin) / length))
    trends = {signature: [0] * slots for signature in signatures}
    rows = (
        Job.objects.filter(
            status=Job.Status.FAILED, finished_at__gte=since, failure_signature__in=signatures
        )
        .annotate(slot=_slot_of_finish(slot))
        .values_list("failure_signature", "slot")
        .annotate(failures=Count("failure_signature"))
    )
    for signature, moment, failures in rows:
        index = min(max(int((_slot_start(moment) - origin) / length), 0), slots - 1)
        trends[signature][index] += failures
    return trends
