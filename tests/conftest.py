"""Shared fixtures: a real Redis, a real Celery worker process and a file-backed test database.

A component that cannot be had is a failure, never a skip.
"""

import contextlib
import functools
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import kombu.pools
import pytest
from django.conf import settings
from django.core.cache import cache as django_cache
from django.db import connections
from django.test.utils import override_settings
from django.utils import timezone
from PIL import Image
from playwright.sync_api import sync_playwright

from parroter.cache import FailFastConnection
from parroter.celery_app import app as celery_app
from parroter.local_redis import LocalRedis, stop_with_parent

JOB_TIMEOUT = 60


def require(available: bool, reason: str) -> None:
    """Fail a test whose component is missing: the suite proves nothing without it."""
    if not available:
        pytest.fail(f"{reason}: `make test` installs it (as root, as CI runs)")


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    # The worker is another process: an in-memory SQLite test database would be invisible to it.
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database.setdefault("TEST", {})["NAME"] = str(
            tmp_path_factory.mktemp("db") / "test.sqlite3"
        )


@pytest.fixture(scope="session", autouse=True)
def media_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("media")
    (root / "tmp").mkdir()
    with override_settings(MEDIA_ROOT=root, FILE_UPLOAD_TEMP_DIR=root / "tmp"):
        yield root


@pytest.fixture(autouse=True)
def _static_without_manifest(settings):
    # The manifest exists only after collectstatic; tests render templates without it.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(scope="session", autouse=True)
def redis_url(tmp_path_factory) -> str:
    """A real Redis for the whole session: the broker, and the cache of worker facts."""
    url = os.environ.get("REDIS_URL")
    server = None
    if not url:
        server = LocalRedis(directory=tmp_path_factory.mktemp("redis")).start()
        url = server.url
    # The app was configured from Django settings under the CELERY_ namespace; that key wins.
    celery_app.conf["CELERY_BROKER_URL"] = url
    cache = {**settings.CACHES["default"], "LOCATION": url}
    with override_settings(CACHES={"default": cache}):
        yield url
    if server:
        server.stop()


@pytest.fixture(autouse=True)
def _no_cached_rollup_totals():
    """Metrics cache the totals of earlier days in the session's shared Redis; every test's
    database starts empty, so the cache must too."""
    from jobs import rollups

    key = rollups.settled_totals_key(rollups.start_of_day(timezone.now()))
    with contextlib.suppress(Exception):
        django_cache.delete(key)


@pytest.fixture(autouse=True)
def _no_rate_history():
    """The rates (jobs.limits) count each user's requests in the session's shared Redis, and
    users of different tests share ids: every test starts with none counted."""
    with contextlib.suppress(Exception):
        client = django_cache._cache.get_client(write=True)
        for key in client.scan_iter(match="*:rate:*"):
            client.delete(key)


@pytest.fixture
def switch_broker(monkeypatch, settings):
    """Point the app (publishing, inspect, the cache of worker facts) at another Redis URL for
    one test, e.g. a closed port to play "the broker is down"."""

    def drop_connections() -> None:
        # Celery keeps connection and producer pools (kombu's, shared by URL, and its own
        # references to them); they would still reach the old URL.
        kombu.pools.reset()
        celery_app._pool = None
        celery_app.amqp._producer_pool = None
        # The cache fails fast for a few seconds after a failure; a new broker starts afresh.
        FailFastConnection._down_until = 0.0

    def switch(url: str) -> None:
        monkeypatch.setitem(celery_app.conf, "CELERY_BROKER_URL", url)
        settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": url}}
        drop_connections()

    yield switch
    monkeypatch.undo()
    drop_connections()


@pytest.fixture
def own_broker(tmp_path, switch_broker):
    """A Redis for this test alone, so only the test's own workers get its jobs; the test may
    stop and start it again (same port)."""
    broker = LocalRedis(directory=tmp_path / "redis")
    broker.start()
    switch_broker(broker.url)
    yield broker
    broker.stop()


