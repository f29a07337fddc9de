import logging
import os
import resource

from celery import Celery, bootsteps
from celery.app.events import Events
from celery.events.dispatcher import EventDispatcher
from celery.signals import celeryd_after_setup, task_postrun, task_prerun, worker_process_init
from kombu.common import ignore_errors

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parroter.settings")


class WholeBatchEventDispatcher(EventDispatcher):
    """Celery's event dispatcher, whose flush hands each batch of buffered events a list of its
    own. Celery's keeps a batch whose publish failed (the broker was away) to send again once
    it is back, then empties that same list: the batch went out again empty, and Flower never
    learnt how its tasks ended (BatchTaskEvents below holds a batch for a quarter second)."""

    def flush(self, errors: bool = True, groups: bool = True) -> None:
        super().flush(errors=errors, groups=False)
        if not groups:
            return
        with self.mutex:
            for group, events in list(self._group_buffer.items()):
                if events:
                    self._group_buffer[group] = []
                    self._publish(events, self.producer, f"{group}.multi")


class ParroterEvents(Events):
    dispatcher_cls = WholeBatchEventDispatcher


app = Celery("parroter", events=ParroterEvents)
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


class RepeatingStep(bootsteps.StartStopStep):
    """A step of the worker's consumer that calls tick() on the consumer's timer, in the
    worker's main process, every interval() seconds (None: not on this worker), and once at
    the start too when `at_start`. The consumer restarts its steps after a broker outage."""

    requires = {"celery.worker.consumer.tasks:Tasks"}
    at_start = False

    def __init__(self, parent, **kwargs) -> None:
        super().__init__(parent, **kwargs)
        self.timer = None

    def interval(self, consumer) -> float | None:
        raise NotImplementedError

    def tick(self, consumer) -> None:
        raise NotImplementedError

    def start(self, consumer) -> None:
        every = self.interval(consumer)
        if every is None:
            return
        if self.at_start:
            self.tick(consumer)
        self.timer = consumer.timer.call_repeatedly(every, self.tick, (consumer,), priority=10)

    def stop(self, consumer) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class FollowQueuePauses(RepeatingStep):
    """Every PARROTER_QUEUE_PAUSE_CHECK_SECONDS, stop consuming this worker's queues that
    operators paused and consume again those they resumed: read from the database, so a pause
    holds for workers that restart, and no broadcast can be missed. Messages a worker has
    already taken (its prefetch) still run."""

    def interval(self, consumer) -> float:
        from django.conf import settings

        return settings.PARROTER_QUEUE_PAUSE_CHECK_SECONDS

    def tick(self, consumer) -> None:
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


class KeepHeldMessagesFresh(RepeatingStep):
    """Every third of PARROTER_WORKER_LOST_AFTER, renew in the broker the time of the messages
    this worker has taken and not yet acked (running or waiting for a free process), so the
    monitor can tell them from those of a worker that died holding some (jobs.broker)."""

    def interval(self, consumer) -> float | None:
        from django.conf import settings

        if consumer.connection.transport.driver_type != "redis":
            return None
        return settings.PARROTER_WORKER_LOST_AFTER / 3

    def tick(self, consumer) -> None:
        import redis

        from jobs import broker

        try:
            broker.renew_held_messages(consumer.task_consumer.channel)
        except redis.RedisError as error:  # the broker is away: the consumer reconnects itself
            logger.warning("could not renew the messages this worker holds: %s", error)


class SweepTemporaryFiles(RepeatingStep):
    """Sweep this host's stale temporary files when the worker starts (and when it reconnects
    to the broker), then every PARROTER_TEMP_SWEEP_SECONDS: hosts share no disk, so the
    housekeeping chore clears only its own host's (jobs.tempfiles)."""

    at_start = True

    def interval(self, consumer) -> float:
        from django.conf import settings

        return settings.PARROTER_TEMP_SWEEP_SECONDS

    def tick(self, consumer) -> None:
        from jobs import tempfiles

        removed = tempfiles.sweep_temporary_files(older_than=tempfiles.STALE_AFTER)
        logger.info("removed %d stale temporary files of this host", removed)


# A batch that reaches this many events is sent at once (~300 bytes each).
TASK_EVENTS_BATCH_LIMIT = 200


class BatchTaskEvents(bootsteps.StartStopStep):
    """Send the worker's task events (for Flower) in one broker message every
    PARROTER_TASK_EVENTS_BATCH_SECONDS, not one per turn of its event loop, which at full load
    carried one or two: each message costs the worker's main process, Redis and Flower more
    than its events do. An event keeps the time it happened; Flower learns of it later. What a
    batch holds is sent when the consumer stops (the broker was lost: it goes once it is back)
    and when a warm shutdown ends (a cold one loses it)."""

    requires = {"celery.worker.consumer.events:Events"}

    def __init__(self, parent, **kwargs) -> None:
        super().__init__(parent, **kwargs)
        self.flush_timer = None

    def start(self, consumer) -> None:
        from django.conf import settings

        dispatcher = consumer.event_dispatcher
        if dispatcher is None or consumer.hub is None:  # no event loop: Celery sends each event
            return
        dispatcher.buffer_limit = TASK_EVENTS_BATCH_LIMIT

        def flush() -> None:
            self.flush_timer = None
            consumer._flush_events()

        def flush_soon() -> None:
            if self.flush_timer is None:
                self.flush_timer = consumer.timer.call_after(
                    settings.PARROTER_TASK_EVENTS_BATCH_SECONDS, flush
                )

        dispatcher.on_send_buffered = flush_soon

    def stop(self, consumer) -> None:
        if self.flush_timer is not None:
            self.flush_timer.cancel()
            self.flush_timer = None
        if consumer.event_dispatcher is not None:  # what the batch holds goes before the close
            ignore_errors(consumer, consumer._flush_events)

    def shutdown(self, consumer) -> None:
        # The events of tasks that finished while a warm shutdown drained the pool, after stop.
        self.stop(consumer)


for step in (FollowQueuePauses, KeepHeldMessagesFresh, SweepTemporaryFiles, BatchTaskEvents):
    app.steps["consumer"].add(step)


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
