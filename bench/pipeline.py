"""Pipeline benchmark: how close the real services come to the bare thumbnail kind.

Run:  .venv/bin/python bench/pipeline.py                      (both databases, 300 jobs)
      .venv/bin/python bench/pipeline.py --databases sqlite --jobs 300 --no-with-flower
      make bench-pipeline                                     (BENCH_ARGS="--databases sqlite")

Corpus: --jobs photo-like 1732x1155 (2.0 MP) JPEGs, quality 90, about 0.5 MB each, made by
bench/thumbnails.py's generator and cached in bench/corpus/pipeline/. Every job asks for the
form's default boxes, 128, 256 and 512 px.

For each database (SQLite, then a private PostgreSQL from parroter.local_postgres), in a fresh
PARROTER_VAR_DIR with a private Redis (parroter.local_redis), DEBUG off, WEB_WORKERS=2,
WORKER_CONCURRENCY=2 and DATABASE_CONN_MAX_AGE unset (the app's own default is measured):

1. ceiling: jobs.kinds.thumbnails.make_thumbnails over the N files, each into a BytesIO ZIP, in
   a 2-process multiprocessing pool (fork, warmed up), --ceiling-passes passes (default 5)
   before the services start and as many after they stop. Ceiling = 2 cores / the kind's CPU
   time per image (process_time in the pool process), each image's least over all passes,
   printed with the median and spread (slowest / fastest - 1) of the passes. CPU time barely
   stretches when other processes take the cores, wall time does (five SQLite runs at load 3-5:
   12.5-13.3 ms per image, where the mean of one wall-clock pass each side, the ceiling until
   then, read 77-116 images/s), so the ratios no longer move with the ceiling's noise, only
   with the phases' own; the host still shows (a PostgreSQL half at load 17 read 10.9 ms).
   Beside it: the passes' wall-clock images/s (best, median, spread), which on a quiet machine
   come near the CPU-bound rate (2026-11-27: 150-176 images/s at 11.4-12.1 ms CPU per image,
   165-175 CPU-bound); a note says when no pass reached 85% of it.
2. drain: every Procfile line but `worker` is started (web, housekeeping, beat, and flower with
   --with-flower); 4 client threads, each signed in through the login form, submit the N jobs
   through the upload form (CSRF token from the page); then the `worker` line is started.
   Throughput = N / (last finished_at - first started_at), from the database; the time from
   starting the worker process (Celery's boot) is printed beside it.
3. end to end: with the worker running, the same 4 threads submit N more jobs through the form
   as fast as it answers. Throughput = N / (last finished_at - first request sent);
   p50/p95 of queue wait (started_at - queued_at) and run time (finished_at - started_at).
4. CPU per job by process: utime+stime (with reaped children's) of every service process from
   /proc/<pid>/stat before and after each phase (web = gunicorn master and workers; worker
   main; worker pool = its children; housekeeping; beat; monitor; flower; redis; postgres = the
   server and all its backends), divided by N. The drain window starts at the sample taken
   just before the first job started, so Celery's boot is reported apart.
   SQL statements per job: on PostgreSQL the cluster runs with log_statement=all and each
   service connects with its own application_name (PGAPPNAME=parroter-<service>), so the
   server log counts the worker's statements (main and pool, django-celery-results' writes
   included) and web's; on both databases, after the services stop, a few jobs submitted with
   jobs.services.submit_job are run in-process through jobs.running.run_job under Django's
   CaptureQueriesContext (the worker's Django work without Celery's result backend).
   Also printed: ceiling CPU per image / all services' CPU per job, which on a machine the
   pipeline saturates predicts the throughput ratios without their wall-clock noise, and the
   images/s the ceiling's CPU per image would make with both cores wholly its.
5. Celery's floor: the Procfile's worker line again, with -A bench.celery_floor and its queue,
   for N tasks that sleep as long as the kind's CPU time per image (acks_late, events and a
   stored result, as a job's task): CPU per task of its main process, pool, Flower, Redis and
   PostgreSQL, and the drain ratio
   no job could pass on top of that floor (ceiling CPU / (ceiling CPU + floor CPU)).

Targets: drain >= 0.70 x ceiling (ambition 0.85), end to end >= 0.45 x ceiling, and no failed,
cancelled or lost job, no refused upload, no "database is locked". PASS/FAIL lines; exit 1 on a
FAIL. Logs of the last run stay in bench/data/pipeline/<database>/ (statements.txt lists the
statements of one job).
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import multiprocessing
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
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
    django_setup,
    flush_redis,
    free_port,
    label,
    output_to,
    percentiles,
    prepare_database,
    procfile_services,
    read_proc_stats,
    run_step,
    scan_logs,
    service_env,
    vendor_version,
    wait_until_ready,
)
from bench.load import PASSWORD  # noqa: E402 - the users bench/load.py's create_users makes

DATABASES = ("sqlite", "postgresql")
LOG_DIR = ROOT / "bench" / "data" / "pipeline"
CORPUS_DIR = ROOT / "bench" / "corpus" / "pipeline"
PHOTO_SIZE = (1732, 1155)  # 2.0 MP, 3:2
NOISE = 3.0  # bench/thumbnails.py's "typical photo"
SIZES = ["128", "256", "512"]  # the form's default presets
CLIENTS = 4
CONCURRENCY = 2  # WORKER_CONCURRENCY, and the ceiling's pool
DRAIN_TARGET, DRAIN_AMBITION, E2E_TARGET = 0.70, 0.85, 0.45
COUNTED_JOBS = 5  # run in-process under CaptureQueriesContext (after one warm-up job)
PG_LOG = re.compile(r"^([^|\n]*)\|\S+:  (?:statement|execute [^:]*): (.*)$")
PG_CONNECTION = re.compile(r"\|\S+:  connection authorized: .* application_name=(\S+)")
NEW_CONNECTION = "(new connection)"
TABLE = re.compile(r'(?:FROM|INTO|UPDATE|JOIN)\s+"?([A-Za-z_][A-Za-z0-9_]*)"?', re.IGNORECASE)
CPU_ROWS = ["web", "worker main", "worker pool", "housekeeping", "beat", "monitor", "flower",
            "redis", "postgres"]  # fmt: skip
WORKERS = ("worker", "floor")  # their main process and pool are counted apart
# As bench/celery_floor.py names them (this process does not import the Celery app).
FLOOR_QUEUE, FLOOR_TASK = "bench-floor", "bench.wait"


# --- corpus and ceiling --------------------------------------------------------------------------


def corpus(count: int) -> list[Path]:
    from bench.thumbnails import ensure_jpegs

    width, height = PHOTO_SIZE
    paths = [CORPUS_DIR / f"photo_{width}x{height}_n{NOISE:g}_{i:03d}.jpg" for i in range(count)]
    ensure_jpegs(paths, PHOTO_SIZE, NOISE, first_seed=2000)
    return paths


def _pool_start() -> None:
    from PIL import Image

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler (_interrupt)
    Image.init()


def _thumbnail_file(numbered: tuple[int, str]) -> tuple[int, float]:
    """(number, CPU seconds the kind took on that file in this pool process)."""
    from bench.thumbnails import BOXES, MAX_PIXELS
    from jobs.kinds.thumbnails import make_thumbnails

    number, path = numbered
    started = time.process_time()
    archive = io.BytesIO()
    with open(path, "rb") as source:
        make_thumbnails(source, BOXES, archive, max_pixels=MAX_PIXELS)
    return number, time.process_time() - started


def measure_ceiling(files: list[Path], passes: int) -> list[dict]:
    """The bare kind over the files, `passes` times in turn, in one warmed-up pool of
    CONCURRENCY processes: per pass its wall time, images/s, the pool processes' CPU per image
    (from /proc, their pickling included) and each file's CPU time in the kind."""
    pool = multiprocessing.get_context("fork").Pool(CONCURRENCY, initializer=_pool_start)
    numbered = list(enumerate(map(str, files)))
    found = []
    try:
        pool.map(_thumbnail_file, numbered[: 2 * CONCURRENCY], chunksize=1)
        pids = [process.pid for process in pool._pool]

        def cpu() -> float:
            stats = read_proc_stats()
            return sum(stats[pid][2] for pid in pids if pid in stats)

        for _ in range(passes):
            each = [0.0] * len(files)
            cpu_before, started = cpu(), time.perf_counter()
            for number, seconds in pool.imap_unordered(_thumbnail_file, numbered, chunksize=1):
                each[number] = seconds
            seconds = time.perf_counter() - started
            cpu_used = cpu() - cpu_before
            found.append({"seconds": seconds, "per_s": len(files) / seconds,
                          "cpu_ms": 1000 * cpu_used / len(files), "each": each})  # fmt: skip
        pool.close()
    finally:
        pool.terminate()
        pool.join()
    return found


