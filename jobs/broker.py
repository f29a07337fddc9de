"""Plain Redis commands to the broker: its run id, a ping, the length of a queue.

A client of their own (kombu's channels keep protocol state a stray command would upset), with
short connect and read timeouts: a broker that is down, hung (accepts, never answers) or slow
costs a caller a second at most, never a request's whole budget. A probe's ping waits half of
that; the run id read before every publish gets a whole second, so a loaded machine's stall
does not leave a job unsent until the dispatcher's next round.
"""

from functools import cache

import redis

from parroter.celery_app import app

CONNECT_TIMEOUT = 0.5
READ_TIMEOUT = 1.0
PROBE_READ_TIMEOUT = 0.5
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
    if not is_redis():
        return ""
    return client().info("server")["run_id"]


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
