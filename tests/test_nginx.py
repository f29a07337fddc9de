"""deploy/nginx.conf, for real: Debian's nginx runs the shipped file in front of the app (the
Procfile's gunicorn line, HTTPS=true, PARROTER_X_ACCEL=true) and the session's Flower, all on
free loopback ports. Only the lines the file marks "# HOST" are replaced, each by name below.
"""

import base64
import http.client
import json
import os
import re
import secrets
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from dashboard.views.flower import FLOWER_CSP
from jobs.downloads import X_ACCEL_PREFIX
from parroter.local_redis import free_port
from tests.conftest import (
    app_env,
    image_bytes,
    procfile,
    require,
    run_in_process,
    service_env,
    start_service,
    stop_process,
    submit_image,
    wait_until_listening,
)
from tests.nginx_conf import (
    FLOWER_AUTH_SCRIPT,
    MIME_TYPES,
    NGINX,
    NGINX_CONF,
    configure_nginx,
    self_signed_certificate,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


class Site:
    """The app behind nginx, as a browser reaches it."""

    def __init__(self, *, https_port: int, http_port: int, cafile: Path, app_log: Path) -> None:
        self.https_port, self.http_port = https_port, http_port
        self.origin = f"https://127.0.0.1:{https_port}"
        self.context = ssl.create_default_context(cafile=str(cafile))
        self.app_log = app_log

    def request(
        self, method: str, path: str, *, cookies=None, headers=None, body=None
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.https_port, context=self.context, timeout=30
        )
        try:
            headers = dict(headers or {})
            if cookies:
                headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        finally:
            connection.close()

    def app_never_saw(self, path: str) -> bool:
        """Whether gunicorn has no request for `path` in its log, asked once a request sent
        after it has been logged."""
        marker = f"/healthz?after={secrets.token_hex(4)}"
        assert self.request("GET", marker)[0] == 200
        assert self.app_saw(marker, wait=True) == [200]
        return self.app_saw(path) == []

    def app_saw(self, path: str, *, wait: bool = False) -> list[int]:
        """The status of each request for `path` in gunicorn's access log; with `wait`, once
        there is one (gunicorn logs a moment after it answered)."""
        pattern = rf'"[A-Z]+ {re.escape(path)} HTTP/1\.[01]" (\d+) '
        deadline = time.monotonic() + (5 if wait else 0)
        while True:
            seen = [int(status) for status in re.findall(pattern, self.app_log.read_text())]
            if seen or time.monotonic() >= deadline:
                return seen
            time.sleep(0.05)


@pytest.fixture(scope="module")
def static_root(tmp_path_factory) -> Path:
    """collectstatic's output (the manifest and WhiteNoise's .gz files), as a deploy has it."""
    root = tmp_path_factory.mktemp("static")
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=settings.BASE_DIR, env={**os.environ, "STATIC_ROOT": str(root)}, check=True,
    )  # fmt: skip
    return root


@pytest.fixture(scope="module")
def site(django_db_setup, redis_url, media_root, static_root, flower, tmp_path_factory):
    require(os.access(NGINX, os.X_OK), "Debian's nginx is not installed")
    require(MIME_TYPES.exists(), f"{MIME_TYPES} is missing (Debian's nginx-common)")
    folder = tmp_path_factory.mktemp("nginx")
    web_port, https_port, http_port = free_port(), free_port(), free_port()

    cert, key = self_signed_certificate(folder)
    flower_address = flower.url.removeprefix("http://")
    nginx = configure_nginx(
        folder,
        values={
            "server web:8000": f"server 127.0.0.1:{web_port}",
            "server flower:5555": f"server {flower_address}",
            "listen 80": f"listen 127.0.0.1:{http_port}",
            "listen 443 ssl http2": f"listen 127.0.0.1:{https_port} ssl http2",
            "ssl_certificate /etc/nginx/tls/fullchain.pem": f"ssl_certificate {cert}",
            "ssl_certificate_key /etc/nginx/tls/privkey.pem": f"ssl_certificate_key {key}",
            "alias /srv/parroter/static/": f"alias {static_root}/",
            "alias /srv/parroter/media/": f"alias {media_root}/",
        },
        flower_credentials=flower.credentials,
    )
    app_log = folder / "gunicorn.log"
    app = start_service(
        ["/bin/sh", "-c", procfile()["web"]],
        log=app_log,
        env=service_env(
            **app_env(),
            WEB_BIND=f"127.0.0.1:{web_port}",
            WEB_WORKERS="2",
            HTTPS="true",
            DEBUG="false",
            SECRET_KEY=settings.SECRET_KEY,  # the sessions this process makes must be valid there
            STATIC_ROOT=str(static_root),
            REDIS_URL=redis_url,
            PARROTER_X_ACCEL="true",
        ),
    )
    proxy = start_service(nginx, log=folder / "nginx.log", env=dict(os.environ))
    try:
        wait_until_listening(app, web_port)
        wait_until_listening(proxy, https_port)
        yield Site(https_port=https_port, http_port=http_port, cafile=cert, app_log=app_log)
    finally:
        stop_process(proxy)
        stop_process(app)


