"""Flower as the Procfile and docker-compose.yml run it: `celery -A parroter flower`, with every
page behind Flower's own login (FLOWER_BASIC_AUTH).

Flower 2.2 answers /healthcheck and /metrics to anyone who reaches its port: in
flower/views/monitor.py they are its only views without tornado's @authenticated. Its port is
reachable from every container on the compose networks and every local user of a host, and
/metrics names the tasks, workers and queues. Here they take the same login as the rest, which
the web app's proxy and nginx already send and a Prometheus scrape job can (`basic_auth`).

Task events follow PARROTER_TASK_EVENTS (settings): off, Flower lists workers and queues only.
"""

import sys

from flower.views.monitor import Healthcheck, Metrics
from tornado.web import authenticated

from parroter.celery_app import app

for view in (Healthcheck, Metrics):
    # With basic auth, Flower's current_user answers 401 to a missing or wrong password.
    view.get = authenticated(view.get)

if __name__ == "__main__":
    # Flower switches task events on in every worker every 5 s unless told not to: with
    # PARROTER_TASK_EVENTS off it must leave them off.
    events = [] if app.conf.worker_send_task_events else ["--enable_events=False"]
    app.start(["flower", *events, *sys.argv[1:]])