def _rates(passes: list[dict]) -> str:
    return ", ".join(f"{p['per_s']:.0f}" for p in passes)


def ceiling_summary(before: list[dict], after: list[dict]) -> dict:
    """The ceiling the ratios use: CONCURRENCY cores over the kind's CPU time per image, each
    file's least over all passes (the pool's CPU time barely stretches when other processes take
    the cores, its wall time does), with the median and spread (slowest / fastest - 1) of the
    passes' CPU per image; beside it the passes' wall-clock images/s, best, median and spread,
    and the best of each side."""
    passes = before + after
    cpu = sorted(1000 * statistics.fmean(p["each"]) for p in passes)
    each = zip(*(p["each"] for p in passes), strict=True)
    best_ms = 1000 * statistics.fmean(min(times) for times in each)
    rates = sorted(p["per_s"] for p in passes)
    return {
        "per_s": CONCURRENCY * 1000 / best_ms,
        "cpu_ms": best_ms,
        "cpu_median": statistics.median(cpu),
        "cpu_spread": cpu[-1] / cpu[0] - 1,
        "pool_cpu_ms": min(p["cpu_ms"] for p in passes),
        "wall_per_s": rates[-1],
        "wall_median": statistics.median(rates),
        "wall_spread": rates[-1] / rates[0] - 1,
        "before": max(p["per_s"] for p in before),
        "after": max(p["per_s"] for p in after),
        "passes": passes,
        "sides": (len(before), len(after)),
        "first_mean": (before[0]["per_s"] + after[0]["per_s"]) / 2,  # the method before
    }


# --- the database, read directly (no Django in this process) --------------------------------------


