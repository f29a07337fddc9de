"""Production settings, the secret key, proxy headers and the sign-in lockout."""

import os
import secrets
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from parroter.middleware import TrustedProxyMiddleware, client_ip
from tests.conftest import PASSWORDS

PRODUCTION = {
    "HTTPS": "true",
    "DEBUG": "false",
    "ALLOWED_HOSTS": "parroter.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://parroter.example.com",
}
KEY_LENGTH = len(secrets.token_urlsafe(50))


def run(command: list[str], tmp_path, **env: str) -> subprocess.CompletedProcess:
    """A fresh process of the project with only the given settings (and a private var/)."""
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SECRET_KEY", "HTTPS", "DEBUG", "PARROTER_", "AXES_", "SECURE_"))
    }
    path = os.pathsep.join([str(settings.BASE_DIR), str(settings.BASE_DIR / "platform")])
    env = {**base, "PYTHONPATH": path, "PARROTER_VAR_DIR": str(tmp_path), **env}
    return subprocess.run(
        [sys.executable, *command],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- Production settings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "env, silenced",
    [
        ({}, 1),  # the nudge to preload HSTS (security.W021), which is only done when asked for
        ({"SECURE_HSTS_PRELOAD": "true"}, 0),
    ],
)
def test_check_deploy_is_clean_in_production(tmp_path, env, silenced):
    key = secrets.token_urlsafe(50)
    checked = run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        tmp_path,
        **PRODUCTION,
        **env,
        SECRET_KEY=key,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"System check identified no issues ({silenced} silenced)." in checked.stdout
    assert "WARNING" not in checked.stdout + checked.stderr


HSTS_HEADER = """
import django
django.setup()
from django.test import Client
client = Client(HTTP_HOST="parroter.example.com", HTTP_X_FORWARDED_PROTO="https")
response = client.get("/healthz")
print(response["Strict-Transport-Security"])
"""


@pytest.mark.parametrize(
    "env, header",
    [
        ({}, "max-age=31536000; includeSubDomains"),
        ({"SECURE_HSTS_PRELOAD": "true"}, "max-age=31536000; includeSubDomains; preload"),
    ],
)
def test_hsts_lasts_a_year_and_asks_for_preload_only_when_told(tmp_path, env, header):
    answered = run(
        ["-c", HSTS_HEADER],
        tmp_path,
        **PRODUCTION,
        **env,
        SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_SETTINGS_MODULE="parroter.settings",
    )
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.strip() == header


def test_check_deploy_fails_on_what_it_should(tmp_path):
    # The same check with HSTS cut back to this host only: proof that it is really checking.
    checked = run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        tmp_path,
        **PRODUCTION,
        SECRET_KEY=secrets.token_urlsafe(50),
        SECURE_HSTS_INCLUDE_SUBDOMAINS="false",
    )
    assert checked.returncode != 0
    assert "security.W005" in checked.stderr + checked.stdout


@pytest.mark.parametrize(
    "env, message",
    [
        ({}, "SECRET_KEY is not set, and HTTPS=true (production) needs one"),
        ({"SECRET_KEY": "  "}, "SECRET_KEY is not set, and HTTPS=true (production) needs one"),
        (
            {"SECRET_KEY": "k" * 60, "PARROTER_TRUSTED_PROXIES": "127.0.0.1,nginx"},
            "PARROTER_TRUSTED_PROXIES: 'nginx' does not appear to be an IPv4 or IPv6 network",
        ),
        (
            {"SECRET_KEY": "k" * 60, "SECURE_HSTS_PRELOAD": "true", "SECURE_HSTS_SECONDS": "3600"},
            "SECURE_HSTS_PRELOAD=true needs SECURE_HSTS_SECONDS of at least 31536000 (a year) "
            "and SECURE_HSTS_INCLUDE_SUBDOMAINS=true",
        ),
    ],
)
def test_production_refuses_to_start_when_misconfigured(tmp_path, env, message):
    started = run(["manage.py", "check"], tmp_path, **PRODUCTION, **env)
    assert started.returncode != 0
    assert f"django.core.exceptions.ImproperlyConfigured: {message}" in started.stderr
    assert not (tmp_path / "secret_key").exists()  # no key made up for production


def test_development_makes_a_key_once_and_keeps_it(tmp_path):
    first = run(["-c", "from parroter import settings; print(settings.SECRET_KEY)"], tmp_path)
    again = run(["-c", "from parroter import settings; print(settings.SECRET_KEY)"], tmp_path)
    assert first.returncode == 0, first.stderr
    assert len(first.stdout.strip()) == KEY_LENGTH
    assert first.stdout == again.stdout
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


