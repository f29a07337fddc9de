"""The rollups the console reads always equal a direct aggregate of the jobs table."""

from collections import defaultdict
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import rollups, services
from jobs.kinds import thumbnails
from jobs.models import RUN_BUCKET_FIELDS, WAIT_BUCKET_FIELDS, Job, JobRollup
from jobs.selectors import job_history
from tests.conftest import image_bytes, run_in_process, submit_image

pytestmark = pytest.mark.django_db


def direct_aggregate() -> dict:
    """What the rollups must hold, computed from the jobs table alone."""
    expected: dict = defaultdict(lambda: defaultdict(float))
    for job in Job.objects.exclude(finished_at=None):
        row = expected[(rollups.minute_of(job.finished_at), job.kind, job.status)]
        row["jobs"] += 1
        if job.run_seconds is not None:
            row["run_seconds"] += job.run_seconds
            row[RUN_BUCKET_FIELDS[rollups.bucket_of(job.run_seconds)]] += 1
        if job.queue_wait_seconds is not None:
            row["wait_seconds"] += job.queue_wait_seconds
            row[WAIT_BUCKET_FIELDS[rollups.bucket_of(job.queue_wait_seconds)]] += 1
    return {key: dict(row) for key, row in expected.items()}


def stored_rollups() -> dict:
    stored = {}
    for rollup in JobRollup.objects.all():
        values = {
            name: getattr(rollup, name)
            for name in ["jobs", "run_seconds", "wait_seconds", *RUN_BUCKET_FIELDS]
            + WAIT_BUCKET_FIELDS
        }
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


def test_rollups_agree_with_a_direct_count_after_a_mix_of_transitions(user, monkeypatch):
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
    assert_agree(direct_aggregate(), stored_rollups())

    # Retries take jobs out of their finished bucket; running them again puts them back.
    retried = Job.objects.filter(pk__in=[failing.pk, cancelled_while_queued.pk, interrupted.pk])
    assert services.retry_jobs(jobs=retried) == 3
    assert services.retry_jobs(jobs=retried) == 0  # a second click changes nothing
    assert_agree(direct_aggregate(), stored_rollups())
    for job in retried:
        run_in_process(job)
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert statuses[failing.pk] == Job.Status.FAILED
    assert statuses[cancelled_while_queued.pk] == Job.Status.SUCCEEDED
    assert statuses[interrupted.pk] == Job.Status.SUCCEEDED
    assert statuses[cancelled_while_running.pk] == Job.Status.CANCELLED
    assert not cancelled_while_running.archive.storage.exists(
        f"jobs/{cancelled_while_running.pk}/thumbnails.zip"
    )
    assert_agree(direct_aggregate(), stored_rollups())

    history = job_history(window=timedelta(hours=1), slot=timedelta(minutes=1))
    assert history.total.counts == {"succeeded": 6, "failed": 1, "cancelled": 1}
    assert len(history.slots) == 60
    assert history.total.run_quantile(0.5) is not None


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
