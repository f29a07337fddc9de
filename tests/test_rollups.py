"""The rollups the console reads count each finished attempt when it finished, and each retry
beside it: compared with a ledger of what happened, kept by the test itself."""

import itertools
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from dashboard.forms import HISTORY_RANGES
from jobs import alerts, housekeeping, rollups, running, services
from jobs.history import job_history, recent_rate, rollup_totals
from jobs.kinds import thumbnails
from jobs.models import (
    RUN_BUCKET_FIELDS,
    WAIT_BUCKET_FIELDS,
    AlertRule,
    Job,
    JobRollup,
    PendingFinish,
)
from tests.conftest import (
    image_bytes,
    run_in_process,
    start_monitor,
    stop_process,
    submit_image,
)

pytestmark = pytest.mark.django_db

COLUMNS = ["jobs", "retried", "run_seconds", "wait_seconds", *RUN_BUCKET_FIELDS,
           *WAIT_BUCKET_FIELDS]  # fmt: skip


class Ledger:
    """What happened, written down by the test as it happens: every finished attempt (minute,
    kind, status, run and wait seconds) and every retry (minute, kind, status it left)."""

    def __init__(self) -> None:
        self.rows: dict = defaultdict(lambda: defaultdict(float))

    def finished(self, at: datetime, status: str, run: float | None, wait: float | None) -> None:
        row = self.rows[(rollups.minute_of(at), Job.Kind.THUMBNAILS, status)]
        row["jobs"] += 1
        if run is not None:
            row["run_seconds"] += run
            row[RUN_BUCKET_FIELDS[rollups.bucket_of(run)]] += 1
            row["wait_seconds"] += wait
            row[WAIT_BUCKET_FIELDS[rollups.bucket_of(wait)]] += 1

    def retried(self, at: datetime, status: str) -> None:
        self.rows[(rollups.minute_of(at), Job.Kind.THUMBNAILS, status)]["retried"] += 1

    def expected(self) -> dict:
        """Without zeros, as stored_rollups() (a queue wait of 0 s adds nothing to a sum)."""
        rows = {
            key: {k: v for k, v in row.items() if abs(v) > 1e-9} for key, row in self.rows.items()
        }
        return {key: row for key, row in rows.items() if row}


def stored_rollups() -> dict:
    stored = {}
    for rollup in rollups.rows():
        values = {name: getattr(rollup, name) for name in COLUMNS}
        nonzero = {name: value for name, value in values.items() if abs(value) > 1e-9}
        if nonzero:
            stored[(rollup.minute, rollup.kind, rollup.status)] = nonzero
    return stored


def assert_agree(expected: dict, stored: dict) -> None:
    assert stored.keys() == expected.keys()
    for key, row in expected.items():
        assert stored[key].keys() == row.keys(), key
        for name, value in row.items():
            assert stored[key][name] == pytest.approx(value, abs=1e-6), (key, name)


@dataclass
class Tracked:
    """The test's own idea of a job, to know what each transition must record."""

    pk: uuid.UUID
    status: str
    queued_at: datetime
    started_at: datetime | None = None
    attempts: int = 0
    max_attempts: int = settings.PARROTER_MAX_ATTEMPTS


START = datetime(2026, 11, 27, 23, 57, 30, tzinfo=UTC)  # a day's end is crossed, too
# The statuses each action changes; a step picks among such jobs unless its number is 6 or
# more, which picks among all jobs, so steps that must change nothing are taken too.
ACTS_ON = {
    "claim": {"queued"},
    "succeed": {"running"},
    "fail": {"running"},
    "cancel": {"queued", "running"},
    "retry": {"failed", "cancelled"},
    "delete": {"queued", "running", "succeeded", "failed", "cancelled"},
    "reap": set(),
}
STEPS = st.lists(
    st.one_of(
        st.just(("submit", 0)),
        st.tuples(st.just("tick"), st.integers(1, 400_000_000)),  # microseconds, up to ~7 min
        st.tuples(st.sampled_from(list(ACTS_ON)), st.integers(0, 7)),
    ),
    min_size=30,
    max_size=90,
)


