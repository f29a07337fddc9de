"""Who may do what at every URL the project serves: one table, checked for seven people.

The table has a row for every pattern in the URL resolver (Django admin as one entry, checked
with a few of its pages): a new URL without a row fails `test_every_url_has_a_row`. Each row
says what anonymous people, the job's owner, another signed-in user, staff with no role and
each role (viewer, operator, admin: jobs.roles) get, so a view
that forgets its check shows up here. Someone else's job answers 404 like a job that does not
exist (never 403, which would say it exists); ids that are unknown or not UUIDs answer 404,
never 500. POSTs carry a valid CSRF token (clients enforce CSRF as browsers do), and each action
is also tried without one.
"""

import io
import uuid
import zipfile
from dataclasses import dataclass, field

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils.crypto import get_random_string

from jobs import tokens
from jobs.models import ApiToken, Job, Preset
from parroter.local_redis import free_port
from tests.conftest import image_bytes, person_with_role

pytestmark = pytest.mark.django_db

# staff: is_staff and no role (admin's door opens, nothing else); the roles (jobs.roles): a
# viewer without is_staff, an operator and an admin with it. Last, as they act on jobs that the
# others tried first.
ROLES = ("anonymous", "owner", "other", "staff", "viewer", "operator", "admin")
READERS = ("viewer", "operator", "admin")  # the roles, which see every job and the console
LOGIN = "login"  # 302 to /accounts/login/?next=<the path asked for>
UNKNOWN = "0b7d2a4e-7d44-4c1e-9a36-000000000000"  # a well-formed id of no job
THUMB = "thumb_128x128.jpg"
# Admin is one entry (its URLs are Django's); keys not in the resolver: WhiteNoise's static
# files and a path that matches nothing.
ADMIN, STATIC, NO_ROUTE = "admin/", "static", "no route"
SIZE = {"sizes": ["128"]}  # a re-run's form
ADMIN_LOGIN = "/admin/login/?next="


def everyone(status):
    return dict.fromkeys(ROLES, status)


def signed_in(status, anonymous=LOGIN):
    return {"anonymous": anonymous, **dict.fromkeys(ROLES[1:], status)}


def job_rule(owner_and_readers=200):
    # Other people's jobs are not found, exactly like jobs that do not exist; the roles see all.
    return {
        "anonymous": LOGIN, "owner": owner_and_readers, "other": 404, "staff": 404,
        **dict.fromkeys(READERS, owner_and_readers),
    }  # fmt: skip


def own_rule(owner=200):
    # What the owner alone does with their own things; everyone else finds nothing.
    return {**signed_in(404), "owner": owner}


def api_action_rule():
    # Viewers see the job but may not act on it; operators come after the owner acted: 409.
    return {
        "anonymous": 401, "owner": 200, "other": 404, "staff": 404, "viewer": 403,
        "operator": 409, "admin": 409,
    }  # fmt: skip


def api_queue_rule(operators):
    return {**signed_in(403, anonymous=401), "operator": operators, "admin": operators}


def api_rerun_rule(owner):
    # The roles see the job but may not re-run someone else's.
    return {**job_rule(403), "anonymous": 401, "owner": owner}


def console_rule(readers, others=403, *, act=False):
    # The console: the roles read it; acting needs the operator role (viewers 403).
    rule = {**signed_in(others), **dict.fromkeys(READERS, readers)}
    return rule | {"viewer": 403} if act else rule


def admin_rule(allowed, staff=403, login=ADMIN_LOGIN, anonymous=LOGIN):
    # Admin: is_staff opens its door (a viewer without it gets admin's login), its own model
    # permissions decide the rest.
    rule = {**everyone(login), "anonymous": anonymous or login}
    return rule | {"staff": staff, "operator": allowed, "admin": allowed}


@dataclass(frozen=True)
class Row:
    key: str  # the resolver entry this row covers: the URL name, or ADMIN / STATIC / NO_ROUTE
    path: str  # {job}: the owner's finished job, {failed} / {queued}: the owner's others
    expect: dict
    method: str = "get"
    csrf: bool = True
    data: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path}{'' if self.csrf else ' without CSRF'}"


