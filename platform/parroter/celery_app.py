import logging
import os
import resource

from celery import Celery, bootsteps
from celery.signals import celeryd_after_setup, task_postrun, task_prerun, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parroter.settings")

app = Celery("parroter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
logger = logging.getLogger(__name__)

# The queues this worker was started to consume (-Q), whether paused or not.
OWN_QUEUES: set[str] = set()


@celeryd_after_setup.connect
def leave_paused_queues(instance, **_kwargs: object) -> None:
    """A worker that starts while operators have paused one of its queues does not consume it
    (FollowQueuePauses starts once it is resumed): not even the first messages, which it would
    take before any later check."""
    from django.db import DatabaseError

    from jobs import selectors

    queues = instance.app.amqp.queues
    OWN_QUEUES.update(queues.consume_from)
    try:
        paused = [name for name in selectors.queue_pauses() if name in OWN_QUEUES]
    except DatabaseError as error:  # it consumes them; the first check stops it if need be
        logger.warning("could not read which queues are paused: %s", error)
        return
    if paused:
        queues.deselect(paused)
        logger.info("not consuming %s: paused by the operators", ", ".join(paused))


class FollowQueuePauses(bootsteps.StartStopStep):
    """Every PARROTER_QUEUE_PAUSE_CHECK_SECONDS, stop consuming this worker's queues that
    operators paused and consume again those they resumed: read from the database, so a pause
    holds for workers that restart, and no broadcast can be missed. Messages a worker has
    already taken (its prefetch) still run."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs) -> None:
        super().__init__(parent, **kwargs)
        self.timer = None

    def start(self, consumer) -> None:
        from django.conf import settings

        every = settings.PARROTER_QUEUE_PAUSE_CHECK_SECONDS
        self.timer = consumer.timer.call_repeatedly(every, self.follow, (consumer,), priority=10)

    def stop(self, consumer) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def follow(self, consumer) -> None:
        from django.db import DatabaseError, close_old_connections

        from jobs import selectors

        try:
            close_old_connections()
            paused = set(selectors.queue_pauses())
        except DatabaseError as error:  # as it was until the database answers
            logger.warning("could not read which queues are paused: %s", error)
            return
        consuming = {queue.name for queue in consumer.task_consumer.queues}
        for name in sorted(OWN_QUEUES & paused & consuming):
            logger.info("pausing %s: paused by the operators", name)
            consumer.cancel_task_queue(name)
        for name in sorted(OWN_QUEUES - paused - consuming):
            logger.info("resuming %s", name)
            consumer.add_task_queue(name)


app.steps["consumer"].add(FollowQueuePauses)


class SweepTemporaryFiles(bootsteps.StartStopStep):
    """Sweep this host's stale temporary files when the worker starts (and when it reconnects
    to the broker), then every PARROTER_TEMP_SWEEP_SECONDS: hosts share no disk, so the
    housekeeping chore clears only its own host's (jobs.tempfiles). On the consumer's timer, in
    the worker's main process."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs) -> None:
        super().__init__(parent, **kwargs)
        self.timer = None

    def start(self, consumer) -> None:
        from django.conf import settings

        self.sweep()
        every = settings.PARROTER_TEMP_SWEEP_SECONDS
        self.timer = consumer.timer.call_repeatedly(every, self.sweep, priority=10)

    def stop(self, consumer) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def sweep(self) -> None:
        from jobs import tempfiles

        removed = tempfiles.sweep_temporary_files(older_than=tempfiles.STALE_AFTER)
        logger.info("removed %d stale temporary files of this host", removed)


app.steps["consumer"].add(SweepTemporaryFiles)


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
