"""The operator console at /ops/: staff only, read through jobs.selectors, act through
jobs.services (the same functions Django admin's actions call)."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_celery_results.models import TaskResult

from dashboard import charts, tables
from dashboard.forms import HISTORY_RANGES, AuditFilterForm, JobFilterForm
from jobs import failure_groups, monitoring, roles, rollups, selectors, services
from jobs.audit import Actor
from jobs.history import job_history, recent_rate
from jobs.models import Job, QueuePause

# The Throughput tile's rate is over this many minutes, whatever the history's range.
RECENT_MINUTES = 5

BULK_ACTIONS = {
    # action -> (the status of the jobs it changes, when a job entered it, verb, how)
    "retry": (
        Job.Status.FAILED,
        "finished_at",
        "Retry",
        services.retry_jobs,
    ),
    "cancel": (
        Job.Status.QUEUED,
        "queued_at",
        "Cancel",
        services.cancel_jobs,
    ),
}


@dataclass(frozen=True)
class BulkConfirmation:
    """What a bulk action's confirmation showed: the moment, and how many jobs matched."""

    as_of: datetime
    count: int

    @staticmethod
    def stamp(moment: datetime) -> str:
        return str(int(moment.timestamp() * 1_000_000))

    @classmethod
    def parse(cls, data) -> "BulkConfirmation | None":
        try:
            moment = datetime.fromtimestamp(int(data.get("as_of", "")) / 1_000_000, tz=UTC)
            return cls(moment, int(data.get("count", "")))
        except (ValueError, OverflowError, OSError):
            return None

    def outcome(self, verb: str, changed: int, since: int) -> str:
        text = f"{verb}: {changed} job{pluralize(changed)} changed"
        if changed < self.count:
            gone = self.count - changed
            text += (
                f" of the {self.count} confirmed; {gone} had changed meanwhile "
                "(finished, retried or cancelled)"
            )
        if since:
            text += (
                f". {since} job{pluralize(since)} that matched since you confirmed "
                f"{pluralize(since, 'was,were')} left as they are"
            )
        return text + "."


def needs(permission: str):
    """A console view for people whose role holds `permission` (jobs.roles); anonymous people
    were already sent to the login page, others get 403."""

    def decorate(view):
        @wraps(view)
        def guarded(request: HttpRequest, *args, **kwargs):
            if not request.user.has_perm(permission):
                raise PermissionDenied(REFUSALS[permission])
            return view(request, *args, **kwargs)

        return guarded

    return decorate


REFUSALS = {
    roles.VIEW: "The operator console is for the viewer, operator and admin roles.",
    roles.OPERATE: "Retrying and cancelling others' jobs is for the operator and admin roles.",
}


@require_GET
@needs(roles.VIEW)
def index(request: HttpRequest) -> HttpResponse:
    jobs = _jobs_context(request)
    stats = _stats_context(request)
    context = {
        **jobs,
        **stats,
        "range_links": [(name, jobs["form"].query(range=name)) for name in HISTORY_RANGES],
        "chores": selectors.housekeeping_status(),
        # The same report, counts and pauses the counters read, not read again.
        **_workers_context(
            facts=stats["facts"], queued=stats["now"].queued, pauses=stats["pauses"]
        ),
    }
    return render(request, "dashboard/ops/index.html", context)


@require_GET
@never_cache
@needs(roles.VIEW)
def jobs_table(request: HttpRequest) -> HttpResponse:
    version = selectors.jobs_version()
    if request.GET.get("v") == version:
        return HttpResponse(status=204)  # nothing changed: htmx keeps the table it shows
    return render(request, "dashboard/ops/_jobs.html", _jobs_context(request, version=version))


@require_GET
@never_cache
@needs(roles.VIEW)
def stats(request: HttpRequest) -> HttpResponse:
    context = _stats_context(request)
    if request.GET.get("v") == context["stats_version"]:
        return HttpResponse(status=204)
    return render(request, "dashboard/ops/_stats.html", context)


@require_GET
@never_cache
@needs(roles.VIEW)
def workers(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "dashboard/ops/_workers.html",
        _workers_context(
            facts=monitoring.cluster_facts(),
            queued=selectors.now_counts().queued,
            pauses=selectors.queue_pauses(),
        ),
    )


@require_GET
@needs(roles.VIEW)
def job_detail(request: HttpRequest, job_id) -> HttpResponse:
    job = get_object_or_404(Job.objects.select_related("owner"), pk=job_id)
    context = {
        "job": job,
        "task": TaskResult.objects.filter(task_id=job.task_id).first(),
        "version": str(int(job.updated_at.timestamp() * 1_000_000)),
        "timeline": _timeline(job),
        "audit": selectors.audit_page(job=job.pk).entries[:10],
    }
    return render(request, "dashboard/ops/job.html", context)


