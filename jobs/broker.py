"""Plain Redis commands to the broker: its run id, a ping, the length of a queue; and the
messages workers have taken but not acked (kombu's "unacked" hash and its index).

A client of their own (kombu's channels keep protocol state a stray command would upset), with
short connect and read timeouts: a broker that is down, hung (accepts, never answers) or slow
costs a caller a second at most, never a request's whole budget. A probe's ping waits half of
that; the run id read before a publish gets a whole second, so a loaded machine's stall
does not leave a job unsent until the dispatcher's next round.
"""

import json
import time
from functools import cache

import redis

from parroter.celery_app import app

CONNECT_TIMEOUT = 0.5
READ_TIMEOUT = 1.0
PROBE_READ_TIMEOUT = 0.5
# A publish records the run id this process last heard if it is younger than this (seconds),
# instead of asking Redis before every publish (~0.7 ms a job). A remembered id is never newer
# than the broker's: after a restart within this time a publish records the old id, and the
# dispatcher, comparing against a run id it asks for itself, sends that job again (once too
# often, never lost). Short, so that happens only to what is published in the second after.
RUN_ID_MAX_AGE = 1.0
_run_ids: dict[str, tuple[str, float]] = {}  # broker URL -> (run id, when it was asked)
# kombu keeps a queue as one list per priority step, named queue + SEP + step for steps above 0.
KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)
PRIORITY_SEPARATOR = "\x06\x16"


def is_redis() -> bool:
    with app.connection_for_write() as connection:
        return connection.transport_cls in ("redis", "rediss")


def client(*, read_timeout: float = READ_TIMEOUT) -> redis.Redis:
    with app.connection_for_write() as connection:
        url = connection.as_uri(include_password=True)
    return _client(url, read_timeout)


@cache
def _client(url: str, read_timeout: float) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=read_timeout
    )


def run_id() -> str:
    """The broker's run id: Redis makes a new one at every start ("" for other brokers)."""
    asked_at = time.monotonic()  # before asking: the answer is at least this fresh
    answer = client().info("server")["run_id"] if is_redis() else ""
    _run_ids[app.conf.broker_url] = (answer, asked_at)
    return answer


def recent_run_id() -> str:
    """run_id() as this process last heard it, if within RUN_ID_MAX_AGE: what a publish records
    (the dispatcher, which compares against it, asks run_id() itself)."""
    heard = _run_ids.get(app.conf.broker_url)
    if heard is not None and time.monotonic() - heard[1] < RUN_ID_MAX_AGE:
        return heard[0]
    return run_id()


def ping() -> None:
    """Raises unless the broker answers within half a second (a probe's, a cancel's check)."""
    client(read_timeout=PROBE_READ_TIMEOUT).ping()


def priority_steps() -> list[int]:
    """The priority lists a queue has, highest priority (0) first."""
    options = app.conf.broker_transport_options or {}
    return sorted(options.get("priority_steps", KOMBU_PRIORITY_STEPS))


def queue_lengths(names: list[str]) -> dict[str, int]:
    """Messages waiting in each queue, every priority list counted, in one round trip."""
    steps = priority_steps()
    pipeline = client().pipeline(transaction=False)
    for name in names:
        for step in steps:
            pipeline.llen(f"{name}{PRIORITY_SEPARATOR}{step}" if step else name)
    lengths = pipeline.execute()
    per_queue = len(steps)
    return {
        name: sum(lengths[index * per_queue : (index + 1) * per_queue])
        for index, name in enumerate(names)
    }


# kombu's Redis transport keeps each message a worker has taken, until it is acked, in a hash
# beside an index of when it was taken; it puts back only those taken longer ago than the
# visibility timeout (an hour: longer than any job may run). Workers renew the time of what
# they hold (parroter.celery_app.KeepHeldMessagesFresh), so a message whose time is old is held
# by nobody: the monitor puts it back within seconds (restore_abandoned_messages).


def renew_held_messages(channel, *, now: float | None = None) -> int:
    """Mark the messages this worker's channel holds as held now; returns how many. XX: one
    acked meanwhile is not brought back into the index."""
    held = [tag for tag in channel.qos._delivered if tag not in channel.qos._dirty]
    if not held:
        return 0
    stamp = time.time() if now is None else now
    # A connection from the pool, as kombu's own acks use: the channel's `client` is the one
    # its event loop has a BRPOP outstanding on, and a command sent there corrupts that.
    with channel.conn_or_acquire() as client:
        client.zadd(channel.unacked_index_key, dict.fromkeys(held, stamp), xx=True)
    return len(held)


def restore_abandoned_messages(*, queues: set[str], held_for: float, limit: int = 100) -> int:
    """Put back at the head of their queue the messages of `queues` that no worker has renewed
    for `held_for` seconds (their worker died or was cut off); returns how many. Only job
    queues: a job runs once however often its message comes (jobs.running._claim), where a
    chore or an alert notice would be done twice."""
    if not is_redis():
        return 0
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        with channel.conn_or_acquire() as client:
            return _restore_unrenewed(
                channel, client, queues=queues, held_for=held_for, limit=limit
            )


def _restore_unrenewed(channel, client, *, queues: set[str], held_for: float, limit: int) -> int:
    cutoff = time.time() - held_for
    restored = 0
    for tag in client.zrangebyscore(channel.unacked_index_key, 0, cutoff, start=0, num=limit):
        stored = client.hget(channel.unacked_key, tag)
        if stored is None:  # acked meanwhile
            continue
        _message, _exchange, routing_key = json.loads(stored)
        if routing_key in queues:
            channel.qos.restore_by_tag(tag, client=client)  # next to be taken
            restored += 1
    return restored