class Probe:
    """Job rows by id, straight from the database, as epoch seconds."""

    def __init__(self, database_url: str) -> None:
        if database_url.startswith("sqlite:///"):
            path = database_url.removeprefix("sqlite:///")
            self.connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=20)
            self.vendor = "sqlite"
        else:
            import psycopg

            self.connection = psycopg.connect(database_url, autocommit=True,
                                              application_name="bench-probe")  # fmt: skip
            self.vendor = "postgresql"

    def rows(self, ids: list[str]) -> list[tuple]:
        wanted = {i.replace("-", "") for i in ids}
        cursor = self.connection.cursor()
        cursor.execute("SELECT id, status, queued_at, started_at, finished_at FROM jobs_job")
        found = []
        for pk, status, *times in cursor.fetchall():
            if str(pk).replace("-", "") in wanted:
                found.append((str(pk), status, *(self._epoch(t) for t in times)))
        return found

    def result_count(self, task: str) -> int:
        """How many results of the task are stored."""
        query = "SELECT count(*) FROM django_celery_results_taskresult WHERE "
        cursor = self.connection.cursor()
        cursor.execute(query + ("task_name = ?" if self.vendor == "sqlite" else "task_name = %s"),
                       (task,))  # fmt: skip
        return cursor.fetchone()[0]

    def _epoch(self, value) -> float | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)  # Django stores UTC on SQLite
        return value.timestamp()

    def close(self) -> None:
        self.connection.close()


def wait_finished(probe: Probe, ids: list[str], timeout: float, on_poll=None) -> list[tuple]:
    deadline = time.monotonic() + timeout
    while True:
        rows = probe.rows(ids)
        if on_poll:
            on_poll(rows)
        if len(rows) == len(ids) and all(row[1] in TERMINAL for row in rows):
            return rows
        if time.monotonic() > deadline:
            return rows
        time.sleep(0.2 if on_poll else 0.5)


# --- the clients --------------------------------------------------------------------------------


def sign_in(base_url: str, username: str):
    import requests

    token_re = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
    session = requests.Session()
    page = session.get(f"{base_url}/accounts/login/", timeout=30)
    token = token_re.search(page.text).group(1)
    answer = session.post(f"{base_url}/accounts/login/", allow_redirects=False, timeout=60,
                          data={"username": username, "password": PASSWORD,
                                "csrfmiddlewaretoken": token})  # fmt: skip
    if answer.status_code != 302:
        raise RuntimeError(f"sign-in of {username} answered {answer.status_code}")
    page = session.get(f"{base_url}/", timeout=30)  # the upload form, for its CSRF token
    return session, token_re.search(page.text).group(1)


def submit_all(base_url: str, clients: list, files: list[Path], tag: str) -> dict:
    """Each client thread posts the upload form until every file is submitted."""
    job_re = re.compile(r"/jobs/([0-9a-f-]{36})/$")
    numbers = itertools.count()
    lock = threading.Lock()
    seen: dict = {"ids": [], "errors": [], "sent": [], "times": []}

    def client(session, token) -> None:
        while True:
            with lock:
                n = next(numbers)
            if n >= len(files):
                return
            path = files[n]
            sent = time.time()
            try:
                answer = session.post(
                    f"{base_url}/", allow_redirects=False, timeout=120,
                    data={"csrfmiddlewaretoken": token, "sizes": SIZES, "custom_sizes": ""},
                    files={"images": (f"{tag}_{path.name}", path.read_bytes(), "image/jpeg")},
                )  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - counted and reported
                with lock:
                    seen["errors"].append(f"{path.name}: {exc!r}"[:300])
                continue
            found = job_re.search(answer.headers.get("Location", ""))
            with lock:
                seen["sent"].append(sent)
                seen["times"].append(time.time() - sent)
                if answer.status_code == 302 and found:
                    seen["ids"].append(found.group(1))
                else:
                    seen["errors"].append(f"{path.name}: {answer.status_code} "
                                          f"{answer.text[:200]!r}")  # fmt: skip

    threads = [threading.Thread(target=client, args=c) for c in clients]
    started = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seen["started"], seen["ended"] = started, time.time()
    return seen


# --- CPU and statements ---------------------------------------------------------------------------


def cpu_snapshot(services: Services, redis_pid: int, postgres_pid: int | None) -> dict:
    stats = read_proc_stats()
    used = dict.fromkeys(CPU_ROWS, 0.0)
    for name, process in services.processes.items():
        total = sum(own + kids for _pp, group, own, kids in stats.values() if group == process.pid)
        if name in WORKERS:
            main = services.main_pid(name, stats)
            own = stats[main][2] if main in stats else 0.0
            used[f"{name} main"] = used.get(f"{name} main", 0.0) + own
            used[f"{name} pool"] = used.get(f"{name} pool", 0.0) + total - own  # alive or reaped
        else:
            used[name] = used.get(name, 0.0) + total
    if redis_pid in stats:
        used["redis"] = stats[redis_pid][2] + stats[redis_pid][3]
    if postgres_pid:
        # The server and its backends: each backend is a session of its own (setsid), so they
        # are found as the server's children; those that exited are in the server's own count.
        used["postgres"] = sum(
            own + kids
            for pid, (ppid, _group, own, kids) in stats.items()
            if postgres_pid in (pid, ppid)
        )
    return used


def cpu_delta(after: dict, before: dict) -> dict:
    return {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}


