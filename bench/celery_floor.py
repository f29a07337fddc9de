"""The task of bench/pipeline.py's floor phase, for a worker started as the Procfile's `worker`
line with `-A bench.celery_floor -Q bench-floor`: the project's Celery app, settings and worker
steps, and one task that does nothing, delivered and stored as a task result like a job."""

from parroter.celery_app import app

QUEUE = "bench-floor"
TASK = "bench.nothing"


@app.task(name=TASK, acks_late=True, reject_on_worker_lost=True)
def nothing(job_id: str) -> dict:
    return {"job": job_id}
