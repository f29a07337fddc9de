"""Load benchmark: the real services under 20 simulated users, on SQLite and on PostgreSQL.

Run:  .venv/bin/python bench/load.py                         (both databases, 20 users, 60 s)
      .venv/bin/python bench/load.py --databases sqlite --users 10 --duration 30
      make bench-load                                        (BENCH_ARGS="--databases sqlite")

For each database, in a fresh PARROTER_VAR_DIR under a temporary folder: `manage.py migrate`
and `collectstatic`, a private Redis (parroter.local_redis) and, for PostgreSQL, a private
cluster (parroter.local_postgres, the helper CI uses); --users users are created; then every
line of the Procfile except flower (web = gunicorn with WEB_WORKERS=2, worker with
WORKER_CONCURRENCY=2, beat, and whatever else it runs) is started through /bin/sh as honcho
would, each in its own process group, on a free loopback port, with DEBUG off and
DATABASE_CONN_MAX_AGE=60 (deploy/env.example).

The load: locust, headless and used as a library (in a child process: locust monkey-patches
the standard library with gevent), drives --users users for --duration seconds. Each user
signs in once through the real login form (CSRF token from the page), then, until the time is
up: opens the upload page, posts a photo-like 1200x800 JPEG with the default sizes through the
real form, follows the redirect to its job page, polls /jobs/<id>/status.json every
--poll-interval seconds until the job is finished, and downloads the ZIP (checked to be a ZIP
with one thumbnail per size). No think time: a closed loop, so the run finds the throughput of
the services, and response times include the wait for a free gunicorn worker. Only loopback
addresses are ever contacted; the run stops by itself (requests are bounded by the duration,
polls by --poll-timeout).

Reported per database: uploads/s (accepted uploads over the run), jobs completed/s (jobs the
database shows succeeded during the run), p50/p95 response time per endpoint, queue wait and
run time of the jobs, CPU seconds per service and for the load tool, and the counts that must
be zero: 5xx responses (seen by the client and in gunicorn's access log), failed requests of
any other kind, lost jobs (not succeeded, failed or cancelled --grace seconds after the run;
the bench stops waiting as soon as none is left), failed jobs, and "database is locked" in any
service's output. PASS/FAIL per count; exit status 1 on any FAIL. The service logs of the last
run are kept in bench/data/load/<database>/.
"""

from __future__ import annotations

import sys

if "--drive" in sys.argv:
    # The load tool's process: locust runs on gevent, which must patch the standard library
    # before anything imports it (socket, ssl, ...).
    from gevent import monkey

    monkey.patch_all()

import argparse
import io
import json
import os
import platform
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path, where bench/dashboard.py would be
# imported as the project's `dashboard` app: put the repository root there instead.
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)
for _path in (str(ROOT), str(ROOT / "platform")):
    if _path not in sys.path:
        sys.path.insert(1, _path)

from bench.harness import (  # noqa: E402 - after the path set-up above
    TERMINAL,
    Services,
    flush_redis,
    free_port,
    label,
    output_to,
    prepare_database,
    procfile_services,
    run_step,
    scan_logs,
    service_env,
    wait_until_ready,
)
from bench.harness import django_setup as _django  # noqa: E402
from bench.harness import percentiles as _percentiles  # noqa: E402
from bench.harness import vendor_version as _vendor_version  # noqa: E402

DATABASES = ("sqlite", "postgresql")
LOG_DIR = ROOT / "bench" / "data" / "load"
SKIPPED_SERVICES = {"flower"}  # needs FLOWER_BASIC_AUTH and plays no part in the load
PASSWORD = "load-" + "bench-password-1"  # noqa: S105 - throwaway users in a throwaway database
SIZES = ["128", "256", "512"]  # the form's default presets (PARROTER_DEFAULT_SIZES)

# Endpoint names in the report, in the order a user meets them.
ENDPOINTS = [
    "GET /accounts/login/",
    "POST /accounts/login/",
    "GET /",
    "POST / (upload)",
    "GET /jobs/[id]/",
    "GET /jobs/[id]/status.json",
    "GET /jobs/[id]/download",
]


