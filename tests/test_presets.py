"""A person's settings remembered between jobs, and named presets on the page and the API."""

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from jobs import tokens
from jobs.forms import MAX_PRESETS
from jobs.models import Job, Preset
from tests.conftest import image_bytes

pytestmark = pytest.mark.django_db

GALLERY = {
    "sizes": ["256"],
    "custom_sizes": "320, 1280",
    "fit": "crop",
    "format": "WEBP",
    "quality": "80",
    "background": "#112233",
}


def photo() -> SimpleUploadedFile:
    return SimpleUploadedFile("photo.jpg", image_bytes((400, 300)), "image/jpeg")


def upload_page(client, **query) -> str:
    return client.get(reverse("dashboard:upload"), query).content.decode()


def shown_choices(page: str) -> dict:
    """What the upload form starts from, read from its inputs."""
    checked = re.findall(r'<input type="checkbox" name="sizes" value="(\d+)"[^>]*checked', page)
    return {
        "sizes": checked,
        "custom_sizes": re.search(r'name="custom_sizes"(?: value="([^"]*)")?', page)[1] or "",
        "fit": re.search(r'name="fit" value="(\w+)"[^>]*checked', page)[1],
        "format": re.search(r'<option value="(\w*)" selected>', page)[1],
        "quality": re.search(r'name="quality" value="(\d+)"', page)[1],
        "background": re.search(r'name="background" value="([^"]*)"', page)[1],
    }


def test_the_upload_page_starts_from_the_last_jobs_settings(client, user):
    client.force_login(user)
    fresh = shown_choices(upload_page(client))
    assert (fresh["fit"], fresh["quality"]) == ("fit", "85")  # the defaults, the first time

    sent = client.post(reverse("dashboard:upload"), {"images": photo(), **GALLERY})
    assert sent.status_code == 302
    assert shown_choices(upload_page(client)) == GALLERY


def test_a_preset_is_saved_with_a_job_and_chosen_on_the_page(client, user):
    client.force_login(user)
    client.post(reverse("dashboard:upload"), {"images": photo(), **GALLERY, "save_as": "Web"})
    preset = Preset.objects.get(owner=user)
    assert preset.name == "Web" and preset.choices["custom_sizes"] == "320, 1280"
    client.post(reverse("dashboard:upload"), {"images": photo(), "sizes": ["128"]})

    page = upload_page(client)
    assert shown_choices(page)["sizes"] == ["128"]  # the last job's
    assert 'href="?preset=Web"' in page
    assert shown_choices(upload_page(client, preset="Web")) == GALLERY

    settings_page = client.get(reverse("dashboard:preferences")).content.decode()
    assert "256, 320, 1280 · WebP, quality 80 · crop" in settings_page
    assert client.post(reverse("dashboard:delete_preset", args=[preset.pk])).status_code == 302
    assert not Preset.objects.exists()


def test_the_api_takes_a_preset_by_name_and_what_the_request_sends_wins(client, user):
    Preset.objects.create(owner=user, name="Web gallery", choices={**GALLERY, "opaque": True})
    _, plain = tokens.create_api_token(user=user, name="script")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {plain}"}

    made = client.post("/api/jobs", {"images": photo(), "preset": "Web gallery"}, **auth)
    assert made.status_code == 201, made.content
    params = Job.objects.get(pk=made.json()["id"]).params
    assert params["sizes"] == [[256, 256], [320, 320], [1280, 1280]]
    assert params["output"] == {
        "format": "WEBP", "quality": 80, "fit": "crop", "background": "#112233",
        "transparent": False,
    }  # fmt: skip

    mixed = client.post(
        "/api/jobs", {"images": photo(), "preset": "Web gallery", "fit": "pad"}, **auth
    )
    assert Job.objects.get(pk=mixed.json()["id"]).params["output"]["fit"] == "pad"
    # Either size field sends the sizes: none of the preset's are added to them.
    custom = client.post(
        "/api/jobs", {"images": photo(), "preset": "Web gallery", "custom_sizes": "64"}, **auth
    )
    assert Job.objects.get(pk=custom.json()["id"]).params["sizes"] == [[64, 64]]

    unknown = client.post("/api/jobs", {"images": photo(), "preset": "Print"}, **auth)
    assert unknown.status_code == 400
    assert unknown.json()["errors"]["preset"] == ["You have no preset named “Print”."]


def test_nobody_uses_or_deletes_someone_elses_preset(client, user, other_user):
    theirs = Preset.objects.create(owner=other_user, name="Theirs", choices=GALLERY)
    client.force_login(user)
    assert shown_choices(upload_page(client, preset="Theirs"))["fit"] == "fit"
    refused = client.post(
        reverse("dashboard:upload"), {"images": photo(), "sizes": ["128"], "preset": "Theirs"}
    )
    assert refused.status_code == 400
    assert client.post(reverse("dashboard:delete_preset", args=[theirs.pk])).status_code == 404


def test_a_person_keeps_at_most_fifty_presets(client, user):
    Preset.objects.bulk_create(
        Preset(owner=user, name=f"p{n}", choices=GALLERY) for n in range(MAX_PRESETS)
    )
    client.force_login(user)
    data = {"images": photo(), "sizes": ["128"], "save_as": "one more"}
    refused = client.post(reverse("dashboard:upload"), data)
    assert refused.status_code == 400 and "delete one in Settings first" in refused.content.decode()
    data = {"images": photo(), "sizes": ["128"], "save_as": "p0"}  # replacing one is fine
    assert client.post(reverse("dashboard:upload"), data).status_code == 302
    assert Preset.objects.get(owner=user, name="p0").choices["sizes"] == ["128"]
