"""docker-compose.yml runs what the Procfile runs behind deploy/nginx.conf, publishes nothing but
nginx's 80 and 443 beyond loopback, waits for migrations, and takes every secret from .env. No
images can be pulled on the machines that run these tests, so the file is proven by reading it
(nginx.conf itself runs for real in test_nginx.py)."""

import ipaddress
import os
import re
import runpy
import subprocess
import sys
from pathlib import PurePosixPath

import pytest
import yaml
from django.conf import settings

from tests.conftest import checkout_path, procfile

COMPOSE = settings.BASE_DIR / "docker-compose.yml"
NGINX_CONF = settings.BASE_DIR / "deploy" / "nginx.conf"
APP_SERVICES = {"migrate", "web", "worker", "housekeeping", "monitor", "beat", "flower"}
SECRETS = {"SECRET_KEY", "POSTGRES_PASSWORD", "FLOWER_BASIC_AUTH"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_the_same_services_as_the_procfile(compose):
    services = compose["services"]
    assert set(services) == {"db", "redis", "nginx", *APP_SERVICES}
    assert set(procfile()) <= set(services)
    # Workers, housekeeping, the monitor and beat run exactly the Procfile's command lines.
    for name in ("worker", "housekeeping", "monitor", "beat"):
        assert services[name]["command"] == procfile()[name], name
    assert services["web"]["command"].startswith("gunicorn parroter.wsgi")
    assert procfile()["web"].startswith(
        "gunicorn parroter.wsgi --config python:parroter.gunicorn_conf "
    )
    assert "--url_prefix=flower" in services["flower"]["command"][-1]
    # Flower as parroter.flower runs it: its probe and metrics behind its login too.
    assert "exec python -m parroter.flower " in procfile()["flower"]
    assert "exec python -m parroter.flower " in services["flower"]["command"][-1]
    # One image for all the app's services.
    builds = {str(services[name]["build"]) for name in APP_SERVICES}
    assert len(builds) == 1


def test_only_nginx_is_published_beyond_the_hosts_loopback(compose):
    services = compose["services"]
    assert services["nginx"]["ports"] == ["80:80", "443:443"]
    assert "ports" not in services["web"]  # reached through nginx only (TLS, body limit)
    for name, service in services.items():
        for port in service.get("ports", []) if name != "nginx" else []:
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


@pytest.mark.integration
def test_the_flower_healthcheck_passes_with_flowers_login_only(compose, flower):
    test = compose["services"]["flower"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    code = test[3].replace("http://127.0.0.1:5555", flower.url)  # the session's Flower
    assert code != test[3]

    def check(credentials: str) -> int:
        env = {**os.environ, "FLOWER_BASIC_AUTH": credentials}
        return subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, timeout=30
        ).returncode

    assert check(flower.credentials) == 0
    assert check("operator:wrong") != 0


def test_the_image_gives_the_data_folder_to_the_apps_user():
    dockerfile = (settings.BASE_DIR / "deploy" / "Dockerfile").read_text()
    # collectstatic (as root) creates /data/media and /data/media/tmp through the settings.
    assert dockerfile.index("collectstatic") < dockerfile.index("chown -R parroter:parroter /data")
    assert dockerfile.index("chown -R parroter:parroter /data") < dockerfile.index("USER parroter")


def nginx_directives(name: str) -> list[str]:
    """The values of one directive in deploy/nginx.conf, in order (one line each)."""
    return re.findall(rf"^[ \t]*{name} ([^;{{\n]+);", NGINX_CONF.read_text(), re.M)


def test_nginx_runs_the_shipped_config_in_front_of_web_and_flower(compose, monkeypatch):
    services = compose["services"]
    nginx = services["nginx"]
    assert nginx["image"].startswith("nginx:")  # the official image
    mounts = dict(volume.rsplit(":", 1)[0].split(":", 1) for volume in nginx["volumes"])
    assert mounts["./deploy/nginx.conf"] == "/etc/nginx/conf.d/default.conf"
    # The official image runs /docker-entrypoint.d/*.sh before nginx: Flower's header is made.
    assert mounts["./deploy/nginx-flower-auth.sh"].startswith("/docker-entrypoint.d/")
    assert nginx["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert all(volume.endswith(":ro") for volume in nginx["volumes"])
    # Its upstreams are the web and flower services, on the ports their commands listen on.
    upstreams = nginx_directives("server")
    assert upstreams == ["web:8000", "flower:5555"]
    assert "--port=5555" in services["flower"]["command"][-1]
    gunicorn_conf = settings.BASE_DIR / "platform" / "parroter" / "gunicorn_conf.py"
    monkeypatch.delenv("WEB_BIND", raising=False)
    assert runpy.run_path(str(gunicorn_conf))["bind"] == "0.0.0.0:8000"
    # It listens on the ports compose publishes, with the certificate from ./tls.
    assert nginx_directives("listen") == ["80", "443 ssl http2"]
    certificates = nginx_directives("ssl_certificate") + nginx_directives("ssl_certificate_key")
    assert {PurePosixPath(path).parent for path in certificates} == {PurePosixPath(mounts["./tls"])}
    # Once web answers its healthcheck; restarted with web and flower, whose addresses may change.
    assert nginx["depends_on"]["web"] == {"condition": "service_healthy", "restart": True}
    assert nginx["depends_on"]["flower"]["restart"] is True
    assert "healthcheck" in services["web"]


def test_nginx_sees_the_apps_static_and_media_folders(compose):
    services = compose["services"]
    app_mount, app_root = services["web"]["volumes"][0].split(":")
    nginx_root = next(
        target
        for source, target, mode in (v.split(":") for v in services["nginx"]["volumes"])
        if source == app_mount and mode == "ro"
    )
    # The folders nginx's aliases name are the app's STATIC_ROOT and MEDIA_ROOT on that volume.
    aliases = {PurePosixPath(path) for path in nginx_directives("alias")}
    static_root = PurePosixPath(services["web"]["environment"]["STATIC_ROOT"])
    media_root = PurePosixPath(app_root) / "media"  # settings: PARROTER_VAR_DIR/media
    assert "PARROTER_VAR_DIR=/data" in (settings.BASE_DIR / "deploy" / "Dockerfile").read_text()
    assert aliases == {
        PurePosixPath(nginx_root) / path.relative_to(app_root) for path in (static_root, media_root)
    }
    # Static files are collected onto the volume before the app starts, by the same image.
    assert "collectstatic" in services["migrate"]["command"]
    # Downloads go through nginx (X-Accel-Redirect) under compose.
    assert services["web"]["environment"]["PARROTER_X_ACCEL"] == "true"


def test_the_app_believes_forwarded_headers_from_its_nginx_only(compose, tmp_path):
    services = compose["services"]
    address = services["nginx"]["networks"]["proxy"]["ipv4_address"]
    environment = services["web"]["environment"]
    assert environment["PARROTER_TRUSTED_PROXIES"] == address
    # ...and so does gunicorn, whose config makes forwarded_allow_ips from it (and ignores
    # FORWARDED_ALLOW_IPS, which would only mislead here).
    assert "FORWARDED_ALLOW_IPS" not in environment
    assert "--config python:parroter.gunicorn_conf" in services["web"]["command"]
    trusted = subprocess.run(
        [sys.executable, "-c", "import parroter.gunicorn_conf as c; print(c.forwarded_allow_ips)"],
        env={
            **os.environ,
            "PYTHONPATH": checkout_path(),
            "PARROTER_VAR_DIR": str(tmp_path),
            "PARROTER_TRUSTED_PROXIES": address,
        },
        capture_output=True,
        text=True,
        check=True,
    )
    assert trusted.stdout.strip() == f"{address}/32"
    assert set(services["web"]["networks"]) == {"default", "proxy"}
    subnet = compose["networks"]["proxy"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(address) in ipaddress.ip_network(subnet)


def test_the_app_writes_its_files_in_nginx_workers_group(compose):
    # nginx's workers (uid and gid 101 in the official image) read the files the app writes
    # with mode FILE_UPLOAD_PERMISSIONS (0640): they must share the group.
    assert settings.FILE_UPLOAD_PERMISSIONS == 0o640
    for name in APP_SERVICES:
        assert compose["services"][name]["user"] == "1000:101", name
