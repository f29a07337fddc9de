"""The shared cache's Redis connections: after a timeout or a refused connection, every command
of this process fails at once for PAUSE seconds instead of each waiting out its own timeout.

With the cache's Redis hung (it accepts, never answers), a request that touches the cache three
times would otherwise wait three read timeouts; callers already treat a cache error as "not
cached", so failing fast changes only how long they wait.
"""

import time

from redis import connection as redis_connection
from redis.exceptions import ConnectionError, TimeoutError

PAUSE = 5.0  # seconds


class FailFastConnection(redis_connection.Connection):
    _down_until = 0.0  # per process: shared by every connection of every pool

    def connect(self) -> None:
        self._refuse_while_down()
        try:
            super().connect()
        except (ConnectionError, TimeoutError):
            self._went_down()
            raise

    def send_packed_command(self, command, check_health: bool = True) -> None:
        self._refuse_while_down()
        super().send_packed_command(command, check_health)

    def read_response(self, *args, **kwargs):
        try:
            return super().read_response(*args, **kwargs)
        except (ConnectionError, TimeoutError):
            self._went_down()
            raise

    def _refuse_while_down(self) -> None:
        if time.monotonic() < FailFastConnection._down_until:
            raise ConnectionError("the cache's Redis failed a moment ago; not asked again yet")

    def _went_down(self) -> None:
        FailFastConnection._down_until = time.monotonic() + PAUSE
        self.disconnect()  # a late answer must not be read as the next command's reply
