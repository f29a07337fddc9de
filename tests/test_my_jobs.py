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


def test_search_by_the_start_of_a_name_in_any_case(client, user):
    make_jobs(user, ["IMG_2026_1.jpg", "IMG_2025_9.jpg", "holiday.jpg", "DSC_0001.JPG"])
    client.force_login(user)
    found = client.get(reverse("dashboard:jobs"), {"q": "IMG_2026"}).content.decode()
    assert listed(found) == ["IMG_2026_1.jpg"]
    camera = client.get(reverse("dashboard:jobs"), {"q": "dsc"}).content.decode()
    assert listed(camera) == ["DSC_0001.JPG"]
    none = client.get(reverse("dashboard:jobs"), {"q": "zzz"}).content.decode()
    assert "None of your jobs has a name starting with “zzz”." in none


def test_filter_by_status_and_keep_the_filters_on_the_next_pages(client, user):
    make_jobs(user, [f"ok-{i:02}.jpg" for i in range(3)])
    make_jobs(user, [f"bad-{i:02}.jpg" for i in range(55)], status=Job.Status.FAILED)
    client.force_login(user)
    first = client.get(reverse("dashboard:jobs"), {"status": "failed", "q": "BAD"}).text
    assert len(listed(first)) == 50 and all(name.startswith("bad-") for name in listed(first))
    older = re.search(r'href="\?q=BAD&amp;status=failed&amp;after=([^"]+)"', first)[1]
    second = client.get(reverse("dashboard:jobs"), {"status": "failed", "q": "BAD", "after": older})
    assert listed(second.text) == [f"bad-{i:02}.jpg" for i in range(4, -1, -1)]
    none = client.get(reverse("dashboard:jobs"), {"status": "running"}).text
    assert "None of your jobs has the status running." in none
    bogus = client.get(reverse("dashboard:jobs"), {"status": "bogus"})
    assert bogus.status_code == 200 and "Select a valid choice" in bogus.text


def test_a_succeeded_job_shows_its_preview_and_zip_and_finished_ones_can_be_deleted(client, user):
    thumbs = [{"name": f"a_{w}x{w}.jpg", "width": w, "height": w, "bytes": 1, "image": 0}
              for w in (256, 128)]  # fmt: skip
    done = make_jobs(user, ["done.jpg"])[0]
    Job.objects.filter(pk=done.pk).update(result={"thumbnails": thumbs})
    running = make_jobs(user, ["busy.jpg"], status=Job.Status.RUNNING)[0]
    client.force_login(user)
    page = client.get(reverse("dashboard:jobs")).text
    assert f'<img src="/jobs/{done.pk}/thumbnails/a_128x128.jpg"' in page  # the smallest
    assert f'href="/jobs/{done.pk}/download"' in page
    assert f'href="/jobs/{done.pk}/delete"' in page
    assert f'href="/jobs/{running.pk}/delete"' not in page


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


@pytest.mark.django_db(transaction=True)
def test_deleting_a_finished_job_asks_then_removes_it_and_its_files(client, user, media_root):
    from django.core.files.base import ContentFile
    from django_celery_results.models import TaskResult

    job = make_jobs(user, ["holiday.jpg"], status=Job.Status.FAILED)[0]
    job.task_id = "task-1"
    job.source.save("source.jpg", ContentFile(b"bytes"))  # saves the job too
    TaskResult.objects.create(task_id="task-1", status="FAILURE")
    folder = media_root / "jobs" / str(job.pk)
    assert folder.exists()
    client.force_login(user)

    asked = client.get(reverse("dashboard:delete", args=[job.pk]))
    assert asked.status_code == 200 and "cannot be undone" in asked.text
    assert Job.objects.filter(pk=job.pk).exists()  # asking deletes nothing

    done = client.post(reverse("dashboard:delete", args=[job.pk]))
    assert done.status_code == 302 and done.url == reverse("dashboard:jobs")
    assert not Job.objects.filter(pk=job.pk).exists()
    assert not TaskResult.objects.filter(task_id="task-1").exists()
    assert not folder.exists()
    assert "Deleted holiday.jpg and its thumbnails." in client.get(done.url).text


def test_a_job_still_running_is_not_deleted(client, user):
    job = make_jobs(user, ["busy.jpg"], status=Job.Status.RUNNING)[0]
    client.force_login(user)
    refused = client.post(reverse("dashboard:delete", args=[job.pk]))
    assert refused.status_code == 302 and refused.url == reverse("dashboard:job", args=[job.pk])
    assert Job.objects.filter(pk=job.pk).exists()
