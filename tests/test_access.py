"""Who may see what: anonymous people only the login page and probes; users only their own jobs."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from jobs.models import Job
from tests.conftest import image_bytes

pytestmark = pytest.mark.django_db

JOB_VIEWS = ["dashboard:job", "dashboard:job_panel", "dashboard:job_status", "dashboard:download"]


@pytest.fixture
def finished_job(user):
    job = Job.objects.create(
        owner=user,
        source=SimpleUploadedFile("source.jpg", image_bytes((10, 10))),
        source_name="mine.jpg",
        params={"sizes": [[128, 128]]},
        status=Job.Status.SUCCEEDED,
        archive=SimpleUploadedFile("thumbnails.zip", b"PK\x05\x06" + b"\0" * 18),
        result={
            "thumbnails": [{"name": "thumb_128x128.jpg", "width": 10, "height": 10, "bytes": 1}]
        },
    )
    return job


def test_anonymous_people_are_sent_to_the_login_page(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_a_script_without_a_login_gets_401_json_from_status_json(client, finished_job):
    response = client.get(reverse("dashboard:job_status", args=[finished_job.pk]))
    assert response.status_code == 401
    assert response.json() == {"message": "Sign in to see this job's status.", "errors": {}}


def test_login_page_and_probes_are_open(client):
    assert client.get(reverse("login")).status_code == 200
    assert client.get(reverse("healthz")).json() == {"status": "ok"}


@pytest.mark.parametrize("view", [*JOB_VIEWS, "dashboard:thumbnail"])
def test_someone_elses_job_is_not_found(client, other_user, finished_job, view):
    client.force_login(other_user)
    args = (
        [finished_job.pk, "thumb_128x128.jpg"]
        if view == "dashboard:thumbnail"
        else [finished_job.pk]
    )
    assert client.get(reverse(view, args=args)).status_code == 404


@pytest.mark.parametrize("view", JOB_VIEWS)
def test_owner_and_the_consoles_roles_see_the_job(client, user, other_user, finished_job, view):
    client.force_login(user)
    assert client.get(reverse(view, args=[finished_job.pk])).status_code == 200
    other_user.groups.add(Group.objects.get(name="viewer"))
    client.force_login(other_user)
    assert client.get(reverse(view, args=[finished_job.pk])).status_code == 200


def test_an_unchanged_job_panel_answers_204(client, user, finished_job):
    client.force_login(user)
    finished_job.status = Job.Status.RUNNING
    finished_job.save()
    first = client.get(reverse("dashboard:job_panel", args=[finished_job.pk]))
    assert first.status_code == 200 and 'hx-trigger="every 1s"' in first.content.decode()
    version = first.content.decode().split("?v=")[1].split('"')[0]
    url = reverse("dashboard:job_panel", args=[finished_job.pk])
    assert client.get(url, {"v": version}).status_code == 204
    finished_job.progress = 50
    finished_job.save()
    changed = client.get(url, {"v": version})
    assert changed.status_code == 200 and "50%" in changed.content.decode()


def test_a_succeeded_job_says_how_long_it_took_in_readable_units(client, user, finished_job):
    started = timezone.now() - timedelta(minutes=1)
    Job.objects.filter(pk=finished_job.pk).update(
        started_at=started, finished_at=started + timedelta(milliseconds=43)
    )
    client.force_login(user)
    page = client.get(reverse("dashboard:job", args=[finished_job.pk])).content.decode()
    assert "1 image done in 43 ms." in page  # not "0.0 s"


def test_the_owner_of_a_failed_job_tries_it_again_from_its_page(client, user, finished_job):
    Job.objects.filter(pk=finished_job.pk).update(
        status=Job.Status.FAILED,
        error="The image data is truncated or corrupt.",
        finished_at=timezone.now() - timedelta(minutes=5, seconds=10),
    )
    client.force_login(user)
    page = client.get(reverse("dashboard:job", args=[finished_job.pk])).content.decode()
    assert "Try again" in page and "Failed at" in page and "5 min ago." in page
    response = client.post(reverse("dashboard:retry", args=[finished_job.pk]), follow=True)
    finished_job.refresh_from_db()
    assert finished_job.status in (Job.Status.QUEUED, Job.Status.RUNNING, Job.Status.SUCCEEDED)
    assert "Your job is queued again." in response.content.decode()
    # A second click changes nothing, and says so.
    Job.objects.filter(pk=finished_job.pk).update(status=Job.Status.SUCCEEDED)
    response = client.post(reverse("dashboard:retry", args=[finished_job.pk]), follow=True)
    assert "Only a failed or cancelled job can be tried again." in response.content.decode()
