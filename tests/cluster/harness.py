"""A Parroter cluster on one machine: seven hosts made of Linux network namespaces on a bridge,
addresses from the benchmarking range 198.18.0.0/15 and no route off the machine. Each host
has its own var and temporary folders; S3 (moto's server) is the only storage they share.

    data   198.18.0.10  PostgreSQL, Redis, S3     edge   198.18.0.20  nginx (deploy/nginx.conf)
    web1   198.18.0.21  gunicorn                  web2   198.18.0.22  gunicorn
    work1  198.18.0.31  a job worker              work2  198.18.0.32  a job worker
    ops    198.18.0.40  beat, the housekeeping worker, the monitor, Flower

The machine itself is 198.18.0.1 on the bridge: the tests (and an operator's browser) reach the
hosts from there. Every process runs the Procfile's line for its service, in its host's network
namespace and a UTS namespace named after the host, so worker names carry their host
(celery@work1). Needs root (namespaces, a bridge) and Debian's ip, nginx and PostgreSQL.

`make cluster` (python -m tests.cluster.harness) starts one and prints its addresses and logins;
tests/cluster/test_cluster.py (`make test-cluster`) breaks it in the ways hosts break.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "platform")]  # as `python -m`, from any folder
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parroter.settings")

from parroter.local_postgres import LocalPostgres  # noqa: E402
from parroter.local_redis import LocalRedis, stop_with_parent  # noqa: E402

NETWORK = "198.18.0.0/24"
DRIVER = "198.18.0.1"  # this machine, on the bridge
HOSTS = {
    "data": "198.18.0.10",
    "edge": "198.18.0.20",
    "web1": "198.18.0.21",
    "web2": "198.18.0.22",
    "work1": "198.18.0.31",
    "work2": "198.18.0.32",
    "ops": "198.18.0.40",
}
ROLES = {
    "data": "PostgreSQL :5432, Redis :6379, S3 (moto) :9000",
    "edge": "nginx :443 (deploy/nginx.conf; :80 redirects)",
    "web1": "gunicorn :8000",
    "web2": "gunicorn :8000",
    "work1": "a job worker (celery@work1)",
    "work2": "a job worker (celery@work2)",
    "ops": "beat, housekeeping@ops, the monitor, Flower :5555",
}
WEB_HOSTS = ("web1", "web2")
WORKER_HOSTS = ("work1", "work2")
POSTGRES_PORT, REDIS_PORT, S3_PORT = 5432, 6379, 9000
WEB_PORT, FLOWER_PORT = 8000, 5555
BUCKET = "parroter-cluster"
S3_REGION, S3_KEY = "eu-west-1", "cluster"
S3_SECRET = "cluster-secret"  # noqa: S105 - moto's, on a bridge with no way off the machine
USERS = ("ada", "ben", "cleo", "dan")  # people who submit jobs
OPERATOR = "operator"  # staff
PASSWORD = "cluster-password-1"  # noqa: S105 - a throwaway cluster with no way off the machine
STARTUP_TIMEOUT = 120.0


def run(*command: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)


def answers(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=1).close()
        return True
    except OSError:
        return False


def wait_for(check, what: str, timeout: float = STARTUP_TIMEOUT, service=None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if service is not None and service.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {service.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)


class Network:
    """A bridge in this namespace and a namespace per host with one veth on it. Names carry a
    tag of this run, so two runs on one machine (or a run's leftovers) never meet."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.bridge = f"pb{tag}"

    def namespace(self, host: str) -> str:
        return f"parroter-{self.tag}-{host}"

    def link(self, host: str) -> str:
        """The host's cable: its veth's end on the bridge (at most 15 characters)."""
        return f"pv{self.tag}{host}"[:15]

    def create(self) -> None:
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{DRIVER}/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        for host, address in HOSTS.items():
            namespace = self.namespace(host)
            run("ip", "netns", "add", namespace)
            run("ip", "link", "add", self.link(host), "type", "veth",
                "peer", "name", "eth0", "netns", namespace)  # fmt: skip
            run("ip", "link", "set", self.link(host), "master", self.bridge, "up")
            run("ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
            run("ip", "-n", namespace, "link", "set", "eth0", "up")
            run("ip", "-n", namespace, "link", "set", "lo", "up")

    def destroy(self) -> None:
        for host in HOSTS:
            subprocess.run(["ip", "netns", "del", self.namespace(host)], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)

    def cut(self, host: str) -> None:
        """Unplug the host: nothing in or out, no connection closed (a partition)."""
        run("ip", "link", "set", self.link(host), "down")

    def plug(self, host: str) -> None:
        run("ip", "link", "set", self.link(host), "up")

    def on(self, host: str, command: list[str]) -> list[str]:
        """`command` as it runs on `host`: its network, and its name (so Celery's %h is it)."""
        return [
            "ip", "netns", "exec", self.namespace(host),
            "unshare", "--uts", "sh", "-c", f'hostname {host} && exec "$0" "$@"', *command,
        ]  # fmt: skip


class Cluster:
    def __init__(self, folder: Path, *, worker_lost_after: int = 15) -> None:
        self.folder = folder
        self.network = Network(str(os.getpid() % 100000))
        self.worker_lost_after = worker_lost_after
        self.secret_key = secrets.token_urlsafe(40)
        self.flower_login = f"flower:{secrets.token_urlsafe(16)}"
        self.processes: dict[str, dict[str, subprocess.Popen]] = {host: {} for host in HOSTS}
        self.tokens: dict[str, str] = {}
        self.database_url = f"postgres://parroter:parroter@{HOSTS['data']}:{POSTGRES_PORT}/parroter"
        self.redis_url = f"redis://{HOSTS['data']}:{REDIS_PORT}/0"
        self.site = f"https://{HOSTS['edge']}"
        self.certificate = folder / "edge" / "fullchain.pem"

    # --- the whole cluster -------------------------------------------------------------------

    def start(self) -> Cluster:
        try:
            self.network.create()
            self._start_data()
            self._prepare()
            for host in WEB_HOSTS:
                self.start_service(host, "web", WEB_BIND=f"{HOSTS[host]}:{WEB_PORT}")
            for host in WORKER_HOSTS:
                self.start_service(host, "worker")
            for service in ("housekeeping", "monitor", "beat", "flower"):
                self.start_service("ops", service)
            self._start_edge()
            for host in WEB_HOSTS:
                wait_for(lambda h=host: answers(HOSTS[h], WEB_PORT), f"gunicorn on {host}")
            wait_for(lambda: answers(HOSTS["ops"], FLOWER_PORT), "Flower on ops")
            wait_for(lambda: self.online_workers() >= {"celery@work1", "celery@work2"},
                     "both job workers in the monitor's report")  # fmt: skip
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for host in reversed(list(HOSTS)):
            self.kill_host(host, signal.SIGTERM)
        self.network.destroy()

    # --- hosts and services ------------------------------------------------------------------

    def env(self, host: str, **extra: str) -> dict[str, str]:
        """What every app process gets: the shared services, and this host's own folders."""
        own = self.folder / host
        path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
        return {
            **os.environ,
            "PATH": path,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "platform")]),
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "PARROTER_S3_BUCKET": BUCKET,
            "PARROTER_S3_ENDPOINT_URL": f"http://{HOSTS['data']}:{S3_PORT}",
            "PARROTER_S3_REGION": S3_REGION,
            "PARROTER_S3_ACCESS_KEY_ID": S3_KEY,
            "PARROTER_S3_SECRET_ACCESS_KEY": S3_SECRET,
            "PARROTER_VAR_DIR": str(own / "var"),
            "MEDIA_ROOT": str(own / "media"),
            "FILE_UPLOAD_TEMP_DIR": str(own / "tmp"),
            "STATIC_ROOT": str(own / "static"),
            "SECRET_KEY": self.secret_key,
            "DEBUG": "false",
            "HTTPS": "true",
            "ALLOWED_HOSTS": HOSTS["edge"],
            "PARROTER_TRUSTED_PROXIES": HOSTS["edge"],
            "FLOWER_URL": f"http://{HOSTS['ops']}:{FLOWER_PORT}",
            "FLOWER_ADDRESS": HOSTS["ops"],
            "FLOWER_PORT": str(FLOWER_PORT),
            "FLOWER_BASIC_AUTH": self.flower_login,
            "WEB_WORKERS": "2",
            "WORKER_CONCURRENCY": "1",
            "PARROTER_WORKER_LOST_AFTER": str(self.worker_lost_after),
            # Several people submitting hundreds of jobs in a minute is the point here.
            "PARROTER_SUBMIT_RATE": "100000/m",
            "PARROTER_API_RATE": "100000/m",
            **extra,
        }

    def start_service(self, host: str, service: str, **extra: str) -> subprocess.Popen:
        """The Procfile's line for `service` on `host`, logging to <folder>/<host>/<service>.log"""
        from tests.conftest import procfile

        return self._spawn(host, service, ["/bin/sh", "-c", procfile()[service]], **extra)

    def signal_host(self, host: str, how: signal.Signals) -> None:
        """Every process of the host at once (SIGSTOP: the host freezes)."""
        for process in self.processes[host].values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, how)

    def kill_host(self, host: str, how: signal.Signals = signal.SIGKILL) -> None:
        """Every process of the host, at once (SIGKILL: the host dies), and wait for them."""
        self.signal_host(host, how)
        for process in self.processes[host].values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes[host].clear()

    def restart_redis(self) -> None:
        """Redis on data stops and starts again on its port, empty (it keeps nothing)."""
        marker = self.folder / "data" / "redis-restarts"
        before = int(marker.read_text()) if marker.exists() else 0
        os.kill(self.processes["data"]["data"].pid, signal.SIGHUP)
        wait_for(lambda: marker.exists() and int(marker.read_text()) > before, "Redis restart")

    def log(self, host: str, service: str) -> str:
        return (self.folder / host / f"{service}.log").read_text(errors="replace")

    def _spawn(self, host: str, name: str, command: list[str], **extra: str) -> subprocess.Popen:
        own = self.folder / host
        for folder in ("var", "media", "tmp", "static"):
            (own / folder).mkdir(parents=True, exist_ok=True)
        with (own / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                self.network.on(host, command),
                cwd=ROOT, env=self.env(host, **extra), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=stop_with_parent,
            )  # fmt: skip
        self.processes[host][name] = process
        return process

    def manage(self, host: str, *arguments: str, stdin: str | None = None) -> str:
        """`manage.py <arguments>` run to completion on `host`; its output."""
        command = self.network.on(host, [sys.executable, "manage.py", *arguments])
        done = subprocess.run(
            command, cwd=ROOT, env=self.env(host), input=stdin, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {arguments[0]} on {host}:\n{done.stderr[-3000:]}")
        return done.stdout

    # --- steps -------------------------------------------------------------------------------

    def _start_data(self) -> None:
        data = self._spawn(
            "data",
            "data",
            [sys.executable, "-m", "tests.cluster.harness", "data-host", str(self.folder / "data")],
        )
        ready = self.folder / "data" / "ready"
        wait_for(ready.exists, "PostgreSQL, Redis and S3 on data", service=data)

    def _prepare(self) -> None:
        """Migrations, the static files of each host that serves them, people and tokens."""
        self.manage("ops", "migrate", "--noinput", "-v0")
        for host in (*WEB_HOSTS, "edge"):
            self.manage(host, "collectstatic", "--noinput", "-v0")
        made = self.manage("ops", "shell", stdin=PEOPLE.format(users=USERS, operator=OPERATOR,
                                                               password=PASSWORD))  # fmt: skip
        self.tokens = json.loads(made.strip().splitlines()[-1])

    def _start_edge(self) -> None:
        from tests.nginx_conf import configure_nginx, self_signed_certificate

        folder = self.folder / "edge"
        folder.mkdir(parents=True, exist_ok=True)
        cert, key = self_signed_certificate(folder, HOSTS["edge"])
        webs = "; ".join(f"server {HOSTS[host]}:{WEB_PORT}" for host in WEB_HOSTS)
        nginx = configure_nginx(
            folder,
            values={
                "server web:8000": webs,
                "server flower:5555": f"server {HOSTS['ops']}:{FLOWER_PORT}",
                "listen 80": f"listen {HOSTS['edge']}:80",
                "listen 443 ssl http2": f"listen {HOSTS['edge']}:443 ssl http2",
                "ssl_certificate /etc/nginx/tls/fullchain.pem": f"ssl_certificate {cert}",
                "ssl_certificate_key /etc/nginx/tls/privkey.pem": f"ssl_certificate_key {key}",
                "alias /srv/parroter/static/": f"alias {folder / 'static'}/",
                "alias /srv/parroter/media/": f"alias {folder / 'media'}/",
            },
            flower_credentials=self.flower_login,
            where=lambda command: self.network.on("edge", command),
        )
        process = self._spawn("edge", "nginx", nginx)
        wait_for(lambda: answers(HOSTS["edge"], 443), "nginx on edge", service=process)

    # --- what the cluster says -------------------------------------------------------------

    def query(self, sql: str, *params) -> list[tuple]:
        with psycopg.connect(self.database_url, connect_timeout=5) as connection:
            return connection.execute(sql, params).fetchall()

    def report(self) -> dict:
        rows = self.query("SELECT facts FROM jobs_clusterreport WHERE name = 'cluster'")
        return rows[0][0] if rows else {}

    def online_workers(self) -> set[str]:
        try:
            workers = self.report().get("workers", [])
        except psycopg.Error:
            return set()
        return {worker["name"] for worker in workers if worker.get("online")}


def s3_client():
    """The cluster's bucket as a client on the bridge (this machine, or data itself) sees it."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=f"http://{HOSTS['data']}:{S3_PORT}",
        region_name=S3_REGION,
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_SECRET,
    )


# Run by `manage.py shell` on ops: the people of the cluster, and an API token each (JSON).
PEOPLE = """
import json
from django.contrib.auth import get_user_model
from jobs import tokens
User = get_user_model()
made = {{}}
for name in {users!r}:
    user = User.objects.create_user(name, password={password!r})
    made[name] = tokens.create_api_token(user=user, name="cluster")[1]
User.objects.create_superuser({operator!r}, password={password!r})
print(json.dumps(made))
"""


def data_host(folder: Path) -> None:
    """Run on data: PostgreSQL, Redis and S3 until SIGTERM; SIGHUP restarts Redis (empty)."""
    address = HOSTS["data"]
    folder.mkdir(parents=True, exist_ok=True)
    postgres = LocalPostgres(host=address, port=POSTGRES_PORT, clients=NETWORK).start()
    redis_server = LocalRedis(directory=folder / "redis", host=address, port=REDIS_PORT).start()
    s3 = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", address, "-p", str(S3_PORT)],
        stdout=(folder / "s3.log").open("ab"), stderr=subprocess.STDOUT,
        start_new_session=True, preexec_fn=stop_with_parent,
    )  # fmt: skip
    wait_for(lambda: answers(address, S3_PORT), "moto's S3 server", service=s3)
    s3_client().create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": S3_REGION}
    )
    restarts = folder / "redis-restarts"
    stopping = []

    def restart_redis(*_args) -> None:
        redis_server.stop()
        redis_server.start()
        restarts.write_text(str(int(restarts.read_text()) + 1 if restarts.exists() else 1))

    signal.signal(signal.SIGHUP, restart_redis)
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    (folder / "ready").write_text("ready\n")
    try:
        while not stopping:
            time.sleep(0.2)
    finally:
        s3.terminate()
        redis_server.stop()
        postgres.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.cluster.harness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command")
    data = commands.add_parser("data-host", help=argparse.SUPPRESS)
    data.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.command == "data-host":
        data_host(args.folder)
        return 0
    folder = Path(tempfile.mkdtemp(prefix="parroter-cluster-"))
    cluster = Cluster(folder)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    try:
        cluster.start()
        print(f"Parroter on {len(HOSTS)} hosts; logs in {folder}/<host>/<service>.log")
        for host, address in HOSTS.items():
            print(f"  {host:6} {address:12} {ROLES[host]}")
        print(f"Open {cluster.site}/ (certificate {cluster.certificate}).")
        print(f"Sign in as {OPERATOR} (staff) or {', '.join(USERS)}, password {PASSWORD}.")
        print("Ctrl-C stops it and removes everything.")
        while not stopping:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
