"""/metrics for Prometheus, for staff (a session, or a staff user's API token): read at scrape
time from the database's rollups and indexed counts and from the broker's cached facts, so every
web process answers the same numbers (no per-process counters for gunicorn workers to split)."""

from collections.abc import Iterator, Sequence

from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from jobs import history, housekeeping, monitoring, roles, rollups, selectors, tokens
from jobs.models import DURATION_BOUNDS, Chore, Job
from jobs.schemas import Error


class ParroterCollector:
    """What the console shows, as metric families, computed when Prometheus asks."""

    def collect(self) -> Iterator[Metric]:
        yield from _job_metrics()
        yield from _cluster_metrics(monitoring.cluster_facts())  # the monitor's report
        yield from _housekeeping_metrics()
        yield from _alert_metrics()


def _job_metrics() -> Iterator[Metric]:
    now = selectors.now_counts()
    waiting = GaugeMetricFamily(
        "parroter_jobs", "Jobs queued or running now, by status.", labels=["status"]
    )
    waiting.add_metric([Job.Status.QUEUED], now.queued)
    waiting.add_metric([Job.Status.RUNNING], now.running)
    yield waiting
    yield GaugeMetricFamily(
        "parroter_oldest_queued_job_age_seconds",
        "How long the oldest queued job has waited (0 when none waits).",
        value=now.oldest_wait_seconds or 0.0,
    )

    totals = history.rollup_totals()
    finished = CounterMetricFamily(
        "parroter_jobs_finished",
        "Finished attempts, by kind and outcome, counted when they finished (a later retry or "
        "retention does not take them away).",
        labels=["kind", "status"],
    )
    retried = CounterMetricFamily(
        "parroter_jobs_retried",
        "Jobs a person sent back to the queue, by kind and the outcome they were retried from.",
        labels=["kind", "status"],
    )
    run = HistogramMetricFamily(
        "parroter_job_run_seconds",
        "Run time of finished jobs' last attempt.",
        labels=["kind", "status"],
    )
    wait = HistogramMetricFamily(
        "parroter_job_queue_wait_seconds",
        "Time finished jobs waited in the queue before their last attempt started.",
        labels=["kind", "status"],
    )
    for total in totals:
        labels = [total.kind, total.status]
        finished.add_metric(labels, total.jobs)
        retried.add_metric(labels, total.retried)
        run.add_metric(labels, _cumulative(total.run_buckets), total.run_seconds)
        wait.add_metric(labels, _cumulative(total.wait_buckets), total.wait_seconds)
    yield from (finished, retried, run, wait)
    yield GaugeMetricFamily(
        "parroter_history_pending_finishes",
        "Finished attempts the counters above do not count yet: the monitor adds them every "
        f"round, this scrape added up to {rollups.READER_BATCHES * rollups.ADD_BATCH:,}; "
        f"counted up to {history.PENDING_COUNT_CAP:,}. Growing: the monitor is behind or down.",
        value=history.pending_finishes(),
    )


def _cumulative(counts: Sequence[int]) -> list[tuple[str, int]]:
    """Per-bucket counts as Prometheus' cumulative (le, count) pairs, +Inf last."""
    bounds = [*(f"{bound:g}" for bound in DURATION_BOUNDS), "+Inf"]
    running, buckets = 0, []
    for bound, count in zip(bounds, counts, strict=True):
        running += count
        buckets.append((bound, running))
    return buckets


def _cluster_metrics(facts: monitoring.ClusterFacts | None) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "parroter_monitor_report_age_seconds",
        "Seconds since the monitor last reported; past 10 the facts below are left out.",
        value=facts.age_seconds if facts else float("inf"),
    )
    if facts is None or facts.stale:
        return  # unknown is not zero: leave the series out rather than report none
    yield GaugeMetricFamily(
        "parroter_broker_up",
        "1 if the broker answered the monitor's last check, else 0.",
        value=1 if facts.broker_ok else 0,
    )
    consumers = GaugeMetricFamily(
        "parroter_queue_consumers",
        "Online workers consuming each queue (0: nothing will run what waits there).",
        labels=["queue"],
    )
    depth = GaugeMetricFamily(
        "parroter_queue_messages", "Messages waiting in each queue.", labels=["queue"]
    )
    for queue in facts.queues:
        consumers.add_metric([queue.name], queue.consumers)
        if queue.messages is not None:
            depth.add_metric([queue.name], queue.messages)
    yield from (consumers, depth)
    yield GaugeMetricFamily(
        "parroter_workers_online",
        "Celery workers whose heartbeats arrive.",
        value=len(facts.online),
    )


def _housekeeping_metrics() -> Iterator[Metric]:
    chores = Chore.objects.in_bulk([schedule.chore for schedule in housekeeping.SCHEDULES])
    runs = CounterMetricFamily(
        "parroter_housekeeping_runs", "Runs of each housekeeping chore.", labels=["chore"]
    )
    last = GaugeMetricFamily(
        "parroter_housekeeping_last_run_timestamp_seconds",
        "When each chore last finished (Unix time).",
        labels=["chore"],
    )
    failed = GaugeMetricFamily(
        "parroter_housekeeping_last_run_failed",
        "1 if the chore's last run failed.",
        labels=["chore"],
    )
    outcome = GaugeMetricFamily(
        "parroter_housekeeping_last_run_items",
        "What the chore's last run did: jobs deleted, messages sent again, files removed, ...",
        labels=["chore", "item"],
    )
    for name, chore in chores.items():
        runs.add_metric([name], chore.runs)
        if chore.finished_at:
            last.add_metric([name], chore.finished_at.timestamp())
            failed.add_metric([name], 1 if chore.error else 0)
        for item, count in chore.outcome.items():
            outcome.add_metric([name, item], count)
    yield from (runs, last, failed, outcome)


def _alert_metrics() -> Iterator[Metric]:
    firing = GaugeMetricFamily(
        "parroter_alert_firing",
        "1 for each alert rule firing now (jobs.alerts), by rule and condition.",
        labels=["rule", "condition"],
    )
    for rule in selectors.firing_alerts():
        firing.add_metric([rule.name, rule.condition], 1)
    yield firing


_REGISTRY = CollectorRegistry(auto_describe=False)
_REGISTRY.register(ParroterCollector())


@login_not_required  # a scraper gets 401, not a redirect to a login page it cannot use
@require_GET
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    reader = _reader(request)
    if reader is None:
        return _refusal(
            401,
            "Send the API token (Authorization: Bearer <token>) of a user with the viewer, "
            "operator or admin role, or sign in as one.",
        )
    if not roles.can_view(reader):
        return _refusal(403, "Metrics are for the viewer, operator and admin roles.")
    return HttpResponse(generate_latest(_REGISTRY), content_type=CONTENT_TYPE_LATEST)


def _refusal(status: int, message: str) -> JsonResponse:
    """A scraper's refusal in the API's error shape, never an HTML page."""
    response = JsonResponse(Error(message=message).model_dump(), status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


def _reader(request: HttpRequest) -> AbstractBaseUser | None:
    """Who asks: the user of the API token a scraper sends (Prometheus' `authorization`), or
    else the signed-in user. A token that is sent but not valid is refused, session or not."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return tokens.user_for_api_token(plain=token.strip())
    return request.user if request.user.is_authenticated else None