def run_steps(owner, steps: list[tuple[str, int]]) -> Ledger:
    """Apply the steps through jobs.services and jobs.running on a clock the test moves; the
    ledger records what each one did, decided from the test's own state of the jobs."""
    clock = [START]
    ledger, jobs = Ledger(), []
    queued, running_status = Job.Status.QUEUED, Job.Status.RUNNING
    with mock.patch("django.utils.timezone.now", lambda: clock[0]):
        for action, number in steps:
            now = clock[0]
            if action == "tick":
                clock[0] = now + timedelta(microseconds=number)
                continue
            if action == "submit":
                job = Job.objects.create(
                    owner=owner, source_name="a.jpg", params={"sizes": [[32, 32]]},
                    task_id=str(uuid.uuid4()), created_at=now, queued_at=now,
                )  # fmt: skip
                jobs.append(Tracked(job.pk, queued, now))
                continue
            if not jobs:
                continue
            eligible = [job for job in jobs if job.status in ACTS_ON[action]]
            pool = eligible if eligible and number < 6 else jobs
            job = pool[number % len(pool)]
            stored = Job.objects.get(pk=job.pk)
            if action == "claim":
                claimed = running._claim(job_id=str(job.pk), task_id=stored.task_id, worker="w")
                assert (claimed is not None) == (job.status == queued)
                if claimed:
                    job.status, job.started_at, job.attempts = running_status, now, job.attempts + 1
            elif action in ("succeed", "fail"):
                status = Job.Status.SUCCEEDED if action == "succeed" else Job.Status.FAILED
                assert running._finish(stored, status=status) == (job.status == running_status)
                if job.status == running_status:
                    run, wait = now - job.started_at, job.started_at - job.queued_at
                    ledger.finished(now, status, run.total_seconds(), wait.total_seconds())
                    job.status = status
            elif action == "cancel":
                cancelled = services.cancel_jobs(jobs=Job.objects.filter(pk=job.pk))
                assert cancelled == (job.status in (queued, running_status))
                if cancelled:
                    run = wait = None
                    if job.status == running_status:
                        run = (now - job.started_at).total_seconds()
                        wait = (job.started_at - job.queued_at).total_seconds()
                    ledger.finished(now, Job.Status.CANCELLED, run, wait)
                    job.status = Job.Status.CANCELLED
            elif action == "retry":
                retried = services.retry_jobs(jobs=Job.objects.filter(pk=job.pk))
                assert retried == (job.status in services.RETRYABLE)
                if retried:
                    ledger.retried(now, job.status)
                    if job.attempts >= job.max_attempts:
                        job.max_attempts = job.attempts + settings.PARROTER_MAX_ATTEMPTS
                    job.status, job.queued_at, job.started_at = queued, now, None
            elif action == "delete":
                stored.delete()
                jobs.remove(job)
            elif action == "reap":
                counts = services.reap_stuck_jobs(running_longer_than=timedelta(0))
                expected = {"requeued": 0, "failed": 0}
                for each in jobs:
                    if each.status != running_status or each.started_at >= now:
                        continue
                    if each.attempts >= each.max_attempts:
                        run = (now - each.started_at).total_seconds()
                        wait = (each.started_at - each.queued_at).total_seconds()
                        ledger.finished(now, Job.Status.FAILED, run, wait)
                        each.status = Job.Status.FAILED
                        expected["failed"] += 1
                    else:
                        each.status, each.queued_at, each.started_at = queued, now, None
                        expected["requeued"] += 1
                assert counts == expected
    return ledger


@hypothesis_settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=STEPS)
def test_rollups_equal_a_ledger_of_every_finished_attempt_and_every_retry(user, steps):
    with transaction.atomic():  # each example starts from no jobs and no rollups
        ledger = run_steps(user, steps)
        assert_agree(ledger.expected(), stored_rollups())
        transaction.set_rollback(True)


