"""The rows of the console's jobs table, built here as one string.

Through the template engine, fifty rows of a dozen cells cost ~15 ms, a third of the console's
50 ms budget (a node render per cell and tag); built with format_html, which escapes every
value as the template did, they cost about one. The markup is what _jobs.html had.
"""

import uuid
from urllib.parse import urlencode

from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from dashboard.templatetags.parroter import (
    ago,
    duration,
    sizes,
    when_title,
    worker_anchor,
    worker_name,
)
from jobs.models import Job

ROW = (
    '<tr data-job="{pk}" data-status="{status}">'
    '<td class="mono"><a href="{job_url}" title="{pk}">{short_id}</a></td>'
    "<td>{kind}</td><td>{owner}</td>"
    '<td class="status"><span class="badge {status}">{status_label}</span>{progress}</td>'
    '<td class="name" title="{title}">{title}</td>{error}<td>{sizes}</td>'
    '<td title="{submitted}">{submitted_ago}</td>'
    '<td class="num">{queue_wait}</td><td class="num">{run_time}</td>'
    '<td class="worker" title="{worker}">{worker_link}</td>'
    '<td class="num">{attempts}/{max_attempts}</td><td class="actions">{action}</td></tr>'
)
PROGRESS = (
    '<span class="progress mini" role="progressbar" aria-valuemin="0" aria-valuemax="100" '
    'aria-valuenow="{0}" title="{0}%"><span class="bar" style="width: {0}%"></span></span>'
)
# Retry is a button of the table's one form, posting to its own URL (formaction); Cancel opens
# its question first (what a running job loses), which returns to this page.
RETRY = '<button class="small" formaction="{}">Retry</button>'
# A failure's first line; the whole message on hover (a failed-for-good job has no Retry: its
# own page offers a forced one).
ERROR = '<td class="error" title="{}">{}</td>'
CANCEL = '<a class="button small danger" href="{}?{}">Cancel…</a>'
_PLACEHOLDER = uuid.UUID(int=0)


def job_rows(jobs: list[Job], *, back: str, actions: bool) -> SafeString:
    """The rows; `back`: the console's URL as shown, where a cancel returns; `actions`: whether
    the viewer may retry and cancel (the operator role)."""
    urls = {name: _url_of_each_job(name) for name in ("ops_job", "ops_retry", "ops_cancel")}
    console = reverse("dashboard:ops")
    next_query = urlencode({"next": back})
    rows = ((_row(job, urls, console, next_query if actions else None),) for job in jobs)
    return format_html_join("", "{}", rows)


def _row(job: Job, urls: dict, console: str, next_query: str | None) -> SafeString:
    action = mark_safe("")  # noqa: S308 (empty): also for viewers, who may not act
    retryable = job.status in (Job.Status.FAILED, Job.Status.CANCELLED) and not (
        job.failed_for_good
    )
    if next_query is not None and retryable:
        action = format_html(RETRY, urls["ops_retry"](job.pk))
    elif next_query is not None and job.status in (Job.Status.QUEUED, Job.Status.RUNNING):
        action = format_html(CANCEL, urls["ops_cancel"](job.pk), next_query)
    worker_link = (
        format_html(
            '<a href="{}#{}">{}</a>', console, worker_anchor(job.worker), worker_name(job.worker)
        )
        if job.worker
        else "—"
    )
    return format_html(
        ROW,
        pk=job.pk,
        status=job.status,
        job_url=urls["ops_job"](job.pk),
        short_id=job.pk.hex[:8],
        kind=job.get_kind_display(),
        owner=job.owner.get_username(),
        status_label=job.get_status_display(),
        progress=format_html(PROGRESS, job.progress) if job.status == Job.Status.RUNNING else "",
        title=job.title,
        error=format_html(ERROR, job.error, job.error.splitlines()[0][:80])
        if job.status == Job.Status.FAILED and job.error
        else mark_safe("<td></td>"),  # noqa: S308 (empty)
        sizes=sizes(job.params),
        submitted=when_title(job.created_at),
        submitted_ago=ago(job.created_at),
        queue_wait=duration(job.queue_wait_seconds),
        run_time=duration(job.run_seconds),
        worker=job.worker,
        worker_link=worker_link,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        action=action,
    )


def _url_of_each_job(name: str):
    """pk -> the URL of `name` for that job, reversed once for the whole table."""
    head, _, tail = reverse(f"dashboard:{name}", args=[_PLACEHOLDER]).partition(str(_PLACEHOLDER))
    return lambda pk: f"{head}{pk}{tail}"
