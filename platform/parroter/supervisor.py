"""`make run`'s process manager: honcho's Manager (the Procfile's lines, their output prefixed and
coloured, each in a process group of its own) with a supervisor's policy instead of honcho's
"one exits, all stop, exit with its code" — which turned a worker that exited 0 into a quiet
`make run` that exited 0.

A process that exits while nobody asked is started again after a pause that doubles from
`restart_delay` up to MAX_RESTART_DELAY, and resets once the process has stayed up STABLE_AFTER.
One that dies `give_up_after` times in a row without staying up (a port in use, a bad setting)
stops everything, and the run exits 1 naming it. Ctrl-C or SIGTERM stops everything and exits 0.
"""

import contextlib
import multiprocessing
import queue
import signal
import time

from honcho.manager import KILL_WAIT, Manager

MAX_RESTART_DELAY = 30.0  # seconds
STABLE_AFTER = 60.0  # seconds up after which a death is a first one again


class Supervisor(Manager):
    def __init__(self, *, restart_delay: float = 1.0, give_up_after: int = 5) -> None:
        super().__init__()
        self.restart_delay = restart_delay
        self.give_up_after = give_up_after
        self.gave_up_on: str | None = None
        self._due: dict[str, float] = {}  # name -> when to start it again (monotonic)
        self._streak: dict[str, int] = {}  # name -> deaths in a row without staying up

    def loop(self) -> None:
        def stop(signum, _frame) -> None:
            self._system_print(f"{signal.Signals(signum).name} received: stopping everything\n")
            self.terminate()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self._start()
        for process in self._processes.values():
            process["pid"] = None
        stopping_since = None
        while True:
            with contextlib.suppress(queue.Empty):
                self._handle(self.events.get(timeout=0.1))
            now = time.monotonic()
            if not self._terminating:
                for name in [name for name, due in self._due.items() if due <= now]:
                    del self._due[name]
                    self._restart(name)
                continue
            stopping_since = stopping_since or now
            self._signal_running(signal.SIGTERM)  # one started meanwhile is stopped too
            if all("returncode" in process for process in self._processes.values()):
                break
            if now - stopping_since > KILL_WAIT:
                self._signal_running(signal.SIGKILL)
        self.returncode = 1 if self.gave_up_on else 0

    def terminate(self) -> None:
        self._terminating = True
        self._due.clear()

    def _handle(self, message) -> None:
        process = self._processes.get(message.name)
        if message.type == "line":
            self._printer.write(message)
        elif message.type == "start":
            process.update(pid=message.data["pid"], started=time.monotonic(), signalled=set())
            self._system_print(f"{message.name} started (pid={message.data['pid']})\n")
        elif message.type == "stop":
            process["returncode"] = code = message.data["returncode"]
            if self._terminating:
                self._system_print(f"{message.name} stopped (rc={code})\n")
            else:
                self._exited(message.name, code, time.monotonic() - process["started"])

    def _exited(self, name: str, code: int, lasted: float) -> None:
        streak = 1 if lasted >= STABLE_AFTER else self._streak.get(name, 0) + 1
        self._streak[name] = streak
        if streak >= self.give_up_after:
            self.gave_up_on = name
            self._system_print(
                f"{name} exited with code {code}, {streak} times in a row within "
                f"{STABLE_AFTER:.0f} s of starting: giving up, stopping everything\n"
            )
            self.terminate()
            return
        delay = min(self.restart_delay * 2 ** (streak - 1), MAX_RESTART_DELAY)
        self._system_print(
            f"{name} exited unexpectedly with code {code} after {lasted:.1f} s; "
            f"restarting in {delay:g} s\n"
        )
        self._due[name] = time.monotonic() + delay

    def _restart(self, name: str) -> None:
        process = self._processes[name]
        del process["returncode"]
        process["pid"] = None
        process["process"] = multiprocessing.Process(
            name=name, target=process["obj"].run, args=(self.events, True)
        )
        process["process"].start()

    def _signal_running(self, signum: signal.Signals) -> None:
        """Each process group that runs and has not had this signal yet gets it."""
        for name, process in self._processes.items():
            if "returncode" in process or not process["pid"] or signum in process["signalled"]:
                continue
            process["signalled"].add(signum)
            self._system_print(f"sending {signum.name} to {name} (pid {process['pid']})\n")
            if signum == signal.SIGKILL:
                self._procmgr.kill(process["pid"])
            else:
                self._procmgr.terminate(process["pid"])
