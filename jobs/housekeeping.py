"""Housekeeping that beat runs on a schedule: retention, the orphan sweep, and the record of
what each chore did.

Beat is the only scheduler, but two beats (a mistake in a deploy) must not double the work:
each chore runs under a lease taken with one conditional UPDATE on its Chore row, and the work
itself is safe to repeat anyway (rows are re-checked under a lock, files that are gone are
skipped), so an expired lease costs time, never data.
"""

import logging
import os
import posixpath
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice

from django.apps import apps as installed_apps
from django.core.files.storage import Storage, default_storage
from django.db import connection, transaction
from django.db.models import F, Min, Q
from django.db.models.functions import Mod
from django.utils import timezone
from django_celery_results.models import TaskResult
from storages.backends.s3 import S3Storage

from jobs import rollups, tempfiles
from jobs.models import AuditedJob, AuditEntry, Chore, Job, JobRollup, PendingFinish

logger = logging.getLogger(__name__)

QUEUE = "housekeeping"
BATCH_SIZE = 500
# Files no job owns are left as long as temporary files: an upload or a job may still be writing
# them (a job's folder exists a moment before its row is committed).
STALE_AFTER = tempfiles.STALE_AFTER
# Longer than any chore runs: a beat that died holding a lease frees it after this.
LEASE = timedelta(minutes=30)
# A retention run stops after this long and goes on at its next run: a first run after a year
# without retention must not hold a worker (or the lease) for hours.
PURGE_TIME_BUDGET = timedelta(minutes=10)


@dataclass(frozen=True)
class Schedule:
    chore: str
    title: str
    every: int
    period: str  # one of django_celery_beat's IntervalSchedule periods


# What beat runs, seeded into django-celery-beat's tables once (migration 0004), where
# operators change or disable it in admin; nothing overwrites their changes.
SCHEDULES = (
    Schedule("dispatch_waiting_jobs", "Send again jobs the broker does not have", 1, "minutes"),
    Schedule("reap_stuck_jobs", "Run again or give up jobs whose worker died", 2, "minutes"),
    Schedule("purge_expired_jobs", "Delete jobs past the retention period", 1, "hours"),
    Schedule("sweep_orphan_files", "Remove orphan files and stale temporary files", 6, "hours"),
    Schedule("compact_rollups", "Merge older history into hours, then days", 1, "hours"),
    Schedule("evaluate_alerts", "Check the alert rules and send their notices", 1, "minutes"),
)
# The history the console draws, and how fine it must be: the 1 h chart reads minutes, the 24 h
# chart 5-minute slots, the 7 d chart hours. Rollups older than MINUTES_KEPT are merged into one
# row per 5 minutes, those older than FIVE_MINUTES_KEPT into one per hour, those older than
# COMPACT_AFTER into one per day (a margin each, and whole periods, so no chart ever sees a slot
# half merged). The 24 h chart then sums ~900 rows, not a day of minutes (~4,300 at one row per
# outcome and minute): the query was most of its time.
MINUTES_KEPT = timedelta(hours=2)
FIVE_MINUTES_KEPT = timedelta(hours=25)
COMPACT_AFTER = timedelta(days=8)


# How the console words a chore's outcome, key by key.
OUTCOME_WORDS = {
    "sent": "sent again",
    "requeued": "requeued",
    "failed": "given up",
    "jobs": "jobs deleted",
    "task_results": "task results deleted",
    "folders": "orphan folders removed",
    "files": "files in them",
    "temporary_files": "stale temporary files removed",
    "rows": "history rows merged",
    "fired": "alerts fired",
    "resolved": "alerts resolved",
    "audit_entries": "audit entries deleted",
}


def task_name(chore: str) -> str:
    return f"jobs.{chore}"


def seed_periodic_tasks(apps=installed_apps) -> int:
    """Create the periodic task of each chore that has none; returns how many were created.

    A chore whose task exists under any name is left as the operator has it (interval,
    enabled or not), so running this again, or a restart, never undoes a change."""
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    created = 0
    for schedule in SCHEDULES:
        if task_model.objects.filter(task=task_name(schedule.chore)).exists():
            continue
        interval, _ = interval_model.objects.get_or_create(
            every=schedule.every, period=schedule.period
        )
        task_model.objects.create(
            name=schedule.title,
            task=task_name(schedule.chore),
            interval=interval,
            queue=QUEUE,
            description=f"Parroter housekeeping ({schedule.chore}); the console shows its runs.",
        )
        created += 1
    return created


