"""Per-person rates counted atomically in the shared Redis, and one submit rate for the upload
page and the API together."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from jobs import limits, tokens
from jobs.models import Job
from tests.conftest import image_bytes, run_in_process, submit_image

pytestmark = pytest.mark.django_db


def test_concurrent_requests_get_exactly_the_rate_through():
    rate = limits.Rate.parse("20/h")
    with ThreadPoolExecutor(16) as pool:
        overs = list(pool.map(lambda _: limits.take(scope="test", user_id=7, rate=rate), range(80)))
    assert overs.count(None) == 20
    assert all(over.used == 20 and 0 < over.wait <= 3600 for over in overs if over is not None)
    assert limits.take(scope="test", user_id=8, rate=rate) is None  # per person


@pytest.mark.parametrize("text", ["60", "60/w", "x/m", "-1/m", ""])
def test_a_malformed_rate_is_refused_with_its_form(text):
    with pytest.raises(ValueError, match="write it as 60/m"):
        limits.Rate.parse(text)


def photo() -> SimpleUploadedFile:
    return SimpleUploadedFile("photo.jpg", image_bytes((40, 30)), "image/jpeg")


def test_the_page_and_the_api_share_one_submit_rate(client, user, settings, media_root):
    settings.PARROTER_SUBMIT_RATE = "2/m"
    client.force_login(user)
    _, plain = tokens.create_api_token(user=user, name="script")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {plain}"}

    page = reverse("dashboard:upload")
    assert client.post(page, {"images": photo(), "sizes": ["128"]}).status_code == 302
    api = client.post("/api/jobs", {"images": photo(), "sizes": ["128"]}, **auth)
    assert api.status_code == 201
    folders = set((media_root / "jobs").iterdir())

    refused = client.post(page, {"images": photo(), "sizes": ["128"]})
    assert refused.status_code == 429
    text = refused.content.decode()
    assert "You can start at most 2 jobs a minute; wait" in text
    assert "Nothing was uploaded." in text
    htmx = client.post(page, {"images": photo(), "sizes": ["128"]}, HTTP_HX_REQUEST="true")
    assert htmx.status_code == 429 and "You can start at most 2 jobs" in htmx.content.decode()
    api = client.post("/api/jobs", {"images": photo(), "sizes": ["128"]}, **auth)
    assert api.status_code == 429 and 0 < int(api["Retry-After"]) <= 60

    assert Job.objects.count() == 2
    assert set((media_root / "jobs").iterdir()) == folders  # nothing stored for the refused


def test_a_rerun_on_its_page_counts_against_the_same_submit_rate(client, user, settings):
    settings.PARROTER_SUBMIT_RATE = "1/m"
    job = submit_image(user, image_bytes((40, 30)))
    run_in_process(job)
    client.force_login(user)
    rerun = reverse("dashboard:rerun", args=[job.pk])
    assert client.post(rerun, {"sizes": ["128"]}).status_code == 302
    refused = client.post(rerun, {"sizes": ["128"]})
    assert refused.status_code == 429
    assert "You can start at most 1 jobs a minute" in refused.content.decode()
    assert Job.objects.count() == 2
