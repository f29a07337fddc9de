import os
import resource

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parroter.settings")

app = Celery("parroter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def limit_job_memory(**_kwargs: object) -> None:
    """Cap each pool process's address space at what it maps now plus PARROTER_JOB_MEMORY.

    A job that needs more gets a MemoryError, which the thumbnail kind reports as a failed job
    with a clear message; the pool process, and the worker, carry on.
    """
    from django.conf import settings

    extra = settings.PARROTER_JOB_MEMORY
    if not extra:
        return
    with open("/proc/self/statm") as statm:  # first field: the address space, in pages
        mapped = int(statm.read().split()[0]) * resource.getpagesize()
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = mapped + extra
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


@task_prerun.connect
@task_postrun.connect
def reuse_database_connections(**_kwargs: object) -> None:
    """Keep a task's database connection for the next one, as Django does between requests.

    Celery's Django fixup would close it around every task (a new PostgreSQL backend, or a
    new SQLite connection with its PRAGMAs, per job); CELERY_DB_REUSE_MAX turns that off, and
    here Django closes it only when it is too old (CONN_MAX_AGE) or broke (CONN_HEALTH_CHECKS).
    """
    from django.db import close_old_connections

    close_old_connections()