# --- the load (child process: locust and gevent live only here) ---------------------------------


def photo_jpeg(width: int = 1200, height: int = 800) -> bytes:
    """A photo-like JPEG: colour gradients with sensor-like noise (not a flat colour, which
    would compress to nothing and decode unrealistically fast)."""
    from PIL import Image, ImageChops

    square = Image.linear_gradient("L")  # 256 x 256, dark at the top
    channels = [
        square.resize((width, height)),
        square.rotate(90).resize((width, height)),
        ImageChops.invert(square.rotate(45)).resize((width, height)),
    ]
    noise = Image.effect_noise((width, height), 24)
    image = Image.merge("RGB", [ImageChops.add(c, noise, scale=1.3, offset=-40) for c in channels])
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


def run_load(args) -> int:
    """Drive the web app with locust; write what was seen to args.result (JSON)."""
    import resource
    import zipfile

    import gevent
    from locust import HttpUser, constant, events, task
    from locust.env import Environment
    from locust.exception import StopUser

    users = json.loads(Path(args.users_file).read_text())
    photo = photo_jpeg()
    token_re = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
    job_re = re.compile(r"/jobs/([0-9a-f-]{36})/$")
    seen = {
        "uploads": 0,
        "downloads": 0,
        "status_counts": {},
        "server_errors": [],
        "times": {name: [] for name in ENDPOINTS},
    }
    accounts = iter(users)

    def on_request(request_type, name, response_time, response_length, response=None,
                   exception=None, **kwargs):  # fmt: skip
        seen["times"].setdefault(name, []).append(response_time)
        status = getattr(response, "status_code", None)
        key = str(status) if status is not None else "none"
        seen["status_counts"][key] = seen["status_counts"].get(key, 0) + 1
        if status is not None and status >= 500:
            seen["server_errors"].append(f"{name}: {status} {response.text[:300]!r}")

    def token(html: str) -> str:
        found = token_re.search(html)
        if not found:
            raise ValueError("no CSRF token on the page")
        return found.group(1)

    class Photographer(HttpUser):
        wait_time = constant(0)

        def on_start(self) -> None:
            self.username = next(accounts)
            with self.client.get("/accounts/login/", name=ENDPOINTS[0],
                                 catch_response=True) as page:  # fmt: skip
                if page.status_code != 200:
                    page.failure(f"login page answered {page.status_code}")
                    raise StopUser()
                csrf = token(page.text)
            with self.client.post(
                "/accounts/login/",
                data={"username": self.username, "password": PASSWORD,
                      "csrfmiddlewaretoken": csrf},
                name=ENDPOINTS[1], allow_redirects=False, catch_response=True,
            ) as answer:  # fmt: skip
                if answer.status_code != 302:
                    answer.failure(f"sign-in answered {answer.status_code}, not a redirect")
                    raise StopUser()
            self.number = 0

        @task
        def thumbnail_job(self) -> None:
            with self.client.get("/", name=ENDPOINTS[2], catch_response=True) as page:
                if page.status_code != 200:
                    page.failure(f"upload page answered {page.status_code}")
                    return
                csrf = token(page.text)
            self.number += 1
            filename = f"IMG_{self.username}_{self.number:04d}.jpg"
            with self.client.post(
                "/",
                data={"csrfmiddlewaretoken": csrf, "sizes": SIZES, "custom_sizes": ""},
                files={"images": (filename, photo, "image/jpeg")},
                name=ENDPOINTS[3], allow_redirects=False, catch_response=True,
            ) as answer:  # fmt: skip
                location = answer.headers.get("Location", "")
                found = job_re.search(location)
                if answer.status_code != 302 or not found:
                    answer.failure(f"upload answered {answer.status_code} {location!r}")
                    return
            seen["uploads"] += 1
            job_id = found.group(1)
            with self.client.get(f"/jobs/{job_id}/", name=ENDPOINTS[4],
                                 catch_response=True) as page:  # fmt: skip
                if page.status_code != 200:
                    page.failure(f"job page answered {page.status_code}")
                    return
            deadline = time.monotonic() + args.poll_timeout
            while True:
                with self.client.get(f"/jobs/{job_id}/status.json", name=ENDPOINTS[5],
                                     catch_response=True) as answer:  # fmt: skip
                    if answer.status_code != 200:
                        answer.failure(f"status.json answered {answer.status_code}")
                        return
                    state = answer.json()
                if state["status"] in TERMINAL:
                    break
                if time.monotonic() > deadline:
                    return  # counted as lost by the database check if it never finishes
                gevent.sleep(args.poll_interval)
            if state["status"] != "succeeded":
                return  # counted (with its error) by the database check
            with self.client.get(f"/jobs/{job_id}/download", name=ENDPOINTS[6],
                                 catch_response=True) as answer:  # fmt: skip
                if answer.status_code != 200:
                    answer.failure(f"download answered {answer.status_code}")
                    return
                try:
                    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
                        count = len(archive.namelist())
                except zipfile.BadZipFile:
                    answer.failure("the download is not a ZIP")
                    return
                if count != len(SIZES):
                    answer.failure(f"the ZIP holds {count} files, not {len(SIZES)}")
                    return
            seen["downloads"] += 1

    environment = Environment(user_classes=[Photographer], host=args.drive, events=events)
    environment.events.request.add_listener(on_request)
    runner = environment.create_local_runner()
    started = time.time()
    runner.start(len(users), spawn_rate=len(users))
    gevent.spawn_later(args.duration, runner.quit)
    runner.greenlet.join()
    ended = time.time()
    seen["started"], seen["ended"] = started, ended
    usage = resource.getrusage(resource.RUSAGE_SELF)
    seen["tool_cpu"] = usage.ru_utime + usage.ru_stime
    seen["requests"] = environment.stats.total.num_requests
    seen["failed_requests"] = environment.stats.total.num_failures
    seen["failure_messages"] = {
        f"{error.method} {error.name}: {error.error}": error.occurrences
        for error in environment.stats.errors.values()
    }
    Path(args.result).write_text(json.dumps(seen))
    return 0


