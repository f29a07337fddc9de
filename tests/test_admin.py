"""Django admin for operators: finding jobs fast, acting on them through the services, links
that lead somewhere, deleted jobs leaving no files, and read-only task results."""

import html
import re
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_celery_results.models import TaskResult

from jobs.admin import CappedPaginator
from jobs.models import Job
from tests.conftest import image_bytes

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:jobs_job_changelist"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # Three accounts per test (alice, bob, admin): the default hasher would take seconds.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_job(owner, name: str, status: str, job_id: str | None = None, **fields) -> Job:
    if status in Job.FINISHED:
        fields.setdefault("finished_at", timezone.now())
    return Job.objects.create(
        id=uuid.UUID(job_id) if job_id else uuid.uuid4(),
        owner=owner,
        source=SimpleUploadedFile("source.jpg", image_bytes((8, 8))),
        source_name=name,
        params={"sizes": [[128, 128]]},
        status=status,
        task_id=str(uuid.uuid4()),
        **fields,
    )


@pytest.fixture
def jobs(user, other_user):
    return {
        "beach": make_job(
            user, "beach.jpg", Job.Status.SUCCEEDED, "aaaa1111-0000-4000-8000-000000000001"
        ),
        "broken": make_job(
            user, "broken.jpg", Job.Status.FAILED, "bbbb2222-0000-4000-8000-000000000002"
        ),
        "waiting": make_job(
            other_user, "Beach-2.png", Job.Status.QUEUED, "cccc3333-0000-4000-8000-000000000003"
        ),
    }


def listed(client, **query) -> str:
    response = client.get(reverse(CHANGELIST), query)
    assert response.status_code == 200
    return response.content.decode()


NAMES = {"beach.jpg", "broken.jpg", "Beach-2.png"}


def names_in(page: str) -> set[str]:
    return set(re.findall(r"[\w-]+\.(?:jpg|png)", page)) & NAMES


def job_page(client, job: Job) -> str:
    response = client.get(reverse("admin:jobs_job_change", args=[job.pk]))
    assert response.status_code == 200
    return response.content.decode()


# --- the list -------------------------------------------------------------------------------


def test_list_shows_a_short_id_linking_to_the_job(admin_client, jobs):
    page = listed(admin_client)
    assert names_in(page) == NAMES
    change_url = reverse("admin:jobs_job_change", args=[jobs["beach"].pk])
    short = re.search(
        rf'<a href="{change_url}"[^>]*><code style="white-space: nowrap"[^>]*>(\w+)<', page
    )
    assert short and short[1] == "aaaa1111"


def test_list_filters_by_status_kind_and_date(admin_client, jobs):
    assert names_in(listed(admin_client, status__exact="failed")) == {"broken.jpg"}
    assert len(names_in(listed(admin_client, kind__exact="thumbnails"))) == 3
    Job.objects.filter(pk=jobs["beach"].pk).update(created_at=timezone.now() - timedelta(days=30))
    past_week = re.search(r'<a href="\?([^"]+)">Past 7 days</a>', listed(admin_client))[1]
    response = admin_client.get(reverse(CHANGELIST) + "?" + html.unescape(past_week))
    assert names_in(response.content.decode()) == {"broken.jpg", "Beach-2.png"}


@pytest.mark.parametrize(
    "term, expected",
    [
        ("aaaa1111-0000-4000-8000-000000000001", {"beach.jpg"}),  # full job id
        ("AAAA1111-0000-4000-8000-000000000001", {"beach.jpg"}),  # any case
        ("bbbb2222", {"broken.jpg"}),  # id prefix
        ("bbbb-22", {"broken.jpg"}),  # dashes ignored
        ("beach", {"beach.jpg", "Beach-2.png"}),  # name prefix, any case
        ("BEACH-", {"Beach-2.png"}),
        ("each", set()),  # not a prefix
        ("bob", {"Beach-2.png"}),  # owner's exact username
        ("bo", set()),
    ],
)
def test_search(admin_client, jobs, term, expected):
    assert names_in(listed(admin_client, q=term)) == expected


def test_search_by_task_id(admin_client, jobs):
    assert names_in(listed(admin_client, q=jobs["waiting"].task_id)) == {"Beach-2.png"}


def test_list_never_counts_or_scans_the_whole_table(admin_client, jobs, monkeypatch):
    monkeypatch.setattr(CappedPaginator, "cap", 2)
    with CaptureQueriesContext(connection) as queries:
        page = listed(admin_client)
    assert "2+ jobs" in page
    sqls = [query["sql"].upper() for query in queries]
    counts = [sql for sql in sqls if "COUNT(" in sql]
    assert counts and all("LIMIT" in sql for sql in counts)
    # No date hierarchy (MIN/MAX of created_at) and no filter listing DISTINCT values.
    assert not [sql for sql in sqls if "MIN(" in sql or "MAX(" in sql or "DISTINCT" in sql]
    assert "1 job" in listed(admin_client, status__exact="queued")  # under the cap: exact


# --- a job's page ---------------------------------------------------------------------------


