"""Probes for load balancers and orchestrators: the only views open without a login."""

import time
from collections.abc import Callable

from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

from jobs import broker, monitoring


@login_not_required
@never_cache
def liveness(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@login_not_required
@never_cache
def readiness(request: HttpRequest) -> JsonResponse:
    """Database and broker decide 200 or 503; workers are reported, per queue, but do not take
    a web replica out of rotation (it still serves pages and takes uploads while they are
    down). The broker check is one PING with half-second timeouts; workers come from the
    monitor's report, so a broker that is down, hung or slow is answered within a second."""
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
    broker.ping()
    return {"status": "ok"}


def _check_workers() -> dict:
    """ "ok" while an online worker consumes every queue, "none" when one has no consumer,
    "unknown" when the monitor has not reported recently (then nothing is claimed)."""
    facts = monitoring.cluster_facts()
    if facts is None or facts.stale:
        age = f"{facts.age_seconds:.0f} s ago" if facts else "never"
        return {"status": "unknown", "reason": f"the monitor last reported {age}"}
    queues = {
        queue.name: {
            "status": "ok" if queue.consumers else "none",
            "consumers": queue.consumers,
            "messages": queue.messages,
        }
        for queue in facts.queues
    }
    return {
        "status": "none" if facts.unserved else "ok",
        "online": len(facts.online),
        "queues": queues,
        "reported_seconds_ago": round(facts.age_seconds, 1),
    }
