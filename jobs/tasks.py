from datetime import timedelta

from billiard.exceptions import WorkerLostError
from celery import shared_task
from celery.exceptions import Ignore
from celery.signals import task_revoked, worker_ready
from celery.worker.request import Request
from django.conf import settings
from django.utils import timezone

from jobs import alerts, housekeeping, running, services, tempfiles


class JobRequest(Request):
    """How the worker's main process handles a job whose pool process died under it."""

    def on_failure(self, exc_info, send_failed_event=True, return_ok=False):
        exc = getattr(exc_info.exception, "exc", exc_info.exception)  # ExceptionWithTraceback
        if isinstance(exc, WorkerLostError) and self.args:
            # The message goes back to the queue (reject_on_worker_lost), after what the dead
            # process was writing is removed; the job must wait for it there, or the next
            # delivery would find it "running" and leave it.
            running.discard_partial_outputs(job_id=self.args[0], task_id=self.id)
            running.release_interrupted_job(job_id=self.args[0], task_id=self.id, message_kept=True)
        return super().on_failure(exc_info, send_failed_event, return_ok)


# acks_late + reject_on_worker_lost: a job whose worker process dies mid-run is delivered
# again (running.run_job gives up after the job's max_attempts). A temporary database or
# storage error is retried with exponential backoff; attempts bound the retries. JobFailed
# is an expected outcome (bad input), logged in one line without a traceback.
@shared_task(
    name="jobs.run_job",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    Request=JobRequest,
    throws=(running.JobFailed,),
    autoretry_for=running.TRANSIENT_ERRORS,
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=None,
)
def run_job(self, job_id: str) -> dict:
    outcome = running.run_job(job_id=job_id, task_id=self.request.id, worker=self.request.hostname)
    if outcome.get("cancelled"):
        # The task's result reads REVOKED, whether the revoke stopped it or came too late.
        self.backend.mark_as_revoked(self.request.id, "cancelled", request=self.request)
        raise Ignore()
    if outcome.get("skipped"):
        raise Ignore()  # not this delivery's job: leave the task's record to the one that ran it
    return outcome


# Housekeeping (beat sends these to the "housekeeping" queue, see settings.CELERY_TASK_ROUTES).
# Their outcome is kept in jobs.Chore, not as task results, which would pile up every minute.
@shared_task(name="jobs.dispatch_waiting_jobs", ignore_result=True)
def dispatch_waiting_jobs() -> dict | None:
    return housekeeping.run_chore(
        "dispatch_waiting_jobs",
        lambda: {
            "sent": services.dispatch_waiting_jobs(
                unpublished_for=timedelta(seconds=settings.PARROTER_REDISPATCH_AFTER)
            )
        },
    )


@shared_task(name="jobs.reap_stuck_jobs", ignore_result=True)
def reap_stuck_jobs() -> dict | None:
    # A job can run no longer than the hard time limit; past it (plus slack) its worker is gone.
    limit = timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)
    return housekeeping.run_chore(
        "reap_stuck_jobs", lambda: services.reap_stuck_jobs(running_longer_than=limit)
    )


@shared_task(name="jobs.purge_expired_jobs", ignore_result=True)
def purge_expired_jobs() -> dict | None:
    now = timezone.now()

    def purge() -> dict:
        cutoff = now - timedelta(days=settings.PARROTER_RETENTION_DAYS)
        audit_cutoff = now - timedelta(days=settings.PARROTER_AUDIT_RETENTION_DAYS)
        return {
            **housekeeping.purge_expired_jobs(finished_before=cutoff),
            "audit_entries": housekeeping.purge_expired_audit(before=audit_cutoff),
        }

    return housekeeping.run_chore("purge_expired_jobs", purge)


@shared_task(name="jobs.sweep_orphan_files", ignore_result=True)
def sweep_orphan_files() -> dict | None:
    def sweep() -> dict:
        # This host's temporary files too; every other host sweeps its own (jobs.tempfiles).
        return {
            **housekeeping.sweep_orphan_files(older_than=housekeeping.STALE_AFTER),
            "temporary_files": tempfiles.sweep_temporary_files(older_than=tempfiles.STALE_AFTER),
        }

    return housekeeping.run_chore("sweep_orphan_files", sweep)


@shared_task(name="jobs.compact_rollups", ignore_result=True)
def compact_rollups() -> dict | None:
    return housekeeping.run_chore(
        "compact_rollups",
        lambda: housekeeping.compact_rollups(older_than=housekeeping.COMPACT_AFTER),
    )


@shared_task(name="jobs.evaluate_alerts", ignore_result=True)
def evaluate_alerts() -> dict | None:
    return housekeeping.run_chore("evaluate_alerts", alerts.evaluate)


# One notice to one receiver, on the housekeeping queue. A receiver that fails is tried again
# with exponential backoff (about 1, 2, 4... s, at most 5 min apart), then given up: the
# delivery says so in the alert history. The evaluation that made it never waits for it.
@shared_task(
    name="jobs.deliver_alert",
    bind=True,
    ignore_result=True,
    autoretry_for=(alerts.DeliveryError,),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=settings.PARROTER_ALERT_DELIVERY_ATTEMPTS - 1,
)
def deliver_alert(self, delivery_id: int) -> None:
    try:
        alerts.deliver(delivery_id=delivery_id)
    except alerts.DeliveryError:
        if self.request.retries >= self.max_retries:
            alerts.give_up(delivery_id=delivery_id)
            return
        raise


@worker_ready.connect
def recover_jobs_of_previous_life(sender=None, **kwargs) -> None:
    services.recover_jobs_of_lost_worker(worker=sender.hostname, on_its_host=True)


@task_revoked.connect
def remove_partial_outputs(sender=None, request=None, terminated=False, **kwargs) -> None:
    # In the worker's main process, on the job's host, once the pool process running a
    # cancelled job was terminated: nothing it had written may stay (see services._revoke).
    if terminated and getattr(sender, "name", "") == "jobs.run_job" and request.args:
        running.discard_partial_outputs(job_id=request.args[0], task_id=request.id)
