import math
from pathlib import PurePath

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from dashboard.forms import JobSearchForm
from dashboard.views import ops
from jobs import limits, monitoring, roles, selectors, services
from jobs.audit import Actor
from jobs.downloads import archive_response
from jobs.forms import RerunJobForm, ThumbnailJobForm
from jobs.kinds import thumbnails
from jobs.models import Job, Preset
from jobs.schemas import Error

PREVIEWS_PER_PAGE = 48


def _visible_job(request: HttpRequest, job_id) -> Job:
    # Someone else's job answers 404, exactly like a job that does not exist.
    return get_object_or_404(selectors.visible_jobs(user=request.user), pk=job_id)


@require_http_methods(["GET", "POST"])
def upload(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = ThumbnailJobForm(
            request.POST, request.FILES, owner=request.user, refusal=_over_submit_rate(request)
        )
    else:  # the settings of the chosen preset, or of the person's last job
        form = ThumbnailJobForm(
            owner=request.user,
            initial=selectors.starting_choices(user=request.user, preset=request.GET.get("preset")),
        )
    if form.is_valid():  # an unbound form (GET) is never valid
        job = form.submit()
        if form.refused:
            messages.warning(
                request,
                f"{len(form.refused)} of {len(form.refused) + len(form.accepted)} files were left "
                "out; the job page says why.",
            )
        url = reverse("dashboard:job", args=[job.pk])
        # An XHR would follow a redirect itself (using up the message above); htmx turns this
        # header into a page load instead.
        return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    status = (429 if form.refused_for_now else 400) if form.is_bound else 200
    if request.htmx:  # only the errors go back: the chosen files stay in the page's input
        return render(request, "dashboard/_upload_errors.html", {"form": form}, status=status)
    context = {
        "form": form,
        "jobs": selectors.recent_jobs(user=request.user),
        "presets": Preset.objects.filter(owner=request.user),
        "preset": request.GET.get("preset", ""),
    }
    return render(request, "dashboard/upload.html", context, status=status)


def _over_submit_rate(request: HttpRequest) -> str:
    """Why this submit is refused when the person started too many jobs lately (on this page
    and through the API together), else ""."""
    rate = limits.Rate.parse(settings.PARROTER_SUBMIT_RATE)
    over = limits.take(scope=limits.SUBMIT, user_id=request.user.pk, rate=rate)
    if over is None:
        return ""
    return (
        f"You can start at most {rate.requests} jobs {rate.per}; wait {math.ceil(over.wait)} "
        "seconds and start this one again."
    )


@require_GET
def jobs_list(request: HttpRequest) -> HttpResponse:
    """All of one's jobs, newest first, in keyset pages; searchable by the image's name."""
    form = JobSearchForm(request.GET)
    chosen = form.chosen
    jobs = selectors.find_jobs(search=chosen.get("q", ""), status=chosen.get("status", ""))
    page = selectors.job_page(
        jobs=jobs.filter(owner=request.user),
        after=selectors.Cursor.parse(request.GET.get("after", "")),
        before=selectors.Cursor.parse(request.GET.get("before", "")),
    )
    context = {
        "form": form,
        "page": page,
        "filtered": bool(chosen),
        "live": any(not job.is_finished for job in page.jobs),
    }
    template = "dashboard/_my_jobs.html" if request.htmx else "dashboard/jobs.html"
    return render(request, template, context)


@require_http_methods(["GET", "POST"])
def delete(request: HttpRequest, job_id) -> HttpResponse:
    """One's own finished job, its files and results: a page that asks, and the POST that
    does it."""
    job = get_object_or_404(Job, pk=job_id, owner=request.user)
    if not job.is_finished:
        messages.info(request, "Only a finished job can be deleted.")
        return redirect("dashboard:job", job.pk)
    if request.method == "POST":
        if services.delete_job(job_id=job.pk, actor=Actor.of(request)):
            messages.success(request, f"Deleted {job.title} and its thumbnails.")
        return redirect("dashboard:jobs")
    return render(request, "dashboard/delete.html", {"job": job})


@require_http_methods(["GET", "POST"])
def rerun(request: HttpRequest, job_id) -> HttpResponse:
    """One's own finished job made again with new settings (and focal points, and failed images
    replaced), as a new job linked to it."""
    job = get_object_or_404(Job, pk=job_id, owner=request.user)
    if not job.is_finished:
        messages.info(request, "A job can be re-run once it has finished.")
        return redirect("dashboard:job", job.pk)
    sources = selectors.rerun_images(job=job)
    if request.method == "POST":
        form = RerunJobForm(
            request.POST,
            request.FILES,
            job=job,
            sources=sources,
            refusal=_over_submit_rate(request),
        )
        if form.is_valid():
            rerun_job = form.submit()
            messages.success(request, f"Re-running {job.title} with the new settings.")
            return redirect("dashboard:job", rerun_job.pk)
    else:
        form = RerunJobForm(job=job, sources=sources, initial=selectors.job_choices(job=job))
    context = {
        "form": form,
        "job": job,
        "sources": [(image, form[f"focus_{image['index']}"]) for image in sources],
        "replacements": [
            (image, form[f"replace_{image['index']}"]) for image in sources if image["failed"]
        ],
    }
    status = (429 if form.refused_for_now else 400) if form.errors else 200
    return render(request, "dashboard/rerun.html", context, status=status)


@require_GET
def job_page(request: HttpRequest, job_id) -> HttpResponse:
    job = _visible_job(request, job_id)
    context = _panel_context(job, page=request.GET.get("page"))
    context["reruns"] = job.reruns[:5]  # the newest few
    return render(request, "dashboard/job.html", context)


@require_GET
@never_cache
def job_panel(request: HttpRequest, job_id) -> HttpResponse:
    job = _visible_job(request, job_id)
    context = _panel_context(job)
    if request.GET.get("v") == context["version"]:
        return HttpResponse(status=204)  # unchanged: htmx keeps what it shows
    return render(request, "dashboard/_job_panel.html", context)


def _panel_context(job: Job, page: str | None = None) -> dict:
    # A queued job's owner is told plainly when no worker consumes the jobs' queue (the
    # monitor's report, one row: never the broker); the version covers it, so the notice comes
    # and goes with polls.
    no_worker = paused = False
    if job.status == Job.Status.QUEUED:
        paused = monitoring.job_queue() in selectors.queue_pauses()
        no_worker = not paused and monitoring.job_queue_served(monitoring.cluster_facts()) is False
    # The version lets a poll that finds nothing new answer 204 without rendering.
    notice = "n" if no_worker else "p" if paused else ""
    version = f"{int(job.updated_at.timestamp() * 1_000_000)}{notice}"
    gallery = selectors.job_gallery(job=job) if job.status == Job.Status.SUCCEEDED else []
    # A few screens of tiles at a time: a 200-image job's page once pulled 27 MB on a phone.
    previews = Paginator([image for image in gallery if image["thumbnails"]], PREVIEWS_PER_PAGE)
    return {
        "job": job,
        "version": version,
        "no_worker": no_worker,
        "paused": paused,
        "previews": previews.get_page(page),
    }


@login_not_required  # a script that is not signed in gets 401 JSON, not the login page
@require_GET
@never_cache
def job_status(request: HttpRequest, job_id) -> JsonResponse:
    if not request.user.is_authenticated:
        error = Error(message="Sign in to see this job's status.")
        return JsonResponse(error.model_dump(), status=401)
    status = selectors.job_status(job=_visible_job(request, job_id))
    return JsonResponse(status.model_dump(mode="json"))  # as the API renders it


@require_http_methods(["GET", "POST"])
def cancel(request: HttpRequest, job_id) -> HttpResponse:
    """One's own queued or running job: the question (what is lost), then the cancel."""
    job = get_object_or_404(Job, pk=job_id, owner=request.user)
    back = reverse("dashboard:job", args=[job.pk])
    if request.method == "GET":
        return ops.cancel_confirmation(request, job, back=back)
    if services.cancel_job(job_id=job.pk, actor=Actor.of(request)):
        messages.success(request, "Your job is cancelled.")
    else:
        messages.info(request, "Nothing to cancel: the job had already finished.")
    return redirect(back)


@require_POST
def retry(request: HttpRequest, job_id) -> HttpResponse:
    """The owner runs a failed or cancelled job again (the console's service); the console's
    viewers see the job but only operators act on another's."""
    job = _visible_job(request, job_id)
    if job.owner_id != request.user.pk and not roles.can_operate(request.user):
        raise PermissionDenied(ops.REFUSALS[roles.OPERATE])
    if services.retry_job(job_id=job.pk, actor=Actor.of(request)):
        messages.success(request, "Your job is queued again.")
    elif job.failed_for_good:
        messages.info(
            request, "Trying again would fail the same way: upload a different file instead."
        )
    else:
        messages.info(request, "Only a failed or cancelled job can be tried again.")
    return redirect("dashboard:job", job_id=job.pk)


@require_GET
def download(request: HttpRequest, job_id) -> HttpResponse:
    return archive_response(request, _visible_job(request, job_id))


@require_GET
def thumbnail(request: HttpRequest, job_id, name: str) -> HttpResponse:
    content = selectors.thumbnail_content(job=_visible_job(request, job_id), name=name)
    if content is None:
        raise Http404("No such thumbnail.")
    extension = PurePath(name).suffix.lstrip(".")
    content_type = thumbnails.MEDIA_TYPES.get(extension, "application/octet-stream")
    response = HttpResponse(content, content_type=content_type)
    response["Cache-Control"] = "private, max-age=86400"
    # The bytes come from an upload (a colour profile is copied as it is): opened on its own, the
    # file may never run as a page of this site, whatever a browser makes of it.
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    if "download" in request.GET:
        response["Content-Disposition"] = content_disposition_header(
            as_attachment=True, filename=PurePath(name).name
        )
    return response
