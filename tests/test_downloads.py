"""Downloads from the local disk: streamed by the app, or handed to nginx with X-Accel-Redirect
(PARROTER_X_ACCEL=true) after the same permission check. S3's presigned redirects are in
test_s3.py, nginx itself in test_nginx.py."""

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import RequestFactory
from django.urls import reverse

from jobs.downloads import X_ACCEL_PREFIX, stored_file_response
from tests.conftest import image_bytes, run_in_process, submit_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def finished_job(user):
    job = submit_image(user, image_bytes((300, 200)), name="Strand in Nizza.jpg")
    assert "thumbnails" in run_in_process(job)
    job.refresh_from_db()
    return job


def test_without_nginx_the_app_streams_the_archive(client, user, finished_job):
    client.force_login(user)
    response = client.get(reverse("dashboard:download", args=[finished_job.pk]))
    assert response.status_code == 200
    assert "X-Accel-Redirect" not in response
    assert response["Content-Type"] == "application/zip"
    assert (
        response["Content-Disposition"] == 'attachment; filename="Strand in Nizza-thumbnails.zip"'
    )
    with finished_job.archive.open("rb") as archive:
        assert b"".join(response.streaming_content) == archive.read()


def test_behind_nginx_the_app_only_names_the_file(client, user, finished_job, settings):
    settings.PARROTER_X_ACCEL = True
    client.force_login(user)
    response = client.get(reverse("dashboard:download", args=[finished_job.pk]))
    assert response.status_code == 200
    assert response.content == b""
    assert response["X-Accel-Redirect"] == (
        f"/_protected/jobs/{finished_job.pk}/thumbnails-{finished_job.task_id}.zip"
    )
    assert response["Content-Type"] == "application/zip"
    assert (
        response["Content-Disposition"] == 'attachment; filename="Strand in Nizza-thumbnails.zip"'
    )


def test_behind_nginx_another_users_download_is_not_found(
    client, other_user, finished_job, settings
):
    settings.PARROTER_X_ACCEL = True
    client.force_login(other_user)
    response = client.get(reverse("dashboard:download", args=[finished_job.pk]))
    assert response.status_code == 404
    assert "X-Accel-Redirect" not in response


def test_names_nginx_must_decode_are_quoted_and_the_saved_name_survives(settings):
    settings.PARROTER_X_ACCEL = True
    name = default_storage.save("exports/a b%c#d.zip", ContentFile(b"PK"))
    response = stored_file_response(
        request=RequestFactory().get("/"),
        file=name,
        filename="Grüße aus Köln.zip",
        as_attachment=False,
    )
    assert response["X-Accel-Redirect"] == X_ACCEL_PREFIX + "exports/a%20b%25c%23d.zip"
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == (
        "inline; filename*=utf-8''Gr%C3%BC%C3%9Fe%20aus%20K%C3%B6ln.zip"
    )
