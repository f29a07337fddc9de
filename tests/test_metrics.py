"""/metrics: Prometheus' text format, read from rollups, indexed counts, the broker and the
chores, so every web process reports the same numbers."""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import F
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from jobs import history, housekeeping, monitoring, rollups, services, tokens
from jobs.models import ApiToken, Job, JobRollup, PendingFinish
from tests.conftest import image_bytes, run_in_process, submit_image

pytestmark = pytest.mark.django_db


def scrape(client) -> dict[tuple, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")  # Prometheus' text format
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def test_metrics_report_jobs_durations_queues_and_chores(client, user, staff):
    done = [submit_image(user, image_bytes((300, 200))) for _ in range(2)]
    broken = submit_image(user, b"not an image at all")
    submit_image(user, image_bytes((300, 200)))  # stays queued
    for job in [*done, broken]:
        run_in_process(job)  # the broken one fails, as it should
    housekeeping.run_chore("purge_expired_jobs", lambda: {"jobs": 7, "task_results": 9})
    client.force_login(staff)

    samples = scrape(client)
    kind = ("kind", "thumbnails")
    assert samples[("parroter_jobs", (("status", "queued"),))] == 1
    assert samples[("parroter_jobs", (("status", "running"),))] == 0
    succeeded = (kind, ("status", "succeeded"))
    failed = (kind, ("status", "failed"))
    assert samples[("parroter_jobs_finished_total", succeeded)] == 2
    assert samples[("parroter_jobs_finished_total", failed)] == 1
    # Histograms: cumulative buckets ending at +Inf = the count, and a sum of durations.
    assert samples[("parroter_job_run_seconds_count", succeeded)] == 2
    assert (
        samples[("parroter_job_run_seconds_bucket", (*succeeded[:1], ("le", "+Inf"), succeeded[1]))]
        == 2
    )
    buckets = [
        value
        for (name, labels), value in samples.items()
        if name == "parroter_job_queue_wait_seconds_bucket" and ("status", "succeeded") in labels
    ]
    assert buckets == sorted(buckets) and buckets[-1] == 2
    assert samples[("parroter_job_run_seconds_sum", succeeded)] > 0
    chore = (("chore", "purge_expired_jobs"),)
    assert samples[("parroter_housekeeping_runs_total", chore)] == 1
    assert samples[("parroter_housekeeping_last_run_failed", chore)] == 0
    items = {"chore": "purge_expired_jobs"}
    assert (
        samples[
            (
                "parroter_housekeeping_last_run_items",
                tuple(sorted({**items, "item": "jobs"}.items())),
            )
        ]
        == 7
    )
    # No monitor has reported: nothing is claimed about the broker and the workers.
    assert ("parroter_broker_up", ()) not in samples
    assert samples[("parroter_monitor_report_age_seconds", ())] == float("inf")
    # Its report, observed against the session's real Redis: the queues and the broker.
    monitoring.save_report(monitoring.ClusterMonitor().observe())
    samples = scrape(client)
    assert samples[("parroter_broker_up", ())] == 1
    assert samples[("parroter_queue_messages", (("queue", "celery"),))] >= 0
    assert samples[("parroter_queue_consumers", (("queue", "housekeeping"),))] == 0
    assert samples[("parroter_monitor_report_age_seconds", ())] < 5

    # Deleting jobs (retention, admin) does not take them out of what has finished.
    Job.objects.filter(pk=done[0].pk).delete()
    assert scrape(client)[("parroter_jobs_finished_total", succeeded)] == 2


def test_finishes_not_yet_in_the_history_are_a_gauge(client, staff, monkeypatch):
    client.force_login(staff)
    pending = ("parroter_history_pending_finishes", ())
    assert scrape(client)[pending] == 0
    monkeypatch.setattr(rollups, "add_pending", lambda **_: 0)  # nothing moves them: held up
    PendingFinish.objects.bulk_create(
        PendingFinish(minute=rollups.minute_of(timezone.now()), kind="thumbnails",
                      status="succeeded", run_seconds=1.0, wait_seconds=0.5)
        for _ in range(3)
    )  # fmt: skip
    samples = scrape(client)
    assert samples[pending] == 3
    assert (
        "parroter_jobs_finished_total",
        (("kind", "thumbnails"), ("status", "succeeded")),
    ) not in samples
    monkeypatch.setattr(history, "PENDING_COUNT_CAP", 2)
    assert scrape(client)[pending] == 2  # a backlog past the cap reads as the cap
    monkeypatch.undo()  # moving again: the scrape adds them first
    samples = scrape(client)
    assert samples[pending] == 0
    assert (
        samples[("parroter_jobs_finished_total", (("kind", "thumbnails"), ("status", "succeeded")))]
        == 3
    )


def test_only_staff_read_metrics_and_a_scraper_without_a_login_gets_401(client, user):
    assert client.get("/metrics").status_code == 401  # not a redirect to the login page
    client.force_login(user)
    assert client.get("/metrics").status_code == 403


def test_a_scrapers_refusals_are_json_in_one_shape(client, user):
    _, user_token = tokens.create_api_token(user=user, name="not staff")
    refusals = {
        401: client.get("/metrics", HTTP_AUTHORIZATION="Bearer prt_not-a-token"),
        403: client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {user_token}"),
    }
    for status, response in refusals.items():
        assert response.status_code == status
        assert response["Content-Type"] == "application/json"
        assert set(response.json()) == {"message", "errors"}
    assert "viewer, operator and admin roles" in refusals[403].json()["message"]


def test_a_scraper_authenticates_with_a_staff_users_api_token(client, user, staff):
    _, staff_token = tokens.create_api_token(user=staff, name="prometheus")
    _, user_token = tokens.create_api_token(user=user, name="not staff")
    scraped = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {staff_token}")
    assert scraped.status_code == 200 and b"parroter_jobs{" in scraped.content
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {user_token}").status_code == 403
    refused = client.get("/metrics", HTTP_AUTHORIZATION="Bearer prt_not-a-token")
    assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")
    # A token that is sent is what counts, even beside a staff session.
    client.force_login(staff)
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {user_token}").status_code == 403
    tokens.revoke_api_tokens(tokens=ApiToken.objects.filter(user=staff))
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {staff_token}").status_code == 401


def failed_total() -> int:
    return sum(t.jobs for t in history.rollup_totals() if t.status == Job.Status.FAILED)


def failed_job(owner, finished_at) -> Job:
    """A failed job with a good image (should the session's worker run it again, it succeeds)
    in the rollups as of when it finished."""
    job = Job.objects.create(
        owner=owner,
        source=SimpleUploadedFile("a.jpg", image_bytes((64, 48))),
        source_name="a.jpg",
        params={"sizes": [[32, 32]]},
        status=Job.Status.FAILED,
        error="Interrupted.",
        started_at=finished_at,
        finished_at=finished_at,
    )
    rollups.record([job])
    return job


def test_a_retry_counts_as_retried_and_takes_no_finished_attempt_away(client, user, staff):
    failed_job(user, timezone.now())
    earlier_job = failed_job(user, timezone.now() - timedelta(days=3))
    client.force_login(staff)
    failed = (("kind", "thumbnails"), ("status", "failed"))
    before = scrape(client)
    assert before[("parroter_jobs_finished_total", failed)] == 2
    assert before[("parroter_jobs_retried_total", failed)] == 0

    assert services.retry_jobs(jobs=Job.objects.filter(pk=earlier_job.pk)) == 1
    after = scrape(client)
    assert after[("parroter_jobs_finished_total", failed)] == 2  # the failure happened
    assert after[("parroter_jobs_retried_total", failed)] == 1  # and so did the retry
    assert after[("parroter_job_run_seconds_count", failed)] == 2


def test_totals_of_earlier_days_are_summed_once_a_day(user):
    failed_job(user, timezone.now())
    failed_job(user, timezone.now() - timedelta(days=3))
    assert failed_total() == 2  # today's failure and the one three days ago
    # Rows of earlier days never change through the services, so later calls read them from
    # the cache: a change behind the services' back is not seen...
    earlier = JobRollup.objects.filter(minute__lt=rollups.start_of_day(timezone.now()))
    earlier.update(jobs=F("jobs") + 5)
    assert failed_total() == 2
    # ...while today's rows are read on every call.
    failed_job(user, timezone.now())
    assert failed_total() == 3
