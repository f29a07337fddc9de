import os
import secrets
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from honcho import environ

from parroter.local_redis import LocalRedis
from parroter.supervisor import Supervisor


class Command(BaseCommand):
    help = (
        "Run the Procfile's processes (web, worker, housekeeping, monitor, beat, flower), "
        "starting a private Redis first when REDIS_URL is not set. A process that exits is "
        "started again after a growing pause; one that keeps dying stops everything (exit 1). "
        "Ctrl-C stops all of them."
    )

    def add_arguments(self, parser):
        parser.add_argument("--procfile", type=Path, default=settings.BASE_DIR / "Procfile")
        parser.add_argument(
            "--restart-delay", type=float, default=1.0,
            help="seconds before a process that exited is started again; doubles each time",
        )  # fmt: skip
        parser.add_argument(
            "--give-up-after", type=int, default=5,
            help="deaths in a row (each within a minute of starting) that stop everything",
        )  # fmt: skip

    def handle(self, *args, **options):
        env = os.environ.copy()
        bin_dir = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
        # Flower's own login: honcho hands it to flower and to web, whose /flower/ proxy sends it.
        env.setdefault("FLOWER_BASIC_AUTH", self._flower_credentials())
        env.setdefault("WEB_BIND", "127.0.0.1:8000")
        env.setdefault("FLOWER_PORT", "5555")
        env.setdefault("FLOWER_URL", f"http://127.0.0.1:{env['FLOWER_PORT']}")

        local_redis = None
        if "REDIS_URL" not in env:
            local_redis = LocalRedis(directory=settings.VAR_DIR / "redis").start()
            env["REDIS_URL"] = local_redis.url
        try:
            self._print_banner(env)
            supervisor = Supervisor(
                restart_delay=options["restart_delay"], give_up_after=options["give_up_after"]
            )
            # As `honcho start` does: the Procfile's lines as web.1, worker.1, ..., with .env's
            # variables (when there is one) over this environment.
            dotenv = settings.BASE_DIR / ".env"
            overrides = environ.parse(dotenv.read_text()) if dotenv.exists() else {}
            procfile = environ.parse_procfile(options["procfile"].read_text())
            for process in environ.expand_processes(procfile.processes, env=overrides, port=5000):
                supervisor.add_process(
                    process.name, process.cmd, env={**env, **process.env}, cwd=settings.BASE_DIR
                )
            supervisor.loop()
        finally:
            if local_redis:
                local_redis.stop()
        if supervisor.gave_up_on:
            self.stderr.write(f"{supervisor.gave_up_on} kept exiting: everything was stopped.")
        sys.exit(supervisor.returncode)

    def _flower_credentials(self) -> str:
        path = settings.VAR_DIR / "flower_basic_auth"
        if not path.exists():
            path.write_text(f"flower:{secrets.token_urlsafe(12)}")
            path.chmod(0o600)
        return path.read_text().strip()

    def _print_banner(self, env: dict) -> None:
        self.stdout.write(self.style.SUCCESS("\nParroter is starting:"))
        self.stdout.write(
            f"  web     http://{env['WEB_BIND']}/   (sign in with the admin login above)"
        )
        self.stdout.write(f"  ops     http://{env['WEB_BIND']}/ops/   (operator console, staff)")
        self.stdout.write(f"  admin   http://{env['WEB_BIND']}/admin/")
        self.stdout.write(f"  flower  http://{env['WEB_BIND']}/flower/   (staff accounts)")
        self.stdout.write(f"  redis   {env['REDIS_URL']}")
        self.stdout.write("Press Ctrl-C to stop everything.\n")
