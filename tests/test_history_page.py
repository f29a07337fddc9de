"""The console's history tiles and charts after what operators do: a failure spike stays in
history when its jobs are retried, the retries are counted beside it, and the Throughput tile
says what its numbers are."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs import rollups
from jobs.models import Job, JobRollup
from tests.conftest import confirm_bulk

pytestmark = pytest.mark.django_db


def finished(owner, status: str, *, count: int, minutes_ago: float = 2) -> list[Job]:
    """Jobs that finished as of minutes_ago, counted in the rollups as the services do."""
    at = timezone.now() - timedelta(minutes=minutes_ago)
    jobs = [
        Job.objects.create(
            owner=owner,
            source_name=f"{status}-{n}.jpg",
            params={"sizes": [[32, 32]]},
            status=status,
            queued_at=at - timedelta(seconds=1),
            started_at=at - timedelta(seconds=0.5),
            finished_at=at,
        )  # fmt: skip
        for n in range(count)
    ]
    rollups.record(jobs)
    return jobs


def tile(page: str, label: str) -> str:
    found = re.search(
        rf"<span class=\"label\">{re.escape(label)}</span><span class=\"value[^\"]*\">(.*?)</span>",
        page,
    )
    assert found, label
    return re.sub(r"<[^>]+>", "", found.group(1))


def stats(client, range_name: str = "24h") -> str:
    response = client.get(reverse("dashboard:ops_stats"), {"range": range_name})
    assert response.status_code == 200
    return response.content.decode()


def test_a_bulk_retry_leaves_the_failures_and_the_rate_and_adds_the_retries(client, staff, user):
    finished(user, Job.Status.SUCCEEDED, count=292)
    finished(user, Job.Status.FAILED, count=17)
    client.force_login(staff)
    before = stats(client)
    assert tile(before, "Failed · 24h") == "17"
    assert tile(before, "Failure rate · 24h") == "5.5 %"
    assert tile(before, "Retried · 24h") == "0"

    response = confirm_bulk(client, "retry", {"status": "failed"})
    assert response.status_code == 302
    assert Job.objects.filter(status=Job.Status.QUEUED).count() == 17
    after = stats(client)
    assert tile(after, "Failed · 24h") == "17"  # they failed; that stays true
    assert tile(after, "Failure rate · 24h") == "5.5 %"
    assert tile(after, "Retried · 24h") == "17"
    # The throughput chart shows the retries as their own series, and the hover data has them.
    assert '<path class="retried"' in after
    data = json.loads(re.search(r'class="slot-data">(.*?)</script>', after).group(1))
    assert sum(row[3] for row in data["rows"] if len(row) > 3) == 17


def test_the_throughput_tile_gives_the_last_five_minutes_and_the_ranges_peak(client, staff, user):
    finished(user, Job.Status.SUCCEEDED, count=30, minutes_ago=3)  # in the last 5 minutes
    finished(user, Job.Status.FAILED, count=5, minutes_ago=1.5)
    finished(user, Job.Status.SUCCEEDED, count=120, minutes_ago=40)  # the hour's busiest minute
    client.force_login(staff)
    page = stats(client, "1h")
    assert tile(page, "Throughput · last 5 min") == "7.0/min"  # (30 + 5) / 5
    minute = JobRollup.objects.get(jobs=120).minute
    peak_at = timezone.localtime(datetime.fromtimestamp(minute * 60, tz=UTC))
    note = re.search(r'id="throughput-tile".*?<span class="note"[^>]*>(.*?)</span>', page).group(1)
    assert note == f"peak 120.0/min at {peak_at:%H:%M}"
    # Over a day of 5-minute slots the peak is the busiest slot's average minute.
    page = stats(client, "24h")
    note = re.search(r'id="throughput-tile".*?<span class="note"[^>]*>(.*?)</span>', page).group(1)
    assert note.startswith("peak 24.0/min at ")


def test_a_quiet_range_says_nothing_finished(client, staff):
    client.force_login(staff)
    page = stats(client, "1h")
    assert tile(page, "Throughput · last 5 min") == "0.0/min"
    assert "none finished in 1h" in page


def test_the_console_loads_the_chart_script_and_no_per_slot_hover_targets(client, staff, user):
    finished(user, Job.Status.SUCCEEDED, count=3)
    client.force_login(staff)
    page = client.get(reverse("dashboard:ops")).content.decode()
    assert "dashboard/ops.js" in page
    assert "<title>" not in page.split('id="ops-stats"')[1].split('id="jobs-title"')[0]
