"""Flower at /flower/ through the web app: for the roles (jobs.roles), viewers reading only;
Flower's own login added by the proxy.

The proxy needs a real HTTP upstream: these tests talk to the real Flower process of the shared
`flower` fixture (started from the Procfile's line) on the test Redis.
"""

import base64
import http.client
import json
import os

import pytest
from django.test import Client, RequestFactory
from django.urls import reverse

from dashboard.views.flower import FLOWER_CSP, FlowerProxyView
from parroter.local_redis import free_port
from tests.conftest import person_with_role

pytestmark = pytest.mark.django_db

FLOWER_URLS = ["/flower/", "/flower/api/workers"]
# A control action of Flower's API that changes nothing: the worker does not exist.
CONTROL_URL = "/flower/api/worker/pool/grow/no-such-worker"


@pytest.fixture
def via_flower(settings, flower):
    """The web app's proxy pointed at the test's Flower."""
    settings.FLOWER_URL = flower.url
    settings.FLOWER_BASIC_AUTH = flower.credentials
    return flower


def staff_client(staff) -> Client:
    # Django's CSRF check on, as for a browser: the proxy must not depend on it being off.
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    return client


def from_flower(response) -> bool:
    return response.get("Server", "").startswith("TornadoServer")


def body(response) -> bytes:
    # The proxy streams what is large or has no length (Flower's JSON, its scripts).
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.mark.parametrize("url", FLOWER_URLS)
def test_anonymous_people_are_sent_to_the_login_page(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


@pytest.mark.integration
@pytest.mark.parametrize("url", FLOWER_URLS)
def test_signed_in_people_who_are_not_staff_are_refused(client, user, via_flower, url):
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 403
    assert not from_flower(response)


@pytest.mark.integration
def test_staff_get_flowers_page(staff, via_flower):
    client = staff_client(staff)
    response = client.get("/flower/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b'<input type="hidden" value="flower" id="url_prefix">' in response.content
    assert not response.cookies  # Flower's _xsrf cookie stays out of the site's cookies

    # Its static files come through the same door (streamed: larger than a small page).
    script = client.get("/flower/static/js/flower.js")
    assert script.status_code == 200
    assert b"url_prefix" in body(script)


@pytest.mark.integration
@pytest.mark.parametrize(
    "url",
    [
        "/flower/..%2f..%2fsecret",
        "/flower/%2e%2e/%2E%2E/secret",
        "/flower/static/..%2f..%2f..%2fsecret",
        "/flower/./workers",  # stays inside, but no page of Flower's has such an address
    ],
)
def test_paths_with_dot_segments_never_reach_flower(staff, via_flower, url):
    response = staff_client(staff).get(url)
    assert response.status_code == 404
    assert not from_flower(response)


@pytest.mark.integration
@pytest.mark.parametrize("url", ["/flower/", "/flower/static/js/flower.js"])
def test_flowers_answers_carry_the_apps_security_headers_and_flowers_csp(staff, via_flower, url):
    response = staff_client(staff).get(url)
    assert from_flower(response) and response.status_code == 200
    assert response["Content-Security-Policy"] == FLOWER_CSP
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.integration
def test_staff_get_flowers_api(staff, via_flower, celery_worker):
    response = staff_client(staff).get("/flower/api/workers", {"refresh": "1"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    workers = json.loads(body(response))
    assert any(name.startswith(f"test-{os.getpid()}@") for name in workers)


@pytest.mark.integration
def test_the_browsers_authorization_is_replaced_by_flowers_credentials(staff, via_flower):
    client = staff_client(staff)
    response = client.get("/flower/api/workers", HTTP_AUTHORIZATION="Basic d3Jvbmc6d3Jvbmc=")
    assert response.status_code == 200


@pytest.mark.integration
@pytest.mark.parametrize("path", ["/flower/healthcheck", "/flower/metrics"])
def test_flowers_probe_and_metrics_need_its_login_too(flower, path):
    def status(**headers: str) -> int:
        # Straight to Flower's port, as another container on the compose network could.
        connection = http.client.HTTPConnection(flower.url.removeprefix("http://"), timeout=10)
        try:
            connection.request("GET", path, headers=headers)
            return connection.getresponse().status
        finally:
            connection.close()

    assert status() == 401
    token = base64.b64encode(flower.credentials.encode()).decode()
    assert status(Authorization=f"Basic {token}") == 200


def test_the_session_and_credentials_never_reach_flower(settings):
    settings.FLOWER_BASIC_AUTH = "operator:s3cret,other:pass"
    request = RequestFactory().get(
        "/flower/",
        HTTP_COOKIE="sessionid=abc; csrftoken=def",
        HTTP_AUTHORIZATION="Basic eDp5",
        HTTP_X_CSRFTOKEN="def",
        HTTP_CONNECTION="keep-alive",
        HTTP_ORIGIN="http://testserver",
        HTTP_SEC_FETCH_SITE="same-origin",
        HTTP_ACCEPT="text/html",
    )
    headers = FlowerProxyView().get_proxy_request_headers(request)
    assert {name.lower() for name in headers} == {
        "host", "origin", "sec-fetch-site", "accept", "authorization",
    }  # fmt: skip
    assert headers["Host"] == "testserver"  # what Flower compares Origin with
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"operator:s3cret").decode()


@pytest.mark.integration
@pytest.mark.parametrize(
    "headers",
    [
        {},  # neither header: refused
        {"HTTP_ORIGIN": "https://evil.example"},
        {"HTTP_ORIGIN": "http://testserver.evil.example"},
        {"HTTP_ORIGIN": "null"},
        {"HTTP_SEC_FETCH_SITE": "cross-site"},
        {"HTTP_SEC_FETCH_SITE": "same-site"},
        {"HTTP_SEC_FETCH_SITE": "cross-site", "HTTP_ORIGIN": "http://testserver"},
    ],
)
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_unsafe_requests_from_elsewhere_are_refused(staff, via_flower, method, headers):
    response = getattr(staff_client(staff), method)(CONTROL_URL, **headers)
    assert response.status_code == 403
    assert not from_flower(response)


@pytest.mark.integration
@pytest.mark.parametrize(
    "headers", [{"HTTP_SEC_FETCH_SITE": "same-origin"}, {"HTTP_ORIGIN": "http://testserver"}]
)
def test_same_origin_posts_reach_flower_and_pass_its_own_check(staff, via_flower, headers):
    response = staff_client(staff).post(CONTROL_URL, **headers)
    # Flower's answer for a worker it does not know: past its cross-site check (which is a 403).
    assert from_flower(response)
    assert response.status_code == 404
    assert b"Unknown worker" in body(response)


def test_staff_get_a_clear_502_when_flower_is_down(staff, settings):
    settings.FLOWER_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    response = staff_client(staff).get("/flower/api/workers")
    assert response.status_code == 502
    assert b"Flower is not reachable" in response.content


@pytest.mark.integration
def test_mismatched_credentials_answer_502_not_a_password_prompt(staff, via_flower, settings):
    settings.FLOWER_BASIC_AUTH = "operator:wrong"
    response = staff_client(staff).get("/flower/")
    assert response.status_code == 502
    assert "WWW-Authenticate" not in response
    assert b"FLOWER_BASIC_AUTH" in response.content


# --- nginx auth_request (deploy/nginx.conf): 204 lets a request through, 401/403 refuse it ---


def test_nginx_auth_request_answers_401_to_anonymous_people_never_a_redirect(client):
    assert client.get(reverse("flower_auth")).status_code == 401


def test_nginx_auth_request_answers_403_to_non_staff(client, user):
    client.force_login(user)
    assert client.get(reverse("flower_auth")).status_code == 403


@pytest.mark.parametrize(
    ("original_method", "headers", "status"),
    [
        (None, {}, 204),
        ("GET", {"HTTP_ORIGIN": "https://evil.example"}, 204),
        ("POST", {}, 403),
        ("POST", {"HTTP_ORIGIN": "https://evil.example"}, 403),
        ("DELETE", {"HTTP_SEC_FETCH_SITE": "cross-site"}, 403),
        ("POST", {"HTTP_SEC_FETCH_SITE": "same-origin"}, 204),
        ("POST", {"HTTP_ORIGIN": "http://testserver"}, 204),
    ],
)
def test_nginx_auth_request_lets_staff_through(client, staff, original_method, headers, status):
    client.force_login(staff)
    if original_method:
        headers = {**headers, "HTTP_X_ORIGINAL_METHOD": original_method}
    response = client.get(reverse("flower_auth"), **headers)
    assert response.status_code == status
    assert "no-cache" in response["Cache-Control"]


def test_nginx_auth_request_gives_nginx_flowers_csp(client, staff):
    client.force_login(staff)
    response = client.get(reverse("flower_auth"))
    assert response.status_code == 204
    assert response["Content-Security-Policy"] == FLOWER_CSP  # nginx adds it to Flower's answer
    assert response["X-Frame-Options"] == "DENY"


@pytest.fixture
def viewer(django_user_model):
    return person_with_role(django_user_model, "vera", "viewer", is_staff=False)


@pytest.fixture
def bare_staff(django_user_model):
    return person_with_role(django_user_model, "sam", None, is_staff=True)


@pytest.mark.integration
def test_a_viewer_reads_flower_but_may_not_change_anything(viewer, via_flower):
    client = staff_client(viewer)
    assert client.get("/flower/").status_code == 200
    # Growing a worker's pool, revoking, shutting down: refused here, never sent to Flower.
    refused = client.post(CONTROL_URL, HTTP_SEC_FETCH_SITE="same-origin")
    assert refused.status_code == 403 and not from_flower(refused)
    client.force_login(viewer)
    nginx = client.get(
        reverse("flower_auth"), HTTP_X_ORIGINAL_METHOD="POST", HTTP_SEC_FETCH_SITE="same-origin"
    )
    assert nginx.status_code == 403
    assert client.get(reverse("flower_auth")).status_code == 204


@pytest.mark.integration
def test_is_staff_without_a_role_opens_no_flower(bare_staff, via_flower):
    response = staff_client(bare_staff).get("/flower/")
    assert response.status_code == 403 and not from_flower(response)
