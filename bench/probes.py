"""No page, probe or poll waits on the broker: the web tier timed with a healthy broker, then
with the broker down, hung and slow; and how soon a paused job worker is seen.

Run:  .venv/bin/python bench/probes.py                    (SQLite and PostgreSQL, ~3 minutes)
      make bench-probes                                   (BENCH_ARGS="--databases sqlite")

For each database, in a fresh PARROTER_VAR_DIR: migrate, a private Redis, a staff user and an
owner with a queued job, and a day of rollups (one row per minute and outcome, so the 24 h
charts are full); then the Procfile's web (gunicorn, 2 workers), worker, housekeeping and monitor
lines. Each endpoint a page, a probe or a poll calls is requested one after another on loopback
with a signed-in session (the owner's for the job page's poll, staff's for the rest):

1. Broker healthy: --requests requests each; p50 and p99. The baseline is /healthz (a view that
   touches nothing) through the same gunicorn in the same run, so the ratio says what each
   endpoint costs beyond serving any request on this machine now.
2. Liveness: the job worker's process group is sent SIGSTOP; the seconds until /readyz says its
   queue has no consumer, then SIGCONT and the seconds until it has one again.
3. Broker down (a closed port), hung (accepts, never answers) and slow (a relay to the real
   Redis that delivers every reply 3 s late): web is restarted pointed at it (broker and cache),
   and each endpoint is requested --fault-requests times; the slowest answer, and any 5xx.

Targets: p99 <= 50 ms with the broker healthy; every answer within 1.5 s (a readiness probe's
timeout) with a bad broker, /readyz 503 and nothing else 5xx; no gunicorn WORKER TIMEOUT; a
paused worker seen within 15 s and its return within 15 s. PASS/FAIL per target; exit status 1
on any FAIL. Service logs of the last run are kept in bench/data/probes/<database>/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
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
    Services,
    free_port,
    label,
    prepare_database,
    service_env,
    wait_until_ready,
)
from tests.broker_fakes import HungServer, PausableProxy  # noqa: E402 - the tests' fakes

DATABASES = ("sqlite", "postgresql")
LOG_DIR = ROOT / "bench" / "data" / "probes"
HEALTHY_P99_MS = 50
FAULT_BUDGET_S = 1.5
SEEN_WITHIN_S = 15
SKIPPED_SERVICES = frozenset({"flower", "beat"})


def seed() -> None:
    """In a child with the services' environment: users, sessions, a queued job, a day of
    rollups; prints what the driver needs as JSON."""
    from bench.harness import django_setup

    django_setup()
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import Group, User
    from django.contrib.sessions.backends.db import SessionStore
    from django.utils import timezone

    from jobs.models import Job, JobRollup

    def session(user: User) -> str:
        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        return store.session_key

    staff = User.objects.create_user("operator", password="x", is_staff=True)  # noqa: S106
    staff.groups.add(Group.objects.get(name="operator"))  # the role the console asks for
    owner = User.objects.create_user("owner", password="x")  # noqa: S106
    job = Job.objects.create(owner=owner, source_name="waiting.jpg", params={"sizes": [[64, 64]]})
    now = int(timezone.now().timestamp() // 60)
    JobRollup.objects.bulk_create(
        JobRollup(minute=minute, kind="thumbnails", status=status, jobs=jobs,
                  run_seconds=jobs * 0.4, wait_seconds=jobs * 0.9, run_5=jobs, wait_6=jobs)
        for minute in range(now - 1440, now + 1)
        for status, jobs in (("succeeded", 40), ("failed", 2))
    )  # fmt: skip
    print(json.dumps({"staff": session(staff), "owner": session(owner), "job": str(job.pk)}))


def get(base_url: str, path: str, session: str | None, timeout: float = 10) -> tuple[int, float]:
    """(status, seconds) of one GET; a timeout counts as status 0."""
    request = urllib.request.Request(base_url + path)  # noqa: S310 - loopback http only
    if session:
        request.add_header("Cookie", f"sessionid={session}")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            answer.read()
            status = answer.status
    except urllib.error.HTTPError as error:
        error.read()
        status = error.code
    except OSError:
        status = 0
    return status, time.perf_counter() - started


def endpoints(facts: dict) -> list[tuple[str, str, str | None]]:
    """(name, path, session) of what pages, probes and polls request."""
    job, staff, owner = facts["job"], facts["staff"], facts["owner"]
    return [
        ("/healthz (baseline)", "/healthz", None),
        ("/readyz", "/readyz", None),
        ("/metrics", "/metrics", staff),
        ("/ops/stats (24 h)", "/ops/stats?range=24h", staff),
        ("/ops/jobs", "/ops/jobs", staff),
        ("/ops/workers", "/ops/workers", staff),
        ("job page's poll", f"/jobs/{job}/panel", owner),
    ]


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * 0.99), len(ordered) - 1)]


def healthy(base_url: str, facts: dict, requests: int) -> tuple[list[str], bool]:
    lines, ok = [], True
    timings = {}
    for name, path, session in endpoints(facts):
        for _ in range(10):  # warm up: connections, caches, imports
            get(base_url, path, session)
        samples = [get(base_url, path, session) for _ in range(requests)]
        statuses = {status for status, _ in samples}
        timings[name] = [seconds * 1000 for _, seconds in samples]
        if statuses - {200}:
            lines.append(f"FAIL {name} answered {sorted(statuses)} with the broker healthy")
            ok = False
    baseline = p99(timings["/healthz (baseline)"])
    for name, values in timings.items():
        high = p99(values)
        verdict = "PASS" if high <= HEALTHY_P99_MS else "FAIL"
        ok &= verdict == "PASS"
        middle = sorted(values)[len(values) // 2]
        lines.append(
            f"{verdict} broker healthy {name}: p50 {middle:.1f} ms, p99 {high:.1f} ms = "
            f"{high / baseline:.1f}x /healthz's p99 (target p99 <= {HEALTHY_P99_MS} ms)"
        )
    return lines, ok


def queue_state(base_url: str) -> str:
    """What /readyz says of the jobs' queue: "ok", "none" (no consumer) or "?"."""
    try:
        with urllib.request.urlopen(f"{base_url}/readyz", timeout=5) as answer:  # noqa: S310
            body = json.loads(answer.read())
    except urllib.error.HTTPError as error:
        body = json.loads(error.read())
    return body.get("workers", {}).get("queues", {}).get("celery", {}).get("status", "?")


