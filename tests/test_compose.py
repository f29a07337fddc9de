"""docker-compose.yml runs what the Procfile runs, publishes nothing beyond loopback, waits for
migrations, and takes every secret from .env. No images can be pulled on the machines that run
these tests, so the file is proven by reading it."""

import re

import pytest
import yaml
from django.conf import settings

from tests.conftest import procfile

COMPOSE = settings.BASE_DIR / "docker-compose.yml"
APP_SERVICES = {"migrate", "web", "worker", "housekeeping", "beat", "flower"}
SECRETS = {"SECRET_KEY", "POSTGRES_PASSWORD", "FLOWER_BASIC_AUTH"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_the_same_services_as_the_procfile(compose):
    services = compose["services"]
    assert set(services) == {"db", "redis", *APP_SERVICES}
    assert set(procfile()) <= set(services)
    # Workers, housekeeping and beat run exactly the Procfile's command lines.
    for name in ("worker", "housekeeping", "beat"):
        assert services[name]["command"] == procfile()[name], name
    assert services["web"]["command"].startswith("gunicorn parroter.wsgi")
    assert "--url_prefix=flower" in services["flower"]["command"][-1]
    # One image for all the app's services.
    builds = {str(services[name]["build"]) for name in APP_SERVICES}
    assert len(builds) == 1


def test_nothing_is_published_beyond_the_hosts_loopback(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_the_app_starts_once_migrations_have_run(compose):
    for name in APP_SERVICES - {"migrate"}:
        depends = compose["services"][name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert depends["db"] == {"condition": "service_healthy"}, name
    assert compose["services"]["migrate"]["restart"] == "no"


def test_no_secret_has_a_value_in_the_file():
    text = COMPOSE.read_text()
    for secret in SECRETS:
        # Required from .env (${X:?...}) or read by the process itself, never ${X:-default}.
        assert not re.search(rf"\$\{{{secret}:?-", text), secret
    assert "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?" in text
    assert re.search(r"postgres://parroter:\$\{POSTGRES_PASSWORD:\?[^}]*\}@db", text)


def test_the_web_healthcheck_sends_a_host_the_app_accepts(compose):
    check = " ".join(compose["services"]["web"]["healthcheck"]["test"])
    assert "/healthz" in check and "os.environ['ALLOWED_HOSTS'].split(',')[0]" in check


def test_the_image_gives_the_data_folder_to_the_apps_user():
    dockerfile = (settings.BASE_DIR / "deploy" / "Dockerfile").read_text()
    # collectstatic (as root) creates /data/media and /data/media/tmp through the settings.
    assert dockerfile.index("collectstatic") < dockerfile.index("chown -R parroter:parroter /data")
    assert dockerfile.index("chown -R parroter:parroter /data") < dockerfile.index("USER parroter")
