"""The Procfile's services as `make run` starts them (each line through /bin/sh, like honcho)."""

import base64
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from django.conf import settings

from parroter.local_redis import free_port

PROCFILE = settings.BASE_DIR / "Procfile"


def procfile() -> dict[str, str]:
    lines = PROCFILE.read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def service_env(**overrides: str) -> dict[str, str]:
    """The environment honcho gives a service under `make run`: the virtualenv's bin first."""
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, **overrides}


def flower_status(port: int, credentials: str | None = None) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/workers")
    if credentials:
        token = base64.b64encode(credentials.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 (loopback)
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_procfile_runs_web_worker_beat_and_flower():
    services = procfile()
    assert set(services) == {"web", "worker", "beat", "flower"}
    assert " -E" in services["worker"]
    assert "django_celery_beat.schedulers:DatabaseScheduler" in services["beat"]


def test_flower_refuses_to_start_without_a_login():
    env = service_env()
    env.pop("FLOWER_BASIC_AUTH", None)
    finished = subprocess.run(
        ["/bin/sh", "-c", procfile()["flower"]], env=env, capture_output=True, timeout=30
    )
    assert finished.returncode != 0
    assert b"FLOWER_BASIC_AUTH" in finished.stderr


@pytest.mark.integration
def test_flower_asks_for_its_login(redis_url, tmp_path):
    port = free_port()
    env = service_env(REDIS_URL=redis_url, FLOWER_PORT=str(port))
    env["FLOWER_BASIC_AUTH"] = "operator:s3cret-flower"
    log = tmp_path / "flower.log"
    with log.open("wb") as sink:
        flower = subprocess.Popen(
            ["/bin/sh", "-c", procfile()["flower"]],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                anonymous = flower_status(port)
                break
            except OSError:
                assert flower.poll() is None, f"Flower exited:\n{log.read_text()[-2000:]}"
                assert time.monotonic() < deadline, "Flower did not start listening"
                time.sleep(0.2)
        assert anonymous == 401
        assert flower_status(port, "operator:wrong") == 401
        assert flower_status(port, "operator:s3cret-flower") == 200
    finally:
        if flower.poll() is None:
            os.killpg(flower.pid, signal.SIGTERM)
            try:
                flower.wait(timeout=10)
            except subprocess.TimeoutExpired:  # still waiting on its inspect threads
                os.killpg(flower.pid, signal.SIGKILL)
                flower.wait()