def _database_url() -> str:
    from django.db import connection

    config = connection.settings_dict
    if config["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{config['NAME']}"
    user = quote(config["USER"] or "", safe="")
    password = quote(config["PASSWORD"] or "", safe="")
    host, port = config["HOST"] or "localhost", config["PORT"] or 5432
    return f"postgres://{user}:{password}@{host}:{port}/{config['NAME']}"


class Service:
    """A process a test started (a worker, beat, Flower, gunicorn, nginx) in a process group of
    its own, with its output in `log`; stop_process() ends it."""

    def __init__(self, process: subprocess.Popen, log: Path) -> None:
        self.process = process
        self.log = log

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def checkout_path() -> str:
    """PYTHONPATH for a process of this checkout: its code first, never the copy that the
    virtualenv's editable install points at (another worktree's)."""
    return os.pathsep.join([str(settings.BASE_DIR), str(settings.BASE_DIR / "platform")])


def app_env() -> dict[str, str]:
    """What an app process (worker, beat, gunicorn) needs to use the test database and media."""
    return {
        "DATABASE_URL": _database_url(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "FILE_UPLOAD_TEMP_DIR": str(settings.FILE_UPLOAD_TEMP_DIR),
        "PYTHONPATH": checkout_path(),
    }


def start_service(command: list[str], *, log: Path, env: dict[str, str]) -> Service:
    with log.open("ab") as sink:
        process = subprocess.Popen(
            command, env=env, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=stop_with_parent,
        )  # fmt: skip
    return Service(process, log)


def wait_until_listening(service: Service, port: int, timeout: float = 30) -> None:
    """Until something accepts connections on the loopback port (the service, alive)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if not service.alive or time.monotonic() > deadline:
                pytest.fail(f"nothing listens on port {port}:\n{service.output()[-3000:]}")
            time.sleep(0.1)


def celery_process(arguments: list[str], *, log: Path, **env: str) -> Service:
    """`celery -A parroter <arguments>` (a worker or beat) on the test database and media, in
    a process group of its own; `env` adds to or overrides the environment."""
    return start_service(
        [sys.executable, "-m", "celery", "-A", "parroter", *arguments],
        log=log,
        env={**os.environ, **app_env(), **env},
    )


def worker_arguments(
    hostname: str, *, concurrency: int = 1, queues: str = "celery", pool: str = "prefork"
) -> list[str]:
    return [
        "worker", "--pool", pool, "--concurrency", str(concurrency),
        "--loglevel", "INFO", "--without-gossip", "--without-mingle",
        "--hostname", hostname, "-Q", queues,
    ]  # fmt: skip


def wait_until_answering(worker: Service, hostname: str, timeout: float = 60) -> None:
    """Until the worker answers a ping (it consumes from now on)."""
    deadline = time.monotonic() + timeout
    while not celery_app.control.ping(destination=[hostname], timeout=0.5):
        if not worker.alive or time.monotonic() > deadline:
            pytest.fail(f"the Celery worker did not start:\n{worker.output()[-3000:]}")


def stop_process(worker: Service, *, kill: bool = False) -> None:
    """Stop the whole process group (a prefork pool's children too), SIGKILL if asked or if
    SIGTERM is not enough, and return once every process in it is gone."""
    process = worker.process
    try:
        os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        process.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    _wait_until_group_is_gone(process.pid)


@pytest.fixture(scope="session")
def celery_worker(redis_url, django_db_setup, django_db_blocker, media_root, tmp_path_factory):
    """One real `celery worker` process (prefork) on the test broker and test database."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    hostname = f"test-{os.getpid()}@{socket.gethostname()}"
    worker = celery_process(worker_arguments(hostname), log=log, REDIS_URL=redis_url)
    try:
        wait_until_answering(worker, hostname)
        yield worker
    finally:
        # Gone before the test database is dropped (PostgreSQL refuses while they are connected).
        stop_process(worker)


def start_monitor(broker_url: str, *, log: Path, **env: str) -> Service:
    """`manage.py monitor` (the Procfile's line) on the given broker and the test database;
    `env` adds to or overrides the environment."""
    return start_service(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), "monitor"],
        log=log,
        env={**os.environ, **app_env(), **env, "REDIS_URL": broker_url},
    )


def wait_for_report(check, *, monitor: Service | None = None, timeout: float = 15):
    """The monitor's first report for which check(facts) is true, within `timeout` seconds;
    returns (facts, seconds waited)."""
    from jobs import monitoring

    started = time.monotonic()
    while True:
        facts = monitoring.cluster_facts()
        if facts is not None and not facts.stale and check(facts):
            return facts, time.monotonic() - started
        if time.monotonic() - started > timeout or (monitor and not monitor.alive):
            output = monitor.output()[-3000:] if monitor else ""
            pytest.fail(f"no such report within {timeout} s; the last: {facts}\n{output}")
        time.sleep(0.1)


def consumers(facts, queue: str) -> int:
    found = facts.queue(queue)
    return found.consumers if found else 0


@pytest.fixture(scope="session")
def monitor(redis_url, celery_worker, tmp_path_factory):
    """One real monitor process beside the session's worker; it rewrites its report every 2 s,
    so a test whose database was just emptied waits for the next (wait_for_report)."""
    process = start_monitor(redis_url, log=tmp_path_factory.mktemp("monitor") / "monitor.log")
    try:
        yield process
    finally:
        stop_process(process)  # before the test database is dropped


def _wait_until_group_is_gone(group: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def wait_for_job(job, timeout: float = JOB_TIMEOUT):
    """Poll the database (what a person sees) until the job is finished."""
    deadline = time.monotonic() + timeout
    while True:
        job.refresh_from_db()
        if job.is_finished:
            return job
        if time.monotonic() > deadline:
            pytest.fail(f"job {job.pk} still {job.status} after {timeout}s")
        time.sleep(0.1)


def finished_task_result(task_id: str, timeout: float = JOB_TIMEOUT):
    """The task's row once the worker has stored its outcome (a moment after the job's)."""
    from celery import states
    from django_celery_results.models import TaskResult

    deadline = time.monotonic() + timeout
    while True:
        task = TaskResult.objects.filter(task_id=task_id).first()
        if task and task.status in states.READY_STATES:
            return task
        if time.monotonic() > deadline:
            pytest.fail(f"task {task_id} has no final result after {timeout}s")
        time.sleep(0.1)


def start_held_job(owner, media_root: Path, name: str = "held.png"):
    """A job that is surely running: its source is a FIFO, so the worker waits inside open()
    until the test writes to it (or replaces it). Returns the job, status RUNNING."""
    from jobs import services
    from jobs.models import Job

    job = Job.objects.create(
        owner=owner, source_name=name, params={"sizes": [[64, 64]]}, task_id=str(uuid.uuid4())
    )
    source = media_root / "jobs" / str(job.pk) / "source.png"
    source.parent.mkdir(parents=True)
    os.mkfifo(source)
    Job.objects.filter(pk=job.pk).update(source=f"jobs/{job.pk}/source.png")
    services.after_commit(services._enqueue, job.pk, job.task_id, job.owner_id)
    deadline = time.monotonic() + JOB_TIMEOUT
    while (job := Job.objects.get(pk=job.pk)).status != Job.Status.RUNNING:
        if time.monotonic() > deadline:
            pytest.fail("the held job never started")
        time.sleep(0.02)
    return job


def submit_image(
    owner, data: bytes, *, name: str = "photo.jpg", extension: str = "jpg", sizes=(64,)
):
    """A job submitted through the service, as the upload form does once its checks pass."""
    from django.core.files.base import ContentFile

    from jobs import services
    from jobs.kinds import thumbnails

    return services.submit_job(
        owner=owner,
        uploads=[services.Upload(ContentFile(data, name=name), name, extension)],
        boxes=[thumbnails.Box(size, size) for size in sizes],
    )


def run_in_process(job) -> dict:
    """One delivery, as the worker's task makes it, in this process; {"failed": True} when the
    job fails."""
    from jobs import running

    job.refresh_from_db()
    try:
        return running.run_job(job_id=str(job.pk), task_id=job.task_id, worker="celery@here")
    except running.JobFailed:
        return {"failed": True}


def image_bytes(size=(1200, 800), mode="RGB", fmt="JPEG", color=(200, 80, 40), **save) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, fmt, **save)
    return buffer.getvalue()


PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-1", "olivia": "olivia-password-1"}


@functools.cache
def _password_hash(password: str, algorithm: str) -> str:
    from django.contrib.auth.hashers import make_password

    return make_password(password, hasher=algorithm)


def person(django_user_model, username: str, **fields):
    """A user who signs in with PASSWORDS[username] (or "<username>-password-1"). The password's
    hash is made once per run and hasher (the app's PBKDF2, which the services a test starts
    check too): made per person, at ~0.2 s each, it was most of many tests' time."""
    from django.contrib.auth.hashers import get_hasher

    password = PASSWORDS.get(username, f"{username}-password-1")
    hashed = _password_hash(password, get_hasher().algorithm)
    return django_user_model.objects.create(username=username, password=hashed, **fields)


@pytest.fixture
def user(django_user_model):
    return person(django_user_model, "alice")


@pytest.fixture
def other_user(django_user_model):
    return person(django_user_model, "bob")


def person_with_role(django_user_model, username: str, role: str | None, *, is_staff: bool):
    """A user in one of the roles' groups (jobs.roles; None: none): made by a migration, and
    made again here after a transactional test's flush removed them."""
    from django.contrib.auth.models import Group

    from jobs import roles

    if role and not Group.objects.filter(name=role).exists():
        roles.sync_roles()

    made = person(django_user_model, username, is_staff=is_staff)
    if role:
        made.groups.add(Group.objects.get(name=role))
    return made


@pytest.fixture
def staff(django_user_model):
    """An operator (the role), and staff, so admin's door opens too; not a superuser."""
    return person_with_role(django_user_model, "olivia", "operator", is_staff=True)


# --- Flower, as `make run` starts it (shared by test_services and test_flower_proxy) -----------

PROCFILE = settings.BASE_DIR / "Procfile"


def procfile() -> dict[str, str]:
    """The Procfile's services: name -> command line (run through /bin/sh, like honcho)."""
    lines = PROCFILE.read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def service_env(**overrides: str) -> dict[str, str]:
    """The environment honcho gives a service under `make run`: the virtualenv's bin first."""
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, **overrides}


