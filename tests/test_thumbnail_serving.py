"""A thumbnail served on its own: the right image type whatever the host knows, never a page."""

import mimetypes

import pytest
from django.core.files.base import ContentFile

from jobs import services
from jobs.kinds import thumbnails
from tests.conftest import image_bytes, run_in_process


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", thumbnails.OUTPUT_FORMATS)
def test_each_format_is_served_as_its_image_type_and_sandboxed(client, user, monkeypatch, fmt):
    # A host without /etc/mime.types (python:3.11-slim) knows neither webp nor avif.
    monkeypatch.setattr(mimetypes, "guess_type", lambda *args, **kwargs: (None, None))
    job = services.submit_job(
        owner=user,
        uploads=[services.Upload(ContentFile(image_bytes((120, 80))), "photo.jpg", "jpg")],
        boxes=[thumbnails.Box(64, 64)],
        output=thumbnails.Output(format=fmt),
    )
    run_in_process(job)
    job.refresh_from_db()
    (thumb,) = job.result["thumbnails"]
    client.force_login(user)

    response = client.get(f"/jobs/{job.pk}/thumbnails/{thumb['name']}")

    extension = thumbnails.OUTPUT_EXTENSIONS[fmt]
    assert response["Content-Type"] == thumbnails.MEDIA_TYPES[extension]
    assert response["Content-Type"].startswith("image/")
    assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert response["X-Content-Type-Options"] == "nosniff"