@require_http_methods(["GET", "POST"])
@needs(roles.OPERATE)
def queue_pause(request: HttpRequest, queue: str, action: str) -> HttpResponse:
    """Pause a queue (GET: the question, with a reason to give) or resume it (POST)."""
    if queue not in monitoring.queue_names() or action not in ("pause", "resume"):
        raise Http404("No such queue.")
    if request.method == "GET":
        if action == "resume":
            return redirect(f"{reverse('dashboard:ops')}#workers-title")
        context = {
            "queue": queue,
            "pause": selectors.queue_pauses().get(queue),
            "check_seconds": f"{settings.PARROTER_QUEUE_PAUSE_CHECK_SECONDS:g}",
        }
        return render(request, "dashboard/ops/pause.html", context)
    actor = _actor(request)
    if action == "pause":
        done = services.pause_queue(queue=queue, actor=actor)
        text = f"{queue} is paused: workers stop taking its jobs within seconds."
    else:
        done = services.resume_queue(queue=queue, actor=actor)
        text = f"{queue} is resumed: workers take its jobs again within seconds."
    if done:
        messages.success(request, text)
    else:
        messages.info(
            request, f"{queue} was already {'paused' if action == 'pause' else 'running'}."
        )
    return redirect(f"{reverse('dashboard:ops')}#workers-title")


# The failure groups' ranges (the last hour, day and week) and their trends' slots.
FAILURE_RANGES = {
    "1h": (timedelta(hours=1), "minute"),
    "24h": (timedelta(hours=24), "hour"),
    "7d": (timedelta(days=7), "hour"),
}


@require_GET
@needs(roles.VIEW)
def failures(request: HttpRequest) -> HttpResponse:
    """Failures grouped by signature over a range, the most recent (or the most) first, with
    the new ones (not acknowledged since they last failed) marked."""
    chosen = request.GET.get("range", "24h")
    chosen = chosen if chosen in FAILURE_RANGES else "24h"
    by_count = request.GET.get("order") == "count"
    page = int(request.GET["page"]) if request.GET.get("page", "").isdigit() else 1
    page = min(max(page, 1), 1000)
    window, slot = FAILURE_RANGES[chosen]
    groups = failure_groups.failure_groups(
        since=timezone.now() - window, slot=slot, by_count=by_count, page=page
    )
    more = len(groups) > failure_groups.FAILURE_GROUPS_PER_PAGE
    groups = groups[: failure_groups.FAILURE_GROUPS_PER_PAGE]
    return render(
        request,
        "dashboard/ops/failures.html",
        {
            "groups": [(row, charts.sparkline(row.trend, slot=slot)) for row in groups],
            "new": sum(row.is_new for row in groups),
            "range": chosen,
            "ranges": list(FAILURE_RANGES),
            "by_count": by_count,
            "page": page,
            "more": more,
        },
    )


@require_POST
@needs(roles.OPERATE)
def acknowledge(request: HttpRequest, signature: str) -> HttpResponse:
    if not services.acknowledge_failures(signature=signature, actor=_actor(request)):
        raise Http404("No such failure group.")
    messages.success(
        request, "Acknowledged: the group stays out of the new ones until it fails again."
    )
    return redirect(f"{reverse('dashboard:ops_failures')}?{request.GET.urlencode()}")


@require_GET
@needs(roles.VIEW)
def alerts(request: HttpRequest) -> HttpResponse:
    """The alert rules' state and the alert history (fired, resolved, who was told), newest
    first, a page at a time."""
    return render(
        request,
        "dashboard/ops/alerts.html",
        {
            "rules": selectors.alert_rules(),
            "page": selectors.alert_history(after=request.GET.get("after", "")),
        },
    )


@require_GET
@needs(roles.VIEW)
def audit(request: HttpRequest) -> HttpResponse:
    """Who did what, newest first: filtered by action, person or job, a page at a time."""
    form = AuditFilterForm(request.GET)
    chosen = form.chosen
    page = selectors.audit_page(
        action=chosen.get("action", ""),
        actor=chosen.get("actor", ""),
        job=chosen.get("job"),
        after=request.GET.get("after", ""),
    )
    return render(
        request,
        "dashboard/ops/audit.html",
        {"form": form, "page": page, "filtered": bool(chosen), "query": form.query},
    )


