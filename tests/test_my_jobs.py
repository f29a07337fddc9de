"""'Your jobs': all of one's jobs in keyset pages, searchable by name, live while any runs."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs.models import Job

pytestmark = pytest.mark.django_db


def make_jobs(owner, names: list[str], status=Job.Status.SUCCEEDED) -> list[Job]:
    start = timezone.now() - timedelta(hours=1)
    return [
        Job.objects.create(
            owner=owner, source_name=name, status=status, created_at=start + timedelta(seconds=i)
        )
        for i, name in enumerate(names)
    ]


def listed(page: str) -> list[str]:
    return re.findall(r'<a href="/jobs/[0-9a-f-]+/">([^<]+)</a>', page)


def test_people_see_their_own_jobs_newest_first(client, user, other_user):
    make_jobs(user, ["first.jpg", "second.jpg"])
    make_jobs(other_user, ["not-mine.jpg"])
    client.force_login(user)
    page = client.get(reverse("dashboard:jobs")).content.decode()
    assert listed(page) == ["second.jpg", "first.jpg"]
    assert 'hx-trigger="every 2s' not in page  # all finished: nothing to poll


def test_pages_follow_older_and_newer_links(client, user):
    make_jobs(user, [f"photo-{i:02}.jpg" for i in range(55)])
    client.force_login(user)
    first = client.get(reverse("dashboard:jobs")).content.decode()
    assert len(listed(first)) == 50 and listed(first)[0] == "photo-54.jpg"
    older = re.search(r'href="\?after=([^"]+)"', first)[1]
    second = client.get(reverse("dashboard:jobs"), {"after": older}).content.decode()
    assert listed(second) == [f"photo-{i:02}.jpg" for i in range(4, -1, -1)]
    newer = re.search(r'href="\?before=([^"]+)"', second)[1]
    back = client.get(reverse("dashboard:jobs"), {"before": newer}).content.decode()
    assert listed(back) == listed(first)


def test_search_by_the_start_of_a_name(client, user):
    make_jobs(user, ["IMG_2026_1.jpg", "IMG_2025_9.jpg", "holiday.jpg"])
    client.force_login(user)
    found = client.get(reverse("dashboard:jobs"), {"q": "IMG_2026"}).content.decode()
    assert listed(found) == ["IMG_2026_1.jpg"]
    none = client.get(reverse("dashboard:jobs"), {"q": "zzz"}).content.decode()
    assert "None of your images' names start with “zzz”." in none


def test_the_table_polls_while_a_job_runs_and_answers_htmx_with_the_table_alone(client, user):
    make_jobs(user, ["busy.jpg"], status=Job.Status.RUNNING)
    client.force_login(user)
    page = client.get(reverse("dashboard:jobs")).content.decode()
    assert 'hx-trigger="every 2s [!document.hidden]"' in page
    partial = client.get(reverse("dashboard:jobs"), headers={"HX-Request": "true"})
    assert partial.content.decode().lstrip().startswith('<div id="my-jobs"')
    assert "<h1>" not in partial.content.decode()


def test_no_jobs_yet_says_how_to_start(client, user):
    client.force_login(user)
    page = client.get(reverse("dashboard:jobs")).content.decode()
    assert "No jobs yet." in page and "Upload an image" in page
