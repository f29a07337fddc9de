"""Per-person rates, counted atomically in the shared cache by every web process together: the
API's request rate, and the submit rate the upload page and the API share."""

import logging
import time
from dataclasses import dataclass
from functools import cache

import redis
from django.conf import settings
from redis.exceptions import RedisError

from parroter.cache import FailFastConnection

logger = logging.getLogger(__name__)

PERIODS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}
PERIOD_NAMES = {1: "a second", 60: "a minute", 3600: "an hour", 86400: "a day"}
SUBMIT = "submit"  # the scope of PARROTER_SUBMIT_RATE: jobs started, on the page or the API
TIMEOUT = 0.25  # seconds to connect to the cache's Redis, and for its answer


@dataclass(frozen=True)
class Rate:
    requests: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> "Rate":
        """'600/m': 600 a minute (s, m, h or d; sec, min, hour or day)."""
        count, _, period = text.partition("/")
        if not count.strip().isdigit() or period.strip() not in PERIODS:
            raise ValueError(f"{text!r} is not a rate: write it as 60/m (s, m, h or d).")
        return cls(int(count), PERIODS[period.strip()])

    @property
    def per(self) -> str:
        return PERIOD_NAMES[self.seconds]


def take(*, scope: str, user_id: object, rate: Rate) -> float | None:
    """Count one request of a person against `rate`: None while within it, else the seconds
    until its window ends.

    Fixed windows counted with an atomic increment, in one round trip (ninja's throttle read the
    count, then wrote it back: concurrent requests each read the same count, and 16 threads got
    twice the rate through). A burst of up to twice the rate can straddle two windows. Fails
    open when the cache's Redis fails or takes longer than TIMEOUT: the rate guards capacity,
    not access, and refusing would turn a Redis outage into an outage of what the database alone
    can answer (an upload with the broker hung must still be answered within a probe's 1.5 s)."""
    now = time.time()
    window = int(now // rate.seconds)
    key = f"parroter:rate:{scope}:{user_id}:{window}"
    try:
        pipeline = _client(settings.CACHES["default"]["LOCATION"]).pipeline(transaction=True)
        pipeline.set(key, 0, ex=rate.seconds + 1, nx=True)
        pipeline.incr(key)
        _, count = pipeline.execute()
    except RedisError as error:
        logger.warning("%s rate not counted: the cache failed (%s)", scope, error)
        return None
    return None if count <= rate.requests else (window + 1) * rate.seconds - now


@cache
def _client(url: str) -> redis.Redis:
    # The cache's fail-fast connections: after one failure, no rate is asked for a few seconds.
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=TIMEOUT,
        socket_timeout=TIMEOUT,
        connection_class=FailFastConnection,
    )