@require_POST
@needs(roles.OPERATE)
def retry(request: HttpRequest, job_id) -> HttpResponse:
    job = get_object_or_404(Job, pk=job_id)  # an unknown id is a 404, like its page
    force = request.POST.get("force") == "1"
    if services.retry_job(job_id=job_id, actor=_actor(request), force=force):
        messages.success(
            request, "The job is queued again (forced)." if force else ("The job is queued again.")
        )
    elif job.failed_for_good:
        messages.info(
            request,
            "Not retried: the job failed on its input, and a retry would fail the same way. "
            "Its page can force one.",
        )
    else:
        messages.info(request, "Nothing to retry: only failed or cancelled jobs can be retried.")
    return _back(request, job_id)


@require_http_methods(["GET", "POST"])
@needs(roles.OPERATE)
def cancel(request: HttpRequest, job_id) -> HttpResponse:
    """GET: what cancelling this job loses, asked first; POST: cancel it."""
    job = get_object_or_404(Job.objects.select_related("owner"), pk=job_id)
    if request.method == "GET":
        return cancel_confirmation(request, job, back=_next_url(request, job_id))
    if services.cancel_job(job_id=job_id, actor=_actor(request)):
        messages.success(request, "The job is cancelled.")
    else:
        messages.info(request, "Nothing to cancel: the job had already finished.")
    return _back(request, job_id)


def cancel_confirmation(request: HttpRequest, job: Job, *, back: str) -> HttpResponse:
    """The question before a cancel, for operators and owners alike; a finished job goes back."""
    if job.is_finished:
        messages.info(request, "Nothing to cancel: the job has finished.")
        return redirect(back)
    return render(request, "dashboard/cancel.html", {"job": job, "back": back})


@require_http_methods(["GET", "POST"])
@needs(roles.OPERATE)
def bulk(request: HttpRequest, action: str) -> HttpResponse:
    """GET: how many jobs the action would change (the confirmation); POST: change those, and
    only those: jobs in the status that entered it by the moment the confirmation was shown
    (`as_of`) and still are. Jobs that matched since are left as they are."""
    if action not in BULK_ACTIONS:
        raise Http404("No such action.")
    status, entered, verb, service = BULK_ACTIONS[action]
    params = request.POST if request.method == "POST" else request.GET
    form = JobFilterForm(params)
    filters = form.job_filters()
    jobs = selectors.find_jobs(**{**filters, "status": status})
    # job_filters() leaves out a filter with an error, which here would widen the action to jobs
    # the person meant to spare: nothing matches until every filter is valid, nor while another
    # status is shown (e.g. "retry failed" while showing succeeded).
    if not form.is_valid() or filters["status"] not in ("", status):
        jobs = jobs.none()
    left_out = 0
    if action == "retry":  # failures on their input are not retried: a retry cannot fix them
        if request.method == "GET":
            left_out = jobs.filter(failure_kind__in=Job.PERMANENT_FAILURES).count()
        jobs = services.retryable(jobs)
    if request.method == "POST":
        confirmed = BulkConfirmation.parse(request.POST)
        if confirmed is None:
            messages.error(request, "That confirmation was incomplete; nothing was changed.")
        else:
            # A job with no such time (made by hand, in admin) counts as shown.
            shown = Q(**{f"{entered}__lte": confirmed.as_of}) | Q(**{f"{entered}__isnull": True})
            changed = service(
                jobs=jobs.filter(shown),
                actor=_actor(request),
                details={"filter": form.query() or "every job", "confirmed": confirmed.count},
            )
            since = jobs.exclude(shown).count()
            messages.success(request, confirmed.outcome(verb, changed, since))
        return redirect(f"{reverse('dashboard:ops')}?{form.query()}")
    context = {
        "form": form,
        "action": action,
        "verb": verb,
        "status": Job.Status(status),
        "as_of": BulkConfirmation.stamp(timezone.now()),  # before the count: none missed
        "count": jobs.count(),
        "left_out": left_out,
        "query": form.query(),
    }
    return render(request, "dashboard/ops/bulk.html", context)