def classify(statements: list[str]) -> dict:
    verbs: Counter = Counter()
    detail: Counter = Counter()
    connections = statements.count(NEW_CONNECTION)
    statements = [sql for sql in statements if sql != NEW_CONNECTION]
    for sql in statements:
        verb = (sql.split(None, 1) or ["?"])[0].upper().strip(";")
        verbs[verb] += 1
        table = TABLE.search(sql)
        if "set_config('TimeZone'" in sql:
            detail["SELECT set_config (a new connection's set-up)"] += 1
        else:
            detail[f"{verb} {table.group(1) if table and verb != 'BEGIN' else ''}".strip()] += 1
    writes = verbs["INSERT"] + verbs["UPDATE"] + verbs["DELETE"]
    return {"total": len(statements), "writes": writes, "verbs": dict(verbs),
            "detail": dict(detail), "connections": connections}  # fmt: skip


def pg_log_statements(log: Path, start: int, end: int) -> dict[str, list[str]]:
    """Statements in the server log between two byte offsets, by application_name."""
    with log.open("rb") as file:
        file.seek(start)
        text = file.read(end - start).decode(errors="replace")
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if match := PG_LOG.match(line):
            found.setdefault(match.group(1) or "?", []).append(match.group(2))
        elif match := PG_CONNECTION.search(line):
            found.setdefault(match.group(1) or "?", []).append(NEW_CONNECTION)
    return found


def count_sql_in_process(user: str, files: list[str], out: str) -> int:
    """Child process: submit_job, then run_job under CaptureQueriesContext, per file."""
    django_setup()
    from django.contrib.auth import get_user_model
    from django.core.files import File
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from jobs import running, services
    from jobs.kinds.thumbnails import Box

    owner = get_user_model().objects.get(username=user)
    boxes = [Box(int(size), int(size)) for size in SIZES]
    counted = []
    for n, path in enumerate(files):
        with open(path, "rb") as source:
            upload = services.Upload(File(source, name=Path(path).name), Path(path).name, "jpg")
            job = services.submit_job(owner=owner, uploads=[upload], boxes=boxes)
        with CaptureQueriesContext(connection) as captured:
            outcome = running.run_job(job_id=str(job.pk), task_id=job.task_id,
                                      worker="bench-count@localhost")  # fmt: skip
        if "thumbnails" not in outcome:
            raise RuntimeError(f"in-process job {job.pk} did not succeed: {outcome}")
        if n:  # the first is a warm-up
            counted.append([query["sql"] for query in captured.captured_queries])
    Path(out).write_text(json.dumps({"jobs": counted, "vendor": vendor_version()}))
    return 0


# --- one database -------------------------------------------------------------------------------


