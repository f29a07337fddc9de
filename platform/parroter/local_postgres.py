"""A private, throwaway PostgreSQL cluster for CI, benchmarks and local use.

Debian's server binaries (package `postgresql`, the newest /usr/lib/postgresql/*/bin) run a
fresh cluster in a temporary directory: initdb, then `postgres` itself as a child of this
process on a free loopback port, so the kernel stops it if this process dies without
stopping it (`pg_ctl start` would detach it from us). No durability (fsync off: the data is
thrown away), the directory is removed on stop. As root, initdb and postgres run as the
`postgres` user, because PostgreSQL refuses to run as root.

    with LocalPostgres() as pg:              # pg.url: postgres://parroter:parroter@127.0.0.1:PORT/parroter
        ...

    python -m parroter.local_postgres -- make test     # CMD with DATABASE_URL set, exit code kept
    python -m parroter.local_postgres                  # print the URL, run until Ctrl-C
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

from parroter.local_redis import PR_SET_PDEATHSIG, free_port

# No durability at all: the cluster is thrown away, and bulk loads run several times faster.
THROWAWAY_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def server_bin_dir() -> Path:
    """The bin directory of the newest PostgreSQL server installed from Debian's packages."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    if not found:
        raise FileNotFoundError(
            "No PostgreSQL server under /usr/lib/postgresql/*/bin: install Debian's postgresql "
            "package (`make postgresql` as root)."
        )
    return max(found, key=lambda path: _version_key(path.parent.name))


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else 0 for part in name.split("."))


def available() -> bool:
    try:
        server_bin_dir()
    except FileNotFoundError:
        return False
    return True


def _stop_postgres_with_parent() -> None:
    # Runs in the child after it has switched user (that switch would clear the setting).
    # SIGINT is PostgreSQL's "fast" shutdown: it ends sessions instead of waiting for them.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGINT)


