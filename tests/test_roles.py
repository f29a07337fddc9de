"""Roles instead of one is_staff switch: viewer, operator and admin groups made by a migration;
is_staff alone opens admin's door and nothing else."""

import uuid

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from jobs import roles, tokens
from jobs.models import Job
from tests.conftest import person_with_role

pytestmark = pytest.mark.django_db


def failed_job(owner) -> Job:
    return Job.objects.create(
        owner=owner, source_name="photo.jpg", params={"sizes": [[64, 64]]},
        status=Job.Status.FAILED, finished_at=timezone.now(), task_id=str(uuid.uuid4()),
    )  # fmt: skip


def test_the_migration_makes_each_role_with_exactly_its_permissions():
    for name, wanted in roles.ROLES.items():
        held = Group.objects.get(name=name).permissions.values_list(
            "content_type__app_label", "codename"
        )
        assert set(held) == set(wanted), name
    assert set(roles.VIEWER) < set(roles.OPERATOR) < set(roles.ADMIN)


def test_is_staff_alone_sees_no_console_and_no_one_elses_job(client, user, django_user_model):
    job = failed_job(user)
    client.force_login(person_with_role(django_user_model, "sam", None, is_staff=True))
    assert client.get(reverse("dashboard:ops")).status_code == 403
    assert client.get(reverse("dashboard:job", args=[job.pk])).status_code == 404
    assert client.get(reverse("dashboard:download", args=[job.pk])).status_code == 404
    bulk = client.post(reverse("dashboard:ops_bulk", args=["retry"]), {"as_of": "1", "count": "1"})
    assert bulk.status_code == 403
    assert Job.objects.get().status == Job.Status.FAILED
    assert "Operations" not in client.get(reverse("dashboard:upload")).content.decode()


def test_a_viewer_reads_everything_and_changes_nothing(client, user, django_user_model):
    job = failed_job(user)
    viewer = person_with_role(django_user_model, "vera", "viewer", is_staff=False)
    client.force_login(viewer)
    console = client.get(reverse("dashboard:ops")).content.decode()
    assert str(job.pk)[:8] in console
    assert "Retry every failed job matching" not in console and ">Retry</button>" not in console
    assert client.get(reverse("dashboard:ops_job", args=[job.pk])).status_code == 200
    assert client.get(reverse("dashboard:ops_bulk", args=["retry"])).status_code == 403
    assert client.post(reverse("dashboard:ops_retry", args=[job.pk])).status_code == 403
    assert client.post(reverse("dashboard:retry", args=[job.pk])).status_code == 403
    assert Job.objects.get().status == Job.Status.FAILED

    # Their API token carries the role: reads everyone's jobs, acts on none of them.
    _, plain = tokens.create_api_token(user=viewer, name="dashboard")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {plain}"}
    client.logout()
    assert client.get(f"/api/jobs/{job.pk}", **auth).status_code == 200
    refused = client.post(f"/api/jobs/{job.pk}/retry", **auth)
    assert refused.status_code == 403 and "operator and admin roles" in refused.json()["message"]
    assert client.get("/metrics", **auth).status_code == 200


def test_an_operator_acts_on_anyones_job(client, user, staff):
    job = failed_job(user)
    client.force_login(staff)
    assert client.post(reverse("dashboard:ops_retry", args=[job.pk])).status_code == 302
    assert Job.objects.get().status == Job.Status.QUEUED
