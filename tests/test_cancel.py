"""Cancels change what was confirmed: bulk actions are bound to the set their confirmation
showed, and one job's cancel asks first, saying what a running job loses; owners cancel theirs."""

import re
import uuid

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs.models import Job

pytestmark = pytest.mark.django_db


def make_job(owner, **fields) -> Job:
    fields.setdefault("source_name", "photo.jpg")
    fields.setdefault("params", {"sizes": [[128, 128]]})
    return Job.objects.create(owner=owner, task_id=str(uuid.uuid4()), **fields)


def confirmation(page: str) -> dict:
    return dict(re.findall(r'<input type="hidden" name="(as_of|count)" value="(\d+)">', page))


def test_a_bulk_cancel_changes_the_jobs_it_confirmed_and_says_what_changed_since(
    client, staff, user, other_user
):
    confirmed = [make_job(user), make_job(user)]
    client.force_login(staff)
    url = reverse("dashboard:ops_bulk", args=["cancel"])
    page = client.get(url).content.decode()
    assert "2 queued jobs" in page and "Cancel 2 jobs" in page
    shown = confirmation(page)

    # Before the click: someone else submits 3 more, and one confirmed job starts and ends.
    later = [make_job(other_user) for _ in range(3)]
    Job.objects.filter(pk=confirmed[1].pk).update(
        status=Job.Status.SUCCEEDED, finished_at=timezone.now()
    )
    done = client.post(url, shown, follow=True).content.decode()
    assert (
        "Cancel: 1 job changed of the 2 confirmed; 1 had changed meanwhile (finished, retried "
        "or cancelled). 3 jobs that matched since you confirmed were left as they are." in done
    )
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert statuses[confirmed[0].pk] == Job.Status.CANCELLED
    assert statuses[confirmed[1].pk] == Job.Status.SUCCEEDED
    assert {statuses[job.pk] for job in later} == {Job.Status.QUEUED}


def test_a_bulk_retry_leaves_jobs_that_failed_after_the_confirmation(client, staff, user):
    failed = make_job(user, status=Job.Status.FAILED, finished_at=timezone.now())
    client.force_login(staff)
    url = reverse("dashboard:ops_bulk", args=["retry"])
    shown = confirmation(client.get(url).content.decode())
    newly = make_job(user, status=Job.Status.FAILED, finished_at=timezone.now())
    done = client.post(url, shown, follow=True).content.decode()
    assert "Retry: 1 job changed. 1 job that matched since you confirmed was left" in done
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert (statuses[failed.pk], statuses[newly.pk]) == (Job.Status.QUEUED, Job.Status.FAILED)


def test_a_bulk_post_without_its_confirmation_changes_nothing(client, staff, user):
    make_job(user)
    client.force_login(staff)
    url = reverse("dashboard:ops_bulk", args=["cancel"])
    done = client.post(url, {"count": "1"}, follow=True).content.decode()
    assert "That confirmation was incomplete; nothing was changed." in done
    assert Job.objects.get().status == Job.Status.QUEUED


def running_job(owner) -> Job:
    return make_job(
        owner,
        status=Job.Status.RUNNING,
        started_at=timezone.now(),
        progress=47,
        params={"sizes": [[128, 128]], "images": [{"name": f"{n}.jpg"} for n in range(30)]},
        result={"images_done": 14},
    )


def test_a_running_jobs_cancel_in_the_console_asks_first_and_says_what_is_lost(client, staff, user):
    job = running_job(user)
    client.force_login(staff)
    console = client.get(reverse("dashboard:ops_jobs")).content.decode()
    ask = reverse("dashboard:ops_cancel", args=[job.pk])
    assert f'href="{ask}?next=' in console  # a link to the question, not a button that acts

    question = client.get(ask, {"next": "/ops/?status=running"}).content.decode()
    assert "Cancel this job?" in question and "at 47%" in question
    assert "14 of 30 images are done; they and the rest of this attempt are thrown away" in question
    assert Job.objects.get().status == Job.Status.RUNNING  # asking changed nothing

    done = client.post(ask, {"next": "/ops/?status=running", "reason": "disk full"})
    assert done.url == "/ops/?status=running"
    job.refresh_from_db()  # the owner reads who, and why
    assert (job.status, job.error) == (Job.Status.CANCELLED, "Cancelled by olivia: disk full")


def test_owners_cancel_their_own_jobs_from_the_job_page(client, user, other_user):
    job = running_job(user)
    client.force_login(user)
    page = client.get(reverse("dashboard:job", args=[job.pk])).content.decode()
    ask = reverse("dashboard:cancel", args=[job.pk])
    assert f'href="{ask}"' in page
    assert "14 of 30 images are done" in client.get(ask).content.decode()

    client.force_login(other_user)
    assert client.post(ask).status_code == 404
    client.force_login(user)
    done = client.post(ask, follow=True).content.decode()
    assert "Your job is cancelled." in done
    job.refresh_from_db()
    assert (job.status, job.error) == (Job.Status.CANCELLED, "Cancelled by alice.")
    # Finished: no question any more, and no Cancel on its page.
    again = client.get(ask, follow=True).content.decode()
    assert "Nothing to cancel: the job has finished." in again
    assert f'href="{ask}"' not in again
