"""The operator console: who may use it, and that its tables, searches, pages and polls
return exactly the right jobs."""

import re
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from jobs import selectors
from jobs.models import Job
from jobs.selectors import COMMON_PREFIX, PAGE_SIZE

pytestmark = pytest.mark.django_db

NO_JOB = uuid.UUID(int=0)
PAGES = [
    ("dashboard:ops", []),
    ("dashboard:ops_jobs", []),
    ("dashboard:ops_stats", []),
    ("dashboard:ops_workers", []),
    ("dashboard:ops_job", [NO_JOB]),
    ("dashboard:ops_bulk", ["retry"]),
]
ACTIONS = [
    ("dashboard:ops_retry", [NO_JOB]),
    ("dashboard:ops_cancel", [NO_JOB]),
    ("dashboard:ops_bulk", ["cancel"]),
]


def make_job(owner, **fields) -> Job:
    fields.setdefault("source_name", "photo.jpg")
    fields.setdefault("params", {"sizes": [[128, 128]]})
    fields.setdefault("task_id", str(uuid.uuid4()))
    return Job.objects.create(owner=owner, **fields)


@pytest.mark.parametrize(("name", "args"), PAGES + ACTIONS)
def test_anonymous_people_get_the_login_page(client, name, args):
    url = reverse(name, args=args)
    response = client.post(url) if (name, args) in ACTIONS else client.get(url)
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


@pytest.mark.parametrize(("name", "args"), PAGES + ACTIONS)
def test_signed_in_people_who_are_not_staff_get_403(client, user, name, args):
    client.force_login(user)
    url = reverse(name, args=args)
    response = client.post(url) if (name, args) in ACTIONS else client.get(url)
    assert response.status_code == 403


def test_staff_get_every_page_and_the_top_bar_links_to_the_console(client, staff, user):
    job = make_job(user)
    client.force_login(staff)
    for name, args in PAGES:
        args = [job.pk] if args == [NO_JOB] else args
        assert client.get(reverse(name, args=args)).status_code == 200, name
    home = client.get(reverse("dashboard:upload")).content.decode()
    assert f'href="{reverse("dashboard:ops")}"' in home
    client.force_login(user)
    assert reverse("dashboard:ops") not in client.get(reverse("dashboard:upload")).content.decode()


def test_actions_refuse_a_post_without_the_csrf_token(staff, user):
    failed = make_job(user, status=Job.Status.FAILED)
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    response = client.post(reverse("dashboard:ops_retry", args=[failed.pk]))
    assert response.status_code == 403
    failed.refresh_from_db()
    assert failed.status == Job.Status.FAILED


def test_a_get_never_acts(client, staff, user):
    queued, failed = make_job(user), make_job(user, status=Job.Status.FAILED)
    client.force_login(staff)
    asked = client.get(reverse("dashboard:ops_cancel", args=[queued.pk]))
    assert asked.status_code == 200 and "Cancel this job?" in asked.content.decode()
    assert client.get(reverse("dashboard:ops_retry", args=[failed.pk])).status_code == 405
    statuses = set(Job.objects.values_list("status", flat=True))
    assert statuses == {Job.Status.QUEUED, Job.Status.FAILED}


# --- the table -------------------------------------------------------------------------------


def table_ids(client, **query) -> list[str]:
    response = client.get(reverse("dashboard:ops_jobs"), query)
    assert response.status_code == 200
    return re.findall(r'<tr data-job="([0-9a-f-]+)"', response.content.decode())


def link(html: str, rel: str) -> str | None:
    found = re.search(rf'rel="{rel}" href="([^"]+)"', html)
    return found.group(1).replace("&amp;", "&") if found else None


def follow(client, url: str) -> str:
    """Fetch a console page link as the table partial (same query)."""
    query = url.split("?", 1)[1]
    return client.get(f"{reverse('dashboard:ops_jobs')}?{query}").content.decode()