def run_database(args, database: str, files: list[Path], redis, static_root: Path,
                 work: Path) -> dict:  # fmt: skip
    from parroter.local_postgres import LocalPostgres

    var_dir = work / f"var-{database}"
    var_dir.mkdir()
    log_dir = LOG_DIR / database
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    postgres = None
    if database == "postgresql":
        postgres = LocalPostgres(
            settings={"log_statement": "all", "log_connections": "on", "log_line_prefix": "%a|"}
        )
    services = probe = None
    out: dict = {"database": database}
    try:
        if postgres:
            postgres.start()
            database_url = postgres.url
        else:
            database_url = f"sqlite:///{var_dir / 'db.sqlite3'}"
        # The pipeline is measured, not the per-person submit rate (60/m): 4 clients submit 2N.
        extra = {"PARROTER_SUBMIT_RATE": "100000/m", "PARROTER_API_RATE": "100000/m"}
        if args.with_flower:
            flower_port = free_port()
            extra |= {"FLOWER_BASIC_AUTH": f"bench:{secrets.token_urlsafe(16)}",
                     "FLOWER_PORT": str(flower_port),
                     "FLOWER_URL": f"http://127.0.0.1:{flower_port}"}  # fmt: skip
        env = service_env(var_dir=var_dir, static_root=static_root, database_url=database_url,
                          redis_url=redis.url, web_bind=f"127.0.0.1:{port}",
                          web_workers=2, worker_concurrency=CONCURRENCY, extra=extra)  # fmt: skip
        prepare_log = log_dir / "prepare.log"
        step = time.perf_counter()
        prepare_database(env, static_root, prepare_log)
        users_file = work / f"users-{database}.json"
        run_step([sys.executable, str(ROOT / "bench" / "load.py"), "--create-users",
                  str(CLIENTS), "--out", str(users_file)], env, prepare_log)  # fmt: skip
        users = json.loads(users_file.read_text())
        print(f"  prepared in {time.perf_counter() - step:.1f} s", flush=True)

        # 1. The ceiling, before any service runs.
        out["load_before"] = os.getloadavg()[0]
        ceiling_before = measure_ceiling(files, args.ceiling_passes)
        print(f"  ceiling (before the services): {_rates(ceiling_before)} images/s", flush=True)

        skip = set() if args.with_flower else {"flower"}
        names = list(procfile_services(skip))
        app_names = {name: {"PGAPPNAME": f"parroter-{name}"} for name in names}
        services = Services(env, log_dir, skip=skip, service_env=app_names)
        services.start([name for name in names if name != "worker"])
        wait_until_ready(base_url, services)  # the housekeeping worker answers
        redis_pid = redis.process.pid
        postgres_pid = postgres.process.pid if postgres else None
        pg_log = postgres.directory / "server.log" if postgres else None

        def snapshot() -> dict:
            return cpu_snapshot(services, redis_pid, postgres_pid)

        def log_offset() -> int:
            return pg_log.stat().st_size if pg_log else 0

        probe = Probe(database_url)
        clients = [sign_in(base_url, user) for user in users]

        # 2. Drain: N jobs queued with no job worker, then the worker started.
        cpu0, self0 = snapshot(), _self_cpu()
        submitted = submit_all(base_url, clients, files, "drain")
        cpu1, self1 = snapshot(), _self_cpu()
        out["submit"] = {"seconds": submitted["ended"] - submitted["started"],
                         "accepted": len(submitted["ids"]), "errors": submitted["errors"],
                         "cpu": cpu_delta(cpu1, cpu0), "client_cpu": self1 - self0,
                         "response": percentiles(submitted["times"])}  # fmt: skip
        print(f"  drain: {len(submitted['ids'])} jobs queued in "
              f"{out['submit']['seconds']:.1f} s; starting the worker", flush=True)  # fmt: skip
        drain_ids = submitted["ids"]
        time.sleep(1)
        samples: list[tuple[float, dict]] = []
        first_started = [None]

        def sample(rows) -> None:
            if first_started[0] is None:
                samples.append((time.time(), snapshot()))
                started = [row[3] for row in rows if row[3] is not None]
                if started:
                    first_started[0] = min(started)

        offsets = {"drain": [log_offset()]}
        spawned = time.time()
        spawn_cpu = snapshot()
        samples.append((spawned, spawn_cpu))
        services.start(["worker"])
        self2 = _self_cpu()
        rows = wait_finished(probe, drain_ids, args.timeout, on_poll=sample)
        cpu_end = snapshot()
        offsets["drain"].append(log_offset())
        out["drain"] = phase_result(rows, drain_ids)
        begin = out["drain"]["first_started"]
        boot = max((s for s in samples if begin is None or s[0] <= begin), key=lambda s: s[0])
        out["drain"].update(
            spawned=spawned,
            cpu=cpu_delta(cpu_end, boot[1]),
            boot_cpu=sum(cpu_delta(boot[1], spawn_cpu).values()),
            client_cpu=_self_cpu() - self2,
            from_spawn=(out["drain"]["last_finished"] or time.time()) - spawned,
        )
        print(f"  drain: {out['drain']['per_s']:.2f} jobs/s", flush=True)

        # 3. End to end: N jobs through the form while the worker runs.
        time.sleep(1)
        offsets["e2e"] = [log_offset()]
        cpu2, self3 = snapshot(), _self_cpu()
        submitted = submit_all(base_url, clients, files, "e2e")
        e2e_ids = submitted["ids"]
        rows = wait_finished(probe, e2e_ids, args.timeout)
        cpu3 = snapshot()
        offsets["e2e"].append(log_offset())
        first_sent = min(submitted["sent"]) if submitted["sent"] else submitted["started"]
        out["e2e"] = phase_result(rows, e2e_ids, since=first_sent)
        out["e2e"].update(cpu=cpu_delta(cpu3, cpu2), client_cpu=_self_cpu() - self3,
                          accepted=len(e2e_ids), errors=submitted["errors"],
                          submit_seconds=submitted["ended"] - submitted["started"],
                          response=percentiles(submitted["times"]))  # fmt: skip
        print(f"  end to end: {out['e2e']['per_s']:.2f} jobs/s", flush=True)
        out["dead"] = services.dead()
        out["services"] = list(services.processes)
        out["n"] = len(files)

        # 5. Celery's floor: the worker line again, for a task that does nothing.
        services.stop(names=["worker"])
        kind_seconds = statistics.median(p["cpu_ms"] for p in ceiling_before) / 1000
        try:
            out["floor"] = measure_floor(args, services, snapshot, probe, redis.url, log_dir,
                                         kind_seconds)  # fmt: skip
        except RuntimeError as error:  # informative: the phases above still count
            out["floor"] = {"error": str(error)}
        print(f"  Celery's floor: {out['floor'].get('error', 'measured')}", flush=True)
        out["load_after"] = os.getloadavg()[0]

        if pg_log:
            out["pg_log"] = {
                phase: {app: classify(sqls) for app, sqls in
                        pg_log_statements(pg_log, *offsets[phase]).items()}
                for phase in offsets
            }  # fmt: skip
            worker_sql = pg_log_statements(pg_log, *offsets["drain"]).get("parroter-worker", [])
            (log_dir / "worker-statements-drain.txt").write_text("\n".join(worker_sql) + "\n")
        probe.close()
        probe = None
        services.stop()
        # The ceiling again, nothing running: the ratios use the best pass of both sides.
        ceiling_after = measure_ceiling(files, args.ceiling_passes)
        print(f"  ceiling (after the services): {_rates(ceiling_after)} images/s", flush=True)
        out["ceiling"] = ceiling_summary(ceiling_before, ceiling_after)

        # 4b. Statements of run_job in-process (after the services stopped: nothing else runs).
        counted_file = work / f"counted-{database}.json"
        run_step([sys.executable, __file__, "--count-sql", users[0], "--out", str(counted_file),
                  *map(str, files[: COUNTED_JOBS + 1])], env, prepare_log)  # fmt: skip
        counted = json.loads(counted_file.read_text())
        out["vendor"] = counted["vendor"]
        per_job = [classify(sqls) for sqls in counted["jobs"]]
        out["in_process"] = {
            "jobs": len(per_job),
            "first": per_job[0],
            "total": sum(p["total"] for p in per_job) / len(per_job),
            "writes": sum(p["writes"] for p in per_job) / len(per_job),
        }
        (log_dir / "statements.txt").write_text(
            f"jobs.running.run_job in-process, one job ({out['vendor']}):\n"
            + "\n".join(counted["jobs"][0])
            + "\n"
        )
    finally:
        if probe:
            probe.close()
        if services:
            services.stop()
        if postgres:
            postgres.stop()
    out["logs"] = scan_logs(log_dir)
    return out


