"""gunicorn settings for production (docker-compose, deploy/): all from the environment."""

import os

bind = os.environ.get("WEB_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_WORKERS", 2 * (os.cpu_count() or 1) + 1))
timeout = int(os.environ.get("WEB_TIMEOUT", 60))
# Uploads of tens of MB: buffer them behind a proxy (deploy/nginx.conf) rather than in workers.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = "-"