def test_keyset_pages_list_every_job_once_newest_first_even_with_equal_times(client, staff, user):
    moment = timezone.now() - timedelta(minutes=5)
    jobs = [  # groups of seven share a created_at: the id breaks the tie
        make_job(user, created_at=moment - timedelta(seconds=index // 7))
        for index in range(PAGE_SIZE * 2 + 13)
    ]
    expected = [str(job.pk) for job in sorted(jobs, key=lambda j: (j.created_at, j.pk))][::-1]
    client.force_login(staff)

    html = client.get(reverse("dashboard:ops_jobs")).content.decode()
    pages = [re.findall(r'<tr data-job="([0-9a-f-]+)"', html)]
    assert link(html, "prev") is None
    while next_url := link(html, "next"):
        assert "after=" in next_url
        html = follow(client, next_url)
        pages.append(re.findall(r'<tr data-job="([0-9a-f-]+)"', html))
    assert [len(page) for page in pages] == [PAGE_SIZE, PAGE_SIZE, 13]
    assert sum(pages, []) == expected

    # ...and back again with the "newer" links, page by page.
    for page in reversed(pages[:-1]):
        html = follow(client, link(html, "prev"))
        assert re.findall(r'<tr data-job="([0-9a-f-]+)"', html) == page
    assert link(html, "prev") is None


def test_filters_by_status_kind_owner_and_time(client, staff, user, other_user):
    old = make_job(user, status=Job.Status.FAILED, created_at=timezone.now() - timedelta(days=2))
    mine = make_job(user, status=Job.Status.FAILED)
    theirs = make_job(other_user, status=Job.Status.FAILED)
    make_job(user, status=Job.Status.SUCCEEDED)
    client.force_login(staff)

    failed = table_ids(client, status="failed", kind="thumbnails")
    assert sorted(failed) == sorted(str(job.pk) for job in (old, mine, theirs))
    assert table_ids(client, status="failed", owner="alice", created="24h") == [str(mine.pk)]
    assert table_ids(client, owner="nobody") == []
    assert table_ids(client, status="failed", owner="ALICE", created="24h") == [str(mine.pk)]
    # A filter value that is not a choice is reported, not obeyed or crashed on.
    page = client.get(reverse("dashboard:ops"), {"status": "bogus"})
    assert page.status_code == 200 and "Select a valid choice" in page.content.decode()


def test_search_by_job_id_prefix_task_id_and_name_prefix(client, staff, user):
    beach = make_job(user, source_name="beach.jpg")
    beef = make_job(user, source_name="beef-stew.png")
    upper = make_job(user, source_name="Beach.JPG")
    client.force_login(staff)

    assert table_ids(client, q=str(beach.pk)) == [str(beach.pk)]
    assert table_ids(client, q=beach.pk.hex.upper()) == [str(beach.pk)]
    assert str(beef.pk) in table_ids(client, q=str(beef.pk)[:13])  # a prefix, dash included
    assert table_ids(client, q=beach.task_id) == [str(beach.pk)]
    # Prefixes ignore case (a camera's DSC_0001.JPG is found as "dsc"), newest first.
    assert table_ids(client, q="bea") == [str(upper.pk), str(beach.pk)]
    assert table_ids(client, q="BEACH.j") == [str(upper.pk), str(beach.pk)]
    assert str(beef.pk) in table_ids(client, q="beef")  # hex-looking text still finds names
    assert table_ids(client, q="each") == []  # a prefix, not a substring
    assert table_ids(client, q="\U0010ffff") == []


def test_an_unchanged_table_answers_204_and_a_changed_job_200(client, staff, user):
    job = make_job(user, status=Job.Status.RUNNING, progress=10)
    client.force_login(staff)
    first = client.get(reverse("dashboard:ops_jobs"), {"status": "running"})
    version = re.search(r'data-version="([^"]+)"', first.content.decode()).group(1)
    poll = {"status": "running", "v": version}
    assert client.get(reverse("dashboard:ops_jobs"), poll).status_code == 204

    Job.objects.filter(pk=job.pk).update(progress=60, updated_at=timezone.now())
    changed = client.get(reverse("dashboard:ops_jobs"), poll)
    assert changed.status_code == 200
    assert 'aria-valuenow="60"' in changed.content.decode()

    make_job(user)  # a new job arrives: the first page changes too
    version = re.search(r'data-version="([^"]+)"', changed.content.decode()).group(1)
    assert client.get(reverse("dashboard:ops_jobs"), {"v": version}).status_code == 200


def test_the_counters_poll_answers_204_until_something_changes(client, staff, user):
    client.force_login(staff)
    first = client.get(reverse("dashboard:ops_stats"), {"range": "1h"}).content.decode()
    version = re.search(r"v=([^&\"]+)", first).group(1)
    poll = {"range": "1h", "v": version}
    assert client.get(reverse("dashboard:ops_stats"), poll).status_code == 204
    make_job(user)
    response = client.get(reverse("dashboard:ops_stats"), poll)
    assert response.status_code == 200
    assert re.search(r"Queued</span><span class=\"value\">1<", response.content.decode())


def test_empty_console_says_so(client, staff):
    client.force_login(staff)
    page = client.get(reverse("dashboard:ops")).content.decode()
    assert "No jobs yet" in page
    assert page.count("No finished jobs in this range") == 4
    assert (
        "No jobs match these filters"
        in client.get(reverse("dashboard:ops"), {"q": "nothing-like-this"}).content.decode()
    )


def test_the_job_page_shows_the_timeline_and_a_retry_as_queued_again(client, staff, user):
    job = make_job(user)
    client.force_login(staff)
    page = client.get(reverse("dashboard:ops_job", args=[job.pk])).content.decode()
    assert "<strong>Created</strong>" in page and "Queued again" not in page
    # Flower knows a task once a worker has taken it: no link to its "unknown task" page before.
    assert f"/flower/task/{job.task_id}" not in page
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING, started_at=timezone.now())
    page = client.get(reverse("dashboard:ops_job", args=[job.pk])).content.decode()
    assert f"/flower/task/{job.task_id}" in page
    later = timezone.now()
    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.CANCELLED, started_at=later, finished_at=later, attempts=1
    )
    client.post(reverse("dashboard:ops_retry", args=[job.pk]))
    page = client.get(reverse("dashboard:ops_job", args=[job.pk])).content.decode()
    assert "Queued again" in page and "Started" not in page