def seconds_until(base_url: str, wanted: str, limit: float = 60) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if queue_state(base_url) == wanted:
            return time.monotonic() - started
        time.sleep(0.2)
    return None


def liveness(base_url: str, services: Services) -> tuple[list[str], bool]:
    worker = services.processes["worker"]
    os.killpg(worker.pid, signal.SIGSTOP)
    gone = seconds_until(base_url, "none")
    os.killpg(worker.pid, signal.SIGCONT)
    back = seconds_until(base_url, "ok")
    lines, ok = [], True
    for what, seconds in (("paused job worker seen", gone), ("resumed job worker seen", back)):
        passed = seconds is not None and seconds <= SEEN_WITHIN_S
        ok &= passed
        took = f"{seconds:.1f} s" if seconds is not None else "never (60 s)"
        lines.append(
            f"{'PASS' if passed else 'FAIL'} liveness: {what} by /readyz in {took} "
            f"(target <= {SEEN_WITHIN_S} s)"
        )
    return lines, ok


def faults(base_url: str, facts: dict, services: Services, redis_port: int, requests: int):
    lines, ok = [], True
    hung, slow = HungServer(), PausableProxy(redis_port, reply_delay=3)
    brokers = {"down": f"redis://127.0.0.1:{free_port()}/0", "hung": hung.url, "slow": slow.url}
    try:
        for fault, url in brokers.items():
            services.stop(names=["web"])
            services.service_env["web"] = {"REDIS_URL": url}
            services.start(["web"])
            started = time.monotonic()
            while get(base_url, "/healthz", None)[0] != 200:
                if time.monotonic() - started > 60:
                    raise RuntimeError(f"web did not start against the {fault} broker")
                time.sleep(0.2)
            for name, path, session in endpoints(facts):
                samples = [get(base_url, path, session) for _ in range(requests)]
                slowest = max(seconds for _, seconds in samples)
                statuses = sorted({status for status, _ in samples})
                expected = [503] if path == "/readyz" else [200]
                passed = slowest <= FAULT_BUDGET_S and statuses == expected
                ok &= passed
                lines.append(
                    f"{'PASS' if passed else 'FAIL'} broker {fault} {name}: slowest "
                    f"{slowest * 1000:.0f} ms of {requests}, answered {statuses} (target <= "
                    f"{FAULT_BUDGET_S} s, {expected[0]})"
                )
    finally:
        hung.close()
        slow.close()
        services.service_env.pop("web", None)
    return lines, ok