def test_a_bulk_retry_keeps_the_failures_in_history_and_counts_the_retries(user):
    """The incident: 17 jobs fail, then an operator retries 14 of them. The failed count and
    the failure rate stay as they were, and the 14 retries are counted beside them."""
    # Numbers from 100 up address the 100 jobs by position (see ACTS_ON).
    steps = [("submit", 0)] * 100 + [("claim", 100 + n) for n in range(100)]
    steps += [("tick", 20_000)] + [("fail" if n < 17 else "succeed", 100 + n) for n in range(100)]
    ledger = run_steps(user, steps)
    now = START + timedelta(minutes=1)
    before = job_history(window=timedelta(hours=1), slot=timedelta(minutes=1), now=now).total
    assert (before.counts, before.retried) == ({"succeeded": 83, "failed": 17}, 0)
    assert before.failure_rate == pytest.approx(0.17)

    failed = Job.objects.filter(status=Job.Status.FAILED).values_list("pk", flat=True)[:14]
    with mock.patch("django.utils.timezone.now", lambda: now):
        assert services.retry_jobs(jobs=Job.objects.filter(pk__in=list(failed))) == 14
    for _ in range(14):
        ledger.retried(now, Job.Status.FAILED)
    assert_agree(ledger.expected(), stored_rollups())
    after = job_history(window=timedelta(hours=1), slot=timedelta(minutes=1), now=now)
    assert after.total.counts == before.counts
    assert after.total.failure_rate == pytest.approx(0.17)
    assert after.total.retried == 14
    assert after.slots[-1].retried == 14  # in the minute of the retry
    assert after.slots[-1].counts == {}  # nothing finished in it


def test_each_attempt_of_real_runs_counts_when_it_finished(user, monkeypatch):
    good, bad = image_bytes((300, 200)), b"this is not a picture at all"
    succeeding = [submit_image(user, good) for _ in range(4)]
    failing = submit_image(user, bad, name="broken.jpg")
    cancelled_while_queued = submit_image(user, good)
    cancelled_while_running = submit_image(user, good)
    interrupted = submit_image(user, good)
    for job in [*succeeding, failing]:
        run_in_process(job)
    services.cancel_job(job_id=cancelled_while_queued.pk)

    # An operator cancels while the job is being made: its outcome is dropped, nothing kept.
    real = thumbnails.make_archive

    def cancelled_midway(*args, **kwargs):
        services.cancel_job(job_id=cancelled_while_running.pk)
        return real(*args, **kwargs)

    monkeypatch.setattr(thumbnails, "make_archive", cancelled_midway)
    assert run_in_process(cancelled_while_running) == {
        "job": str(cancelled_while_running.pk),
        "cancelled": True,
    }
    monkeypatch.setattr(thumbnails, "make_archive", real)

    # A worker died mid-run, three times: the reaper gives up.
    Job.objects.filter(pk=interrupted.pk).update(
        status=Job.Status.RUNNING, attempts=3, started_at=timezone.now() - timedelta(hours=1)
    )
    assert services.reap_stuck_jobs(running_longer_than=timedelta(minutes=10)) == {
        "requeued": 0,
        "failed": 1,
    }
    history = job_history(window=timedelta(hours=1), slot=timedelta(minutes=1))
    assert history.total.counts == {"succeeded": 4, "failed": 2, "cancelled": 2}
    assert history.total.retried == 0

    # Retries leave each outcome where it was and count beside it; the new attempts add.
    retried = Job.objects.filter(pk__in=[failing.pk, cancelled_while_queued.pk, interrupted.pk])
    # Forced: one of them failed on its input, which is otherwise not retried.
    assert services.retry_jobs(jobs=retried, force=True) == 3
    assert services.retry_jobs(jobs=retried, force=True) == 0  # a second click changes nothing
    history = job_history(window=timedelta(hours=1), slot=timedelta(minutes=1))
    assert history.total.counts == {"succeeded": 4, "failed": 2, "cancelled": 2}
    assert history.total.retried == 3
    for job in retried:
        run_in_process(job)
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert statuses[failing.pk] == Job.Status.FAILED
    assert statuses[cancelled_while_queued.pk] == Job.Status.SUCCEEDED
    assert statuses[interrupted.pk] == Job.Status.SUCCEEDED
    assert statuses[cancelled_while_running.pk] == Job.Status.CANCELLED
    storage = cancelled_while_running.source.storage  # its archive was stored, then removed
    assert storage.listdir(f"jobs/{cancelled_while_running.pk}")[1] == ["source.jpg"]
    history = job_history(window=timedelta(hours=1), slot=timedelta(minutes=1))
    assert history.total.counts == {"succeeded": 6, "failed": 3, "cancelled": 2}
    assert history.total.retried == 3
    assert len(history.slots) == 60
    assert history.total.run_quantile(0.5) is not None

    # Deleting jobs takes nothing out of history either.
    Job.objects.all().delete()
    later = job_history(window=timedelta(hours=1), slot=timedelta(minutes=1))
    assert (later.total.counts, later.total.retried) == (history.total.counts, 3)


