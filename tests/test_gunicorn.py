"""gunicorn as the Procfile runs it (platform/parroter/gunicorn_conf.py), for real: the proxies it
believes are the app's, and each instance has a control socket of its own."""

import http.client
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gunicorn.ctl.client import ControlClient

from jobs import tokens
from parroter.local_redis import free_port
from tests.conftest import (
    Service,
    app_env,
    checkout_path,
    procfile,
    service_env,
    start_service,
    stop_process,
    wait_until_listening,
)


@pytest.fixture
def start_web(tmp_path):
    """Starts the Procfile's web in production mode with its own var/ under `folder`; returns the
    process and its port. Stopped at the end of the test."""
    started: list[Service] = []

    def start(folder: Path, **env: str) -> tuple[Service, int]:
        folder.mkdir(exist_ok=True)
        port = free_port()
        defaults = {
            "PYTHONPATH": checkout_path(),
            "PARROTER_VAR_DIR": str(folder / "var"),
            "WEB_BIND": f"127.0.0.1:{port}",
            "WEB_WORKERS": "1",
            "HTTPS": "true",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1",
        }
        environment = service_env(**{**defaults, **env})
        # gunicorn's own default for its control socket would be there instead of ~/.gunicorn.
        environment.pop("XDG_RUNTIME_DIR", None)
        web = start_service(
            ["/bin/sh", "-c", procfile()["web"]], log=folder / "web.log", env=environment
        )
        started.append(web)
        wait_until_listening(web, port)
        return web, port

    yield start
    for web in started:
        stop_process(web)


def get(port: int, path: str, **headers: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_a_claim_of_https_is_believed_only_from_the_apps_trusted_proxies(start_web, tmp_path):
    # nginx elsewhere: this client on loopback says HTTPS and is sent there, as around nginx.
    _, port = start_web(tmp_path / "elsewhere", PARROTER_TRUSTED_PROXIES="192.0.2.10")
    response = get(port, "/metrics", **{"X-Forwarded-Proto": "https"})
    assert response.status == 301
    assert response.headers["Location"] == f"https://127.0.0.1:{port}/metrics"

    # nginx on this host: the same request is HTTPS (the metrics' own answer, with HSTS).
    _, port = start_web(tmp_path / "here", PARROTER_TRUSTED_PROXIES="127.0.0.1")
    response = get(port, "/metrics", **{"X-Forwarded-Proto": "https"})
    assert response.status == 401
    assert "Strict-Transport-Security" in response.headers


def test_each_instance_has_a_control_socket_of_its_own(start_web, tmp_path):
    home = tmp_path / "home"  # one user's, as two checkouts (or make run and a test) share it
    home.mkdir()
    instances = [start_web(tmp_path / name, HOME=str(home))[0] for name in ("first", "second")]
    for name, web in zip(("first", "second"), instances, strict=True):
        path = tmp_path / name / "var" / "gunicorn.ctl"
        deadline = time.monotonic() + 15
        while not path.exists():  # the arbiter opens it once its workers are started
            assert time.monotonic() < deadline, f"no {path}:\n{web.output()[-2000:]}"
            time.sleep(0.1)
        with ControlClient(str(path), timeout=10) as client:
            arbiter = client.send_command("show stats")["pid"]
        assert os.getpgid(arbiter) == web.process.pid  # this instance's master, not the other's
    assert not (home / ".gunicorn").exists()


def test_web_sweeps_its_hosts_stale_temporary_files_when_it_starts(start_web, tmp_path):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    stale, fresh = temporary / "abc.upload.jpg", temporary / "def.upload.jpg"
    for path in (stale, fresh):
        path.write_bytes(b"an upload cut off")
    day_ago = time.time() - 2 * 86400
    os.utime(stale, (day_ago, day_ago))

    web, _ = start_web(tmp_path / "web", FILE_UPLOAD_TEMP_DIR=str(temporary))
    assert not stale.exists() and fresh.exists()
    assert "Removed 1 stale temporary files of this host" in web.output()


@pytest.mark.django_db(transaction=True)
def test_four_workers_under_sixteen_threads_let_exactly_the_rate_through(
    start_web, tmp_path, user, redis_url
):
    # Counted with a read, then a write, 16 threads on 4 workers got 39 and 44 of 80 through.
    _, plain = tokens.create_api_token(user=user, name="load")
    _, port = start_web(
        tmp_path / "rate",
        **app_env(),
        REDIS_URL=redis_url,
        WEB_WORKERS="4",
        PARROTER_TRUSTED_PROXIES="127.0.0.1",
        PARROTER_API_RATE="20/h",
    )
    headers = {"Authorization": f"Bearer {plain}", "X-Forwarded-Proto": "https"}
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: get(port, "/api/jobs", **headers).status, range(80)))
    assert (answers.count(200), answers.count(429)) == (20, 60)
