"""The JSON API at /api/ (django-ninja), described by /api/openapi.json and the docs page
/api/docs.

Views are thin: they parse, call jobs.services / jobs.selectors (and the upload form, so a job
sent here is checked and queued exactly as on the upload page) and return a jobs.schemas shape.
Who asks: `Authorization: Bearer <token>` (jobs.tokens) or the browser's session, which needs
CSRF for unsafe methods. Every error is JSON shaped as jobs.schemas.Error; a state that does not
allow an action (retrying a job that has not failed) is 409.
"""

import logging
import uuid
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import (
    BadRequest,
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.db.models import prefetch_related_objects
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.urls import URLPattern, re_path
from django.views.decorators.csrf import csrf_exempt
from ninja import Field, Form, NinjaAPI, Query, Router, Schema, Swagger
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.responses import Status
from ninja.security import APIKeyCookie, HttpBearer
from ninja.throttling import BaseThrottle
from ninja.utils import check_csrf

from jobs import limits, monitoring, roles, selectors, services, tokens
from jobs.audit import Actor
from jobs.downloads import archive_response
from jobs.forms import RerunJobForm, ThumbnailJobForm
from jobs.models import Job
from jobs.schemas import Error, JobDetails, JobPage, JobStatus, QueueState

logger = logging.getLogger("django.request")  # where Django reports a view's exception

NOT_AUTHENTICATED = "Send `Authorization: Bearer <token>` (an API token) or sign in."


class TokenAuth(HttpBearer):
    """`Authorization: Bearer <token>`, for scripts. A token that is sent but not valid is
    refused at once, never passed over for a session cookie the same request may carry."""

    def authenticate(self, request: HttpRequest, token: str):
        user = tokens.user_for_api_token(plain=token)
        if user is None:
            raise AuthenticationError(
                message="This API token is not valid: unknown, revoked, or its user is inactive."
            )
        request.user = user  # what the views, selectors and throttles read
        return user


class SessionAuth(APIKeyCookie):
    """The browser's session (the docs page), with Django's CSRF check for unsafe methods.
    Last in the list, it says how to authenticate when nothing did (ninja's own 401 does not)."""

    param_name = settings.SESSION_COOKIE_NAME

    def _get_key(self, request: HttpRequest) -> str | None:
        # Who it is first: without a session the answer is 401, not a CSRF failure's 403.
        return request.COOKIES.get(self.param_name)

    def authenticate(self, request: HttpRequest, key: str | None):
        if not request.user.is_authenticated:
            raise AuthenticationError(message=NOT_AUTHENTICATED)
        if check_csrf(request) is not None:  # None for GET and HEAD
            raise HttpError(
                403,
                "CSRF check failed: send the csrftoken cookie's value in an X-CSRFToken header, "
                "or use an API token instead of the session.",
            )
        return request.user


class UserRate(BaseThrottle):
    """Requests per user at the rate a setting holds ("600/m"), counted by jobs.limits: in the
    shared cache, atomically, by every web process together, failing open when the cache fails
    (the README says why). Read at each request, so a change applies at once."""

    def __init__(self, setting: str, scope: str) -> None:
        self.setting = setting
        self.scope = scope
        self.waiting: float | None = None
        limits.Rate.parse(getattr(settings, setting))  # a malformed rate fails at startup

    def allow_request(self, request: HttpRequest) -> bool:
        rate = limits.Rate.parse(getattr(settings, self.setting))
        over = limits.take(scope=self.scope, user_id=request.user.pk, rate=rate)
        self.waiting = over and over.wait
        return over is None

    def wait(self) -> float | None:
        return self.waiting


API_RATE = UserRate("PARROTER_API_RATE", "api")
SUBMIT_RATE = UserRate("PARROTER_SUBMIT_RATE", limits.SUBMIT)


def _authenticated(view: Callable) -> Callable:
    """openapi.json and the docs page answer the same people as the API; ninja runs no
    authentication for them by itself."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        for method in api.auth:
            try:
                if method(request):
                    return view(request, *args, **kwargs)
            except HttpError as exc:
                return _http_error(request, exc)
        return _error(401, NOT_AUTHENTICATED)  # SessionAuth, last, raises this first

    return wrapped


api = NinjaAPI(
    title="Parroter API",
    version="1",
    description=(
        "Thumbnail jobs for scripts: submit images, follow a job's status, download the ZIP. "
        "Authenticate with `Authorization: Bearer <token>` (`manage.py api_token create`) or a "
        "signed-in session (with CSRF for POST). Errors are `{message, errors}`."
    ),
    urls_namespace="api",
    auth=[TokenAuth(), SessionAuth()],
    throttle=[API_RATE],
    docs=Swagger(settings={"validatorUrl": None}),  # no call to swagger.io's validator
    docs_decorator=_authenticated,
    default_router=Router(tags=["jobs"]),  # the docs page's heading, not "default"
)

# --- Errors: always jobs.schemas.Error ----------------------------------------------------


def _error(status: int, message: str, errors: dict[str, list[str]] | None = None) -> JsonResponse:
    response = JsonResponse(Error(message=message, errors=errors or {}).model_dump(), status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


@api.exception_handler(HttpError)  # 401, 403 and 429 from ninja, and the views' own
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return _error(exc.status_code, exc.message)


@api.exception_handler(ValidationError)
def _invalid_parameters(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors: dict[str, list[str]] = {}
    for error in exc.errors:
        field = str(error["loc"][-1]) if error.get("loc") else "__all__"
        errors.setdefault(field, []).append(error["msg"])
    return _error(400, "Some parameters are not valid; see errors.", errors)


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _error(404, str(exc) or "Not found.")


@api.exception_handler(PermissionDenied)
def _forbidden(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
    return _error(403, str(exc) or "Not allowed.")


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return _error(413, "The request's fields are too large.")


# Django's refusals of a request body it cannot or will not parse (too many files or fields
# are SuspiciousOperation too): the request is at fault, never the server.
@api.exception_handler(SuspiciousOperation)
@api.exception_handler(BadRequest)
@api.exception_handler(MultiPartParserError)
def _bad_request(request: HttpRequest, exc: Exception) -> HttpResponse:
    return _error(400, f"The request could not be read: {exc}")


@api.exception_handler(Exception)
def _internal_error(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.error("Internal Server Error: %s", request.path, exc_info=exc)
    return _error(500, "Parroter failed to answer this request; operators can see why.")


def _json_errors(view: Callable) -> Callable:
    """What ninja answers outside its operations, as the API's errors: 404 from the API's
    root, 405 for a method that a path does not have."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            response = view(request, *args, **kwargs)
        except Http404:
            return _error(404, "Not found: see /api/docs for the API's paths.")
        if isinstance(response, HttpResponseNotAllowed):
            allowed = ", ".join(sorted(response["Allow"].split(", ")))
            response = _error(405, f"This path answers {allowed} only.")
            response["Allow"] = allowed
        return response

    return wrapped


def urls() -> tuple[list[URLPattern], str, str]:
    """The API's URL patterns for path(): each authenticates by itself and answers 401 JSON,
    so LoginRequiredMiddleware must not send it to the login page (all but the docs page, for
    people in a browser), and checks CSRF itself, only for sessions, so Django's middleware
    must not answer its HTML 403 first. Paths the API does not have answer 404 JSON."""
    patterns, app_name, namespace = api.urls
    patterns.append(re_path(r"", _no_such_path, name="unknown_path"))
    for pattern in patterns:
        pattern.callback = csrf_exempt(_json_errors(pattern.callback))
        if pattern.name != "openapi-view":
            login_not_required(pattern.callback)
    return patterns, app_name, namespace


def _no_such_path(request: HttpRequest) -> HttpResponse:
    raise Http404


# --- Operations ----------------------------------------------------------------------------

# Errors every operation may answer; the tuples add their own.
COMMON_ERRORS = {401: Error, 429: Error}
JOB_ERRORS = {**COMMON_ERRORS, 404: Error}
ACTION_ERRORS = {**JOB_ERRORS, 403: Error, 409: Error}  # 403: a session POST without CSRF


def _visible_job(request: HttpRequest, job_id: uuid.UUID) -> Job:
    # Someone else's job is not found, exactly like a job that does not exist (as on pages).
    jobs = selectors.visible_jobs(user=request.user).select_related("owner")
    job = jobs.filter(pk=job_id).first()
    if job is None:
        raise HttpError(404, "No such job.")
    return job


def _submit_body(*, rerun: bool = False) -> dict:
    """POST /api/jobs's multipart body in the OpenAPI schema (or a re-run's): the upload form's
    fields, which the form (jobs.forms.ThumbnailJobForm) checks. Keep this in step with it."""
    form = ThumbnailJobForm()
    fields = {
        "sizes": {
            "type": "array",
            "items": {"type": "string", "enum": settings.PARROTER_DEFAULT_SIZES},
        },
        "custom_sizes": {"type": "string", "maxLength": 200},
        "fit": {"type": "string", "enum": [value for value, _ in form.fields["fit"].choices]},
        "format": {"type": "string", "enum": [value for value, _ in form.fields["format"].choices]},
        "quality": {"type": "integer", "minimum": 1, "maximum": 100},
        "background": {"type": "string", "pattern": "^#[0-9a-fA-F]{6}$"},
        "opaque": {"type": "boolean"},
        "preset": {"type": "string", "maxLength": 60},
        "save_as": {"type": "string", "maxLength": 60},
    }
    for name, schema in fields.items():
        schema["description"] = str(form.fields[name].help_text or form.fields[name].label)
    if rerun:
        fields["only_failed"] = {"type": "boolean", "description": "Only the images that failed."}
        patterns = {
            "^replace_[0-9]+$": {
                "type": "string",
                "format": "binary",
                "description": "A new file for failed image n (counted from 0 in `params.images`).",
            },
            "^focus_[0-9]+$": {
                "type": "string",
                "description": "The point a crop of image n keeps: percent across, then down "
                "(`30, 40`).",
            },
        }
        body = {"type": "object", "properties": fields, "patternProperties": patterns}
    else:
        images = {"type": "array", "items": {"type": "string", "format": "binary"}}
        fields = {"images": images, **fields}
        body = {"type": "object", "properties": fields, "required": ["images"]}
    # A re-run may send nothing: it is made with the job's own settings.
    content = {"multipart/form-data": {"schema": body}}
    return {"requestBody": {"required": not rerun, "content": content}}


def _refusal(form: ThumbnailJobForm) -> Status:
    """A form's errors as the API answers them: 413 when all that is wrong is files' size."""
    errors = {field: list(messages) for field, messages in form.errors.items()}
    summary = " ".join(f"{field}: {' '.join(messages)}" for field, messages in errors.items())
    refusals = [error for errors in form.errors.as_data().values() for error in errors]
    too_large = all(error.code == "too_large" for error in refusals)
    status = 429 if form.refused_for_now else 413 if too_large else 400
    return Status(status, Error(message=f"The job was not submitted. {summary}", errors=errors))


@api.post(
    "/jobs",
    response={201: JobDetails, 400: Error, 413: Error, **COMMON_ERRORS, 403: Error},
    throttle=[API_RATE, SUBMIT_RATE],
    openapi_extra=_submit_body(),
    url_name="job_submit",
    summary="Submit a job",
)
def submit_job(request: HttpRequest):
    """Multipart, with the upload page's fields; checked and queued exactly as that page does,
    with the same messages. 413 when all that is wrong is size: files over the limit."""
    form = ThumbnailJobForm(request.POST, request.FILES, owner=request.user)
    if not form.is_valid():
        return _refusal(form)
    return Status(201, selectors.job_details(job=form.submit()))


@api.post(
    "/jobs/{uuid:job_id}/rerun",
    response={201: JobDetails, 400: Error, 413: Error, **ACTION_ERRORS},
    throttle=[API_RATE, SUBMIT_RATE],
    openapi_extra=_submit_body(rerun=True),
    url_name="job_rerun",
    summary="Re-run a job with new settings",
)
def rerun_job(request: HttpRequest, job_id: uuid.UUID):
    """A new job, linked to this finished one (`rerun_of`), from its stored images: multipart
    with POST /jobs's fields but no images. Settings left out are the job's own (after a named
    preset's); `only_failed`, `replace_<n>` and `focus_<n>` as on the job's re-run page."""
    job = _visible_job(request, job_id)
    if job.owner_id != request.user.pk:
        raise HttpError(403, "Only the job's owner can re-run it.")
    if not job.is_finished:
        raise HttpError(409, f"The job's status is {job.status}: re-run it once it has finished.")
    form = RerunJobForm(
        request.POST,
        request.FILES,
        job=job,
        sources=selectors.rerun_images(job=job),
        fallback=selectors.job_choices(job=job),
    )
    if not form.is_valid():
        return _refusal(form)
    return Status(201, selectors.job_details(job=form.submit()))


# selectors.Cursor as text: microseconds since 1970 (up to year 5138) and a job id in hex.
CURSOR = r"^[0-9]{1,17}_[0-9a-f]{32}$"


class JobFilters(Schema):
    status: Job.Status | None = None
    kind: Job.Kind | None = None
    after: str | None = Field(None, pattern=CURSOR, description="A `next`: the page after it.")
    before: str | None = Field(
        None, pattern=CURSOR, description="A `previous`: the page before it."
    )


@api.get(
    "/jobs",
    response={200: JobPage, 400: Error, **COMMON_ERRORS},
    url_name="job_list",
    summary="List jobs",
)
def list_jobs(request: HttpRequest, filters: Query[JobFilters]):
    """One's own jobs (staff: everyone's), newest first, 50 a page."""
    cursors = {
        name: selectors.Cursor.parse(text)  # the pattern ensures it parses
        for name in ("after", "before")
        if (text := getattr(filters, name)) is not None
    }
    matching = selectors.find_jobs(status=filters.status or "", kind=filters.kind or "")
    page = selectors.job_page(jobs=matching & selectors.visible_jobs(user=request.user), **cursors)
    prefetch_related_objects(page.jobs, "rerun_link")  # each item's rerun_of, in one query
    return JobPage(
        items=[selectors.job_details(job=job) for job in page.jobs],
        next=str(page.older) if page.older else None,
        previous=str(page.newer) if page.newer else None,
    )


@api.get(
    "/jobs/{uuid:job_id}", response={200: JobDetails, **JOB_ERRORS}, url_name="job", summary="A job"
)
def get_job(request: HttpRequest, job_id: uuid.UUID):
    return selectors.job_details(job=_visible_job(request, job_id))


@api.get(
    "/jobs/{uuid:job_id}/status",
    response={200: JobStatus, **JOB_ERRORS},
    url_name="job_status",
    summary="A job's status",
)
def get_job_status(request: HttpRequest, job_id: uuid.UUID):
    """The document the job page's status.json serves, to poll until `status` is finished."""
    return selectors.job_status(job=_visible_job(request, job_id))


@api.post(
    "/jobs/{uuid:job_id}/retry",
    response={200: JobDetails, **ACTION_ERRORS},
    url_name="job_retry",
    summary="Retry a failed or cancelled job",
)
def retry_job(request: HttpRequest, job_id: uuid.UUID):
    """409 for a job that failed on its input (a retry cannot succeed): send a different file,
    or re-run it with a replacement."""
    job = _visible_job(request, job_id)
    _may_act(request, job)
    if job.failed_for_good:
        raise HttpError(
            409,
            "The job failed on its input, so a retry would fail the same way: "
            f"{job.error} Submit a different file, or re-run the job with a replacement.",
        )
    return _act(
        request,
        job,
        lambda job: services.retry_job(job_id=job.pk, actor=Actor.of(request)),
        refused="only a failed or cancelled job is retried",
    )


@api.post(
    "/jobs/{uuid:job_id}/cancel",
    response={200: JobDetails, **ACTION_ERRORS},
    url_name="job_cancel",
    summary="Cancel a queued or running job",
)
def cancel_job(request: HttpRequest, job_id: uuid.UUID):
    return _act(
        request,
        _visible_job(request, job_id),
        lambda job: services.cancel_job(job_id=job.pk, actor=Actor.of(request)),
        refused="only a queued or running job is cancelled",
    )


def _may_act(request: HttpRequest, job: Job) -> None:
    """Another's job needs the operator role (its viewers see it but may not act)."""
    if job.owner_id != request.user.pk and not roles.can_operate(request.user):
        raise HttpError(403, "Acting on other people's jobs is for the operator and admin roles.")


def _act(
    request: HttpRequest, job: Job, action: Callable[[Job], bool], *, refused: str
) -> JobDetails:
    """The job after an action, or 409 when its state did not allow it."""
    _may_act(request, job)
    if not action(job):
        raise HttpError(409, f"The job's status is {job.status}: {refused}.")
    job.refresh_from_db()
    return selectors.job_details(job=job)


ZIP = {"application/zip": {"schema": {"type": "string", "format": "binary"}}}


@api.get(
    "/jobs/{uuid:job_id}/archive",
    response=JOB_ERRORS,
    openapi_extra={"responses": {200: {"description": "The ZIP of thumbnails.", "content": ZIP}}},
    url_name="job_archive",
    summary="Download a job's archive",
)
def download_archive(request: HttpRequest, job_id: uuid.UUID):
    """The ZIP of a succeeded job's thumbnails (404 until then), as the job page's download."""
    return archive_response(request, _visible_job(request, job_id))


QUEUE_ERRORS = {**COMMON_ERRORS, 403: Error, 404: Error}


@api.post(
    "/queues/{queue}/pause",
    response={200: QueueState, **QUEUE_ERRORS},
    url_name="queue_pause",
    summary="Pause a queue",
)
def pause_queue(request: HttpRequest, queue: str, reason: Form[str] = ""):
    """Workers stop taking the queue's messages within seconds, and workers that start do not
    take them, until it is resumed; its jobs wait as queued. For the operator and admin roles."""
    actor = _queue_actor(request, queue, reason)
    services.pause_queue(queue=queue, actor=actor)
    return _queue_state(queue)


@api.post(
    "/queues/{queue}/resume",
    response={200: QueueState, **QUEUE_ERRORS},
    url_name="queue_resume",
    summary="Resume a paused queue",
)
def resume_queue(request: HttpRequest, queue: str):
    """Workers take the queue's messages again within seconds."""
    services.resume_queue(queue=queue, actor=_queue_actor(request, queue))
    return _queue_state(queue)


def _queue_actor(request: HttpRequest, queue: str, reason: str = "") -> Actor:
    if not roles.can_operate(request.user):
        raise HttpError(403, "Pausing and resuming queues is for the operator and admin roles.")
    if queue not in monitoring.queue_names():
        raise HttpError(
            404, f"No queue {queue!r}: the queues are {', '.join(monitoring.queue_names())}."
        )
    return Actor.of(request, reason=reason)


def _queue_state(queue: str) -> QueueState:
    pause = selectors.queue_pauses().get(queue)
    return QueueState(
        queue=queue,
        paused=pause is not None,
        paused_by=pause.paused_by_name if pause else None,
        paused_at=pause.paused_at if pause else None,
        reason=pause.reason if pause else "",
    )