def seed_from_migration(apps, schema_editor) -> None:
    """RunPython of the migrations that add chores to beat's tables (0004, 0005)."""
    seed_periodic_tasks(apps)


def run_chore(name: str, work: Callable[[], dict[str, int]]) -> dict[str, int] | None:
    """Run one chore under its lease and record what it did; None if another run holds it."""
    Chore.objects.get_or_create(name=name)
    now = timezone.now()
    free = Q(leased_until__isnull=True) | Q(leased_until__lt=now)
    taken = Chore.objects.filter(free, name=name).update(leased_until=now + LEASE, started_at=now)
    if not taken:
        logger.info("chore %s skipped: another run holds its lease", name)
        return None
    try:
        outcome = work()
    except Exception as exc:
        logger.exception("chore %s failed", name)
        # The console shows the message; the log above has the traceback.
        _record(name, outcome={}, error=(str(exc) or type(exc).__name__)[:2000])
        raise
    _record(name, outcome=outcome, error="")
    logger.info("chore %s: %s", name, outcome)
    return outcome


def _record(name: str, *, outcome: dict[str, int], error: str) -> None:
    Chore.objects.filter(name=name).update(
        leased_until=None,
        finished_at=timezone.now(),
        runs=F("runs") + 1,
        outcome=outcome,
        error=error,
    )


def purge_expired_audit(
    *, before: datetime, batch_size: int = BATCH_SIZE, time_budget: timedelta = PURGE_TIME_BUDGET
) -> int:
    """Delete audit entries made before the cutoff (PARROTER_AUDIT_RETENTION_DAYS), oldest
    first, in batches; the only way an entry ever goes. Entries are read in id order (ids grow
    with time), so a log with nothing to delete costs one short read, not a scan."""
    deadline = time.monotonic() + time_budget.total_seconds()
    deleted = 0
    while time.monotonic() < deadline:
        batch = list(AuditEntry.objects.order_by("pk").values_list("pk", "at")[:batch_size])
        old = [pk for pk, at in batch if at < before]
        if old:
            with transaction.atomic():
                AuditedJob.objects.filter(entry__in=old).delete()
                AuditEntry.objects.filter(pk__in=old).delete()
            deleted += len(old)
        if len(old) < batch_size:
            break
    return deleted


def purge_expired_jobs(
    *,
    finished_before: datetime,
    batch_size: int = BATCH_SIZE,
    time_budget: timedelta = PURGE_TIME_BUDGET,
) -> dict[str, int]:
    """Delete jobs that finished before the cutoff, oldest first, in batches of one transaction
    each (bounded memory and lock time at any table size), with their task results; their files
    go once each batch commits (jobs.signals). Then every task result older than the cutoff
    goes: earlier attempts' and strays'; a job still kept ran after the cutoff (or waits to run
    again), so its page loses nothing it shows. History (JobRollup) keeps counting them."""
    deadline = time.monotonic() + time_budget.total_seconds()
    counts = {"jobs": 0, "task_results": 0}
    while time.monotonic() < deadline:
        with transaction.atomic():
            batch = list(
                Job.objects.select_for_update()
                .filter(finished_at__lt=finished_before)
                .order_by("finished_at")
                .values_list("pk", "task_id")[:batch_size]
            )
            if not batch:
                break
            task_ids = [task_id for _, task_id in batch if task_id]
            counts["task_results"] += TaskResult.objects.filter(task_id__in=task_ids).delete()[0]
            Job.objects.filter(pk__in=[pk for pk, _ in batch]).delete()
            counts["jobs"] += len(batch)
    while time.monotonic() < deadline:
        old = TaskResult.objects.filter(date_done__lt=finished_before).order_by("date_done")
        ids = list(old.values_list("pk", flat=True)[:batch_size])
        if not ids:
            break
        counts["task_results"] += TaskResult.objects.filter(pk__in=ids).delete()[0]
    if connection.vendor == "sqlite":
        # SQLite's planner statistics are never refreshed on their own; after deleting is when
        # they drift (PostgreSQL's autovacuum analyses by itself).
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA optimize")
    return counts


def sweep_orphan_files(*, older_than: timedelta, batch_size: int = BATCH_SIZE) -> dict[str, int]:
    """Remove job folders whose job no longer exists, untouched for `older_than`. Folders are
    read as a stream and looked up a batch at a time, so memory stays flat at any number of
    jobs."""
    cutoff = timezone.now() - older_than
    counts = {"folders": 0, "files": 0}
    for chunk in _chunks(job_folders(default_storage), batch_size):
        known = set(Job.objects.filter(pk__in=_uuids(chunk)).values_list("pk", flat=True))
        for folder in chunk:
            if _uuid(folder) not in known:
                removed = _remove_stale_folder(f"jobs/{folder}", cutoff)
                if removed is not None:
                    counts["folders"] += 1
                    counts["files"] += removed
    return counts


