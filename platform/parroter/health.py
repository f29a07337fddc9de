"""Probes for load balancers and orchestrators: the only views open without a login."""

import time
from collections.abc import Callable

from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

from jobs import monitoring
from parroter.celery_app import app


@login_not_required
@never_cache
def liveness(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@login_not_required
@never_cache
def readiness(request: HttpRequest) -> JsonResponse:
    """Database and broker decide 200 or 503; workers are reported but do not take a web
    replica out of rotation (it still serves pages and takes uploads while they are down)."""
    checks = {
        "database": _timed(_check_database),
        "broker": _timed(_check_broker),
        "workers": _timed(_check_workers),
    }
    ok = checks["database"]["status"] == "ok" and checks["broker"]["status"] == "ok"
    return JsonResponse(
        {"status": "ok" if ok else "unavailable", **checks}, status=200 if ok else 503
    )


def _timed(check: Callable[[], dict]) -> dict:
    started = time.perf_counter()
    try:
        result = check()
    except Exception as exc:  # any failure means "not ready"; the message says which
        result = {"status": "error", "error": exc.__class__.__name__}
    return {**result, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}


def _check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"status": "ok"}


def _check_broker() -> dict:
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return {"status": "ok"}


def _check_workers() -> dict:
    facts = monitoring.cluster_facts()
    online = len(facts.online) if facts else 0
    return {"status": "ok" if online else "none", "online": online}
