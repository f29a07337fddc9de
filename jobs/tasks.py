from celery import shared_task

from jobs import services


# acks_late + reject_on_worker_lost: a job whose worker dies mid-run is delivered again
# (services.run_job is idempotent and gives up after PARROTER_MAX_ATTEMPTS).
@shared_task(name="jobs.run_job", bind=True, acks_late=True, reject_on_worker_lost=True)
def run_job(self, job_id: str) -> dict:
    return services.run_job(job_id=job_id, task_id=self.request.id)
