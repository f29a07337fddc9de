"""Per-person rates, counted atomically in the shared cache by every web process together: the
API's request rate, the submit rate the upload page and the API share, and images a day."""

import logging
import time
from dataclasses import dataclass
from functools import cache

import redis
from django.conf import settings
from redis.commands.core import Script
from redis.exceptions import RedisError

from parroter.cache import FailFastConnection

logger = logging.getLogger(__name__)

PERIODS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}
PERIOD_NAMES = {1: "a second", 60: "a minute", 3600: "an hour", 86400: "a day"}
SUBMIT = "submit"  # the scope of PARROTER_SUBMIT_RATE: jobs started, on the page or the API
IMAGES = "images"  # the scope of PARROTER_MAX_IMAGES_PER_DAY: images in the jobs started
DAY = 86400
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


@dataclass(frozen=True)
class Over:
    """A refusal: how much of the window's allowance is used, and the seconds until it ends."""

    used: int
    wait: float


# Adds `amount` to a window's count unless that would pass the limit: -1 when added, else the
# count as it stands. One script, so concurrent callers cannot each read the same count and all
# pass (ninja's throttle did: 16 threads got twice the rate through).
_TAKE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return used end
redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return -1
"""


def take(*, scope: str, user_id: object, rate: Rate, amount: int = 1) -> Over | None:
    """Count `amount` (requests, images) of a person against `rate`: None while that stays
    within it, else how far they are and when the window ends (a refusal counts nothing).

    Fixed windows (a day's starts at midnight UTC); a burst of up to twice the rate can
    straddle two windows. Fails open when the cache's Redis fails or takes longer than TIMEOUT:
    the rate guards capacity, not access, and refusing would turn a Redis outage into an outage
    of what the database alone can answer (an upload with the broker hung must still be
    answered within a probe's 1.5 s)."""
    now = time.time()
    window = int(now // rate.seconds)
    key = f"parroter:rate:{scope}:{user_id}:{window}"
    try:
        script = _take_script(settings.CACHES["default"]["LOCATION"])
        used = script(keys=[key], args=[amount, rate.requests, rate.seconds + 1])
    except RedisError as error:
        logger.warning("%s rate not counted: the cache failed (%s)", scope, error)
        return None
    return None if used < 0 else Over(used=used, wait=(window + 1) * rate.seconds - now)


@cache
def _take_script(url: str) -> Script:
    # The cache's fail-fast connections: after one failure, no rate is asked for a few seconds.
    client = redis.Redis.from_url(
        url,
        socket_connect_timeout=TIMEOUT,
        socket_timeout=TIMEOUT,
        connection_class=FailFastConnection,
    )
    return client.register_script(_TAKE)
