"""Operators find jobs in Django admin by name, id and state."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from jobs.models import Job
from tests.conftest import image_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def jobs(user):
    def make(name: str, status: str) -> Job:
        return Job.objects.create(
            owner=user,
            source=SimpleUploadedFile("source.jpg", image_bytes((8, 8))),
            source_name=name,
            params={"sizes": [[128, 128]]},
            status=status,
        )

    return [make("beach.jpg", Job.Status.SUCCEEDED), make("broken.jpg", Job.Status.FAILED)]


def listed(admin_client, **query) -> str:
    response = admin_client.get(reverse("admin:jobs_job_changelist"), query)
    assert response.status_code == 200
    return response.content.decode()


def test_admin_searches_by_file_name_and_id(admin_client, jobs):
    page = listed(admin_client, q="beach")
    assert "beach.jpg" in page and "broken.jpg" not in page
    page = listed(admin_client, q=str(jobs[1].pk))
    assert "broken.jpg" in page and "beach.jpg" not in page
    assert "0 jobs" in listed(admin_client, q="not-a-uuid-or-name")


def test_admin_filters_by_status(admin_client, jobs):
    page = listed(admin_client, status__exact="failed")
    assert "broken.jpg" in page and "beach.jpg" not in page


def test_people_who_are_not_staff_cannot_open_admin(client, user):
    client.force_login(user)
    response = client.get(reverse("admin:jobs_job_changelist"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))