class FlowerProcess:
    def __init__(self, url: str, credentials: str) -> None:
        self.url = url  # without the /flower/ prefix, like settings.FLOWER_URL
        self.credentials = credentials  # FLOWER_BASIC_AUTH, user:password


@pytest.fixture(scope="session")
def flower(redis_url, tmp_path_factory):
    """One real Flower, started from the Procfile's line on a free loopback port."""
    import secrets

    from parroter.local_redis import free_port

    port = free_port()
    credentials = f"operator:{secrets.token_urlsafe(12)}"
    env = service_env(
        PYTHONPATH=checkout_path(),
        REDIS_URL=redis_url,
        FLOWER_PORT=str(port),
        FLOWER_BASIC_AUTH=credentials,
    )
    env.pop("FLOWER_ADDRESS", None)  # the Procfile's default: loopback
    log = tmp_path_factory.mktemp("flower") / "flower.log"
    process = start_service(["/bin/sh", "-c", procfile()["flower"]], log=log, env=env)
    try:
        wait_until_listening(process, port)
        yield FlowerProcess(f"http://127.0.0.1:{port}", credentials)
    finally:
        stop_process(process)


# --- Headless Chromium (browser tests) ---------------------------------------------------------

CHROMIUM = shutil.which("chromium")
# Without these, Chromium keeps dialling out to the network, which is closed here.
QUIET_FLAGS = ["--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-quic", "--disable-gpu", "--no-first-run"]  # fmt: skip
# Screenshots the browser tests save for people to look at (git-ignored).
ARTIFACTS = Path(os.environ.get("PARROTER_TEST_ARTIFACTS", settings.BASE_DIR / "test-artifacts"))
PHONE = 390


