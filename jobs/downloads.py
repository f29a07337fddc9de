"""Sending a stored file to someone the view has already checked may have it.

Where the bytes come from depends on the storage, never on the view:

- S3-compatible storage: a redirect to a presigned URL that works for
  PARROTER_S3_PRESIGN_SECONDS, so the file never passes through a web worker;
- local disk behind nginx (PARROTER_X_ACCEL=true): an empty answer whose X-Accel-Redirect names
  the file under X_ACCEL_PREFIX, an `internal` location of deploy/nginx.conf aliased to
  MEDIA_ROOT, so nginx sends it and nobody can ask nginx for it directly;
- otherwise the file itself, streamed by gunicorn (`make run`, tests).
"""

import mimetypes
from pathlib import PurePath
from urllib.parse import quote

from django.conf import settings
from django.core.files.storage import FileSystemStorage, default_storage
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.http import content_disposition_header
from storages.backends.s3 import S3Storage

from jobs.models import Job

# deploy/nginx.conf's internal location for X-Accel-Redirect (tests/test_nginx.py checks both).
X_ACCEL_PREFIX = "/_protected/"


def stored_file_response(
    *,
    request: HttpRequest,
    file: FieldFile | str,
    filename: str,
    as_attachment: bool,
    content_type: str | None = None,
) -> HttpResponse:
    """The answer that delivers `file` (a FieldFile, or a name in the default storage) as
    `filename`; call it only after the permission check."""
    storage, name = (
        (file.storage, file.name) if isinstance(file, FieldFile) else (default_storage, file)
    )
    content_type = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
    disposition = content_disposition_header(as_attachment, filename)
    if isinstance(storage, S3Storage):
        # Signed for this request's method: a HEAD needs a URL signed for HEAD.
        url = storage.url(
            name,
            parameters={
                "ResponseContentDisposition": disposition,
                "ResponseContentType": content_type,
            },
            expire=settings.PARROTER_S3_PRESIGN_SECONDS,
            http_method=request.method,
        )
        return HttpResponseRedirect(url)
    if settings.PARROTER_X_ACCEL and isinstance(storage, FileSystemStorage):
        response = HttpResponse(content_type=content_type)
        response["X-Accel-Redirect"] = X_ACCEL_PREFIX + quote(name)
        response["Content-Disposition"] = disposition  # nginx keeps it (and Content-Type)
        return response
    return FileResponse(
        storage.open(name, "rb"),
        as_attachment=as_attachment,
        filename=filename,
        content_type=content_type,
    )


def archive_response(request: HttpRequest, job: Job) -> HttpResponse:
    """The job's ZIP as a download, once the caller has checked that the person may see the
    job; this page and the API's download both answer with it."""
    if job.status != Job.Status.SUCCEEDED or not job.archive:
        raise Http404("This job has no archive.")
    stem = PurePath(job.source_name).stem or "image"
    more = len(job.images) - 1
    return stored_file_response(
        request=request,
        file=job.archive,
        filename=f"{stem}-and-{more}-more-thumbnails.zip" if more else f"{stem}-thumbnails.zip",
        as_attachment=True,
        content_type="application/zip",
    )