# --- Django-side helpers (child processes with the run's environment) ---------------------------


def create_users(count: int, out: str) -> int:
    _django()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    user_model = get_user_model()
    hashed = make_password(PASSWORD)  # hashed once: the same real hasher the login checks
    names = [f"load-{n:02d}" for n in range(1, count + 1)]
    user_model.objects.bulk_create([user_model(username=name, password=hashed) for name in names])
    Path(out).write_text(json.dumps(names))
    return 0


def inspect_jobs(started: float, ended: float, grace: float, out: str) -> int:
    """Wait (up to grace seconds) until no job is left unfinished, then count."""
    _django()
    from datetime import UTC, datetime

    from jobs.models import Job

    deadline = time.monotonic() + grace
    waited_from = time.monotonic()
    while True:
        unfinished = Job.objects.exclude(status__in=TERMINAL).count()
        if unfinished == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    waited = time.monotonic() - waited_from
    counts = {row["status"]: row["n"] for row in _status_counts(Job)}
    window = (datetime.fromtimestamp(started, UTC), datetime.fromtimestamp(ended, UTC))
    finished_in_run = Job.objects.filter(status="succeeded", finished_at__range=window).count()
    waits, runs = [], []
    for queued, begun, finished in Job.objects.filter(status="succeeded").values_list(
        "queued_at", "started_at", "finished_at"
    ):
        waits.append((begun - queued).total_seconds())
        runs.append((finished - begun).total_seconds())
    lost = list(
        Job.objects.exclude(status__in=TERMINAL).values_list("pk", "status", "attempts")[:20]
    )
    failed = list(Job.objects.filter(status="failed").values_list("pk", "error")[:20])
    Path(out).write_text(
        json.dumps(
            {
                "counts": counts,
                "succeeded_in_run": finished_in_run,
                "waited": waited,
                "wait": _percentiles(waits),
                "run": _percentiles(runs),
                "lost": [f"{pk} {status} attempts={attempts}" for pk, status, attempts in lost],
                "failed": [f"{pk}: {error}" for pk, error in failed],
                "vendor": _vendor_version(),
            }
        )
    )
    return 0