def test_job_page_is_view_only(admin_client, jobs):
    page = job_page(admin_client, jobs["broken"])
    assert 'name="_save"' not in page and 'name="_continue"' not in page
    assert str(jobs["broken"].pk) in page  # the full id
    change_url = reverse("admin:jobs_job_change", args=[jobs["broken"].pk])
    assert admin_client.post(change_url, {"status": "succeeded"}).status_code == 403
    assert Job.objects.get(pk=jobs["broken"].pk).status == Job.Status.FAILED


def test_job_page_links(admin_client, jobs, user):
    job = jobs["beach"]
    job.archive.save("thumbnails.zip", ContentFile(b"PK\x05\x06" + bytes(18)))
    result = TaskResult.objects.create(
        task_id=job.task_id, task_name="jobs.run_job", status="SUCCESS"
    )
    page = job_page(admin_client, job)
    for url in [
        reverse("dashboard:ops_job", args=[job.pk]),
        reverse("dashboard:job", args=[job.pk]),
        reverse("dashboard:download", args=[job.pk]),
        reverse("admin:django_celery_results_taskresult_change", args=[result.pk]),
        reverse("admin:auth_user_change", args=[user.pk]),
    ]:
        assert f'href="{url}"' in page
    assert "source.jpg" not in page  # no link to a media URL that nothing serves
    assert "beach.jpg (" in page  # the source's name and size instead
    assert admin_client.get(reverse("dashboard:download", args=[job.pk])).status_code == 200


def test_job_page_without_task_result_or_archive(admin_client, jobs):
    page = job_page(admin_client, jobs["waiting"])
    assert "no result recorded yet" in page
    assert reverse("dashboard:download", args=[jobs["waiting"].pk]) not in page


# --- actions --------------------------------------------------------------------------------


def act(client, action: str, *selected: Job, follow=True):
    data = {"action": action, "_selected_action": [str(job.pk) for job in selected]}
    return client.post(reverse(CHANGELIST), data, follow=follow)


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_retry_queues_exactly_the_selected_failed_jobs(admin_client, jobs, user):
    other_failure = make_job(user, "other.jpg", Job.Status.FAILED)
    old_task_id = jobs["broken"].task_id
    response = act(admin_client, "retry_selected", jobs["broken"], jobs["beach"])
    assert messages_of(response) == ["1 job queued again."]
    broken = Job.objects.get(pk=jobs["broken"].pk)
    assert broken.status == Job.Status.QUEUED and broken.task_id != old_task_id
    assert Job.objects.get(pk=jobs["beach"].pk).status == Job.Status.SUCCEEDED
    assert Job.objects.get(pk=other_failure.pk).status == Job.Status.FAILED
    # Idempotent: the job is queued now, so a second click changes nothing.
    response = act(admin_client, "retry_selected", jobs["broken"])
    assert messages_of(response)[0].startswith("No job changed")
    assert Job.objects.get(pk=jobs["broken"].pk).task_id == broken.task_id


def test_cancel_cancels_exactly_the_selected_queued_jobs(admin_client, jobs, other_user):
    untouched = make_job(other_user, "later.jpg", Job.Status.QUEUED)
    response = act(admin_client, "cancel_selected", jobs["waiting"], jobs["beach"])
    assert messages_of(response) == ["1 job cancelled."]
    waiting = Job.objects.get(pk=jobs["waiting"].pk)
    assert waiting.status == Job.Status.CANCELLED and waiting.error == "Cancelled by admin."
    assert Job.objects.get(pk=untouched.pk).status == Job.Status.QUEUED
    assert Job.objects.get(pk=jobs["beach"].pk).status == Job.Status.SUCCEEDED
    assert messages_of(act(admin_client, "cancel_selected", jobs["waiting"]))[0].startswith(
        "No job changed"
    )


def test_actions_need_the_change_permission(client, django_user_model, jobs):
    viewer = django_user_model.objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_job"))
    client.force_login(viewer)
    page = listed(client)
    assert "retry_selected" not in page and "cancel_selected" not in page
    act(client, "retry_selected", jobs["broken"])
    assert Job.objects.get(pk=jobs["broken"].pk).status == Job.Status.FAILED


# --- deleting leaves no files ---------------------------------------------------------------


def job_folder(media_root: Path, job: Job) -> Path:
    return media_root / "jobs" / str(job.pk)


def test_delete_action_removes_files(
    admin_client, jobs, media_root, django_capture_on_commit_callbacks
):
    doomed, kept = jobs["broken"], jobs["beach"]
    assert job_folder(media_root, doomed).is_dir()
    confirm = act(admin_client, "delete_selected", doomed, follow=False)
    assert confirm.status_code == 200 and "Are you sure" in confirm.content.decode()
    data = {"action": "delete_selected", "_selected_action": [str(doomed.pk)], "post": "yes"}
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse(CHANGELIST), data, follow=True)
    assert "Successfully deleted 1 job" in response.content.decode()
    assert not Job.objects.filter(pk=doomed.pk).exists()
    assert not job_folder(media_root, doomed).exists()
    assert job_folder(media_root, kept).is_dir()