def job_folders(storage: Storage) -> Iterator[str]:
    """The names of the folders under jobs/, one at a time: never the whole listing, which
    holds a name per job (~100 MB at a million). The storage's own listdir() would build it.

    Local disk: os.scandir reads the directory a block at a time. S3: ListObjectsV2 pages of
    up to 1,000 folders ("/" as the delimiter, so a folder's objects are never listed), each
    request bounded by the client's timeouts."""
    if isinstance(storage, S3Storage):
        prefix = posixpath.join(storage.location, "jobs/")
        client = storage.bucket.meta.client
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=storage.bucket_name, Prefix=prefix, Delimiter="/"
        )
        for page in pages:
            for folder in page.get("CommonPrefixes", ()):
                yield folder["Prefix"][len(prefix) : -1]
        return
    try:
        with os.scandir(storage.path("jobs")) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    yield entry.name
    except FileNotFoundError:  # no job has stored a file yet
        return


def compact_rollups(
    *,
    older_than: timedelta = COMPACT_AFTER,
    five_minutes_for: timedelta = FIVE_MINUTES_KEPT,
    minutes_for: timedelta = MINUTES_KEPT,
) -> dict[str, int]:
    """Merge per-minute rollups older than `minutes_for` into one row per 5 minutes, kind and
    outcome (their shards too), those older than `five_minutes_for` into one per hour, and
    everything older than `older_than` into one per day, a period per transaction: history
    stays exact in total, and the charts' queries read a bounded number of rows (an hour of
    minutes, a day of 5-minute rows, a week of hours) however busy the month was. Run hourly,
    each run merges what aged out since the last; the first run after a long pause catches up.
    """
    now = timezone.now()
    # Periods from the oldest finish still pending on are left for a later run: its move adds to
    # them, and on PostgreSQL a period is summed and deleted in two statements, between which a
    # committed move would be lost. New pending finishes carry the current minute.
    rollups.add_pending()
    pending_from = PendingFinish.objects.aggregate(oldest=Min("minute"))["oldest"]

    def before_pending(cutoff: int, minutes: int) -> int:
        return cutoff if pending_from is None else min(cutoff, pending_from // minutes * minutes)

    day_cutoff = before_pending(rollups.start_of_day(now - older_than), 1440)
    hour_cutoff = before_pending(rollups.minute_of(now - five_minutes_for) // 60 * 60, 60)
    five_cutoff = before_pending(rollups.minute_of(now - minutes_for) // 5 * 5, 5)
    merged = _compact_before(day_cutoff, 1440, since=None)
    merged += _compact_before(hour_cutoff, 60, since=day_cutoff)
    merged += _compact_before(five_cutoff, 5, since=hour_cutoff)
    return {"rows": merged}


def _compact_before(cutoff: int, minutes: int, *, since: int | None) -> int:
    """Merge each period of `minutes` before `cutoff` (from `since`) that holds rows off its
    first minute or off shard 0. Periods merged by earlier runs are not visited again: the
    search starts at the oldest row that is not at a period's first minute in shard 0."""
    rows = JobRollup.objects.filter(minute__lt=cutoff)
    if since is not None:
        rows = rows.filter(minute__gte=since)
    oldest = (
        rows.annotate(into_period=Mod("minute", minutes))
        .exclude(into_period=0, shard=0)
        .order_by("minute")
        .values_list("minute", flat=True)
        .first()
    )
    if oldest is None:
        return 0
    return sum(
        rollups.compact(start, minutes)
        for start in range(oldest // minutes * minutes, cutoff, minutes)
    )


def _remove_stale_folder(folder: str, cutoff: datetime) -> int | None:
    """Remove an orphan folder unless something in it is recent; how many files it held."""
    storage = default_storage
    subfolders, files = storage.listdir(folder)
    names = [f"{folder}/{name}" for name in files]
    if subfolders or any(storage.get_modified_time(name) >= cutoff for name in names):
        return None  # not ours to judge, or still being written
    for name in names:
        storage.delete(name)
    storage.delete(folder)
    return len(names)


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _uuids(names: Iterable[str]) -> list[uuid.UUID]:
    return [value for value in map(_uuid, names) if value is not None]


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