TABLE = [
    # Open to everyone.
    Row("healthz", "/healthz", everyone(200)),
    Row("readyz", "/readyz", everyone(200)),  # the session's real Redis: the broker answers
    # Prometheus' scrape: the roles, and a 401 (not a login page) for whoever is not signed in.
    Row("metrics", "/metrics", {**console_rule(200), "anonymous": 401}),
    Row("metrics", "/metrics", everyone(405), method="post"),
    Row("login", "/accounts/login/", everyone(200)),
    Row(STATIC, "/static/dashboard/style.css", everyone(200)),
    Row(NO_ROUTE, "/no-such-page", everyone(404)),
    # Accounts. Signing out is a POST (with CSRF) and lands on the login page.
    Row("logout", "/accounts/logout/", signed_in("/accounts/login/"), method="post"),
    Row("logout", "/accounts/logout/", everyone(403), method="post", csrf=False),
    Row("password_change", "/accounts/password_change/", signed_in(200)),
    Row("password_change_done", "/accounts/password_change/done/", signed_in(200)),
    # Everyone's own settings (the zone times are shown in).
    Row("dashboard:preferences", "/accounts/settings/", signed_in(200)),
    Row(
        "dashboard:preferences",
        "/accounts/settings/",
        signed_in(302),
        "post",
        data={"time_zone": "Europe/Berlin"},
    ),  # fmt: skip
    Row("dashboard:preferences", "/accounts/settings/", everyone(403), "post", csrf=False),
    Row(
        "dashboard:delete_preset",
        "/accounts/presets/{preset}/delete",
        own_rule(302),
        method="post",
    ),  # fmt: skip
    Row(
        "dashboard:delete_preset",
        "/accounts/presets/{preset}/delete",
        everyone(403),
        "post",
        csrf=False,
    ),  # fmt: skip
    Row("dashboard:delete_preset", "/accounts/presets/{preset}/delete", signed_in(405)),
    # Everyone's own API tokens: made and revoked by their owner only; others' are not found.
    Row("dashboard:tokens", "/accounts/tokens/", signed_in(200)),
    Row("dashboard:tokens", "/accounts/tokens/", signed_in(302), "post", data={"name": "cron"}),
    Row("dashboard:tokens", "/accounts/tokens/", everyone(403), "post", csrf=False),
    Row(
        "dashboard:revoke_token",
        "/accounts/tokens/{token}/revoke",
        own_rule(302),
        method="post",
    ),  # fmt: skip
    Row(
        "dashboard:revoke_token",
        "/accounts/tokens/{token}/revoke",
        everyone(403),
        "post",
        csrf=False,
    ),  # fmt: skip
    Row("dashboard:revoke_token", "/accounts/tokens/{token}/revoke", signed_in(405)),
    # Owners' pages.
    Row("dashboard:upload", "/", signed_in(200)),
    Row("dashboard:upload", "/", signed_in(302), method="post", data={"upload": True}),
    Row("dashboard:upload", "/", everyone(403), method="post", csrf=False, data={"upload": True}),
    Row("dashboard:job", "/jobs/{job}/", job_rule()),
    Row("dashboard:job", f"/jobs/{UNKNOWN}/", signed_in(404)),
    Row("dashboard:job", "/jobs/not-a-uuid/", everyone(404)),
    Row("dashboard:job_panel", "/jobs/{job}/panel", job_rule()),
    Row("dashboard:job_panel", f"/jobs/{UNKNOWN}/panel", signed_in(404)),
    Row("dashboard:job_panel", "/jobs/123/panel", everyone(404)),
    # For scripts: 401 JSON without a login, never a redirect to the login page.
    Row("dashboard:job_status", "/jobs/{job}/status.json", {**job_rule(), "anonymous": 401}),
    Row("dashboard:job_status", f"/jobs/{UNKNOWN}/status.json", signed_in(404, anonymous=401)),
    Row("dashboard:job_status", "/jobs/{job}x/status.json", everyone(404)),
    Row("dashboard:download", "/jobs/{job}/download", job_rule()),
    Row("dashboard:jobs", "/jobs/", signed_in(200)),
    Row("dashboard:download", "/jobs/{failed}/download", job_rule(404)),
    # The owner and operators try a failed job again; viewers see it but may not act on it.
    # The owner alone deletes a finished job (admins through admin); others find nothing.
    Row("dashboard:delete", "/jobs/{job}/delete", own_rule()),
    Row("dashboard:delete", "/jobs/{queued}/delete", own_rule(302)),
    Row("dashboard:delete", "/jobs/{failed}/delete", own_rule(302), "post"),
    Row("dashboard:delete", "/jobs/{failed}/delete", everyone(403), "post", csrf=False),
    Row("dashboard:delete", f"/jobs/{UNKNOWN}/delete", signed_in(404), method="post"),
    # The owner alone re-runs a finished job, as a new job (a redirect to it).
    Row("dashboard:rerun", "/jobs/{job}/rerun", own_rule()),
    Row("dashboard:rerun", "/jobs/{queued}/rerun", own_rule(302)),
    Row("dashboard:rerun", "/jobs/{job}/rerun", own_rule(302), "post", data=SIZE),
    Row("dashboard:rerun", "/jobs/{job}/rerun", everyone(403), "post", csrf=False, data=SIZE),
    Row("dashboard:rerun", f"/jobs/{UNKNOWN}/rerun", signed_in(404), method="post"),
    # The owner alone cancels from the job's page, asked first; operators use the console's.
    Row("dashboard:cancel", "/jobs/{queued}/cancel", own_rule()),
    Row("dashboard:cancel", "/jobs/{job}/cancel", own_rule(302)),
    Row("dashboard:cancel", "/jobs/{queued}/cancel", own_rule(302), "post"),
    Row("dashboard:cancel", "/jobs/{queued}/cancel", everyone(403), "post", csrf=False),
    Row("dashboard:cancel", f"/jobs/{UNKNOWN}/cancel", signed_in(404), method="post"),
    Row("dashboard:retry", "/jobs/{failed}/retry", job_rule(302) | {"viewer": 403}, "post"),
    Row("dashboard:retry", "/jobs/{failed}/retry", everyone(403), "post", csrf=False),
    Row("dashboard:retry", "/jobs/{failed}/retry", signed_in(405)),
    Row("dashboard:retry", f"/jobs/{UNKNOWN}/retry", signed_in(404), method="post"),
    Row("dashboard:retry", "/jobs/not-a-uuid/retry", everyone(404), method="post"),
    Row("dashboard:download", f"/jobs/{UNKNOWN}/download", signed_in(404)),
    Row("dashboard:download", "/jobs/%00/download", everyone(404)),
    Row("dashboard:thumbnail", f"/jobs/{{job}}/thumbnails/{THUMB}", job_rule()),
    Row("dashboard:thumbnail", "/jobs/{job}/thumbnails/other.jpg", job_rule(404)),
    Row("dashboard:thumbnail", f"/jobs/{UNKNOWN}/thumbnails/{THUMB}", signed_in(404)),
    Row("dashboard:thumbnail", f"/jobs/not-a-uuid/thumbnails/{THUMB}", everyone(404)),
    # The operator console: the roles only (others 403, staff without a role too).
    Row("dashboard:ops", "/ops/", console_rule(200)),
    Row("dashboard:ops_jobs", "/ops/jobs", console_rule(200)),
    Row("dashboard:ops_stats", "/ops/stats", console_rule(200)),
    Row("dashboard:ops_workers", "/ops/workers", console_rule(200)),
    Row("dashboard:ops_job", "/ops/jobs/{job}/", console_rule(200)),
    Row("dashboard:ops_job", f"/ops/jobs/{UNKNOWN}/", console_rule(404)),
    Row("dashboard:ops_job", "/ops/jobs/not-a-uuid/", everyone(404)),
    # Actions: POST only, with CSRF, for operators. The owner may not act on their own job here.
    Row("dashboard:ops_retry", "/ops/jobs/{failed}/retry", console_rule(302, act=True), "post"),
    Row("dashboard:ops_retry", "/ops/jobs/{failed}/retry", everyone(403), "post", csrf=False),
    Row("dashboard:ops_retry", "/ops/jobs/{failed}/retry", signed_in(405)),
    Row("dashboard:ops_retry", "/ops/jobs/not-a-uuid/retry", everyone(404), method="post"),
    Row("dashboard:ops_retry", f"/ops/jobs/{UNKNOWN}/retry", console_rule(404, act=True), "post"),
    Row("dashboard:ops_cancel", "/ops/jobs/{queued}/cancel", console_rule(302, act=True), "post"),
    Row("dashboard:ops_cancel", "/ops/jobs/{queued}/cancel", everyone(403), "post", csrf=False),
    # Its question first: only for those who may then cancel.
    Row("dashboard:ops_cancel", "/ops/jobs/{queued}/cancel", console_rule(200, act=True)),
    Row("dashboard:ops_cancel", "/ops/jobs/not-a-uuid/cancel", everyone(404), method="post"),
    Row("dashboard:ops_cancel", f"/ops/jobs/{UNKNOWN}/cancel", console_rule(404, act=True), "post"),
    Row("dashboard:ops_audit", "/ops/audit/", console_rule(200)),
    Row("dashboard:ops_failures", "/ops/failures/", console_rule(200)),
    Row("dashboard:ops_failures", "/ops/failures/", signed_in(405), method="post"),
    Row("dashboard:ops_acknowledge", "/ops/failures/bad_input-0/acknowledge", signed_in(405)),
    Row(
        "dashboard:ops_acknowledge",
        "/ops/failures/bad_input-0/acknowledge",
        console_rule(404, act=True),
        method="post",
    ),  # fmt: skip
    Row(
        "dashboard:ops_acknowledge",
        "/ops/failures/bad_input-0/acknowledge",
        everyone(403),
        method="post",
        csrf=False,
    ),  # fmt: skip
    Row("dashboard:ops_alerts", "/ops/alerts/", console_rule(200)),
    Row("dashboard:ops_alerts", "/ops/alerts/", signed_in(405), method="post"),
    # Pausing a queue: its question, then the POST; resuming is a POST. Operators only.
    Row("dashboard:ops_queue", "/ops/queues/celery/pause", console_rule(200, act=True)),
    Row("dashboard:ops_queue", "/ops/queues/celery/resume", console_rule(302, act=True), "post"),
    Row("dashboard:ops_queue", "/ops/queues/celery/pause", everyone(403), "post", csrf=False),
    Row("dashboard:ops_queue", "/ops/queues/nope/pause", console_rule(404, act=True)),
    Row("dashboard:ops_queue", "/ops/queues/celery/stop", console_rule(404, act=True), "post"),
    Row("dashboard:ops_audit", "/ops/audit/", signed_in(405), method="post"),
    Row("dashboard:ops_bulk", "/ops/bulk/retry", console_rule(200, act=True)),
    Row("dashboard:ops_bulk", "/ops/bulk/cancel", console_rule(200, act=True)),
    Row("dashboard:ops_bulk", "/ops/bulk/delete", console_rule(404, act=True)),
    Row("dashboard:ops_bulk", "/ops/bulk/retry", console_rule(302, act=True), method="post"),
    Row("dashboard:ops_bulk", "/ops/bulk/cancel", everyone(403), method="post", csrf=False),
    # Flower: the roles (a viewer's POST is refused: tests/test_flower_proxy.py). No Flower
    # listens in this test, so they get the proxy's 502.
    Row("flower", "/flower/", console_rule(502)),
    Row("flower", "/flower/api/workers", console_rule(502)),
    # nginx's auth_request answer: never a redirect.
    Row("flower_auth", "/flower-auth", {**console_rule(204), "anonymous": 401}),
    # The JSON API: 401 JSON without a login (never the login page), someone else's job not
    # found, and everything it does not have a JSON 404 or 405. Its own tests (test_api.py) try
    # API tokens as well; here the session, whose POSTs need CSRF.
    Row("api:openapi-json", "/api/openapi.json", signed_in(200, anonymous=401)),
    Row("api:openapi-view", "/api/docs", signed_in(200)),  # a page for people: the login page
    Row("api:api-root", "/api/", everyone(404)),
    Row("api:unknown_path", "/api/no-such-path", everyone(404)),
    Row("api:job_list", "/api/jobs", signed_in(200, anonymous=401)),
    Row("api:job_list", "/api/jobs", everyone(405), method="delete"),
    Row("api:job_submit", "/api/jobs", signed_in(201, 401), method="post", data={"upload": True}),
    Row(
        "api:job_submit",
        "/api/jobs",
        signed_in(403, 401),
        "post",
        csrf=False,
        data={"upload": True},
    ),
    Row("api:job", "/api/jobs/{job}", {**job_rule(), "anonymous": 401}),
    Row("api:job", f"/api/jobs/{UNKNOWN}", signed_in(404, anonymous=401)),
    Row("api:job", "/api/jobs/not-a-uuid", everyone(404)),
    Row("api:job_status", "/api/jobs/{job}/status", {**job_rule(), "anonymous": 401}),
    Row("api:job_archive", "/api/jobs/{job}/archive", {**job_rule(), "anonymous": 401}),
    Row("api:job_archive", "/api/jobs/{failed}/archive", {**job_rule(404), "anonymous": 401}),
    # Staff comes last and finds the owner's retry or cancel done: 409, the state forbids it.
    Row("api:job_retry", "/api/jobs/{failed}/retry", api_action_rule(), method="post"),
    Row("api:job_retry", "/api/jobs/{failed}/retry", signed_in(403, 401), "post", csrf=False),
    Row("api:job_retry", "/api/jobs/{failed}/retry", everyone(405)),
    Row("api:job_rerun", "/api/jobs/{job}/rerun", api_rerun_rule(201), "post", data=SIZE),
    Row("api:job_rerun", "/api/jobs/{queued}/rerun", api_rerun_rule(409), "post", data=SIZE),
    Row("api:job_rerun", "/api/jobs/{job}/rerun", signed_in(403, 401), "post", csrf=False),
    Row("api:job_rerun", f"/api/jobs/{UNKNOWN}/rerun", signed_in(404, 401), method="post"),
    Row("api:job_rerun", "/api/jobs/{job}/rerun", everyone(405)),
    Row("api:queue_pause", "/api/queues/celery/pause", api_queue_rule(200), method="post"),
    Row("api:queue_pause", "/api/queues/celery/pause", signed_in(403, 401), "post", csrf=False),
    Row("api:queue_pause", "/api/queues/nope/pause", api_queue_rule(404), method="post"),
    Row("api:queue_resume", "/api/queues/celery/resume", api_queue_rule(200), method="post"),
    Row("api:queue_resume", "/api/queues/celery/resume", everyone(405)),
    Row("api:job_cancel", "/api/jobs/{queued}/cancel", api_action_rule(), method="post"),
    Row("api:job_cancel", "/api/jobs/{queued}/cancel", signed_in(403, 401), "post", csrf=False),
    Row("api:job_cancel", f"/api/jobs/{UNKNOWN}/cancel", signed_in(404, 401), method="post"),
    # Django admin: is_staff opens it; the roles' permissions decide what it shows.
    Row(ADMIN, "/admin/", admin_rule(200, 200, "/admin/login/?next=/admin/", anonymous=None)),
    Row(ADMIN, "/admin/login/", admin_rule("/admin/", "/admin/", login=200, anonymous=None)),
    Row(ADMIN, "/admin/jobs/job/", admin_rule(200)),
    Row(ADMIN, "/admin/jobs/job/{job}/change/", admin_rule(200)),
    Row(ADMIN, "/admin/jobs/auditentry/", admin_rule(200)),
    Row(ADMIN, "/admin/jobs/apitoken/", admin_rule(403) | {"admin": 200}),
    # Alerts: operators read the rules and the history, admins edit rules and receivers.
    Row(ADMIN, "/admin/jobs/alertrule/", admin_rule(200)),
    Row(ADMIN, "/admin/jobs/alertrule/add/", admin_rule(403) | {"admin": 200}),
    Row(ADMIN, "/admin/jobs/alertreceiver/", admin_rule(403) | {"admin": 200}),
    Row(ADMIN, "/admin/jobs/alertevent/", admin_rule(200)),
    Row(ADMIN, "/admin/django_celery_beat/periodictask/add/", admin_rule(403) | {"admin": 200}),
    # Admin's own answer to an id it cannot find: back to its index, with a message.
    Row(ADMIN, f"/admin/jobs/job/{UNKNOWN}/change/", admin_rule("/admin/")),
    Row(ADMIN, "/admin/jobs/job/not-a-uuid/change/", admin_rule("/admin/")),
    Row(ADMIN, "/admin/auth/user/", admin_rule(403)),
]


