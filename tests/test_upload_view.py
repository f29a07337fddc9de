"""The upload view's answers to the page's htmx submit, beside those to a plain form post."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from jobs.models import Job
from tests.conftest import image_bytes

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
FIELDS = ("images", "sizes", "custom_sizes", "fit", "format", "quality", "background", "opaque")


def post(client, files: dict[str, bytes], custom: str = "", **headers):
    images = [SimpleUploadedFile(name, data) for name, data in files.items()]
    data = {"images": images, "sizes": ["128"], "custom_sizes": custom}
    return client.post(reverse("dashboard:upload"), data, **headers)


def test_an_accepted_htmx_upload_is_sent_to_its_job_page_by_header_with_the_message_kept(
    client, user
):
    client.force_login(user)
    response = post(client, {"garden.jpg": image_bytes((300, 200)), "notes.jpg": b"notes"}, **HTMX)
    job = Job.objects.get()
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("dashboard:job", args=[job.pk])
    # Nothing rendered the message yet: the job page the browser opens next shows it.
    page = client.get(response["HX-Redirect"]).content.decode()
    assert "1 of 2 files were left out" in page


def test_a_refused_htmx_upload_gets_back_only_the_errors_and_is_told_its_files_stay(client, user):
    client.force_login(user)
    response = post(client, {"garden.jpg": image_bytes((300, 200))}, custom="0, big", **HTMX)
    page = response.content.decode()
    assert response.status_code == 400
    assert "<form" not in page and "Your recent jobs" not in page
    # Every field's list comes back, empty or not, so errors fixed since are cleared too.
    for name in FIELDS:
        assert f'<ul class="errors" id="errors-{name}" hx-swap-oob="true">' in page
    assert "Size 0x0: width and height" in page and "&#x27;big&#x27; is not a size" in page
    assert "your images are still chosen" in page and "choose your images again" not in page
    assert not Job.objects.exists()


def test_a_refused_plain_post_gets_the_whole_page_saying_to_choose_the_images_again(client, user):
    client.force_login(user)
    response = post(client, {"garden.jpg": image_bytes((300, 200))}, custom="0")
    page = response.content.decode()
    assert response.status_code == 400
    assert "<form" in page and "hx-swap-oob" not in page
    assert "choose your images again" in page and "still chosen" not in page
