"""`make run`'s supervision (manage.py runservices) with a Procfile of real commands: a process
that exits is started again after a growing pause, one that keeps dying stops everything with a
non-zero exit naming it, and a person's SIGTERM or Ctrl-C stops everything with exit 0. Never
an exit 0 after a crash, and no process left behind."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from parroter.local_redis import free_port, stop_with_parent
from tests.conftest import app_env


def runservices(
    tmp_path, procfile: str | Path, *options: str, env: dict | None = None
) -> subprocess.Popen:
    """`manage.py runservices` in a session of its own; `procfile` is a Procfile's text or path.
    Without `env`, REDIS_URL is set, so no private Redis is started."""
    if isinstance(procfile, str):
        (tmp_path / "Procfile").write_text(procfile)
        procfile = tmp_path / "Procfile"
    env = env or {**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0"}
    log = (tmp_path / "out.log").open("wb")
    return subprocess.Popen(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), "runservices",
         "--procfile", str(procfile), "--restart-delay", "0.2", *options],
        env={**env, "PARROTER_VAR_DIR": str(tmp_path / "var")}, cwd=tmp_path, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=stop_with_parent,
    )  # fmt: skip


def output(tmp_path) -> str:
    return (tmp_path / "out.log").read_text()


def wait_for(tmp_path, pattern: str, timeout: float = 30) -> re.Match:
    deadline = time.monotonic() + timeout
    while not (found := re.search(pattern, output(tmp_path))):
        if time.monotonic() > deadline:
            pytest.fail(f"no {pattern!r} in:\n{output(tmp_path)}")
        time.sleep(0.05)
    return found


def started_pids(tmp_path) -> list[int]:
    return [int(pid) for pid in re.findall(r"started \(pid=(\d+)\)", output(tmp_path))]


def assert_all_gone(pids: list[int]) -> None:
    """Every process group the run started is gone (each Procfile line runs in its own)."""
    deadline = time.monotonic() + 10
    for pid in pids:
        while True:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < deadline, f"process group {pid} outlived the run"
            time.sleep(0.05)


def test_a_process_that_keeps_exiting_stops_everything_and_the_run_fails_naming_it(tmp_path):
    run = runservices(
        tmp_path, "steady: sleep 1000\nflaky: sleep 0.3; exit 0\n", "--give-up-after", "4"
    )
    assert run.wait(timeout=30) == 1
    text = output(tmp_path)
    pauses = re.findall(
        r"flaky\.1 exited unexpectedly with code 0 after \S+ s; restarting in (\S+) s", text
    )
    assert pauses == ["0.2", "0.4", "0.8"]  # the pause doubles
    assert "flaky.1 exited with code 0, 4 times in a row" in text
    assert "flaky.1 kept exiting: everything was stopped." in text
    assert len(re.findall(r"steady\.1 started", text)) == 1
    assert_all_gone(started_pids(tmp_path))


def test_a_process_that_exits_once_is_started_again_and_sigterm_stops_all_with_exit_0(tmp_path):
    marker = tmp_path / "died"
    procfile = (
        "steady: sleep 1000\n"
        # Exits at once the first time (code 3), then stays up.
        f"once: test -e {marker} || {{ touch {marker}; exit 3; }}; exec sleep 1000\n"
    )
    run = runservices(tmp_path, procfile)
    wait_for(tmp_path, r"once\.1 exited unexpectedly with code 3 after \S+ s; restarting in 0.2 s")
    wait_for(tmp_path, r"(?s)restarting in 0.2 s.*once\.1 started")
    time.sleep(1)
    assert run.poll() is None  # still running: the restarted process stays up
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=20) == 0
    assert "SIGTERM received: stopping everything" in output(tmp_path)
    assert_all_gone(started_pids(tmp_path))


def test_ctrl_c_stops_everything_with_exit_0(tmp_path):
    run = runservices(tmp_path, "one: sleep 1000\ntwo: sleep 1000\n")
    wait_for(tmp_path, r"two\.1 started")
    wait_for(tmp_path, r"one\.1 started")
    os.killpg(run.pid, signal.SIGINT)  # what a terminal sends to the whole foreground group
    assert run.wait(timeout=20) == 0
    assert "exited unexpectedly" not in output(tmp_path)
    assert_all_gone(started_pids(tmp_path))


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)  # the test database, which the services use
def test_make_runs_procfile_starts_a_killed_worker_again_and_stops_everything_on_sigterm(
    tmp_path,
):
    env = {
        **{key: value for key, value in os.environ.items() if key != "REDIS_URL"},
        **app_env(),  # the test database and media; a private Redis, as `make run` starts it
        "WEB_BIND": f"127.0.0.1:{free_port()}",
        "FLOWER_PORT": str(free_port()),
        "WEB_WORKERS": "1",
        "WORKER_CONCURRENCY": "1",
    }
    run = runservices(tmp_path, settings.BASE_DIR / "Procfile", env=env)
    try:
        redis_port = int(wait_for(tmp_path, r"redis\s+redis://127.0.0.1:(\d+)/").group(1))
        wait_for(tmp_path, r"worker\.1 .*\| .*celery@\S+ ready\.", timeout=90)
        worker = int(wait_for(tmp_path, r"worker\.1 started \(pid=(\d+)\)").group(1))

        os.killpg(worker, signal.SIGKILL)
        wait_for(
            tmp_path, r"worker\.1 exited unexpectedly with code -9 after \S+ s; restarting in 0.2 s"
        )
        again = wait_for(tmp_path, r"(?s)code -9 after.*?worker\.1 started \(pid=(\d+)\)")
        assert int(again.group(1)) != worker
        wait_for(tmp_path, r"(?s)code -9 after.*worker\.1 .*\| .*celery@\S+ ready\.", timeout=90)

        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=40) == 0
    finally:
        if run.poll() is None:  # a failed step: stop the services as a person would
            run.send_signal(signal.SIGTERM)
            run.wait(timeout=40)
    assert_all_gone(started_pids(tmp_path))
    with pytest.raises(OSError):  # the private Redis stopped too
        socket.create_connection(("127.0.0.1", redis_port), timeout=1).close()
