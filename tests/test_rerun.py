"""A finished job re-run with new settings on its stored images, as a new job linked to it: from
its page and the API, with focal points, and with failed images replaced."""

import io
import re
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from jobs import services, tokens
from jobs.models import Job
from tests.conftest import image_bytes, run_in_process
from tests.photos import red_pixels, subject_photo

pytestmark = pytest.mark.django_db

WHOLE = image_bytes((600, 400), color=(10, 120, 230), quality=95)


def upload(name: str, data: bytes = WHOLE) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, "image/jpeg")


def submitted(client, *files, **choices) -> Job:
    sent = client.post(reverse("dashboard:upload"), {"images": list(files), **choices})
    assert sent.status_code == 302, sent.content.decode()[:2000]
    job = Job.objects.order_by("-created_at").first()
    run_in_process(job)
    job.refresh_from_db()
    return job


def rerun(client, job: Job, data: dict):
    return client.post(reverse("dashboard:rerun", args=[job.pk]), data)


def stored_bytes(job: Job) -> list[bytes]:
    storage = job.source.storage
    result = []
    for image in job.images:
        with storage.open(image["file"], "rb") as stored:
            result.append(stored.read())
    return result


def thumbnail_sizes(job: Job) -> set[tuple[int, int]]:
    return {(thumb["width"], thumb["height"]) for thumb in job.result["thumbnails"]}


def test_a_job_is_rerun_with_new_settings_on_copies_of_its_images(client, user):
    client.force_login(user)
    first = submitted(client, upload("a.jpg"), upload("b.jpg"), sizes=["128"], fit="fit")
    assert thumbnail_sizes(first) == {(128, 85)}

    page = client.get(reverse("dashboard:rerun", args=[first.pk])).content.decode()
    assert re.search(r'name="sizes" value="128"[^>]*checked', page)  # starts from its settings
    assert re.search(r'name="fit" value="fit"[^>]*checked', page)
    assert "Images that failed" not in page  # none did
    job_page = client.get(reverse("dashboard:job", args=[first.pk])).content.decode()
    assert reverse("dashboard:rerun", args=[first.pk]) in job_page

    sent = rerun(client, first, {"custom_sizes": "200x200", "fit": "crop", "quality": "80"})
    second = Job.objects.exclude(pk=first.pk).get()
    assert sent.url == reverse("dashboard:job", args=[second.pk])
    assert second.rerun_of == first and second.owner == user
    assert [image["name"] for image in second.images] == ["a.jpg", "b.jpg"]
    # Copies under the new job's own folder, byte for byte.
    assert all(image["file"].startswith(f"jobs/{second.pk}/") for image in second.images)
    assert stored_bytes(second) == stored_bytes(first) == [WHOLE, WHOLE]

    run_in_process(second)
    second.refresh_from_db()
    assert second.status == Job.Status.SUCCEEDED
    assert thumbnail_sizes(second) == {(200, 200)}
    first.refresh_from_db()
    assert thumbnail_sizes(first) == {(128, 85)}  # the first job is as it was

    pages = {
        job.pk: client.get(reverse("dashboard:job", args=[job.pk])).content.decode()
        for job in (first, second)
    }
    assert reverse("dashboard:job", args=[second.pk]) in pages[first.pk]  # "Re-run as …"
    assert "Re-run of" in pages[second.pk]

    # Deleting the first leaves the re-run whole.
    assert services.delete_job(job_id=first.pk)
    second.refresh_from_db()
    assert second.rerun_of is None and stored_bytes(second) == [WHOLE, WHOLE]
    assert client.get(reverse("dashboard:download", args=[second.pk])).status_code == 200