def test_a_retried_job_gets_a_fresh_allowance_of_attempts(user):
    job = submit_image(user, image_bytes((200, 100)))
    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.FAILED, attempts=3, finished_at=timezone.now()
    )
    assert services.retry_job(job_id=job.pk)
    job.refresh_from_db()
    assert (job.status, job.attempts, job.max_attempts) == (Job.Status.QUEUED, 3, 6)
    assert run_in_process(job)["thumbnails"]
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.SUCCEEDED, 4)


@pytest.mark.parametrize(
    ("seconds", "bucket"), [(0, 0), (0.01, 0), (0.011, 1), (1, 6), (3600, 14), (3601, 15)]
)
def test_durations_fall_in_the_bucket_whose_upper_bound_holds_them(seconds, bucket):
    assert rollups.bucket_of(seconds) == bucket


def test_quantiles_interpolate_within_a_bucket():
    buckets = [0] * 16
    buckets[3] = 10  # ten jobs between 50 and 100 ms
    assert rollups.quantile(0.5, buckets) == pytest.approx(0.075)
    assert rollups.quantile(0.5, [0] * 16) is None
    buckets[15] = 1000  # most over an hour: reported as the largest bound
    assert rollups.quantile(0.95, buckets) == 3600


def test_history_adds_up_slots_that_saw_different_outcomes():
    now = timezone.now()
    minute = rollups.minute_of(now)
    JobRollup.objects.create(minute=minute - 1, kind="thumbnails", status="succeeded", jobs=2)
    JobRollup.objects.create(minute=minute, kind="thumbnails", status="failed", jobs=1)
    history = job_history(window=timedelta(minutes=10), slot=timedelta(minutes=1), now=now)
    assert history.total.counts == {"succeeded": 2, "failed": 1}
    assert [slot.counts for slot in history.slots[-2:]] == [{"succeeded": 2}, {"failed": 1}]
    assert history.total.failure_rate == pytest.approx(1 / 3)


# --- shards: a minute's row per kind and outcome is spread over PARROTER_ROLLUP_SHARDS rows ---


@pytest.mark.django_db(transaction=True)  # each thread commits on its own connection
def test_concurrent_finishes_and_movers_of_pending_finishes_count_each_finish_once(user, settings):
    """Finishers write pending finishes while two movers add them to the rollups (as the
    monitor and a page's reader do at once): every finish is counted, once, and none is left."""
    settings.PARROTER_ROLLUP_SHARDS = 16
    finishers, each = 8, 15
    started = timezone.now()
    Job.objects.bulk_create(
        Job(owner=user, source_name="a.jpg", task_id=str(uuid.uuid4()), status="running",
            queued_at=started - timedelta(seconds=2), started_at=started - timedelta(seconds=1))
        for _ in range(finishers * each)
    )  # fmt: skip
    pks = list(Job.objects.order_by("pk").values_list("pk", flat=True))
    together = threading.Barrier(finishers + 2)
    finishing = threading.Event()

    def finish(share: list) -> int:
        try:
            together.wait(timeout=30)
            done = 0
            for job in Job.objects.filter(pk__in=share):
                status = Job.Status.FAILED if job.pk.int % 3 == 0 else Job.Status.SUCCEEDED
                done += running._finish(job, status=status)
            return done
        finally:
            connection.close()

    def move() -> int:
        try:
            together.wait(timeout=30)
            moved = 0
            while finishing.is_set():
                moved += rollups.add_pending()
            return moved
        finally:
            connection.close()

    finishing.set()
    with ThreadPoolExecutor(finishers + 2) as pool:
        movers = [pool.submit(move) for _ in range(2)]
        finished = list(pool.map(finish, [pks[n::finishers] for n in range(finishers)]))
        finishing.clear()
        moved = sum(mover.result() for mover in movers)

    assert sum(finished) == finishers * each
    assert moved > 0  # the movers ran beside the finishers, not only after them
    # Every finish was moved once: none twice by two movers, none left behind but these.
    assert moved + rollups.add_pending() == finishers * each
    assert JobRollup.objects.aggregate(jobs=Sum("jobs"))["jobs"] == finishers * each
    failed = sum(1 for pk in pks if pk.int % 3 == 0)
    history = job_history(window=timedelta(hours=1), slot=timedelta(minutes=1)).total
    assert history.counts == {"succeeded": finishers * each - failed, "failed": failed}
    assert history.wait_buckets[rollups.bucket_of(1.0)] == finishers * each  # 1 s each
    assert history.wait_seconds == pytest.approx(finishers * each, abs=1e-6)
    assert not PendingFinish.objects.exists()