def _status_counts(job_model):
    from django.db.models import Count

    return job_model.objects.values("status").annotate(n=Count("pk")).order_by()


# --- the services --------------------------------------------------------------------------------


def run_database(args, database: str, redis_url: str, static_root: Path, work: Path) -> dict:
    """One full run on one database; returns what was measured (or raises)."""
    from parroter.local_postgres import LocalPostgres

    var_dir = work / f"var-{database}"
    var_dir.mkdir()
    log_dir = LOG_DIR / database
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    postgres = LocalPostgres() if database == "postgresql" else None
    services = None
    try:
        if postgres:
            postgres.start()
            database_url = postgres.url
        else:
            database_url = f"sqlite:///{var_dir / 'db.sqlite3'}"
        env = service_env(
            var_dir=var_dir,
            static_root=static_root,
            database_url=database_url,
            redis_url=redis_url,
            web_bind=f"127.0.0.1:{port}",
            web_workers=args.web_workers,
            worker_concurrency=args.worker_concurrency,
            extra={
                "DATABASE_CONN_MAX_AGE": str(args.conn_max_age),
                **dict(item.split("=", 1) for item in args.env),
            },
        )
        step = time.perf_counter()
        prepare_log = log_dir / "prepare.log"
        prepare_database(env, static_root, prepare_log)
        users_file = work / f"users-{database}.json"
        run_step([sys.executable, __file__, "--create-users", str(args.users),
                  "--out", str(users_file)], env, prepare_log)  # fmt: skip
        prepared = time.perf_counter() - step

        services = Services(env, log_dir, skip=SKIPPED_SERVICES)
        step = time.perf_counter()
        services.start()
        wait_until_ready(base_url, services)
        ready = time.perf_counter() - step
        names = ", ".join(services.processes)
        print(f"  prepared in {prepared:.1f} s (migrate, static, {args.users} users); "
              f"services ({names}) ready in {ready:.1f} s on {base_url}", flush=True)  # fmt: skip

        load_before = os.getloadavg()[0]
        # The database server's CPU too (its own process group).
        database_group = {"postgres": postgres.process.pid} if postgres else {}
        cpu_before = services.cpu_seconds(**database_group)
        result_file = work / f"load-{database}.json"
        drive = [
            sys.executable, __file__, "--drive", base_url, "--users-file", str(users_file),
            "--duration", str(args.duration), "--poll-interval", str(args.poll_interval),
            "--poll-timeout", str(args.poll_timeout), "--result", str(result_file),
        ]  # fmt: skip
        # The load tool's own environment: none of the services' settings.
        subprocess.run(drive, check=True, cwd=ROOT, timeout=args.duration + 120)
        load = json.loads(result_file.read_text())
        load["load_average"] = (load_before, os.getloadavg()[0])
        dead_during_run = services.dead()
        services_started = list(services.processes)
        cpu_after = services.cpu_seconds(**database_group)
        load["cpu"] = {name: cpu_after[name] - cpu_before[name] for name in cpu_after}
        print(f"  load done: {load['requests']} requests, {load['uploads']} uploads; waiting up "
              f"to {args.grace:.0f} s for unfinished jobs", flush=True)  # fmt: skip

        inspected_file = work / f"jobs-{database}.json"
        run_step([sys.executable, __file__, "--inspect", str(load["started"]),
                  str(load["ended"]), str(args.grace), "--out", str(inspected_file)],
                 env, prepare_log)  # fmt: skip
        inspected = json.loads(inspected_file.read_text())
    finally:
        if services:
            services.stop()
        if postgres:
            postgres.stop()
    logs = scan_logs(log_dir)
    return {"load": load, "jobs": inspected, "logs": logs, "dead": dead_during_run,
            "services": list(services_started)}  # fmt: skip


