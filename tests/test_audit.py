"""The audit log: every action a person takes on jobs, tokens and in admin is recorded once,
append-only, with who, when, from where and why; /ops/audit/ and a job's console page list it."""

import re
import uuid

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from jobs.models import ApiToken, AuditedJob, AuditEntry, Job
from tests.conftest import confirm_bulk

pytestmark = pytest.mark.django_db


def make_job(owner, **fields) -> Job:
    fields.setdefault("source_name", "photo.jpg")
    fields.setdefault("params", {"sizes": [[128, 128]]})
    return Job.objects.create(owner=owner, task_id=str(uuid.uuid4()), **fields)


def failed(owner) -> Job:
    return make_job(owner, status=Job.Status.FAILED, finished_at=timezone.now())


def test_a_bulk_retry_is_one_entry_with_its_filter_jobs_reason_and_address(
    client, staff, user, other_user
):
    alices = [failed(user), failed(user)]
    bobs = failed(other_user)
    client.force_login(staff)
    reason = "bad deploy at 14:05"
    confirm_bulk(client, "retry", {"owner": "alice", "reason": reason})
    confirm_bulk(client, "retry", {"owner": "alice"})  # nothing left to retry: no entry

    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.actor_name, entry.action) == (staff, "olivia", "retry")
    assert entry.summary == "Retried 2 jobs matching owner=alice"
    assert (entry.jobs, entry.reason, entry.address) == (2, reason, "127.0.0.1")
    assert entry.details == {"filter": "owner=alice", "confirmed": 2}
    changed = set(AuditedJob.objects.values_list("job_id", flat=True))
    assert changed == {job.pk for job in alices} and bobs.pk not in changed

    console = client.get(reverse("dashboard:ops_job", args=[alices[0].pk])).content.decode()
    assert "Retried 2 jobs matching owner=alice" in console and reason in console
    other = client.get(reverse("dashboard:ops_job", args=[bobs.pk])).content.decode()
    assert "No one has acted on this job." in other


def test_single_actions_from_the_console_the_owner_and_the_api_are_recorded(client, staff, user):
    queued, mine, theirs = make_job(user), make_job(user), failed(user)
    client.force_login(staff)
    client.post(reverse("dashboard:ops_cancel", args=[queued.pk]), {"reason": "stuck"})
    client.force_login(user)
    client.post(reverse("dashboard:cancel", args=[mine.pk]))
    client.post(f"/api/jobs/{theirs.pk}/retry", HTTP_X_CSRFTOKEN="unused")
    client.post(reverse("dashboard:delete", args=[queued.pk]))

    entries = list(AuditEntry.objects.order_by("id").values_list("actor_name", "action", "reason"))
    assert entries == [
        ("olivia", "cancel", "stuck"),
        ("alice", "cancel", ""),
        ("alice", "retry", ""),
        ("alice", "delete", ""),
    ]
    deleted = AuditEntry.objects.get(action="delete")
    assert deleted.summary == f"Deleted job {queued.pk.hex[:8]}"
    assert deleted.details == {"title": "photo.jpg", "owner": "alice"}
    # The record outlives the job it names.
    assert not Job.objects.filter(pk=queued.pk).exists()
    assert AuditedJob.objects.filter(job_id=queued.pk).count() == 2


def test_api_tokens_made_and_revoked_are_recorded(client, user):
    client.force_login(user)
    client.post(reverse("dashboard:tokens"), {"name": "backup script"})
    token = ApiToken.objects.get(user=user)
    client.post(reverse("dashboard:revoke_token", args=[token.pk]))
    made, revoked = AuditEntry.objects.order_by("id")
    assert made.action == "token_create"
    assert made.summary == f"Made API token {token.prefix}… “backup script” for alice"
    assert revoked.action == "token_revoke"
    assert revoked.summary == f"Revoked API token {token.prefix}… (alice)"


def test_changes_made_in_admin_are_recorded(admin_client, admin_user, user):
    viewers = Group.objects.create(name="viewers")
    change = reverse("admin:auth_user_change", args=[user.pk])
    page = admin_client.get(change).content.decode()
    fields = dict(
        re.findall(r'name="(username|date_joined_0|date_joined_1)" value="([^"]*)"', page)
    )
    answer = admin_client.post(
        change,
        {
            **fields,
            "is_active": "on",
            "groups": [viewers.pk],
            "last_login_0": "",
            "last_login_1": "",
        },
    )
    assert answer.status_code == 302, answer.content.decode()[:3000]
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.action) == (admin_user, "admin")
    assert entry.summary.startswith("Changed user “alice”: Changed Groups")


def test_the_log_is_append_only_even_in_admin(admin_client, staff, user):
    AuditEntry.objects.create(actor=staff, actor_name="olivia", action="retry", summary="x")
    entry = AuditEntry.objects.get()
    entry.summary = "y"
    with pytest.raises(ValueError, match="append-only"):
        entry.save()
    with pytest.raises(ValueError, match="append-only"):
        entry.delete()
    assert admin_client.get(reverse("admin:jobs_auditentry_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:jobs_auditentry_add")).status_code == 403
    delete = reverse("admin:jobs_auditentry_delete", args=[entry.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.get().summary == "x"


def test_the_audit_page_filters_and_pages_newest_first(client, staff, user):
    AuditEntry.objects.bulk_create(
        AuditEntry(actor_name="olivia" if n % 2 else "oscar", action="retry", summary=f"entry {n}")
        for n in range(120)
    )
    client.force_login(staff)
    url = reverse("dashboard:ops_audit")
    first = client.get(url).content.decode()
    shown = re.findall(r'<td class="summary">entry (\d+)</td>', first)
    assert shown == [str(n) for n in range(119, 69, -1)]
    older = re.search(r'rel="next" href="\?(?:[^"]*&amp;)?after=(\d+)"', first)[1]
    second = client.get(url, {"after": older}).content.decode()
    assert re.findall(r'<td class="summary">entry (\d+)</td>', second)[0] == "69"

    oscar = client.get(url, {"actor": "oscar"}).content.decode()
    assert set(re.findall(r"entry (\d+)", oscar)) <= {str(n) for n in range(0, 120, 2)}
    assert (
        "No entry matches these filters." in client.get(url, {"action": "cancel"}).content.decode()
    )
    wrong = client.get(url, {"job": "not-an-id"}).content.decode()
    assert "Give a whole job id" in wrong
