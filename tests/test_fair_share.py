"""Fair share between people: a job is dispatched ahead of the backlog of anyone with more jobs
waiting or running than its owner (checked in the broker's lists and with a real worker), and
per-person quotas on waiting jobs and images a day refuse with a clear message (page: 429 with
the form, API: 429)."""

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from jobs import broker, services, tokens
from jobs.models import Job
from tests.conftest import (
    celery_process,
    image_bytes,
    stop_process,
    submit_image,
    wait_until_answering,
    worker_arguments,
)


def lists(queue: str = "celery") -> dict[int, int]:
    """Messages in each of the queue's priority lists that holds any."""
    client = broker.client()
    lengths = {
        step: client.llen(f"{queue}{broker.PRIORITY_SEPARATOR}{step}" if step else queue)
        for step in broker.priority_steps()
    }
    return {step: length for step, length in lengths.items() if length}


def jobs(owner, status: str, count: int) -> list[Job]:
    now = timezone.now()
    return [Job(owner=owner, status=status, queued_at=now) for _ in range(count)]


@pytest.mark.parametrize(
    ("others", "priority"),
    [(0, 0), (1, 1), (2, 2), (3, 2), (4, 3), (7, 3), (8, 4), (255, 8), (256, 9), (900, 9)],
)
def test_the_priority_doubles_its_steps_with_the_owners_other_jobs(
    db, user, other_user, others, priority
):
    Job.objects.bulk_create(
        jobs(user, "queued", others - others // 2)
        + jobs(user, "running", others // 2)
        + jobs(user, "succeeded", 3)  # finished: not counted
        + jobs(other_user, "queued", 5)  # someone else's
        + jobs(user, "queued", 1)  # the job being sent
    )
    with CaptureQueriesContext(connection) as queries:
        assert services.dispatch_priority(owner_id=user.pk) == priority
    # However long someone's backlog, the count stops where the top list starts.
    assert f"LIMIT {services.TOP_PRIORITY_FROM + 1}" in queries[0]["sql"]


@pytest.mark.django_db(transaction=True)
def test_each_job_enters_the_list_of_its_owners_backlog(own_broker, user, other_user, settings):
    for _ in range(5):
        submit_image(user, image_bytes((32, 24)))
    submit_image(other_user, image_bytes((32, 24)))
    # alice: 0, 1, 2, 2, 3 others ahead; bob's first job goes in the first list.
    assert lists() == {0: 2, 1: 1, 2: 2, 3: 1}

    settings.PARROTER_FAIR_DISPATCH = False
    submit_image(other_user, image_bytes((32, 24)))
    assert lists() == {0: 3, 1: 1, 2: 2, 3: 1}


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fair", [True, False])
def test_a_real_worker_runs_a_small_backlog_ahead_of_a_big_one(
    own_broker, user, other_user, settings, tmp_path, fair
):
    settings.PARROTER_FAIR_DISPATCH = fair
    big = [submit_image(user, image_bytes((32, 24))) for _ in range(8)]
    small = [submit_image(other_user, image_bytes((32, 24))) for _ in range(2)]
    hostname = "fair@sharetest"
    worker = celery_process(
        worker_arguments(hostname), log=tmp_path / "worker.log", REDIS_URL=own_broker.url
    )
    try:
        wait_until_answering(worker, hostname)
        deadline = time.monotonic() + 60
        while Job.objects.exclude(status=Job.Status.SUCCEEDED).exists():
            assert time.monotonic() < deadline, worker.output()[-3000:]
            time.sleep(0.1)
    finally:
        stop_process(worker)
    order = list(Job.objects.order_by("started_at").values_list("owner__username", flat=True))
    if fair:  # in turns: alice's and bob's first, then their second, then alice's backlog
        assert order == ["alice", "bob", "alice", "bob"] + ["alice"] * 6
    else:  # first in, first out
        assert order == ["alice"] * 8 + ["bob"] * 2
    assert len(big) + len(small) == Job.objects.count()


def photo(name: str = "photo.jpg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, image_bytes((40, 30)), "image/jpeg")


@pytest.mark.django_db
def test_a_person_with_too_many_jobs_waiting_is_refused_on_the_page_and_the_api(
    client, user, other_user, settings, media_root
):
    settings.PARROTER_MAX_QUEUED_PER_USER = 2
    Job.objects.bulk_create(jobs(user, "queued", 2) + jobs(user, "running", 1))
    folders = set(media_root.glob("jobs/*"))
    client.force_login(user)
    page = client.post(reverse("dashboard:upload"), {"images": photo(), "sizes": ["128"]})
    assert page.status_code == 429
    assert "You have 2 jobs waiting to run, the most one person may have at once." in (
        page.content.decode()
    )
    _, plain = tokens.create_api_token(user=user, name="script")
    api = client.post(
        "/api/jobs",
        {"images": photo(), "sizes": ["128"]},
        HTTP_AUTHORIZATION=f"Bearer {plain}",
    )
    assert api.status_code == 429
    assert "You have 2 jobs waiting to run" in api.json()["message"]
    assert Job.objects.count() == 3
    assert set(media_root.glob("jobs/*")) == folders  # nothing stored for the refused

    client.force_login(other_user)  # per person
    again = client.post(reverse("dashboard:upload"), {"images": photo(), "sizes": ["128"]})
    assert again.status_code == 302


@pytest.mark.django_db
def test_images_a_day_are_counted_and_a_job_past_them_is_refused(client, user, settings):
    settings.PARROTER_MAX_IMAGES_PER_DAY = 3
    client.force_login(user)
    upload = reverse("dashboard:upload")

    def send(count: int):
        images = [photo(f"p{number}.jpg") for number in range(count)]
        return client.post(upload, {"images": images, "sizes": ["128"]})

    assert send(2).status_code == 302
    refused = send(2)
    assert refused.status_code == 429
    assert "This job has 2 images and you can start 1 more today (at most 3 a day)" in (
        refused.content.decode()
    )
    assert "the count starts again at midnight UTC, in " in refused.content.decode()
    assert send(1).status_code == 302  # a refusal counted nothing
    refused = send(1)
    assert refused.status_code == 429
    assert "You have started 3 images today, the most per day" in refused.content.decode()
    assert Job.objects.count() == 2