def resolver_keys() -> set[str]:
    """Every URL pattern the project serves: its qualified name (or its route, if unnamed)."""

    def walk(patterns, prefix: str = "", namespace: str | None = None):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if route.startswith(ADMIN):
                yield ADMIN
            elif isinstance(pattern, URLResolver):
                inner = ":".join(filter(None, [namespace, pattern.namespace])) or None
                yield from walk(pattern.url_patterns, route, inner)
            else:
                assert isinstance(pattern, URLPattern)
                name = pattern.name and ":".join(filter(None, [namespace, pattern.name]))
                yield name or route

    return set(walk(get_resolver().url_patterns))


def test_every_url_has_a_row():
    served = resolver_keys()
    covered = {row.key for row in TABLE} - {STATIC, NO_ROUTE}
    assert served - covered == set(), "URLs without a row in TABLE: add who may use them"
    assert covered - served == set(), "rows for URLs that no longer exist"


def _zip(**files: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _job(owner, status: str, **fields) -> Job:
    return Job.objects.create(
        owner=owner,
        source=SimpleUploadedFile("source.jpg", image_bytes((10, 10))),
        source_name="mine.jpg",
        params={"sizes": [[128, 128]]},
        status=status,
        task_id=str(uuid.uuid4()),
        **fields,
    )


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # Three accounts per row: the default hasher would take a second each time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def jobs(user) -> dict[str, Job | ApiToken | Preset]:
    """What the table's paths name: the owner's jobs, API token and preset."""
    thumbnail = image_bytes((10, 10))
    return {
        "token": tokens.create_api_token(user=user, name="script")[0],
        "preset": Preset.objects.create(owner=user, name="Web", choices={"sizes": ["128"]}),
        "job": _job(
            user,
            Job.Status.SUCCEEDED,
            archive=SimpleUploadedFile("thumbnails.zip", _zip(**{THUMB: thumbnail})),
            result={"thumbnails": [{"name": THUMB, "width": 10, "height": 10, "bytes": 1}]},
        ),
        "failed": _job(user, Job.Status.FAILED, error="Broken image."),
        "queued": _job(user, Job.Status.QUEUED),
    }


@pytest.fixture
def clients(user, other_user, staff, django_user_model) -> dict[str, Client]:
    people = {
        "anonymous": None,
        "owner": user,
        "other": other_user,
        "staff": person_with_role(django_user_model, "sam", None, is_staff=True),
        "viewer": person_with_role(django_user_model, "vera", "viewer", is_staff=False),
        "operator": staff,
        "admin": person_with_role(django_user_model, "ada", "admin", is_staff=True),
    }
    clients = {}
    for role, person in people.items():
        clients[role] = Client(enforce_csrf_checks=True)
        if person:
            clients[role].force_login(person)
    return clients


@pytest.fixture
def no_flower(settings):
    settings.FLOWER_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there


@pytest.fixture
def static_files(settings):
    # WhiteNoise serves from the finders, as under runserver (no collectstatic in tests).
    settings.WHITENOISE_USE_FINDERS = True


def _request(client: Client, row: Row, path: str):
    kwargs = {}
    if row.method == "post":
        if row.csrf:
            token = get_random_string(32)
            client.cookies["csrftoken"] = token
            kwargs["HTTP_X_CSRFTOKEN"] = token
        if row.data.get("upload"):
            kwargs["data"] = {
                "images": SimpleUploadedFile("up.jpg", image_bytes((40, 30)), "image/jpeg"),
                "sizes": ["128"],
            }
        elif row.data:
            kwargs["data"] = row.data
    response = getattr(client, row.method)(path, **kwargs)
    client.cookies.pop("csrftoken", None)
    return response


def _outcome(response, expected):
    """What happened, in the table's terms: a status, LOGIN, or where a redirect went."""
    if response.status_code == 302 and isinstance(expected, str):
        if response.url.startswith("/accounts/login/?next="):
            return LOGIN
        return expected if response.url.startswith(expected) else response.url
    return response.status_code


@pytest.mark.parametrize("row", TABLE, ids=lambda row: f"{row.key}: {row}")
def test_who_may_use_the_url(row, clients, jobs, no_flower, static_files):
    path = row.path.format(**{name: job.pk for name, job in jobs.items()})
    got = {}
    for role in ROLES:  # the roles last: their actions change the jobs others tried first
        response = _request(clients[role], row, path)
        got[role] = _outcome(response, row.expect[role])
        if got[role] == LOGIN:
            assert response.url == f"/accounts/login/?next={path}"
    assert got == row.expect