def snapshot(page, name: str) -> None:
    """Full-page screenshots at 1280 and 390 px; at 390 the page must not scroll sideways."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"]
    page.set_viewport_size({"width": 1280, "height": 900})
    page.screenshot(path=str(ARTIFACTS / f"{name}-1280.png"), full_page=True)
    page.set_viewport_size({"width": PHONE, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE, name
    page.screenshot(path=str(ARTIFACTS / f"{name}-390.png"), full_page=True)
    page.set_viewport_size({"width": width, "height": 900})


@pytest.fixture
def browser(monkeypatch):
    require(CHROMIUM is not None, "Debian's chromium is not installed")
    # Playwright's sync API keeps an event loop in this thread, so Django sees an async
    # context: ORM calls a test makes meanwhile are allowed, and get a connection of their own.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=QUIET_FLAGS
        )
        yield browser
        browser.close()
        # That connection is closed here, or PostgreSQL refuses to drop the test database.
        connections.close_all()


def confirm_bulk(client, action: str, query: dict, **post):
    """A bulk action as an operator does it: its confirmation page, then the POST with what
    that page showed (its moment and count)."""
    import re

    from django.urls import reverse

    url = reverse("dashboard:ops_bulk", args=[action])
    page = client.get(url, query).content.decode()
    shown = dict(re.findall(r'<input type="hidden" name="(as_of|count)" value="(\d+)">', page))
    return client.post(url, {**query, **shown}, **post)
