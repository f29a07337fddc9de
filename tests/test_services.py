"""The Procfile's services as `make run` starts them (each line through /bin/sh, like honcho)."""

import base64
import io
import subprocess
import urllib.error
import urllib.request

import pytest
from django.conf import settings

from parroter.management.commands.runservices import Command as RunServices
from tests.conftest import procfile, service_env


def flower_status(url: str, credentials: str | None = None) -> int:
    request = urllib.request.Request(url)  # noqa: S310 (the test's loopback Flower)
    if credentials:
        token = base64.b64encode(credentials.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (loopback)
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_procfile_runs_web_worker_housekeeping_monitor_beat_and_flower():
    services = procfile()
    assert set(services) == {"web", "worker", "housekeeping", "monitor", "beat", "flower"}
    assert services["monitor"] == "python manage.py monitor"
    # Task events come from the setting (PARROTER_TASK_EVENTS, tests/test_task_events.py), not
    # a flag that would overrule it.
    assert " -E" not in services["worker"] and " -E" not in services["housekeeping"]
    assert settings.CELERY_WORKER_SEND_TASK_EVENTS is settings.PARROTER_TASK_EVENTS is True
    # Jobs and housekeeping on separate queues and workers: a backlog never delays cleanup.
    assert "-Q celery " in services["worker"]
    assert "-Q housekeeping " in services["housekeeping"]
    assert "django_celery_beat.schedulers:DatabaseScheduler" in services["beat"]
    # Flower on loopback under /flower/, the path the web app proxies.
    assert "--address=${FLOWER_ADDRESS:-127.0.0.1}" in services["flower"]
    assert "--url_prefix=flower" in services["flower"]


def test_flower_refuses_to_start_without_a_login():
    env = service_env()
    env.pop("FLOWER_BASIC_AUTH", None)
    finished = subprocess.run(
        ["/bin/sh", "-c", procfile()["flower"]], env=env, capture_output=True, timeout=30
    )
    assert finished.returncode != 0
    assert b"FLOWER_BASIC_AUTH" in finished.stderr


@pytest.mark.integration
def test_flower_asks_for_its_login(flower):
    # Flower's own basic auth stays on as a second lock behind the app's staff check.
    workers = f"{flower.url}/flower/workers"
    assert flower_status(workers) == 401
    assert flower_status(workers, "operator:wrong") == 401
    assert flower_status(workers, flower.credentials) == 200


def test_make_run_shows_flower_through_the_web_app_without_its_password():
    out = io.StringIO()
    RunServices(stdout=out)._print_banner(
        {
            "WEB_BIND": "127.0.0.1:8000",
            "FLOWER_PORT": "5555",
            "FLOWER_BASIC_AUTH": "flower:s3cret-flower",
            "REDIS_URL": "redis://127.0.0.1:6399/0",
        }
    )
    banner = out.getvalue()
    assert "http://127.0.0.1:8000/flower/" in banner
    assert "s3cret-flower" not in banner
    assert ":5555" not in banner
