"""gunicorn's settings for every web process (the Procfile, docker-compose, deploy/Dockerfile):
from the environment, and from the app's settings where both must agree."""

import os

from parroter.settings import PARROTER_TRUSTED_PROXIES, VAR_DIR

bind = os.environ.get("WEB_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_WORKERS", 2 * (os.cpu_count() or 1) + 1))
timeout = int(os.environ.get("WEB_TIMEOUT", 60))
# gunicorn sets the request's scheme from X-Forwarded-Proto sent from these addresses, and Django
# falls back on that scheme when the app drops the header (parroter.middleware): with
# gunicorn's default (loopback), a client on this host could claim HTTPS with nginx elsewhere.
forwarded_allow_ips = ",".join(str(network) for network in PARROTER_TRUSTED_PROXIES)
# gunicornc's socket (gunicornc -s var/gunicorn.ctl): this instance's own. gunicorn's default,
# ~/.gunicorn/gunicorn.ctl, is one file for every gunicorn of the user, taken over by the last to
# start and removed by the first to stop, so gunicornc would reload or stop another instance.
control_socket = str(VAR_DIR / "gunicorn.ctl")
accesslog = "-"


def on_starting(server) -> None:
    """Sweep this host's stale temporary files (jobs.tempfiles) before serving: hosts share no
    disk, so no other process clears what this host's uploads left. In the master, once per
    start; jobs.tempfiles imports no models, so the app is still loaded afresh by each worker."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parroter.settings")
    from jobs import tempfiles

    removed = tempfiles.sweep_temporary_files(older_than=tempfiles.STALE_AFTER)
    server.log.info("Removed %d stale temporary files of this host", removed)