# Imports what settings needs first, then waits for a common moment so that every process
# reaches the key file at once, as the processes of `make run` do on a fresh volume.
RACE = """
import sys, time
import dj_database_url, django.core.exceptions
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
from parroter import settings
print(settings.SECRET_KEY)
"""


@pytest.mark.parametrize("trial", range(10))
def test_processes_starting_together_share_one_whole_key(tmp_path, trial):
    path = os.pathsep.join([str(settings.BASE_DIR), str(settings.BASE_DIR / "platform")])
    env = {key: value for key, value in os.environ.items() if key != "SECRET_KEY"}
    env.update(PYTHONPATH=path, PARROTER_VAR_DIR=str(tmp_path))
    start = f"{time.time() + 1.0}"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, start],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    results = [process.communicate(timeout=60) for process in processes]
    assert [process.returncode for process in processes] == [0] * 8, results
    keys = {stdout.strip() for stdout, _ in results}
    assert keys == {(tmp_path / "secret_key").read_text()}
    assert len(keys.pop()) == KEY_LENGTH
    assert sorted(item.name for item in tmp_path.iterdir() if item.is_file()) == ["secret_key"]


# --- X-Forwarded-* only from the proxy ---------------------------------------------------------

FORWARDED = {
    "HTTP_X_FORWARDED_PROTO": "https",
    "HTTP_X_FORWARDED_FOR": "198.51.100.7",
    "HTTP_X_FORWARDED_HOST": "evil.example",
}


def seen_by_the_app(remote_addr: str, **headers: str) -> dict:
    """request.META as the views see it, after the middleware."""
    seen = {}

    def view(request):
        seen.update(request.META)
        return HttpResponse()

    request = RequestFactory().get("/", REMOTE_ADDR=remote_addr, **headers)
    TrustedProxyMiddleware(view)(request)
    return seen


@pytest.mark.parametrize("proxy", ["127.0.0.1", "::1"])
def test_forwarded_headers_from_the_proxy_are_kept(proxy):
    meta = seen_by_the_app(proxy, **FORWARDED)
    assert {name: meta.get(name) for name in FORWARDED} == FORWARDED


@pytest.mark.parametrize("client", ["203.0.113.9", "10.0.0.5", "127.0.0.2", "", "unix"])
def test_forwarded_headers_from_anyone_else_are_dropped(client):
    meta = seen_by_the_app(client, **FORWARDED, HTTP_X_REAL_THING="kept")
    assert not set(FORWARDED) & set(meta)
    assert meta["HTTP_X_REAL_THING"] == "kept"


def test_trusted_proxies_can_be_networks(settings):
    import ipaddress

    settings.PARROTER_TRUSTED_PROXIES = [ipaddress.ip_network("172.16.0.0/12")]
    assert "HTTP_X_FORWARDED_PROTO" in seen_by_the_app("172.18.0.1", **FORWARDED)
    assert "HTTP_X_FORWARDED_PROTO" not in seen_by_the_app("127.0.0.1", **FORWARDED)


@pytest.fixture
def https(settings):
    """Production's HTTPS settings (read when the client builds its middleware)."""
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True


@pytest.mark.django_db
def test_only_the_proxy_can_say_a_request_came_over_https(https):
    login = reverse("login")
    # Through nginx: TLS ended there, it says so, the page is served with HSTS.
    through_proxy = Client().get(login, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_PROTO="https")
    assert through_proxy.status_code == 200
    # Around it (a published port): the claim is ignored, so the answer is "use HTTPS".
    around = Client().get(login, REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_PROTO="https")
    assert around.status_code == 301
    assert around.url == f"https://testserver{login}"


@pytest.mark.parametrize(
    "remote_addr, forwarded_for, expected",
    [
        ("203.0.113.9", "", "203.0.113.9"),  # straight to the app
        ("203.0.113.9", "198.51.100.7", "203.0.113.9"),  # made up by the client: ignored
        ("127.0.0.1", "", "127.0.0.1"),  # from the proxy's host itself
        ("127.0.0.1", "198.51.100.7", "198.51.100.7"),  # through nginx
        ("127.0.0.1", "1.2.3.4, 198.51.100.7", "198.51.100.7"),  # the client prepended one
        ("127.0.0.1", "1.2.3.4, 198.51.100.7, ::1", "198.51.100.7"),  # two trusted proxies
        ("127.0.0.1", "made-up, 198.51.100.7", "198.51.100.7"),
        ("127.0.0.1", "198.51.100.7, made-up", "127.0.0.1"),  # garbage: the last real one
        ("::1", "2001:db8::1", "2001:db8::1"),
    ],
)
def test_client_ip_is_what_the_trusted_proxy_saw(remote_addr, forwarded_for, expected):
    headers = {"HTTP_X_FORWARDED_FOR": forwarded_for} if forwarded_for else {}
    request = RequestFactory().get("/", REMOTE_ADDR=remote_addr, **headers)
    assert client_ip(request) == expected


