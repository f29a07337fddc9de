"""parroter.local_postgres: the private PostgreSQL cluster CI and the benchmarks start."""

import os
import shutil
import subprocess
import sys
import time

import psycopg
import pytest

from parroter import local_postgres
from parroter.local_postgres import LocalPostgres
from tests.conftest import require


@pytest.fixture
def server_installed():
    require(local_postgres.available(), "PostgreSQL server binaries are not installed")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waiting for its new parent to reap it is stopped too.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def _wait_until_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.usefixtures("server_installed")
def test_runs_a_private_cluster_and_removes_it():
    with LocalPostgres() as postgres:
        directory, pid = postgres.directory, postgres.process.pid
        assert postgres.url == f"postgres://parroter:parroter@127.0.0.1:{postgres.port}/parroter"
        with psycopg.connect(postgres.url) as connection:
            user, fsync = connection.execute(
                "SELECT current_user, current_setting('fsync')"
            ).fetchone()
        assert (user, fsync) == ("parroter", "off")
        # The application's role may create databases (Django's test runner does).
        with psycopg.connect(postgres.url, autocommit=True) as connection:
            connection.execute("CREATE DATABASE scratch")
        # Only loopback, and no way in without the password.
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(postgres.url.replace(":parroter@", ":wrong@"), connect_timeout=5)
    assert not directory.exists()
    assert _wait_until_gone(pid)


@pytest.mark.usefixtures("server_installed")
def test_cluster_stops_when_its_parent_is_killed():
    starter = (
        "import time\n"
        "from parroter.local_postgres import LocalPostgres\n"
        "postgres = LocalPostgres().start()\n"
        "print(postgres.process.pid, postgres.directory, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", starter], stdout=subprocess.PIPE, text=True)
    try:
        pid, directory = parent.stdout.readline().split()
        assert _alive(int(pid))
    finally:
        parent.kill()
        parent.wait()
    try:
        assert _wait_until_gone(int(pid))
    finally:
        shutil.rmtree(directory, ignore_errors=True)  # nobody was left to remove it


@pytest.mark.usefixtures("server_installed")
def test_command_line_runs_a_command_against_the_cluster():
    command = (
        "import os, sys, psycopg\n"
        "with psycopg.connect(os.environ['DATABASE_URL']) as connection:\n"
        "    connection.execute('SELECT 1')\n"
        "print(os.environ['DATABASE_URL'])\n"
        "sys.exit(7)\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "parroter.local_postgres", "--", sys.executable, "-c", command],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 7, done.stderr
    assert done.stdout.startswith("postgres://parroter:parroter@127.0.0.1:")
