"""Shared by the benches that start the real services (bench/load.py, bench/pipeline.py).

The Procfile's lines run through /bin/sh as honcho would, each in its own process group with
one log file per service; the environment they get (fresh PARROTER_VAR_DIR, private Redis,
DEBUG off); preparation steps; CPU time read from /proc; log scans; percentiles.

Import it as `bench.harness` with the repository root on sys.path (the benches put it there).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROCFILE = ROOT / "Procfile"
TERMINAL = {"succeeded", "failed", "cancelled"}
LOCKED = re.compile(rb"database is locked", re.IGNORECASE)
ACCESS_STATUS = re.compile(rb'"[A-Z]+ [^"]*" (\d{3}) ')
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def procfile_services(skip: set[str] | frozenset[str] = frozenset()) -> dict[str, str]:
    """The Procfile's lines, name -> command (run through /bin/sh as honcho does), less skip."""
    services = {}
    for line in PROCFILE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, command = line.split(":", 1)
        if name.strip() not in skip:
            services[name.strip()] = command.strip()
    return services


def service_env(
    *,
    var_dir: Path,
    static_root: Path,
    database_url: str,
    redis_url: str,
    web_bind: str,
    web_workers: int,
    worker_concurrency: int,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The services' environment: this one's, less FLOWER_* and DATABASE_CONN_MAX_AGE (a bench
    that wants either sets it in extra), with a fresh var dir, DEBUG off and a new SECRET_KEY."""
    dropped = {"DATABASE_CONN_MAX_AGE", "MEDIA_ROOT", "FILE_UPLOAD_TEMP_DIR"}
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith("FLOWER_") and k not in dropped
    }
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {
        **inherited,
        "PATH": path,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "platform")]),
        "DJANGO_SETTINGS_MODULE": "parroter.settings",
        "PARROTER_VAR_DIR": str(var_dir),  # MEDIA_ROOT and FILE_UPLOAD_TEMP_DIR live under it
        "STATIC_ROOT": str(static_root),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DEBUG": "false",
        "WEB_BIND": web_bind,
        "WEB_WORKERS": str(web_workers),
        "WORKER_CONCURRENCY": str(worker_concurrency),
        **(extra or {}),
    }


def prepare_database(env: dict[str, str], static_root: Path, log: Path) -> None:
    """migrate, and collectstatic once per static_root."""
    manage = [sys.executable, str(ROOT / "manage.py")]
    run_step([*manage, "migrate", "--noinput", "-v0"], env, log)
    if not (static_root / "staticfiles.json").exists():
        run_step([*manage, "collectstatic", "--noinput", "-v0"], env, log)


def read_proc_stats() -> dict[int, tuple[int, int, float, float]]:
    """pid -> (ppid, process group, own CPU s, reaped children's CPU s), from /proc/*/stat."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command: state, ppid, pgrp, ..., utime(12) stime cutime cstime.
        own = (int(fields[11]) + int(fields[12])) / CLOCK_TICK
        children = (int(fields[13]) + int(fields[14])) / CLOCK_TICK
        found[int(stat.parent.name)] = (int(fields[1]), int(fields[2]), own, children)
    return found


class Services:
    """Procfile lines, each in its own process group, output to one log file per service;
    stopped by process group (SIGTERM, then SIGKILL), also on errors and Ctrl-C."""

    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path,
        *,
        skip: set[str] | frozenset[str] = frozenset({"flower"}),
        service_env: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.env = env
        self.log_dir = log_dir
        self.skip = skip
        self.service_env = service_env or {}  # per service: extra variables
        self.processes: dict[str, subprocess.Popen] = {}

    @property
    def names(self) -> list[str]:
        return list(procfile_services(self.skip))

    def start(self, names: list[str] | None = None, commands: dict[str, str] | None = None) -> None:
        """Start the given services (default: all not skipped) that are not running yet;
        `commands` (name -> command) replaces the Procfile's lines."""
        from parroter.local_redis import stop_with_parent

        for name, command in (commands or procfile_services(self.skip)).items():
            if (names is not None and name not in names) or name in self.processes:
                continue
            with (self.log_dir / f"{name}.log").open("wb") as sink:
                self.processes[name] = subprocess.Popen(
                    ["/bin/sh", "-c", command], cwd=ROOT,
                    env={**self.env, **self.service_env.get(name, {})}, stdout=sink,
                    stderr=subprocess.STDOUT, start_new_session=True,
                    preexec_fn=stop_with_parent,
                )  # fmt: skip

    def cpu_seconds(self, **other_groups: int) -> dict[str, float]:
        """CPU time used so far by each service's processes (those alive, with their reaped
        children), and by other process groups given as name=leader's pid, from /proc."""
        groups = {process.pid: name for name, process in self.processes.items()}
        groups.update({pid: name for name, pid in other_groups.items()})
        used = dict.fromkeys(groups.values(), 0.0)
        for _ppid, group, own, children in read_proc_stats().values():
            if name := groups.get(group):
                used[name] += own + children
        return used

    def main_pid(self, name: str, stats: dict | None = None) -> int | None:
        """The service's own program: the shell if it exec'd the command, else its child."""
        process = self.processes.get(name)
        if process is None:
            return None
        stats = read_proc_stats() if stats is None else stats
        children = [pid for pid, (ppid, *_rest) in stats.items() if ppid == process.pid]
        try:
            shell = Path(f"/proc/{process.pid}/comm").read_text().strip() in {"sh", "dash", "bash"}
        except OSError:
            return None
        return children[0] if shell and len(children) == 1 else process.pid

    def dead(self) -> list[str]:
        return [f"{name} (exit {p.returncode})" for name, p in self.processes.items()
                if p.poll() is not None]  # fmt: skip

    def stop(self, timeout: float = 30.0, names: list[str] | None = None) -> None:
        stopping = [p for n, p in self.processes.items() if names is None or n in names]
        for process in stopping:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in stopping:
            while time.monotonic() < deadline:
                process.poll()  # reap the group's leader: a zombie still counts as a member
                try:
                    os.killpg(process.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self.processes = {n: p for n, p in self.processes.items() if p not in stopping}


def wait_until_ready(
    base_url: str, services: Services, timeout: float = 90.0, workers: int = 1
) -> None:
    """Web answers /readyz 200 with at least `workers` workers online (0: web alone)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if dead := services.dead():
            raise RuntimeError(f"service(s) exited during start: {', '.join(dead)}")
        try:
            with urllib.request.urlopen(f"{base_url}/readyz", timeout=5) as answer:  # noqa: S310
                facts = json.loads(answer.read())
            if facts.get("workers", {}).get("online", 0) >= workers:
                return
            last = json.dumps(facts)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise RuntimeError(f"the services were not ready after {timeout:.0f} s: {last}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_step(command: list[str], env: dict[str, str], log: Path) -> None:
    """Run a preparation step, its output appended to log (and shown if it fails)."""
    with log.open("ab") as sink:
        done = subprocess.run(command, env=env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{' '.join(command[1:3])} exited with {done.returncode}:\n{tail}")


@contextlib.contextmanager
def output_to(path: Path):
    """Point this process's stdout and stderr (so a child's it starts meanwhile) at a file."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with path.open("ab") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def scan_logs(log_dir: Path) -> dict:
    """Lines saying "database is locked", tracebacks per service, 5xx in gunicorn's access log."""
    locked: list[str] = []
    access_5xx = 0
    access_lines = 0
    tracebacks: dict[str, int] = {}
    for log in sorted(log_dir.glob("*.log")):
        for line in log.read_bytes().splitlines():
            if LOCKED.search(line):
                locked.append(f"{log.stem}: {line.decode(errors='replace')[:300]}")
            if line.startswith(b"Traceback"):
                tracebacks[log.stem] = tracebacks.get(log.stem, 0) + 1
            if found := ACCESS_STATUS.search(line):
                access_lines += 1
                if found.group(1).startswith(b"5"):
                    access_5xx += 1
    return {"locked": locked, "access_5xx": access_5xx, "access_lines": access_lines,
            "tracebacks": tracebacks}  # fmt: skip


def percentiles(values: list[float]) -> dict | None:
    if len(values) < 2:
        return None
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p95": cuts[94], "n": len(values)}


def label(database: str) -> str:
    return "PostgreSQL" if database == "postgresql" else "SQLite"


def flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushall()


def django_setup() -> None:
    """For a bench's child process started with the services' environment."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parroter.settings")
    import django

    django.setup()


def vendor_version() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
            return f"PostgreSQL {cursor.fetchone()[0].split()[0]}"
        cursor.execute("SELECT sqlite_version()")
        return f"SQLite {cursor.fetchone()[0]}"