def measure_floor(args, services: Services, snapshot, probe: Probe, broker_url: str,
                  log_dir: Path, seconds: float) -> dict:  # fmt: skip
    """The Procfile's worker line, run with bench/celery_floor.py's task that only waits
    `seconds` (the kind's CPU time per image) without using the CPU: what Celery with the
    project's settings costs per task at a job's pace (taking the message, the pool, the
    task's events and its stored result), which no job can run below. The tasks are sent
    once the worker is ready, faster than it takes them; CPU per task of its main process,
    its pool, Flower, Redis and the database server."""
    from celery import Celery

    command = procfile_services()["worker"].replace("-A parroter ", "-A bench.celery_floor ")
    services.start(["floor"], {"floor": command.replace("-Q celery ", f"-Q {FLOOR_QUEUE} ")})
    log = log_dir / "floor.log"
    deadline = time.monotonic() + 90
    while b" ready." not in log.read_bytes():
        if services.dead() or time.monotonic() > deadline:
            raise RuntimeError(f"the floor's worker did not start: see {log}")
        time.sleep(0.2)
    time.sleep(1)  # its first turns of the loop, and the first heartbeat, go before the window
    sender = Celery(broker=broker_url, set_as_current=False)
    before = snapshot()
    for number in range(args.jobs):
        sender.send_task(FLOOR_TASK, args=[str(number), seconds], queue=FLOOR_QUEUE)
    deadline = time.monotonic() + args.timeout
    while (stored := probe.result_count(FLOOR_TASK)) < args.jobs:
        if services.dead() or time.monotonic() > deadline:
            raise RuntimeError(f"the floor's worker stored {stored} of {args.jobs} results")
        time.sleep(0.2)
    after = snapshot()
    sender.close()
    services.stop(names=["floor"])
    used = cpu_delta(after, before)
    cpu = {"worker main": used["floor main"], "worker pool": used["floor pool"],
           "flower": used.get("flower", 0.0), "redis": used["redis"],
           "postgres": used.get("postgres", 0.0)}  # fmt: skip
    return {"cpu": cpu}


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def phase_result(rows: list[tuple], ids: list[str], since: float | None = None) -> dict:
    counts = Counter(row[1] for row in rows)
    missing = len(ids) - len(rows)
    started = [row[3] for row in rows if row[3] is not None]
    finished = [row[4] for row in rows if row[4] is not None and row[1] in TERMINAL]
    first = min(started) if started else None
    last = max(finished) if finished else None
    begin = since if since is not None else first
    seconds = (last - begin) if (last and begin) else None
    done = [row for row in rows if row[1] == "succeeded"]
    return {
        "counts": dict(counts),
        "missing": missing,
        "first_started": first,
        "last_finished": last,
        "seconds": seconds,
        "per_s": len(ids) / seconds if seconds else 0.0,
        "wait": percentiles([row[3] - row[2] for row in done]),
        "run": percentiles([row[4] - row[3] for row in done]),
    }


# --- the report ----------------------------------------------------------------------------------