def test_a_poll_after_the_session_expired_sends_the_whole_page_to_the_login(client):
    response = client.get(reverse("dashboard:ops_jobs"), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response["HX-Redirect"].startswith(reverse("login"))


def test_a_common_name_prefix_is_found_newest_first_in_any_case(client, staff, user):
    # Past COMMON_PREFIX matches SQLite walks the newest-first index instead of the names'.
    moment = timezone.now()
    Job.objects.bulk_create(
        Job(
            owner=user, source_name=f"IMG_{index:04d}.jpg", task_id=str(uuid.uuid4()),
            created_at=moment - timedelta(seconds=index), queued_at=moment,
        )
        for index in range(COMMON_PREFIX + 20)
    )  # fmt: skip
    make_job(user, source_name="img_lower.jpg")
    client.force_login(staff)
    newest = Job.objects.order_by("-created_at", "-id").values_list("pk", "source_name")
    expected = [str(pk) for pk, name in newest if name.lower().startswith("img_")][:PAGE_SIZE]
    assert expected[0] == str(Job.objects.get(source_name="img_lower.jpg").pk)
    assert table_ids(client, q="IMG_") == expected
    assert table_ids(client, q="img_") == expected
    make_job(user, source_name="imgur.png")  # LIKE's "_" would match it: never here
    assert table_ids(client, q="Img_") == expected


def test_a_change_while_the_page_renders_shows_at_the_next_poll(client, staff, user, monkeypatch):
    job = make_job(user, status=Job.Status.RUNNING, progress=10)
    read_rows = selectors.job_page

    def rows_then_a_change(**kwargs):
        page = read_rows(**kwargs)
        Job.objects.filter(pk=job.pk).update(progress=90, updated_at=timezone.now())
        return page

    client.force_login(staff)
    monkeypatch.setattr(selectors, "job_page", rows_then_a_change)
    first = client.get(reverse("dashboard:ops"))
    monkeypatch.undo()
    assert 'aria-valuenow="10"' in first.content.decode()
    version = re.search(r'data-version="([^"]+)"', first.content.decode()).group(1)
    poll = client.get(reverse("dashboard:ops_jobs"), {"v": version})
    assert poll.status_code == 200 and 'aria-valuenow="90"' in poll.content.decode()
