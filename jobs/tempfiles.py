"""This host's temporary files: uploads being received and archives being written
(FILE_UPLOAD_TEMP_DIR, a folder on each host's own disk). Hosts share no disk, so no chore on
another host can clear them: every process that writes there sweeps its own host, web when
gunicorn starts (parroter.gunicorn_conf), each worker when it starts and then every
PARROTER_TEMP_SWEEP_SECONDS (parroter.celery_app.SweepTemporaryFiles), and the housekeeping
chore on its own host.

No model is imported here: gunicorn's master calls this before any app is loaded, so that a
graceful reload (HUP) still loads the app's code afresh in new workers.
"""

import os
import time
from contextlib import suppress
from datetime import timedelta

from django.conf import settings

# An upload or a job may still be writing a file this young (a job at most its hard time limit).
STALE_AFTER = timedelta(days=1)


def sweep_temporary_files(*, older_than: timedelta = STALE_AFTER) -> int:
    """Remove this host's temporary files untouched for `older_than` (an upload cut off by a
    timeout, the pending archive of a killed worker); how many were removed."""
    stale = time.time() - older_than.total_seconds()
    removed = 0
    with os.scandir(settings.FILE_UPLOAD_TEMP_DIR) as entries:
        for entry in entries:
            # Another process of this host (web beside a worker) may sweep the same file first.
            with suppress(FileNotFoundError):
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < stale:
                    os.unlink(entry.path)
                    removed += 1
    return removed
