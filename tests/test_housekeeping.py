"""Beat's housekeeping: jobs whose message was lost, and jobs whose worker died, are not stuck."""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from jobs import services
from jobs.models import Job
from tests.conftest import image_bytes, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def stored_job(owner, **fields) -> Job:
    """A job written straight to the database, as if its message had been lost."""
    return Job.objects.create(
        owner=owner,
        source=SimpleUploadedFile("source.jpg", image_bytes((400, 300))),
        source_name="lost.jpg",
        params={"sizes": [[128, 128]]},
        task_id="lost-message",
        **fields,
    )


def age(job: Job, field: str) -> None:
    Job.objects.filter(pk=job.pk).update(**{field: timezone.now() - timedelta(hours=1)})


def test_a_job_whose_message_never_reached_the_broker_is_sent_again(user, celery_worker):
    waiting = stored_job(user)
    fresh = stored_job(user)
    age(waiting, "updated_at")

    assert services.dispatch_waiting_jobs(waiting_longer_than=timedelta(minutes=5)) == 1
    waiting = wait_for_job(waiting)
    assert waiting.status == Job.Status.SUCCEEDED
    assert waiting.task_id != "lost-message"
    fresh.refresh_from_db()
    assert (fresh.status, fresh.task_id) == (Job.Status.QUEUED, "lost-message")


def test_a_job_whose_worker_died_runs_again_until_it_is_given_up(user, celery_worker):
    interrupted = stored_job(user, status=Job.Status.RUNNING, attempts=1)
    hopeless = stored_job(user, status=Job.Status.RUNNING, attempts=3)
    age(interrupted, "started_at")
    age(hopeless, "started_at")

    assert services.reap_stuck_jobs(running_longer_than=timedelta(minutes=10)) == 2
    interrupted = wait_for_job(interrupted)
    assert (interrupted.status, interrupted.attempts) == (Job.Status.SUCCEEDED, 2)
    hopeless.refresh_from_db()
    assert hopeless.status == Job.Status.FAILED
    assert "interrupted 3 times" in hopeless.error