def run_database(args, database: str, work: Path) -> tuple[list[str], bool]:
    from parroter.local_postgres import LocalPostgres
    from parroter.local_redis import LocalRedis

    var_dir = work / f"var-{database}"
    var_dir.mkdir()
    log_dir = LOG_DIR / database
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    postgres = LocalPostgres() if database == "postgresql" else None
    redis = LocalRedis(directory=work / f"redis-{database}").start()
    services = None
    try:
        database_url = postgres.start().url if postgres else f"sqlite:///{var_dir / 'db.sqlite3'}"
        env = service_env(
            var_dir=var_dir,
            static_root=work / "static",
            database_url=database_url,
            redis_url=redis.url,
            web_bind=f"127.0.0.1:{port}",
            web_workers=2,
            worker_concurrency=1,
            extra={"DATABASE_CONN_MAX_AGE": "60"},
        )
        prepare_database(env, work / "static", log_dir / "prepare.log")
        seeded = subprocess.run(
            [sys.executable, __file__, "--seed"], env=env, cwd=ROOT, capture_output=True,
            text=True, check=True,
        )  # fmt: skip
        facts = json.loads(seeded.stdout.strip().splitlines()[-1])
        services = Services(env, log_dir, skip=SKIPPED_SERVICES)
        services.start()
        wait_until_ready(base_url, services, workers=2)
        if seconds_until(base_url, "ok") is None:
            raise RuntimeError("the monitor never reported the job worker")
        lines, ok = healthy(base_url, facts, args.requests)
        more, passed = liveness(base_url, services)
        lines += more
        ok &= passed
        more, passed = faults(base_url, facts, services, redis.port, args.fault_requests)
        lines += more
        ok &= passed
        services.stop()
        timeouts = (log_dir / "web.log").read_text(errors="replace").count("WORKER TIMEOUT")
        lines.append(
            f"{'PASS' if not timeouts else 'FAIL'} gunicorn WORKER TIMEOUT lines: {timeouts} "
            "(target 0)"
        )
        return [f"{label(database)}: {line}" for line in lines], ok and not timeouts
    finally:
        if services:
            services.stop()
        redis.stop()
        if postgres:
            postgres.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default=",".join(DATABASES))
    parser.add_argument("--requests", type=int, default=300, help="per endpoint, broker healthy")
    parser.add_argument("--fault-requests", type=int, default=10, help="per endpoint and fault")
    parser.add_argument("--seed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed:
        seed()
        return 0
    results, ok = [], True
    with tempfile.TemporaryDirectory(prefix="parroter-probes-") as work:
        for database in args.databases.split(","):
            lines, passed = run_database(args, database, Path(work))
            results += lines
            ok &= passed
            print("\n".join(lines), flush=True)
    failed = sum(1 for line in results if ": FAIL " in line)
    print(f"\nprobes: {'PASS' if ok else 'FAIL'} ({failed} FAIL lines of {len(results)})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
