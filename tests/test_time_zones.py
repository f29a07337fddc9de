"""Times in the viewer's zone: the one they chose, else their browser's, the zone named and UTC
on hover; /ops/ the same."""

from datetime import UTC, datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from dashboard.templatetags.parroter import when, when_title
from jobs.models import Job, Preferences

pytestmark = pytest.mark.django_db

MOMENT = datetime(2026, 12, 4, 21, 15, 40, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "shown"),
    [
        ("UTC", "2026-12-04 21:15 UTC"),
        ("Europe/Berlin", "2026-12-04 22:15 CET"),
        ("America/New_York", "2026-12-04 16:15 EST"),
        ("Asia/Dubai", "2026-12-05 01:15 UTC+04"),  # no abbreviation: the offset, named
    ],
)
def test_a_time_is_shown_in_the_active_zone_with_its_name_and_utc_on_hover(zone, shown):
    with timezone.override(zone):
        assert when(MOMENT) == (
            f'<time datetime="2026-12-04T21:15:40+00:00" title="2026-12-04 21:15:40 UTC">'
            f"{shown}</time>"
        )
        assert when_title(MOMENT).endswith("(2026-12-04 21:15:40 UTC)")
    assert when(None) == "—"


@pytest.fixture
def job(user):
    return Job.objects.create(owner=user, source_name="garden.jpg", created_at=MOMENT)


def job_page(client, job) -> str:
    return client.get(reverse("dashboard:job", args=[job.pk])).content.decode()


def test_the_browsers_zone_is_used_and_a_made_up_one_ignored(client, user, job):
    client.force_login(user)
    assert "submitted <time" in job_page(client, job)
    assert "2026-12-04 21:15:40 UTC</time>" in job_page(client, job)  # nothing known: UTC
    client.cookies["tz"] = "America/New_York"
    assert "2026-12-04 16:15:40 EST</time>" in job_page(client, job)
    client.cookies["tz"] = "Mars/Olympus_Mons"
    assert "2026-12-04 21:15:40 UTC</time>" in job_page(client, job)


def test_a_chosen_zone_wins_over_the_browsers_and_follows_the_person(client, user, job):
    client.cookies["tz"] = "America/New_York"
    client.force_login(user)
    page = client.get(reverse("dashboard:preferences")).content.decode()
    assert "My browser&#x27;s zone (America/New_York)" in page
    saved = client.post(reverse("dashboard:preferences"), {"time_zone": "Asia/Tokyo"})
    assert saved.status_code == 302
    assert Preferences.objects.get(user=user).time_zone == "Asia/Tokyo"
    assert "2026-12-05 06:15:40 JST</time>" in job_page(client, job)

    client.logout()
    client.force_login(user)  # a new session, on another device say
    assert "2026-12-05 06:15:40 JST</time>" in job_page(client, job)

    client.cookies["tz"] = "America/New_York"  # the test client's logout dropped its cookies
    client.post(reverse("dashboard:preferences"), {"time_zone": ""})  # back to the browser's
    assert "2026-12-04 16:15:40 EST</time>" in job_page(client, job)
    refused = client.post(reverse("dashboard:preferences"), {"time_zone": "Nowhere/Else"})
    assert refused.status_code == 200 and "Select a valid choice" in refused.content.decode()


def test_the_console_shows_times_in_the_viewers_zone(client, staff, job):
    client.cookies["tz"] = "Europe/Berlin"
    client.force_login(staff)
    table = client.get(reverse("dashboard:ops_jobs")).content.decode()
    assert 'title="2026-12-04 22:15:40 CET (2026-12-04 21:15:40 UTC)"' in table
    detail = client.get(reverse("dashboard:ops_job", args=[job.pk])).content.decode()
    assert "CET" in detail