def test_a_reader_counts_the_finishes_committed_before_it_asked(user):
    """The monitor adds pending finishes every round; a page does not wait for it."""
    job = Job.objects.create(owner=user, source_name="a.jpg", task_id="t", status="running",
                             started_at=timezone.now())  # fmt: skip
    assert running._finish(job, status=Job.Status.SUCCEEDED)
    assert PendingFinish.objects.count() == 1 and not JobRollup.objects.exists()
    assert recent_rate(minutes=1, now=timezone.now() + timedelta(minutes=1)) == 1.0
    assert not PendingFinish.objects.exists()
    assert JobRollup.objects.get().jobs == 1


@pytest.mark.django_db(transaction=True)  # the monitor is a process of its own
def test_the_monitor_adds_pending_finishes_to_the_rollups_without_a_reader(redis_url, tmp_path):
    rollups.record([finished_job(timezone.now(), status=Job.Status.FAILED, run=1, wait=2)] * 3)
    # A monitor of this test's own (not the session's), stopped after it, as in test_monitoring.
    monitor = start_monitor(redis_url, log=tmp_path / "monitor.log")
    try:
        deadline = time.monotonic() + 15  # its start, then a round every 2 s
        while PendingFinish.objects.exists():
            assert time.monotonic() < deadline and monitor.alive, monitor.output()[-3000:]
            time.sleep(0.1)
    finally:
        stop_process(monitor)
    row = JobRollup.objects.get()
    assert (row.status, row.jobs, row.run_seconds, row.wait_seconds) == ("failed", 3, 3.0, 6.0)


@pytest.mark.django_db(transaction=True)  # the lock is held from another connection
def test_a_reader_waits_only_briefly_for_a_lock_on_the_pending_finishes(caplog):
    """Another mover (or, on SQLite, any writer) holds the lock: the page reads what the
    rollups have within about READER_LOCK_WAIT, and the finish is added once the lock is gone."""
    rollups.record([finished_job(timezone.now(), status=Job.Status.SUCCEEDED, run=1, wait=1)])
    locked, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        try:
            with transaction.atomic():  # SQLite: BEGIN IMMEDIATE takes the write lock
                list(PendingFinish.objects.select_for_update())  # PostgreSQL: the rows' locks
                locked.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert locked.wait(timeout=10)
        started = time.monotonic()
        assert recent_rate(minutes=1, now=timezone.now() + timedelta(minutes=1)) == 0.0
        assert time.monotonic() - started < rollups.READER_LOCK_WAIT + 1.0
    finally:
        release.set()
        holder.join(timeout=10)
    assert PendingFinish.objects.count() == 1
    assert "read history without adding its pending finishes" in caplog.text
    assert "locked" not in caplog.text  # no "database is locked" line for a page's read
    assert recent_rate(minutes=1, now=timezone.now() + timedelta(minutes=1)) == 1.0
    # The connection waits as long as it did before for every other statement.
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW lock_timeout")
            assert cursor.fetchone() == ("0",)
        else:
            cursor.execute("PRAGMA busy_timeout")
            assert cursor.fetchone() == (20_000,)