def test_failed_images_alone_are_rerun_once_replaced(client, user, media_root):
    client.force_login(user)
    broken = WHOLE[: len(WHOLE) // 2]
    first = submitted(client, upload("good.jpg"), upload("cut.jpg", broken), sizes=["128"])
    assert first.status == Job.Status.SUCCEEDED
    assert [problem["name"] for problem in first.image_problems] == ["cut.jpg"]
    job_page = client.get(reverse("dashboard:job", args=[first.pk])).content.decode()
    assert "1 of 2 images done in" in job_page  # not "2 images done": one could not be used

    page = client.get(reverse("dashboard:rerun", args=[first.pk])).content.decode()
    assert "Images that failed" in page
    assert 'name="replace_1"' in page and 'name="replace_0"' not in page

    # Not an image: refused with the upload page's message, and nothing is stored.
    folders = set((media_root / "jobs").iterdir())
    refused = rerun(
        client,
        first,
        {"sizes": ["128"], "only_failed": "on", "replace_1": upload("notes.jpg", b"hello")},
    )
    assert refused.status_code == 400
    assert "not an image Parroter can read" in refused.content.decode()
    assert Job.objects.count() == 1 and set((media_root / "jobs").iterdir()) == folders

    fixed = image_bytes((300, 200), color=(200, 20, 20))
    sent = rerun(
        client,
        first,
        {"sizes": ["128"], "only_failed": "on", "replace_1": upload("fixed.jpg", fixed)},
    )
    assert sent.status_code == 302
    second = Job.objects.get(rerun_link__original=first)
    assert [image["name"] for image in second.images] == ["fixed.jpg"]
    assert stored_bytes(second) == [fixed]
    run_in_process(second)
    second.refresh_from_db()
    assert second.status == Job.Status.SUCCEEDED and thumbnail_sizes(second) == {(128, 85)}


def test_only_failed_needs_a_failed_image(client, user):
    client.force_login(user)
    first = submitted(client, upload("a.jpg"), sizes=["128"])
    refused = rerun(client, first, {"sizes": ["128"], "only_failed": "on"})
    assert refused.status_code == 400
    assert "None of this job&#x27;s images failed." in refused.content.decode()
    assert Job.objects.count() == 1


def test_a_focal_point_is_kept_with_the_image_and_checked(client, user):
    client.force_login(user)
    first = submitted(client, upload("a.jpg"), upload("b.jpg"), sizes=["128"])
    wrong = rerun(client, first, {"sizes": ["128"], "focus_0": "30, 140"})
    assert wrong.status_code == 400
    assert "Give the focus as two percentages" in wrong.content.decode()

    rerun(client, first, {"sizes": ["128"], "fit": "crop", "focus_0": "30, 40", "focus_1": ""})
    second = Job.objects.get(rerun_link__original=first)
    assert second.images[0]["focus"] == [0.3, 0.4]
    assert "focus" not in second.images[1]


def test_only_a_finished_job_of_ones_own_is_rerun(client, user, other_user):
    client.force_login(user)
    queued = services.submit_job(
        owner=user,
        uploads=[services.Upload(upload("q.jpg"), "q.jpg", "jpg")],
        boxes=[services.thumbnails.Box(64, 64)],
    )
    sent = rerun(client, queued, {"sizes": ["128"]})
    assert sent.url == reverse("dashboard:job", args=[queued.pk])
    assert Job.objects.count() == 1

    client.force_login(other_user)
    assert rerun(client, queued, {"sizes": ["128"]}).status_code == 404


def test_the_api_reruns_with_the_jobs_settings_for_what_it_leaves_out(client, user):
    client.force_login(user)
    first = submitted(client, upload("a.jpg"), sizes=["128"], fit="crop", format="PNG")
    _, plain = tokens.create_api_token(user=user, name="script")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {plain}"}
    client.logout()

    made = client.post(
        f"/api/jobs/{first.pk}/rerun", {"custom_sizes": "64", "focus_0": "10, 90"}, **auth
    )
    assert made.status_code == 201, made.content
    body = made.json()
    assert body["rerun_of"] == str(first.pk)
    assert body["params"]["sizes"] == [[64, 64]]
    assert body["params"]["output"]["fit"] == "crop"  # the first job's
    assert body["params"]["output"]["format"] == "PNG"
    assert body["params"]["images"] == [{"name": "a.jpg", "focus": [0.1, 0.9]}]

    second = Job.objects.get(pk=body["id"])
    run_in_process(second)
    second.refresh_from_db()
    with second.archive.open("rb") as archive, zipfile.ZipFile(archive) as zf:
        [name] = zf.namelist()
        with Image.open(io.BytesIO(zf.read(name))) as thumb:
            assert (thumb.format, thumb.size) == ("PNG", (64, 64))

    bad = client.post(f"/api/jobs/{first.pk}/rerun", {"focus_0": "left"}, **auth)
    assert bad.status_code == 400
    assert "focus_0" in bad.json()["errors"]
    unfinished = Job.objects.filter(status=Job.Status.QUEUED).exclude(pk=second.pk)
    assert not unfinished.exists()


def test_a_focal_point_set_for_a_rerun_is_where_its_crop_is_cut(client, user):
    client.force_login(user)
    scene = io.BytesIO()
    subject_photo((600, 400), (110, 200), 70).save(scene, "PNG")
    first = submitted(client, upload("scene.png", scene.getvalue()), sizes=["128"])

    def subject_kept(focus: str, fit: str = "crop", size: str = "200x200") -> int:
        rerun(client, first, {"custom_sizes": size, "fit": fit, "focus_0": focus})
        job = Job.objects.filter(rerun_link__original=first).order_by("-created_at").first()
        run_in_process(job)
        job.refresh_from_db()
        with job.archive.open("rb") as archive, zipfile.ZipFile(archive) as zf:
            return red_pixels(Image.open(io.BytesIO(zf.read(zf.namelist()[0]))))

    whole = subject_kept("", fit="fit", size="300x200")  # the same scale, nothing cut
    assert subject_kept("15, 50") > 0.95 * whole
    assert subject_kept("") < 0.7 * whole  # no focal point: the centre, as before