def report(args, outcomes: dict[str, dict | str]) -> int:
    checks: list[tuple[str, bool]] = []
    print(f"\nmachine: {os.cpu_count()} cores, load average now {os.getloadavg()[0]:.1f}; "
          f"Python {platform.python_version()}; Flower "
          f"{'on (task events on)' if args.with_flower else 'off'}")  # fmt: skip
    for database, o in outcomes.items():
        name = label(database)
        if isinstance(o, str):
            checks.append((f"{name}: the run failed: {o}", False))
            continue
        n, ceiling, drain, e2e = o["n"], o["ceiling"], o["drain"], o["e2e"]
        print(f"\n{name} ({o['vendor']}), {n} jobs per phase; services "
              f"{', '.join(o['services'])}; load average {o['load_before']:.1f} before, "
              f"{o['load_after']:.1f} after")  # fmt: skip
        drain_ratio = drain["per_s"] / ceiling["per_s"]
        if ceiling["wall_per_s"] < 0.85 * ceiling["per_s"]:
            print(
                f"  note: no pass of the ceiling's pool reached 85% of its CPU-bound rate (best "
                f"{ceiling['wall_per_s']:.0f} of {ceiling['per_s']:.0f} images/s): the machine "
                "was busy, and jobs/s over the ceiling read low"
            )
        boot_s = drain["first_started"] - drain["spawned"] if drain["first_started"] else 0.0
        uploads_per_s = o["submit"]["accepted"] / o["submit"]["seconds"]
        e2e_ratio = e2e["per_s"] / ceiling["per_s"]
        before_n, after_n = ceiling["sides"]
        print(
            f"  ceiling (bare kind, {CONCURRENCY}-process pool)  {ceiling['per_s']:7.2f} "
            f"images/s  = {CONCURRENCY} cores / {ceiling['cpu_ms']:.2f} ms CPU per image, each "
            f"image's least of {before_n + after_n} passes ({before_n} before the services, "
            f"{after_n} after; passes' median {ceiling['cpu_median']:.2f} ms, spread "
            f"{100 * ceiling['cpu_spread']:.1f}%; pool processes' least "
            f"{ceiling['pool_cpu_ms']:.2f} ms)"
        )
        print(
            f"  ceiling, wall clock                  {ceiling['wall_per_s']:7.2f} images/s  "
            f"best pass (median {ceiling['wall_median']:.1f}, spread "
            f"{100 * ceiling['wall_spread']:.0f}%; best before / after the services "
            f"{ceiling['before']:.1f} / {ceiling['after']:.1f})"
        )
        print(
            f"  submit, no job worker (web only)     {uploads_per_s:7.2f} "
            f"uploads/s  (4 clients; response p50/p95 "
            f"{_ms(o['submit']['response'], 'p50')} / {_ms(o['submit']['response'], 'p95')} ms)"
        )
        print(
            f"  drain                                {drain['per_s']:7.2f} jobs/s    "
            f"= {drain_ratio:.2f} x ceiling  ({drain['seconds'] or 0:.1f} s from first start "
            f"to last finish; {n / drain['from_spawn']:.2f} jobs/s counting the worker's "
            f"{boot_s:.1f} s boot)"
        )
        print(
            f"  end to end                           {e2e['per_s']:7.2f} jobs/s    "
            f"= {e2e_ratio:.2f} x ceiling  ({e2e['seconds'] or 0:.1f} s from first submit "
            f"to last finish; uploads took {e2e['submit_seconds']:.1f} s, response p50/p95 "
            f"{_ms(e2e['response'], 'p50')} / {_ms(e2e['response'], 'p95')} ms)"
        )
        for phase, result in (("drain", drain), ("end to end", e2e)):
            print(
                f"  {phase:10} queue wait p50/p95 {_ms(result['wait'], 'p50'):>7} / "
                f"{_ms(result['wait'], 'p95'):>7} ms;  run time p50/p95 "
                f"{_ms(result['run'], 'p50'):>6} / {_ms(result['run'], 'p95'):>6} ms"
            )

        print(f"\n  CPU ms per job       {'submit':>8} {'drain':>8} {'e2e':>8}")
        rows = [r for r in CPU_ROWS if r != "postgres" or database == "postgresql"]
        if not args.with_flower:
            rows.remove("flower")
        for row in rows:
            print(f"  {row:20} " + " ".join(
                f"{1000 * phase['cpu'].get(row, 0.0) / n:8.1f}"
                for phase in (o["submit"], drain, e2e)))  # fmt: skip
        totals = [1000 * sum(phase["cpu"].values()) / n for phase in (o["submit"], drain, e2e)]
        print(f"  {'all services':20} " + " ".join(f"{t:8.1f}" for t in totals))
        print(
            f"  {'bench client':20} "
            + " ".join(
                f"{1000 * phase['client_cpu'] / n:8.1f}" for phase in (o["submit"], drain, e2e)
            )
        )
        print(
            f"  (ceiling: {ceiling['cpu_ms']:.1f} ms per image in the pool; the worker's boot, "
            f"left out of drain: {drain['boot_cpu']:.2f} s CPU)"
        )
        # On a machine whose cores the pipeline saturates, throughput follows CPU per job; this
        # ratio does not swing with other people's load the way a few seconds of wall time do.
        print(
            f"  CPU ratio, ceiling ms per image / all services' ms per job: drain "
            f"{ceiling['cpu_ms'] / (totals[1] or 1):.2f}, end to end "
            f"{ceiling['cpu_ms'] / (totals[2] or 1):.2f} (informative; the targets use jobs/s)"
        )
        floor = o["floor"]
        if "error" in floor:
            checks.append((f"{name}: Celery's floor was not measured: {floor['error']}", False))
        else:
            floor_rows = [r for r in floor["cpu"] if r in rows]
            floor_ms = 1000 * sum(floor["cpu"][r] for r in floor_rows) / n
            print(
                "  Celery's floor, the worker line with a task that waits as long as the kind "
                "takes: CPU ms per task "
                + ", ".join(f"{r} {1000 * floor['cpu'][r] / n:.1f}" for r in floor_rows)
                + f" = {floor_ms:.1f}; no job can cost less, so drain stays under "
                f"{ceiling['cpu_ms'] / (ceiling['cpu_ms'] + floor_ms):.2f} x ceiling with both "
                "cores the pipeline's"
            )

        ip = o["in_process"]
        first = ip["first"]
        print(
            f"\n  SQL per job, jobs.running.run_job in-process (CaptureQueriesContext, "
            f"{ip['jobs']} jobs): {ip['total']:.1f} statements, {ip['writes']:.1f} writes"
        )
        print("    " + ", ".join(f"{k} x{v}" for k, v in sorted(first["detail"].items())))
        if "pg_log" in o:
            for phase in ("drain", "e2e"):
                for app in ("parroter-worker", "parroter-web"):
                    c = o["pg_log"][phase].get(app)
                    if not c:
                        continue
                    ranked = sorted(c["verbs"].items(), key=lambda kv: -kv[1])
                    verbs = ", ".join(f"{k} {v / n:.1f}" for k, v in ranked)
                    print(
                        f"  SQL per job, server log, {phase:5} {app.split('-')[1]:6}: "
                        f"{c['total'] / n:5.1f} statements, {c['writes'] / n:4.1f} writes, "
                        f"{c['connections'] / n:.2f} new connections ({verbs})"
                    )
                    if phase == "drain":
                        ranked = sorted(c["detail"].items(), key=lambda kv: -kv[1])
                        print("    " + ", ".join(f"{k} {v / n:.1f}" for k, v in ranked[:10]))
            others: Counter = Counter()
            for phase in o["pg_log"].values():
                for app, c in phase.items():
                    if app not in ("parroter-worker", "parroter-web"):
                        others[app] += c["total"]
            if others:
                print(
                    f"    (others in the same windows: "
                    f"{', '.join(f'{a} {t}' for a, t in sorted(others.items()))})"
                )

        logs = o["logs"]
        for text in (o["submit"]["errors"] + e2e["errors"])[:5]:
            print(f"  refused upload: {text}")
        for text in logs["locked"][:5]:
            print(f"  locked: {text}")
        if logs["tracebacks"]:
            print(f"  tracebacks in logs: {json.dumps(logs['tracebacks'])}")
        bad = {}
        for phase, result in (("drain", drain), ("e2e", e2e)):
            for status, count in result["counts"].items():
                if status != "succeeded":
                    bad[f"{phase} {status}"] = count
            if result["missing"]:
                bad[f"{phase} missing"] = result["missing"]
        refused = len(o["submit"]["errors"]) + len(e2e["errors"])
        checks += [
            (f"{name}: drain {drain_ratio:.2f} x ceiling (target >= {DRAIN_TARGET}; ambition "
             f"{DRAIN_AMBITION}: {'met' if drain_ratio >= DRAIN_AMBITION else 'not met'})",
             drain_ratio >= DRAIN_TARGET),
            (f"{name}: end to end {e2e_ratio:.2f} x ceiling (target >= {E2E_TARGET})",
             e2e_ratio >= E2E_TARGET),
            (f"{name}: jobs not succeeded (failed, cancelled, lost): "
             f"{json.dumps(bad) if bad else 0}", not bad),
            (f"{name}: refused uploads: {refused}", refused == 0),
            (f"{name}: \"database is locked\" lines: {len(logs['locked'])}", not logs["locked"]),
            (f"{name}: services alive: {', '.join(o['dead']) if o['dead'] else 'all'}",
             not o["dead"]),
        ]  # fmt: skip
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    print(f"(logs in {LOG_DIR.relative_to(ROOT)}/<database>/)")
    return 0 if checks and all(ok for _, ok in checks) else 1