def test_a_reader_moves_a_bounded_backlog_of_pending_finishes(monkeypatch):
    """A backlog (the monitor down for long) is added a bounded amount per page, the oldest
    first, and the rest on later reads: no page waits on all of it."""
    monkeypatch.setattr(rollups, "ADD_BATCH", 3)
    monkeypatch.setattr(rollups, "READER_BATCHES", 2)
    at = timezone.now()
    rollups.record([finished_job(at, status=Job.Status.SUCCEEDED, run=1, wait=1)] * 8)
    assert rollups.rows().get().jobs == 6
    assert rollups.rows().get().jobs == 8
    assert rollups.add_pending() == 0


def test_compaction_merges_every_shard_into_shard_0():
    start = 29_000_000 // 60 * 60  # an hour's first minute, long ago
    for minute, shard, jobs in [(start, 3, 2), (start, 9, 5), (start + 7, 0, 1), (start + 7, 4, 3)]:
        JobRollup.objects.create(minute=minute, kind="thumbnails", status="succeeded", shard=shard,
                                 jobs=jobs, run_seconds=jobs * 0.5, run_4=jobs)  # fmt: skip
    JobRollup.objects.create(minute=start + 59, kind="thumbnails", status="failed", shard=11,
                             jobs=1, retried=1)  # fmt: skip
    JobRollup.objects.create(minute=start + 60, kind="thumbnails", status="failed", shard=2, jobs=4)

    assert rollups.compact(start, 60) == 3  # five rows in, one per outcome out
    assert sorted(JobRollup.objects.values_list("minute", "status", "shard", "jobs", "retried",
                                                "run_seconds", "run_4")) == [
        (start, "failed", 0, 1, 1, 0.0, 0),
        (start, "succeeded", 0, 11, 0, 5.5, 11),
        (start + 60, "failed", 2, 4, 0, 0.0, 0),  # the next hour's, untouched
    ]  # fmt: skip
    assert rollups.compact(start, 60) == 0
    # A lone row in another shard moves to shard 0 (nothing merged away), so the chore's
    # search for periods left to merge does not find it again on every run.
    assert rollups.compact(start + 60, 60) == 0
    assert JobRollup.objects.get(minute=start + 60).shard == 0