def test_delete_from_the_job_page_removes_files(
    admin_client, jobs, media_root, django_capture_on_commit_callbacks
):
    job = jobs["beach"]
    job.archive.save("thumbnails.zip", ContentFile(b"zip"))
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(reverse("admin:jobs_job_delete", args=[job.pk]), {"post": "yes"})
    assert not Job.objects.filter(pk=job.pk).exists()
    assert not job_folder(media_root, job).exists()


def test_queryset_delete_and_owner_cascade_remove_files(
    jobs, user, media_root, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        Job.objects.filter(pk=jobs["waiting"].pk).delete()
    assert not job_folder(media_root, jobs["waiting"]).exists()
    with django_capture_on_commit_callbacks(execute=True):
        user.delete()  # alice owns beach and broken
    for name in ["beach", "broken"]:
        assert not job_folder(media_root, jobs[name]).exists()


# --- task results ---------------------------------------------------------------------------


@pytest.fixture
def task_result(jobs):
    return TaskResult.objects.create(
        task_id=jobs["broken"].task_id,
        task_name="jobs.run_job",
        task_args=f"\"('{jobs['broken'].pk}',)\"",
        status="FAILURE",
        traceback="Traceback: boom",
    )


def test_task_results_are_read_only_with_a_link_to_their_job(admin_client, jobs, task_result):
    page = admin_client.get(reverse("admin:django_celery_results_taskresult_changelist"))
    assert "jobs.run_job" in page.content.decode()
    assert str(jobs["broken"].pk) in page.content.decode()  # the arguments
    url = reverse("admin:django_celery_results_taskresult_change", args=[task_result.pk])
    page = admin_client.get(url).content.decode()
    assert 'name="_save"' not in page
    assert f'href="{reverse("admin:jobs_job_change", args=[jobs["broken"].pk])}"' in page
    assert "Traceback: boom" in page
    assert admin_client.post(url, {"status": "SUCCESS"}).status_code == 403
    add = reverse("admin:django_celery_results_taskresult_add")
    assert admin_client.get(add).status_code == 403


def test_task_result_of_an_earlier_attempt_links_to_its_job(admin_client, jobs, task_result):
    Job.objects.filter(pk=jobs["broken"].pk).update(task_id=str(uuid.uuid4()))  # retried since
    url = reverse("admin:django_celery_results_taskresult_change", args=[task_result.pk])
    page = admin_client.get(url).content.decode()
    assert f'href="{reverse("admin:jobs_job_change", args=[jobs["broken"].pk])}"' in page
    assert "an earlier attempt" in page


def test_task_results_list_filters_by_state_without_scanning(admin_client, task_result):
    TaskResult.objects.create(task_id=str(uuid.uuid4()), task_name="jobs.reap_stuck_jobs")
    url = reverse("admin:django_celery_results_taskresult_changelist")
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(url, {"status": "FAILURE"}).content.decode()
    assert "jobs.run_job" in page and "jobs.reap_stuck_jobs" not in page
    assert not [query for query in queries if "DISTINCT" in query["sql"].upper()]


def test_task_results_search_by_exact_task_id(admin_client, task_result):
    TaskResult.objects.create(task_id=str(uuid.uuid4()), task_name="jobs.reap_stuck_jobs")
    url = reverse("admin:django_celery_results_taskresult_changelist")
    page = admin_client.get(url, {"q": task_result.task_id}).content.decode()
    assert "jobs.run_job" in page and "jobs.reap_stuck_jobs" not in page
    page = admin_client.get(url, {"q": task_result.task_id[:8]}).content.decode()
    assert "jobs.run_job" not in page


def test_only_superusers_delete_task_results(client, django_user_model, task_result):
    operator = django_user_model.objects.create_user("operator", is_staff=True)
    operator.user_permissions.add(
        *Permission.objects.filter(codename__endswith="_taskresult")  # even if granted
    )
    client.force_login(operator)
    url = reverse("admin:django_celery_results_taskresult_delete", args=[task_result.pk])
    assert client.post(url, {"post": "yes"}).status_code == 403
    assert TaskResult.objects.filter(pk=task_result.pk).exists()


# --- periodic tasks and access --------------------------------------------------------------


def test_periodic_task_form_lists_our_registered_tasks(admin_client):
    page = admin_client.get(reverse("admin:django_celery_beat_periodictask_add")).content.decode()
    dropdown = re.search(r'<select name="regtask".*?</select>', page, re.S)[0]
    for task in ["jobs.run_job", "jobs.dispatch_waiting_jobs", "jobs.reap_stuck_jobs"]:
        assert f'value="{task}"' in dropdown


@pytest.mark.parametrize("url", ["/admin/jobs/job/", "/admin/django_celery_results/taskresult/"])
def test_people_who_are_not_staff_cannot_open_admin(client, user, url):
    assert client.get(url).url.startswith(reverse("login"))  # anonymous: the site's login
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))