def _ms(p: dict | None, key: str) -> str:
    if not p:
        return "—"
    value = p[key] * 1000
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default=",".join(DATABASES),
                        help="comma-separated: sqlite,postgresql (default both)")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=300, help="jobs per phase (default 300)")
    parser.add_argument(
        "--with-flower",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the Procfile's flower line too, with a FLOWER_BASIC_AUTH the bench makes "
        "(default on, as in production; workers send task events either way: PARROTER_TASK_EVENTS)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=240.0,
        help="seconds a phase may take before its unfinished jobs are lost",
    )
    parser.add_argument(
        "--ceiling-passes",
        type=int,
        default=5,
        help="passes of the ceiling before the services start and again after they stop; the "
        "ratios use the best (default 5 each)",
    )
    parser.add_argument("--count-sql", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("files", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.count_sql:
        return count_sql_in_process(args.count_sql, args.files, args.out)

    databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    if unknown := set(databases) - set(DATABASES):
        parser.error(f"unknown database(s): {', '.join(sorted(unknown))}")
    if not 10 <= args.jobs <= 2000:
        parser.error("--jobs between 10 and 2000 (the issue asks for at least 300)")

    from parroter.local_redis import LocalRedis

    signal.signal(signal.SIGTERM, _interrupt)
    files = corpus(args.jobs)
    mean_kb = sum(p.stat().st_size for p in files) / len(files) / 1000
    print(f"{args.jobs} jobs per phase on {', '.join(databases)}: photo-like "
          f"{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} JPEGs (mean {mean_kb:.0f} KB), boxes "
          f"{'/'.join(SIZES)}; {CLIENTS} clients; WEB_WORKERS=2, WORKER_CONCURRENCY="
          f"{CONCURRENCY}; Flower {'on' if args.with_flower else 'off'}", flush=True)  # fmt: skip
    outcomes: dict[str, dict | str] = {}
    work = Path(tempfile.mkdtemp(prefix="parroter-pipeline-"))
    try:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        (LOG_DIR / "redis.log").unlink(missing_ok=True)
        redis_server = LocalRedis(directory=work / "redis")
        with output_to(LOG_DIR / "redis.log"):
            redis_server.start()
        try:
            for database in databases:
                print(f"\n{database}", flush=True)
                started = time.perf_counter()
                flush_redis(redis_server.url)
                try:
                    outcomes[database] = run_database(args, database, files, redis_server,
                                                      work / "static", work)  # fmt: skip
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
    for database, outcome in outcomes.items():
        if isinstance(outcome, dict):
            (LOG_DIR / f"result-{database}.json").write_text(json.dumps(outcome, indent=1))
    return report(args, outcomes)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