def test_the_compaction_chore_merges_shards_that_sit_on_a_periods_first_minute():
    """Rows at the first minute of a day, an hour and a 5-minute slot, in several shards: no
    row is off its period's first minute, yet each period still holds a row per shard."""
    now = timezone.now()
    moments = [now - timedelta(days=12), now - timedelta(days=3), now - timedelta(hours=5)]
    firsts = [rollups.start_of_day(moments[0]), rollups.minute_of(moments[1]) // 60 * 60,
              rollups.minute_of(moments[2]) // 5 * 5]  # fmt: skip
    for minute in firsts:
        for shard in (0, 5, 13):
            JobRollup.objects.create(minute=minute, kind="thumbnails", status="succeeded",
                                     shard=shard, jobs=shard + 1)  # fmt: skip
    assert housekeeping.compact_rollups() == {"rows": 6}
    assert sorted(JobRollup.objects.values_list("minute", "shard", "jobs")) == [
        (minute, 0, 1 + 6 + 14) for minute in firsts
    ]


def test_compaction_leaves_the_periods_a_pending_finish_will_add_to(monkeypatch):
    """A finish still pending (another mover holds it, say) will add to its minute's row:
    compaction stops before that minute's periods and merges them on a later run."""
    now = timezone.now()
    hours = [rollups.minute_of(now - timedelta(days=3, hours=n)) // 60 * 60 for n in (5, 1)]
    for hour in hours:
        for shard in (2, 7):
            JobRollup.objects.create(minute=hour + 10, kind="thumbnails", status="succeeded",
                                     shard=shard, jobs=1)  # fmt: skip
    pending = PendingFinish.objects.create(
        minute=hours[1] + 12, kind="thumbnails", status="failed", run_seconds=1, wait_seconds=1
    )
    monkeypatch.setattr(rollups, "add_pending", lambda **_: 0)  # it stays pending
    assert housekeeping.compact_rollups() == {"rows": 1}  # the earlier hour's two shards
    assert sorted(JobRollup.objects.values_list("minute", "shard")) == [
        (hours[0], 0), (hours[1] + 10, 2), (hours[1] + 10, 7)
    ]  # fmt: skip
    pending.delete()
    assert housekeeping.compact_rollups() == {"rows": 1}
    assert sorted(JobRollup.objects.values_list("minute", "shard")) == [
        (hours[0], 0),
        (hours[1], 0),
    ]


def test_earlier_days_totals_are_kept_only_once_none_of_their_finishes_is_pending(monkeypatch):
    now = timezone.now()
    key = rollups.settled_totals_key(rollups.start_of_day(now))
    cache.delete(key)
    yesterday = finished_job(now - timedelta(days=1), status=Job.Status.FAILED, run=1, wait=1)
    rollups.record([yesterday])
    monkeypatch.setattr(rollups, "add_pending", lambda **_: 0)  # held up: it stays pending
    assert rollup_totals(now=now) == []
    assert cache.get(key) is None  # not settled: kept, it would hide that finish for a day
    monkeypatch.undo()
    assert [(t.status, t.jobs) for t in rollup_totals(now=now)] == [("failed", 1)]
    assert cache.get(key) is not None


def finished_job(at: datetime, *, status: str, run: float, wait: float) -> Job:
    """A finished job as rollups.record() reads it (kind, status and its three times)."""
    started = at - timedelta(seconds=run)
    return Job(kind=Job.Kind.THUMBNAILS, status=status, finished_at=at, started_at=started,
               queued_at=started - timedelta(seconds=wait))  # fmt: skip


def test_readers_report_the_same_history_with_rows_spread_over_shards(settings, monkeypatch):
    now = timezone.now().replace(second=30)
    statuses = [Job.Status.SUCCEEDED] * 5 + [Job.Status.FAILED, Job.Status.CANCELLED]
    # 18 keys (six minutes, over two days, and three outcomes) of about 9 jobs each.
    jobs = [
        finished_job(now - timedelta(minutes=n % 6, days=n % 2), status=statuses[n % 7],
                     run=0.02 * n, wait=n % 11)
        for n in range(160)
    ]  # fmt: skip
    rule = AlertRule.objects.get(name="Jobs failing")

    def readings() -> tuple:
        cache.delete(rollups.settled_totals_key(rollups.start_of_day(now)))
        histories = [
            job_history(window=window, slot=slot, now=now)
            for window, slot in HISTORY_RANGES.values()
        ]
        slots = [
            (slot.start, slot.counts, slot.retried, slot.run_buckets, slot.wait_buckets,
             round(slot.run_seconds, 6), round(slot.wait_seconds, 6))
            for history in histories for slot in [history.total, *history.slots]
        ]  # fmt: skip
        totals = [
            (t.kind, t.status, t.jobs, t.retried, t.run_buckets, t.wait_buckets,
             round(t.run_seconds, 6), round(t.wait_seconds, 6))
            for t in rollup_totals(now=now)
        ]  # fmt: skip
        rate = recent_rate(minutes=5, now=now)
        return slots, totals, rate, alerts.read(rule, now=now, facts=None)

    def write(shards: Iterator[int]) -> None:
        JobRollup.objects.all().delete()
        monkeypatch.setattr(rollups, "shard", lambda: next(shards))
        for job in jobs:  # each added on its own, so each in the shard of that moment
            rollups.record([job])
            rollups.add_pending()
        rollups.record_retries([job for job in jobs if job.status != "succeeded"][:9], at=now)

    write(itertools.repeat(0))
    in_one = readings()
    keys = JobRollup.objects.count()
    assert keys == 18  # the retries add to this minute's rows of the outcomes they leave
    write(itertools.cycle(range(settings.PARROTER_ROLLUP_SHARDS)))
    assert JobRollup.objects.count() > 2 * keys  # really spread
    assert readings() == in_one
    assert in_one[0][0][1]  # the hour saw finishes: the comparison is not of empty charts
