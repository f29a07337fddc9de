import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from parroter.local_redis import LocalRedis


class Command(BaseCommand):
    help = (
        "Run the Procfile's processes (web, worker, beat, flower) with honcho, starting a "
        "private Redis first when REDIS_URL is not set. Ctrl-C stops all of them."
    )

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
            honcho = subprocess.Popen(
                [
                    os.path.join(bin_dir, "honcho"),
                    "start",
                    "-f",
                    str(settings.BASE_DIR / "Procfile"),
                ],
                cwd=settings.BASE_DIR,
                env=env,
            )
            signal.signal(signal.SIGTERM, lambda *_: honcho.terminate())
            try:
                returncode = honcho.wait()
            except KeyboardInterrupt:
                # The terminal sent SIGINT to honcho as well; let it stop its children.
                returncode = honcho.wait()
        finally:
            if local_redis:
                local_redis.stop()
        sys.exit(returncode)

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