# --- Sign-in lockout (django-axes) --------------------------------------------------------------


@pytest.fixture
def fast_passwords(settings):
    # Many sign-ins per test: the default hasher would take a second each.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def sign_in(username: str, password: str, client: Client | None = None, **headers: str):
    client = client or Client()
    response = client.post(
        reverse("login"), {"username": username, "password": password}, **headers
    )
    return response, "_auth_user_id" in client.session


def fail(username: str, times: int, **headers: str) -> list[int]:
    return [sign_in(username, "wrong", **headers)[0].status_code for _ in range(times)]


@pytest.mark.django_db
def test_repeated_failures_lock_the_account_from_that_address(fast_passwords, user, other_user):
    limit = settings.AXES_FAILURE_LIMIT
    assert 3 <= limit <= 10
    # Wrong passwords are refused as such; the last one that reaches the limit locks.
    assert fail("alice", limit) == [200] * (limit - 1) + [429]

    refused, signed_in = sign_in("alice", PASSWORDS["alice"])
    assert refused.status_code == 429 and not signed_in
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    assert f"Too many failed sign-ins; try again in {minutes} minutes." in refused.text
    assert '<link rel="stylesheet"' in refused.text  # the site's page, not bare text

    # Someone else from the same address, and alice from another one, are not affected.
    assert sign_in("bob", PASSWORDS["bob"])[1]
    assert sign_in("alice", PASSWORDS["alice"], REMOTE_ADDR="198.51.100.7")[1]


@pytest.mark.django_db
def test_the_sign_in_page_warns_before_the_lockout_and_the_lockout_page_leads_back(
    fast_passwords, user
):
    limit = settings.AXES_FAILURE_LIMIT
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    answers = [sign_in("alice", "wrong")[0] for _ in range(limit)]
    texts = [answer.text for answer in answers[:-1]]
    assert "more wrong password" not in texts[-3]
    assert "2 more wrong passwords and signing in as “alice”" in texts[-2]
    assert (
        f"1 more wrong password and signing in as “alice” from this address is blocked for "
        f"{minutes} minutes."
    ) in texts[-1]
    locked = answers[-1]
    assert locked.status_code == 429
    assert f'href="{reverse("login")}"' in locked.text  # a way back, to sign in as someone else


@pytest.mark.django_db
def test_the_lockout_ends_after_the_cool_off(fast_passwords, user):
    from axes.models import AccessAttempt

    fail("alice", settings.AXES_FAILURE_LIMIT)
    # A try during the lockout, even with the right password, restarts the wait.
    almost = timezone.now() - settings.AXES_COOLOFF_TIME + timedelta(minutes=1)
    AccessAttempt.objects.update(attempt_time=almost)
    assert not sign_in("alice", PASSWORDS["alice"])[1]
    assert AccessAttempt.objects.get().attempt_time > almost + timedelta(seconds=30)
    later = timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
    AccessAttempt.objects.update(attempt_time=later)
    response, signed_in = sign_in("alice", PASSWORDS["alice"])
    assert signed_in and response.status_code == 302


@pytest.mark.django_db
def test_one_success_clears_earlier_failures(fast_passwords, user):
    limit = settings.AXES_FAILURE_LIMIT
    fail("alice", limit - 1)
    assert sign_in("alice", PASSWORDS["alice"])[1]
    assert fail("alice", limit - 1) == [200] * (limit - 1)  # counting starts again


@pytest.mark.django_db
def test_addresses_behind_the_proxy_are_counted_apart(fast_passwords, user):
    limit = settings.AXES_FAILURE_LIMIT
    # Through nginx (REMOTE_ADDR is the proxy for everyone): the client's address counts.
    attacker = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}
    assert fail("alice", limit, **attacker)[-1] == 429
    assert sign_in("alice", PASSWORDS["alice"], **attacker)[0].status_code == 429
    alice = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "198.51.100.7"}
    assert sign_in("alice", PASSWORDS["alice"], **alice)[1]


@pytest.mark.django_db
def test_a_made_up_forwarded_for_does_not_escape_the_lockout(fast_passwords, user):
    # Straight to the app, changing X-Forwarded-For on every try: still one address.
    tries = [
        sign_in("alice", "wrong", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
        for n in range(settings.AXES_FAILURE_LIMIT + 1)
    ]
    assert tries[-1][0].status_code == 429


@pytest.mark.django_db
def test_the_admin_login_is_locked_too(fast_passwords, staff):
    fail("olivia", settings.AXES_FAILURE_LIMIT)
    client = Client()
    response = client.post(
        reverse("admin:login"), {"username": "olivia", "password": PASSWORDS["olivia"]}
    )
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