class LocalPostgres:
    def __init__(
        self,
        *,
        directory: Path | None = None,
        port: int | None = None,
        user: str = "parroter",
        password: str = "parroter",  # noqa: S107 - a throwaway cluster on loopback
        database: str = "parroter",
        settings: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        clients: str | None = None,
    ) -> None:
        """`directory`: where the cluster's temporary folder is made (default: the system's
        temporary directory); as root, the postgres user must be able to reach it.
        `settings`: extra server settings (`-c name=value`). `host`: the address it listens on;
        `clients`: a network (CIDR) allowed to sign in besides loopback (the cluster harness's
        hosts, tests/cluster)."""
        self.parent_directory = directory
        self.port = port or free_port()
        self.host, self.clients = host, clients
        self.user, self.password, self.database = user, password, database
        self.url = f"postgres://{user}:{password}@{host}:{self.port}/{database}"
        self.settings = {**THROWAWAY_SETTINGS, **(settings or {})}
        self.bin_dir: Path | None = None
        self.directory: Path | None = None
        self.process: subprocess.Popen | None = None
        self._superuser_password = secrets.token_urlsafe(24)
        # As root, the server runs as the postgres user (it refuses to run as root).
        self._run_as = "postgres" if os.geteuid() == 0 else None

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self, *, timeout: float = 60.0) -> LocalPostgres:
        self.bin_dir = server_bin_dir()
        if self.parent_directory is not None:
            self.parent_directory.mkdir(parents=True, exist_ok=True)
        self.directory = Path(tempfile.mkdtemp(prefix="postgres-", dir=self.parent_directory))
        try:
            self._initdb()
            self._start_server(timeout)
            self._create_database()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, *, timeout: float = 30.0) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGQUIT)  # immediate shutdown
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # --- facts -----------------------------------------------------------------------------------

    @property
    def superuser_conninfo(self) -> str:
        """A libpq connection string for the cluster's superuser (for tools and checks)."""
        return self._superuser_conninfo(self.database)

    def server_version(self) -> str:
        with psycopg.connect(self.superuser_conninfo) as connection:
            return connection.execute("SHOW server_version").fetchone()[0]

    # --- steps -----------------------------------------------------------------------------------

    def _run(self, command: list[str], **kwargs) -> subprocess.Popen:
        return subprocess.Popen(
            command,
            cwd=self.directory,
            user=self._run_as,
            group=self._run_as and pwd.getpwnam(self._run_as).pw_gid,
            extra_groups=[] if self._run_as else None,
            **kwargs,
        )

    def _initdb(self) -> None:
        assert self.directory is not None and self.bin_dir is not None
        if self._run_as:
            entry = pwd.getpwnam(self._run_as)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        self.directory.chmod(0o700)
        password_file = self.directory / "superuser-password"
        password_file.write_text(self._superuser_password + "\n")
        if self._run_as:
            os.chown(password_file, entry.pw_uid, entry.pw_gid)
        password_file.chmod(0o600)
        # Passwords over TCP (loopback only), the OS user over the private socket directory.
        command = [
            str(self.bin_dir / "initdb"),
            "--pgdata", str(self.directory / "data"),
            "--username", "postgres",
            "--pwfile", str(password_file),
            "--auth-host", "scram-sha-256",
            "--auth-local", "peer",
            "--encoding", "UTF8",
            "--locale", "C.UTF-8",
            "--no-sync",
        ]  # fmt: skip
        initdb = self._run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output, _ = initdb.communicate()
        password_file.unlink()
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed with code {initdb.returncode}:\n{output}")
        if self.clients:
            with (self.directory / "data" / "pg_hba.conf").open("a") as rules:
                rules.write(f"host all all {self.clients} scram-sha-256\n")

    def _start_server(self, timeout: float) -> None:
        assert self.directory is not None and self.bin_dir is not None
        options = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.directory),
            **self.settings,
        }
        command = [str(self.bin_dir / "postgres"), "-D", str(self.directory / "data")]
        for name, value in options.items():
            command += ["-c", f"{name}={value}"]
        log = (self.directory / "server.log").open("ab")
        # Its own session: a Ctrl-C meant for the command must not stop the database first.
        self.process = self._run(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_stop_postgres_with_parent,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"postgres exited with code {self.process.returncode}:\n{self._log_tail()}"
                )
            try:
                psycopg.connect(self._superuser_conninfo("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"postgres did not answer on port {self.port}:\n{self._log_tail()}"
                    ) from None
                time.sleep(0.05)

    def _create_database(self) -> None:
        with psycopg.connect(self._superuser_conninfo("postgres"), autocommit=True) as connection:
            # CREATEDB: Django's test runner creates (and drops) its own test database.
            connection.execute(
                sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                    sql.Identifier(self.user), sql.Literal(self.password)
                )
            )
            connection.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(self.database), sql.Identifier(self.user)
                )
            )

    def _superuser_conninfo(self, dbname: str) -> str:
        return psycopg.conninfo.make_conninfo(
            host=self.host,
            port=self.port,
            user="postgres",
            password=self._superuser_password,
            dbname=dbname,
        )

    def _log_tail(self, lines: int = 20) -> str:
        assert self.directory is not None
        try:
            text = (self.directory / "server.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m parroter.local_postgres",
        description="Run a command against a private, throwaway PostgreSQL cluster "
        "(DATABASE_URL is set for it); without a command, run until interrupted.",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    with LocalPostgres() as postgres:
        if not command:
            print(f"DATABASE_URL={postgres.url}", flush=True)
            signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))  # clean up first
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
            return 0
        env = {**os.environ, "DATABASE_URL": postgres.url}
        child = subprocess.Popen(command, env=env)
        # A SIGTERM for us is passed on; the cluster is stopped once the command has ended.
        signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signum))
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                # The command got the same Ctrl-C (same process group): let it finish first.
                continue


if __name__ == "__main__":
    sys.exit(main())