def signed_in(user) -> dict[str, str]:
    """The cookies of a browser in which `user` has signed in."""
    client = Client()
    client.force_login(user)
    return {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}


# --- Static files -----------------------------------------------------------------------------


def test_static_files_are_served_by_nginx_with_long_caching_for_hashed_names(site, static_root):
    manifest = json.loads((static_root / "staticfiles.json").read_text())
    hashed = manifest["paths"]["dashboard/style.css"]
    status, headers, body = site.request("GET", f"/static/{hashed}")
    assert status == 200
    assert body == (static_root / hashed).read_bytes()
    assert headers["Content-Type"] == "text/css"
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"

    status, headers, body = site.request(
        "GET", f"/static/{hashed}", headers={"Accept-Encoding": "gzip"}
    )
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert body == (static_root / f"{hashed}.gz").read_bytes()

    status, headers, _ = site.request("GET", "/static/dashboard/style.css")
    assert status == 200 and headers["Cache-Control"] == "public, max-age=3600"
    assert site.request("GET", "/static/no-such-file.css")[0] == 404
    assert site.app_never_saw(f"/static/{hashed}")


# --- Downloads: nginx sends the file, after the app's check ----------------------------------


@pytest.fixture
def finished_job(switch_broker):
    """Makes a user's job and runs it in this process. Its message goes to a broker nobody
    listens on, so the session's worker cannot take the job first."""
    switch_broker(f"redis://127.0.0.1:{free_port()}/0")

    def make(owner, name: str = "photo.jpg"):
        job = submit_image(owner, image_bytes((300, 200)), name=name)
        assert "thumbnails" in run_in_process(job)
        job.refresh_from_db()
        return job

    return make


def test_the_owner_gets_the_archive_from_nginx_after_the_apps_check(
    site, user, media_root, finished_job
):
    job = finished_job(user, "Hafen.jpg")
    path = f"/jobs/{job.pk}/download"
    archive = (media_root / job.archive.name).read_bytes()

    status, headers, body = site.request("GET", path, cookies=signed_in(user))
    assert status == 200
    assert body == archive
    assert headers["Content-Type"] == "application/zip"
    assert headers["Content-Disposition"] == 'attachment; filename="Hafen-thumbnails.zip"'
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "X-Accel-Redirect" not in headers
    assert site.app_saw(path, wait=True) == [200]  # the app's check ran
    # ...and nginx read the file: it answers byte ranges, which a proxied answer would not.
    status, headers, body = site.request(
        "GET", path, cookies=signed_in(user), headers={"Range": "bytes=0-9"}
    )
    assert status == 206 and body == archive[:10]

    # Nobody reaches the files around the app.
    status, _, body = site.request("GET", f"{X_ACCEL_PREFIX}{job.archive.name}")
    assert status == 404 and body != archive


def test_another_user_and_anonymous_people_never_get_the_file(site, user, other_user, finished_job):
    job = finished_job(user)
    path = f"/jobs/{job.pk}/download"

    status, headers, body = site.request("GET", path, cookies=signed_in(other_user))
    assert status == 404
    assert headers["Content-Type"].startswith("text/html") and b"PK" not in body[:2]

    status, headers, _ = site.request("GET", path)
    assert status == 302
    assert headers["Location"] == f"/accounts/login/?next={path}"


# --- Flower through auth_request ---------------------------------------------------------------


def test_flower_needs_staff(site, user, staff):
    status, headers, _ = site.request("GET", "/flower/")
    assert status == 302
    assert headers["Location"] == f"{site.origin}/accounts/login/?next=/flower/"

    status, _, body = site.request("GET", "/flower/", cookies=signed_in(user))
    assert status == 403 and b"url_prefix" not in body

    status, _, body = site.request("GET", "/flower/", cookies=signed_in(staff))
    assert status == 200
    assert b'<input type="hidden" value="flower" id="url_prefix">' in body


SECURITY_HEADERS = [
    "Strict-Transport-Security",
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "Cross-Origin-Opener-Policy",
]


def test_flower_gets_the_apps_security_headers(site, staff):
    _, page, _ = site.request("GET", "/accounts/login/")  # one of the app's own pages
    expected = {name: [page[name]] for name in SECURITY_HEADERS if name in page}
    assert expected["Strict-Transport-Security"] == ["max-age=31536000; includeSubDomains"]
    expected["Content-Security-Policy"] = [FLOWER_CSP]
    assert len(expected) == len(SECURITY_HEADERS)
    cookies = signed_in(staff)
    for path, status in [
        ("/flower/", 200),
        ("/flower/static/js/flower.js", 200),
        ("/flower/api/workers", 200),
        ("/flower/worker/no-such-worker", 404),
    ]:
        answered, headers, _ = site.request("GET", path, cookies=cookies)
        assert answered == status, path
        assert {name: headers.get_all(name) for name in SECURITY_HEADERS} == expected, path


