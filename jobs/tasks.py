from datetime import timedelta

from celery import shared_task
from celery.exceptions import Ignore
from celery.signals import task_revoked
from django.conf import settings

from jobs import services


# acks_late + reject_on_worker_lost: a job whose worker dies mid-run is delivered again
# (services.run_job is idempotent and gives up after PARROTER_MAX_ATTEMPTS).
@shared_task(name="jobs.run_job", bind=True, acks_late=True, reject_on_worker_lost=True)
def run_job(self, job_id: str) -> dict:
    outcome = services.run_job(job_id=job_id, task_id=self.request.id, worker=self.request.hostname)
    if outcome.get("cancelled"):
        # The task's result reads REVOKED, whether the revoke stopped it or came too late.
        self.backend.mark_as_revoked(self.request.id, "cancelled", request=self.request)
        raise Ignore()
    return outcome


@shared_task(name="jobs.dispatch_waiting_jobs")
def dispatch_waiting_jobs() -> int:
    return services.dispatch_waiting_jobs(
        waiting_longer_than=timedelta(seconds=settings.PARROTER_REDISPATCH_AFTER)
    )


@shared_task(name="jobs.reap_stuck_jobs")
def reap_stuck_jobs() -> int:
    # A job can run no longer than the hard time limit; past it (plus slack) its worker is gone.
    return services.reap_stuck_jobs(
        running_longer_than=timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)
    )


@task_revoked.connect
def remove_partial_outputs(sender=None, request=None, terminated=False, **kwargs) -> None:
    # In the worker's main process, on the job's host, once the pool process running a
    # cancelled job was terminated: nothing it had written may stay (see services._revoke).
    if terminated and getattr(sender, "name", "") == "jobs.run_job" and request.args:
        services.discard_partial_outputs(job_id=request.args[0], task_id=request.id)
