"""The task of bench/pipeline.py's floor phase, for a worker started as the Procfile's `worker`
line with `-A bench.celery_floor -Q bench-floor`: the project's Celery app, settings and worker
steps, and one task that only waits as long as a job's image work takes (using no CPU), sent,
delivered and stored as a task result like a job's, so its worker takes tasks at a job's pace."""

import time

from parroter.celery_app import app

QUEUE = "bench-floor"
TASK = "bench.wait"


@app.task(name=TASK, acks_late=True, reject_on_worker_lost=True)
def wait(job_id: str, seconds: float) -> dict:
    time.sleep(seconds)
    return {"job": job_id}