@pytest.mark.browser
def test_flowers_pages_work_under_its_csp(site, staff, browser):
    context = browser.new_context(ignore_https_errors=True)
    session = signed_in(staff)[settings.SESSION_COOKIE_NAME]
    context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": site.origin}]
    )
    page = context.new_page()
    refused = []
    page.on("console", lambda message: refused.append(message.text))
    # Each page once its scripts have run: DataTables has built its table (the tasks page's from
    # an XHR to Flower's API).
    for path, built in [
        ("/flower/", "#workers-table_wrapper"),
        ("/flower/tasks", "#tasks-table_wrapper"),
        ("/flower/broker", "#queue-table"),
    ]:
        response = page.goto(f"{site.origin}{path}")
        assert response.status == 200
        assert response.headers["content-security-policy"] == FLOWER_CSP
        page.wait_for_selector(built)
    page.wait_for_load_state("networkidle")
    assert [text for text in refused if "Content Security Policy" in text] == []
    context.close()


def test_flower_actions_only_from_this_site(site, staff):
    control = "/flower/api/worker/pool/grow/no-such-worker"
    cookies = signed_in(staff)
    status, _, _ = site.request(
        "POST", control, cookies=cookies, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert status == 403
    status, _, body = site.request(
        "POST", control, cookies=cookies, headers={"Origin": site.origin}
    )
    # Flower's own answer for a worker it does not know: past both checks.
    assert status == 404 and b"Unknown worker" in body


def test_addresses_with_dot_segments_are_refused(site, staff):
    cookies = signed_in(staff)
    for path in [
        "/flower/..%2fsecret",  # nginx: /secret, so the app's proxy, which made it Flower's /secret
        "/flower/%2E%2E/secret",
        "/%66lower/x/..%2f..%2fsecret",
        "/flower/./workers",  # nginx: Flower's location; Flower: no such page
        "/flower/..%2f..%2fsecret",  # climbs above /: nginx always refused it
    ]:
        status, _, _ = site.request("GET", path, cookies=cookies)
        assert status == 400, path
        assert site.app_never_saw(path), path
    # Dots elsewhere are no business of nginx's.
    assert site.request("GET", "/flower/static/js/flower.js", cookies=cookies)[0] == 200
    assert site.request("GET", "/jobs/?q=..%2f..", cookies=cookies)[0] == 200


# --- Limits and plain HTTP ---------------------------------------------------------------------


def body_limit() -> int:
    size = re.search(r"^\s*client_max_body_size (\d+)m;", NGINX_CONF.read_text(), re.M)
    return int(size.group(1)) * 1024 * 1024


def test_the_body_limit_leaves_room_for_the_apps_own_message():
    # A job's files a little over PARROTER_MAX_JOB_BYTES, with their form, still reach the app.
    assert body_limit() >= settings.PARROTER_MAX_JOB_BYTES + 256 * 1024
    assert body_limit() <= settings.PARROTER_MAX_JOB_BYTES + 4 * 1024 * 1024


def test_a_body_over_the_limit_is_refused_by_nginx(site, user):
    path = "/?over-the-limit"
    status, _, _ = site.request(
        "POST",
        path,
        cookies=signed_in(user),
        headers={"Content-Length": str(body_limit() + 1), "Content-Type": "multipart/form-data"},
        body=b"",
    )
    assert status == 413
    assert site.app_never_saw(path)


def test_a_file_just_over_the_apps_limit_gets_the_apps_message(site, user):
    token = secrets.token_hex(16)  # an unmasked CSRF token, as cookie and field
    boundary = "parroter-boundary"
    data = image_bytes((64, 64)).ljust(settings.PARROTER_MAX_UPLOAD_BYTES + 1, b"\0")
    body = b"".join(
        [
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrfmiddlewaretoken"\r\n\r\n'
            f"{token}\r\n".encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="sizes"\r\n\r\n128\r\n'.encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="big.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n".encode(),
            data,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    status, _, page = site.request(
        "POST",
        "/",
        cookies={**signed_in(user), settings.CSRF_COOKIE_NAME: token},
        headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Origin": site.origin,
        },
        body=body,
    )
    assert status == 400
    assert b"the limit is 50\xc2\xa0MB" in page


def test_plain_http_is_sent_to_https(site):
    connection = http.client.HTTPConnection("127.0.0.1", site.http_port, timeout=10)
    connection.request("GET", "/jobs/?q=x")
    response = connection.getresponse()
    assert response.status == 301
    assert response.headers["Location"] == "https://127.0.0.1/jobs/?q=x"
    connection.close()


def test_flower_credentials_stay_out_of_nginx_conf(tmp_path):
    assert os.access(FLOWER_AUTH_SCRIPT, os.X_OK)  # the official image skips other scripts
    target = tmp_path / "flower-auth.conf"
    subprocess.run(
        ["/bin/sh", str(FLOWER_AUTH_SCRIPT), str(target)],
        env={**os.environ, "FLOWER_BASIC_AUTH": "operator:s3cr et,second:pair"}, check=True,
    )  # fmt: skip
    token = base64.b64encode(b"operator:s3cr et").decode()
    assert target.read_text() == f'proxy_set_header Authorization "Basic {token}";\n'
    assert target.stat().st_mode & 0o077 == 0
    assert "Authorization" not in re.sub(r"#.*", "", NGINX_CONF.read_text())
