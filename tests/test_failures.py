"""Failure groups and permanent failures: each failure is recorded with its kind and a signature
(its message with what varies taken out); /ops/failures/ groups them, filters the console by
one, and acknowledges them; a failure on the input (permanent) is retried nowhere (console row
and bulk, admin, the owner's page, the API's 409) unless an operator forces it."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from jobs import failures, services, tokens
from jobs.audit import Actor
from jobs.models import AuditEntry, FailureGroup, Job
from tests.conftest import (
    confirm_bulk,
    image_bytes,
    person_with_role,
    run_in_process,
    submit_image,
    wait_for_job,
)

pytestmark = pytest.mark.django_db


def test_what_varies_is_taken_out_of_a_signature():
    same = [
        "The image is 9000×1 pixels (9 megapixels); the limit is 120 megapixels.",
        "The image is 12000×10800 pixels (129.6 megapixels); the limit is 120 megapixels.",
    ]
    assert len({failures.signature("over_limit", message) for message in same}) == 1
    named = [
        "None of the 3 images could be read. a.jpg: corrupt; IMG_2024 (1).png: corrupt",
        "None of the 12 images could be read. b.jpeg: corrupt; c_d.png: corrupt",
    ]
    assert failures.pattern(named[0]) == (
        "None of the <n> images could be read. <file>: corrupt; <file>: corrupt"
    )
    assert failures.signature("bad_input", named[0]) == failures.signature("bad_input", named[1])
    # The kind is part of it, and a different message is another group.
    assert failures.signature("internal", same[0]) != failures.signature("over_limit", same[0])
    assert failures.signature("bad_input", "The file is empty.") != failures.signature(
        "bad_input", "This file is not an image."
    )
    assert failures.pattern("job 2f1c9d3e-1111-4222-8333-444455556666 “x y”") == "job <id> <text>"


def failed_job(owner, data: bytes, name: str = "photo.jpg") -> Job:
    job = submit_image(owner, data, name=name)
    run_in_process(job)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    return job


def corrupt(owner, name: str = "photo.jpg") -> Job:
    return failed_job(owner, image_bytes((64, 48))[:200], name)


def test_failures_get_their_kind_and_group_when_they_are_recorded(user, settings):
    first, second = corrupt(user, "a.jpg"), corrupt(user, "b.jpg")
    assert first.failure_kind == second.failure_kind == Job.FailureKind.BAD_INPUT
    assert first.failure_signature == second.failure_signature
    settings.PARROTER_MAX_PIXELS = 1000
    big = failed_job(user, image_bytes((64, 48)))
    assert big.failure_kind == Job.FailureKind.OVER_LIMIT and big.failed_for_good
    group = FailureGroup.objects.get(pk=first.failure_signature)
    assert (group.kind, group.example) == ("bad_input", first.error)
    assert FailureGroup.objects.count() == 2

    services.retry_job(job_id=first.pk, actor=Actor(user), force=True)
    first.refresh_from_db()  # queued again: no longer a failure of any group
    assert (first.failure_kind, first.failure_signature) == ("", "")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_records_the_kind_and_group(user, celery_worker):
    job = wait_for_job(submit_image(user, image_bytes((64, 48))[:200]))
    assert job.status == Job.Status.FAILED and job.failure_kind == "bad_input"
    assert FailureGroup.objects.filter(pk=job.failure_signature, kind="bad_input").exists()


def test_a_failure_on_the_input_is_retried_nowhere_unless_an_operator_forces_it(
    client, user, staff
):
    broken = corrupt(user)
    temporary = corrupt(user)
    Job.objects.filter(pk=temporary.pk).update(failure_kind="internal")  # the same, retryable

    client.force_login(user)  # the owner: no Try again, what to do instead
    page = client.get(reverse("dashboard:job", args=[broken.pk])).content.decode()
    assert "Try again" not in page and "Upload a different file" in page
    assert "Re-run with a replacement" in page
    client.post(reverse("dashboard:retry", args=[broken.pk]))
    _, plain = tokens.create_api_token(user=user, name="script")
    api = client.post(f"/api/jobs/{broken.pk}/retry", HTTP_AUTHORIZATION=f"Bearer {plain}")
    assert api.status_code == 409
    assert api.json()["message"].startswith("The job failed on its input, so a retry would")

    client.force_login(staff)  # the console: no Retry in its row, left out of a bulk retry
    console = client.get(reverse("dashboard:ops"), {"status": "failed"}).content.decode()
    assert reverse("dashboard:ops_retry", args=[broken.pk]) not in console
    assert broken.error.splitlines()[0][:40] in console  # the error column
    ask = client.get(reverse("dashboard:ops_bulk", args=["retry"]), {"status": "failed"})
    assert "1 failed job matching these filters failed on its input and is left out" in (
        ask.content.decode()
    )
    assert reverse("dashboard:ops_retry", args=[temporary.pk]) in console
    confirm_bulk(client, "retry", {"status": "failed"})
    assert Job.objects.get(pk=broken.pk).status == Job.Status.FAILED
    assert Job.objects.get(pk=temporary.pk).status == Job.Status.QUEUED

    detail = client.get(reverse("dashboard:ops_job", args=[broken.pk])).content.decode()
    assert "a retry will most likely fail the same way" in detail
    client.post(reverse("dashboard:ops_retry", args=[broken.pk]), {"force": "1"})
    assert Job.objects.get(pk=broken.pk).status == Job.Status.QUEUED
    forced = AuditEntry.objects.filter(action="retry").order_by("-id").first()
    assert forced.reason == "forced" and forced.summary == f"Retried job {broken.pk.hex[:8]}"


def test_failure_groups_are_counted_filtered_and_acknowledged(client, user, staff):
    viewer = person_with_role(get_user_model(), "vera", "viewer", is_staff=False)
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        corrupt(user, name)
    empty = failed_job(user, b"", "empty.jpg")
    other = Job.objects.exclude(failure_signature=empty.failure_signature).first()

    client.force_login(viewer)
    page = client.get(reverse("dashboard:ops_failures")).content.decode()
    assert "2 groups, 2 new" in page and "Acknowledge" not in page
    assert "<strong>3</strong> failures · 1 owner" in page
    group_url = f"?status=failed&amp;group={other.failure_signature}"
    assert group_url in page
    table = client.get(
        reverse("dashboard:ops"), {"status": "failed", "group": other.failure_signature}
    ).content.decode()
    assert table.count('data-status="failed"') == 3

    client.force_login(staff)
    acknowledge = reverse("dashboard:ops_acknowledge", args=[other.failure_signature])
    assert client.post(acknowledge).status_code == 302
    assert "2 groups, 1 new" in client.get(reverse("dashboard:ops_failures")).content.decode()
    assert AuditEntry.objects.filter(action="acknowledge").count() == 1
    corrupt(user, "d.jpg")  # it happens again: new again
    assert "2 groups, 2 new" in client.get(reverse("dashboard:ops_failures")).content.decode()
    by_count = client.get(reverse("dashboard:ops_failures"), {"order": "count", "range": "1h"})
    text = by_count.content.decode()
    assert text.index("<strong>4</strong> failures") < text.index("<strong>1</strong> failure")


def test_a_new_kind_of_failure_fires_an_alert_until_it_is_acknowledged(user, staff):
    from jobs import alerts
    from jobs.models import AlertRule

    AlertRule.objects.exclude(name="New kind of failure").update(enabled=False)
    assert alerts.evaluate() == {"fired": 0, "resolved": 0}
    job = corrupt(user)
    assert alerts.evaluate() == {"fired": 1, "resolved": 0}
    rule = AlertRule.objects.get(name="New kind of failure")
    assert rule.summary == (
        "1 new kind of failure in the last 60 minutes, the newest: "
        "The image data is truncated or corrupt and could not be decoded."
    )
    services.acknowledge_failures(signature=job.failure_signature, actor=Actor(staff))
    assert alerts.evaluate() == {"fired": 0, "resolved": 1}


def test_failure_groups_come_a_page_at_a_time(client, user, staff, monkeypatch):
    from jobs import failure_groups

    monkeypatch.setattr(failure_groups, "FAILURE_GROUPS_PER_PAGE", 1)
    corrupt(user)
    failed_job(user, b"", "empty.jpg")
    client.force_login(staff)
    first = client.get(reverse("dashboard:ops_failures")).content.decode()
    assert "Page 1: 1 group" in first and 'rel="next" href="?range=24h&amp;page=2"' in first
    second = client.get(reverse("dashboard:ops_failures"), {"page": "2"}).content.decode()
    assert "Page 2: 1 group" in second and 'rel="next"' not in second
    assert (
        "No more groups."
        in client.get(reverse("dashboard:ops_failures"), {"page": "3"}).content.decode()
    )


def test_a_groups_trend_counts_its_failures_per_slot(user):
    from datetime import timedelta

    from django.utils import timezone

    from jobs import failure_groups

    job = corrupt(user)
    Job.objects.filter(pk=job.pk).update(finished_at=timezone.now() - timedelta(hours=5))
    corrupt(user)
    corrupt(user)
    (row,) = failure_groups.failure_groups(since=timezone.now() - timedelta(hours=24), slot="hour")
    assert len(row.trend) in (24, 25) and sum(row.trend) == 3
    assert row.trend[-1] == 2 and row.trend[-6] == 1