# --- the report ----------------------------------------------------------------------------------


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "—"
    return f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def report(args, outcomes: dict[str, dict | str]) -> int:
    checks: list[tuple[str, bool]] = []
    print(f"\nmachine: {os.cpu_count()} cores, load average now "
          f"{os.getloadavg()[0]:.1f}; Python {platform.python_version()}")  # fmt: skip
    measured = {db: o for db, o in outcomes.items() if isinstance(o, dict)}
    for database, outcome in outcomes.items():
        if isinstance(outcome, str):
            checks.append((f"{label(database)}: the run failed: {outcome}", False))
    for database, o in measured.items():
        load, jobs, logs = o["load"], o["jobs"], o["logs"]
        duration = load["ended"] - load["started"]
        before, after = load["load_average"]
        print(f"\n{label(database)} ({jobs['vendor']}): {args.users} users for {duration:.1f} s; "
              f"services {', '.join(o['services'])}; load average {before:.1f} before, "
              f"{after:.1f} after")  # fmt: skip
        cpu = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in load["cpu"].items())
        print(f"  CPU used during the run: {cpu}, load tool {load['tool_cpu']:.0f} s "
              f"(of {duration * (os.cpu_count() or 1):.0f} core-seconds)")  # fmt: skip
        print(
            f"  uploads/s          {load['uploads'] / duration:6.2f}  ({load['uploads']} accepted)"
        )
        print(f"  jobs completed/s   {jobs['succeeded_in_run'] / duration:6.2f}  "
              f"({jobs['succeeded_in_run']} succeeded during the run; users downloaded "
              f"{load['downloads']} ZIPs)")  # fmt: skip
        print(f"  jobs in the database: {json.dumps(jobs['counts'], sort_keys=True)} "
              f"(waited {jobs['waited']:.1f} s after the run)")  # fmt: skip
        for what in ("wait", "run"):
            p = jobs[what]
            if p:
                print(f"  job {what + ' time':9}     p50 {p['p50'] * 1000:7.1f} ms, "
                      f"p95 {p['p95'] * 1000:7.1f} ms")  # fmt: skip
        print(f"  {'endpoint':28} {'requests':>8} {'p50 ms':>8} {'p95 ms':>8}")
        for name in ENDPOINTS:
            times = load["times"].get(name, [])
            p = _percentiles(times)
            print(f"  {name:28} {len(times):8} {fmt_ms(p and p['p50']):>8} "
                  f"{fmt_ms(p and p['p95']):>8}")  # fmt: skip
        print(f"  responses by status: {json.dumps(load['status_counts'], sort_keys=True)}; "
              f"access log lines {logs['access_lines']}; tracebacks in logs: "
              f"{json.dumps(logs['tracebacks']) if logs['tracebacks'] else 'none'}")  # fmt: skip
        for message, occurrences in load["failure_messages"].items():
            print(f"  failure x{occurrences}: {message[:300]}")
        for text in load["server_errors"][:5]:
            print(f"  5xx: {text}")
        for text in logs["locked"][:10]:
            print(f"  locked: {text}")
        for text in jobs["lost"][:10]:
            print(f"  lost: {text}")
        for text in jobs["failed"][:10]:
            print(f"  failed: {text}")
        if o["dead"]:
            print(f"  services that died during the run: {', '.join(o['dead'])}")

        name = label(database)
        server_errors = max(len(load["server_errors"]), logs["access_5xx"])
        unfinished = sum(n for status, n in jobs["counts"].items() if status not in TERMINAL)
        failed_jobs = jobs["counts"].get("failed", 0) + jobs["counts"].get("cancelled", 0)
        checks += [
            (f"{name}: 5xx responses: {server_errors} (client {len(load['server_errors'])}, "
             f"access log {logs['access_5xx']})", server_errors == 0),
            (f"{name}: lost jobs (not finished {jobs['waited']:.0f} s after the run, "
             f"limit {args.grace:.0f} s): {unfinished}", unfinished == 0),
            (f"{name}: \"database is locked\" lines in the service logs: {len(logs['locked'])}",
             not logs["locked"]),
            (f"{name}: failed or cancelled jobs: {failed_jobs}", failed_jobs == 0),
            (f"{name}: other failed requests (errors, unexpected answers): "
             f"{load['failed_requests'] - len(load['server_errors'])}",
             load["failed_requests"] - len(load["server_errors"]) == 0),
            (f"{name}: services alive through the run: "
             f"{', '.join(o['dead']) if o['dead'] else 'all'}", not o["dead"]),
            (f"{name}: jobs completed: {jobs['succeeded_in_run']}", jobs["succeeded_in_run"] > 0),
        ]  # fmt: skip
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    if measured:
        print(f"(service logs in {LOG_DIR.relative_to(ROOT)}/<database>/)")
    return 0 if checks and all(ok for _, ok in checks) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default=",".join(DATABASES),
                        help="comma-separated: sqlite,postgresql (default both)")  # fmt: skip
    parser.add_argument("--users", type=int, default=20, help="simulated users (default 20)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument(
        "--grace",
        type=float,
        default=60.0,
        help="seconds after the run by which every job must be finished",
    )
    parser.add_argument("--poll-interval", type=float, default=0.5,
                        help="seconds between a user's status.json polls")  # fmt: skip
    parser.add_argument("--poll-timeout", type=float, default=120.0, help=argparse.SUPPRESS)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=60,
        help="DATABASE_CONN_MAX_AGE for the services (deploy/env.example: 60)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra environment variable for the services (repeatable)",
    )
    # Child modes.
    parser.add_argument("--drive", help=argparse.SUPPRESS)
    parser.add_argument("--users-file", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--create-users", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--inspect", nargs=3, type=float, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        return run_load(args)
    if args.create_users:
        return create_users(args.create_users, args.out)
    if args.inspect:
        return inspect_jobs(*args.inspect, args.out)

    for item in args.env:
        if "=" not in item:
            parser.error(f"--env takes NAME=VALUE, not {item!r}")
    databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    if unknown := set(databases) - set(DATABASES):
        parser.error(f"unknown database(s): {', '.join(sorted(unknown))}")
    if args.duration > 600 or args.users > 200:
        parser.error("keep the load bounded: at most 600 s and 200 users")

    from parroter.local_redis import LocalRedis

    # A SIGTERM ends the run like Ctrl-C: the finally blocks stop every service.
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"{args.users} users for {args.duration:.0f} s per database ({', '.join(databases)}); "
          f"Procfile services: {', '.join(procfile_services(SKIPPED_SERVICES))}; SQLite "
          f"{sqlite3.sqlite_version}", flush=True)  # fmt: skip
    outcomes: dict[str, dict | str] = {}
    work = Path(tempfile.mkdtemp(prefix="parroter-load-"))
    try:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        (LOG_DIR / "redis.log").unlink(missing_ok=True)
        redis_server = LocalRedis(directory=work / "redis")
        with output_to(LOG_DIR / "redis.log"):  # its start-up warnings, and its shutdown
            redis_server.start()
        try:
            static_root = work / "static"
            for database in databases:
                print(f"\n{database}", flush=True)
                started = time.perf_counter()
                # An empty broker per run: nothing left from the previous database's run.
                flush_redis(redis_server.url)
                try:
                    outcomes[database] = run_database(
                        args, database, redis_server.url, static_root, work
                    )
                except (subprocess.CalledProcessError, subprocess.TimeoutExpired,
                        RuntimeError, OSError) as exc:  # fmt: skip
                    outcomes[database] = f"{exc.__class__.__name__}: {exc}"
                    print(f"  the run failed: {outcomes[database]}", flush=True)
                print(f"  ({database}: {time.perf_counter() - started:.0f} s in all)", flush=True)
        finally:
            with output_to(LOG_DIR / "redis.log"):
                redis_server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report(args, outcomes)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