def _jobs_context(request: HttpRequest, version: str | None = None) -> dict:
    # The version is read before the rows: a change in between shows at the next poll,
    # where read after, it would be taken as seen and the table would stay stale.
    version = version or selectors.jobs_version()
    form = JobFilterForm(request.GET)
    after = selectors.Cursor.parse(request.GET.get("after", ""))
    before = selectors.Cursor.parse(request.GET.get("before", ""))
    page = selectors.job_page(
        jobs=selectors.find_jobs(**form.job_filters()), after=after, before=before
    )
    position = {"after": str(after)} if after else {"before": str(before)} if before else {}
    return {
        "form": form,
        "page": page,
        "rows": tables.job_rows(
            page.jobs,
            back=f"{reverse('dashboard:ops')}?{form.query(**position)}",
            actions=roles.can_operate(request.user),
        ),
        "filtered": any(form.job_filters().values()),
        "version": version,
        "here": form.query(**position),
        "newer_query": form.query(before=str(page.newer)) if page.newer else "",
        "older_query": form.query(after=str(page.older)) if page.older else "",
        "filter_query": form.query(),
    }


def _stats_context(request: HttpRequest) -> dict:
    name = JobFilterForm(request.GET).history_range
    window, slot = HISTORY_RANGES[name]
    jobs_version = selectors.jobs_version()  # before the counts, as in _jobs_context
    history = job_history(window=window, slot=slot)
    now = selectors.now_counts()
    facts = monitoring.cluster_facts()
    # Counters move with any job change, charts with the clock's current slot, and the
    # warnings with the workers online, the queues served and the broker's state.
    # The clock's minute, not the slot's start: the last five minutes' rate moves every minute.
    minute = rollups.minute_of(timezone.now())
    pauses = selectors.queue_pauses()
    firing = selectors.firing_alerts()
    version = (
        f"{jobs_version}-{minute}-{_facts_version(facts)}-{'.'.join(sorted(pauses))}"
        f"-{'.'.join(str(rule.pk) for rule in firing)}"
    )
    return {
        "range": name,
        "history": history,
        "recent_rate": recent_rate(minutes=RECENT_MINUTES),
        "recent_minutes": RECENT_MINUTES,
        "now": now,
        "facts": facts,
        "job_queue": monitoring.job_queue(),
        "pauses": pauses,
        "firing_alerts": firing,
        # A paused queue is shown as paused, not as one no worker consumes.
        "unserved": [queue for queue in facts.unserved if queue.name not in pauses]
        if facts
        else [],
        "stats_version": version,
        "charts": charts.for_history(history),
        "slot_data": charts.slot_data(history),
        "slot_name": charts.slot_name(slot),
    }


def _facts_version(facts: monitoring.ClusterFacts | None) -> str:
    if facts is None:
        return "none"
    if facts.stale:
        return "stale"
    unserved = ".".join(queue.name for queue in facts.unserved)
    return f"{len(facts.online)}-{unserved}{'' if facts.broker_ok else '-x'}"


def _workers_context(
    *, facts: monitoring.ClusterFacts | None, queued: int, pauses: dict[str, QueuePause]
) -> dict:
    queue = facts.queue(monitoring.job_queue()) if facts else None
    # More messages than queued jobs: messages of jobs cancelled or retried since they were sent
    # (a worker skips them). Fewer: jobs whose message a worker holds, or not sent yet.
    difference = queue.messages - queued if queue and queue.messages is not None else 0
    running = selectors.running_jobs_by_worker()
    return {
        "facts": facts,
        "queues": [(queue, pauses.get(queue.name)) for queue in facts.queues] if facts else [],
        "job_queue": monitoring.job_queue(),
        "queued": queued,
        "extra_messages": max(difference, 0),
        "unsent_jobs": max(-difference, 0),
        "workers": [(worker, running.get(worker.name, 0)) for worker in facts.workers]
        if facts
        else [],
    }


def _timeline(job: Job) -> list[tuple[str, object, float | None]]:
    """(event, when, seconds since the previous event) for the job's current attempt."""
    events = [("Created", job.created_at)]
    if job.queued_at != job.created_at:
        events.append(("Queued again", job.queued_at))
    if job.started_at:
        events.append((f"Started (attempt {job.attempts})", job.started_at))
    if job.finished_at:
        events.append((job.get_status_display(), job.finished_at))
    return [
        (name, when, (when - events[index - 1][1]).total_seconds() if index else None)
        for index, (name, when) in enumerate(events)
    ]


def _actor(request: HttpRequest) -> Actor:
    """The operator, with the reason they typed on the action's confirmation (if any)."""
    return Actor.of(request, reason=request.POST.get("reason", ""))


def _back(request: HttpRequest, job_id) -> HttpResponse:
    return redirect(_next_url(request, job_id))


def _next_url(request: HttpRequest, job_id) -> str:
    """Where an action returns: the page it came from (next, of this site), else the job's."""
    target = request.POST.get("next") or request.GET.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("dashboard:ops_job", args=[job_id])
    return target
