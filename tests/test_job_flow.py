"""Upload to download through the real stack: test client -> Redis -> Celery worker -> database."""

import io
import os
import signal
import time
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from jobs import running, services
from jobs.kinds import thumbnails
from jobs.models import Job
from parroter.local_redis import free_port
from tests.conftest import (
    JOB_TIMEOUT,
    finished_task_result,
    image_bytes,
    start_held_job,
    wait_for_job,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def upload(client, data: bytes, name="photo.jpg", sizes=("128", "256", "512"), custom=""):
    return upload_files(client, [(name, data)], sizes=sizes, custom=custom)


def upload_files(client, files: list[tuple[str, bytes]], sizes=("128", "256", "512"), custom=""):
    """Post the upload form with several files in its one `images` input."""
    images = [
        SimpleUploadedFile(name, data, content_type="application/octet-stream")
        for name, data in files
    ]
    return client.post(
        reverse("dashboard:upload"),
        {"images": images, "sizes": list(sizes), "custom_sizes": custom},
    )


def submitted_job(response) -> Job:
    assert response.status_code == 302, response.content.decode()[:2000]
    return Job.objects.get(pk=response.url.rstrip("/").rsplit("/", 1)[1])


def job_files(media_root, job) -> list[str]:
    folder = media_root / "jobs" / str(job.pk)
    return sorted(path.name for path in folder.iterdir())


def test_upload_makes_a_zip_of_the_requested_thumbnails(client, user, celery_worker, media_root):
    client.force_login(user)
    response = upload(client, image_bytes((1200, 800)), name="holiday photo.jpg", custom="300x100")
    job = wait_for_job(submitted_job(response))

    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.progress == 100 and job.attempts == 1
    download = client.get(reverse("dashboard:download", args=[job.pk]))
    assert download.status_code == 200
    assert 'filename="holiday photo-thumbnails.zip"' in download["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))) as archive:
        sizes = {}
        for info in archive.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            with Image.open(archive.open(info)) as thumb:
                sizes[info.filename] = thumb.size
    # 1200x800 fit into each box, aspect kept; 300x100 is bound by its height.
    assert sorted(sizes.values()) == [(128, 85), (150, 100), (256, 171), (512, 341)]
    assert job_files(media_root, job) == ["source.jpg", f"thumbnails-{job.task_id}.zip"]

    status = client.get(reverse("dashboard:job_status", args=[job.pk])).json()
    assert status["status"] == "succeeded" and status["error"] is None
    assert status["result"]["archive_url"] == reverse("api:job_archive", args=[job.pk])
    assert {(t["width"], t["height"]) for t in status["result"]["thumbnails"]} == set(
        sizes.values()
    )

    task = finished_task_result(job.task_id)
    assert task.status == "SUCCESS"
    assert task.task_name == "jobs.run_job"
    assert str(job.pk) in task.task_args

    first = status["result"]["thumbnails"][0]
    preview = client.get(reverse("dashboard:thumbnail", args=[job.pk, first["name"]]))
    assert preview.status_code == 200 and preview["Content-Type"] == "image/jpeg"
    assert len(preview.content) == first["bytes"]


def test_job_page_shows_finished_job_with_previews_and_download(client, user, celery_worker):
    client.force_login(user)
    job = wait_for_job(
        submitted_job(upload(client, image_bytes((600, 600), "RGBA", "PNG", (0, 0, 255, 128))))
    )
    page = client.get(reverse("dashboard:job", args=[job.pk])).content.decode()
    assert "Download ZIP" in page
    # One preview (the browser picks its size from srcset); each size opens and downloads.
    assert page.count(f'<img src="/jobs/{job.pk}/thumbnails/photo_256x256.png"') == 1
    for size in ("128x128", "256x256", "512x512"):
        assert f"/thumbnails/photo_{size}.png {size.split('x')[0]}w" in page
        assert page.count(f'href="/jobs/{job.pk}/thumbnails/photo_{size}.png?download=1"') == 1
    assert 'role="progressbar"' not in page  # the bar is gone once the job succeeded
    assert all(t["name"].endswith(".png") for t in job.result["thumbnails"])  # alpha kept


def test_truncated_jpeg_fails_with_a_clear_message_and_the_worker_goes_on(
    client, user, celery_worker, media_root
):
    client.force_login(user)
    whole = image_bytes((1600, 1200), color=(10, 120, 230), quality=95)
    broken = wait_for_job(submitted_job(upload(client, whole[: len(whole) // 2])))

    assert broken.status == Job.Status.FAILED
    assert "truncated or corrupt" in broken.error
    assert broken.archive.name == ""
    assert job_files(media_root, broken) == ["source.jpg"]  # no partial archive
    assert not any((media_root / "tmp").iterdir())  # no temporary leftovers
    assert finished_task_result(broken.task_id).status == "FAILURE"
    status = client.get(reverse("dashboard:job_status", args=[broken.pk])).json()
    assert (
        status["status"] == "failed" and "truncated" in status["error"] and status["result"] is None
    )
    assert client.get(reverse("dashboard:download", args=[broken.pk])).status_code == 404

    assert celery_worker.alive
    after = wait_for_job(submitted_job(upload(client, whole)))
    assert after.status == Job.Status.SUCCEEDED


def test_worker_refuses_a_decompression_bomb_that_skipped_the_form(user, celery_worker, media_root):
    bomb = image_bytes((20000, 20000), mode="1", fmt="PNG", color=0)
    job = services.submit_job(
        owner=user,
        uploads=[services.Upload(SimpleUploadedFile("bomb.png", bomb), "bomb.png", "png")],
        boxes=[thumbnails.Box(128, 128)],
    )
    job = wait_for_job(job)
    assert job.status == Job.Status.FAILED
    assert "megapixels" in job.error
    assert job_files(media_root, job) == ["source.png"]
    assert celery_worker.alive


def test_a_message_delivered_again_does_not_run_a_finished_or_retried_job(
    client, user, celery_worker
):
    client.force_login(user)
    job = wait_for_job(submitted_job(upload(client, image_bytes((300, 200)))))
    finished_at = job.finished_at
    # A redelivered message (acks_late) for this job gets the outcome again, not a second run:
    assert running.run_job(job_id=str(job.pk), task_id=job.task_id) == {
        "job": str(job.pk),
        **job.result,
    }
    # ...and with a message from before a retry (the job now waits for another task id):
    Job.objects.filter(pk=job.pk).update(status=Job.Status.QUEUED, task_id="newer")
    assert running.run_job(job_id=str(job.pk), task_id=job.task_id)["skipped"]
    job.refresh_from_db()
    assert (job.status, job.attempts, job.finished_at) == (Job.Status.QUEUED, 1, finished_at)


def test_a_file_over_the_upload_limit_is_refused_before_it_is_read_as_an_image(
    client, user, settings
):
    settings.PARROTER_MAX_UPLOAD_BYTES = 2048
    client.force_login(user)
    response = upload(client, image_bytes((400, 400), quality=100))
    assert response.status_code == 400
    assert "the limit is 2\xa0KB" in response.content.decode()
    assert not Job.objects.exists()


def test_a_post_without_a_file_is_refused(client, user):
    client.force_login(user)
    response = client.post(reverse("dashboard:upload"), {})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()


@pytest.mark.parametrize(
    ("data", "name", "fields", "message"),
    [
        (b"", "empty.jpg", {}, "The file is empty."),
        (b"just some text, not a picture\n" * 20, "notes.jpg", {}, "not an image"),
        (image_bytes((20000, 20000), mode="1", fmt="PNG", color=0), "bomb.png", {}, "megapixels"),
        (image_bytes((64, 64)), "a.jpg", {"custom": "0x0"}, "between 1 and"),
        (image_bytes((64, 64)), "a.jpg", {"custom": "10,20,30,40,50,60"}, "at most 8"),
        (image_bytes((64, 64)), "a.jpg", {"sizes": (), "custom": ""}, "Pick at least one size"),
    ],
    ids=["empty", "text-as-jpg", "bomb", "size-0x0", "too-many-sizes", "no-size"],
)
def test_bad_uploads_are_refused_with_a_form_error_and_store_nothing(
    client, user, media_root, data, name, fields, message
):
    client.force_login(user)
    files_before = set(media_root.rglob("*"))
    response = upload(client, data, name=name, **fields)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Job.objects.exists()
    assert set(media_root.rglob("*")) == files_before


def test_a_job_whose_worker_process_is_killed_mid_run_is_delivered_again(
    user, celery_worker, media_root
):
    job = start_held_job(user, media_root)
    source = media_root / job.source.name
    replacement = source.with_name("source.tmp")
    replacement.write_bytes(image_bytes((300, 200), "RGB", "PNG"))
    os.replace(replacement, source)  # the next delivery reads a real image
    pool = pool_processes(celery_worker.process.pid)
    assert pool, "the worker has no pool process"
    for pid in pool:
        os.kill(pid, signal.SIGKILL)

    job = wait_for_job(job)
    assert (job.status, job.attempts) == (Job.Status.SUCCEEDED, 2), job.error
    assert celery_worker.alive


def pool_processes(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def test_an_upload_while_the_broker_is_down_is_accepted_and_waits_as_queued(
    client, user, switch_broker
):
    switch_broker(f"redis://127.0.0.1:{free_port()}/0")
    client.force_login(user)
    job = submitted_job(upload(client, image_bytes((300, 200))))
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED  # the dispatcher sends it once the broker is back
    page = client.get(reverse("dashboard:job", args=[job.pk])).content.decode()
    assert "Queued" in page and "Waiting for a worker" in page


# --- jobs of many images ------------------------------------------------------------------------


def truncated_jpeg(size=(400, 300)) -> bytes:
    """A JPEG whose header passes the upload form's check but whose data ends halfway."""
    whole = image_bytes(size, color=(10, 120, 230), quality=95)
    return whole[: len(whole) // 2]


def archive_sizes(client, job) -> dict[str, tuple[int, int]]:
    download = client.get(reverse("dashboard:download", args=[job.pk]))
    assert download.status_code == 200
    with zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))) as archive:
        sizes = {}
        for name in archive.namelist():
            with Image.open(archive.open(name)) as thumb:
                sizes[name] = thumb.size
    return sizes


def test_a_job_of_several_images_lists_the_unreadable_one_and_zips_the_others(
    client, user, celery_worker
):
    client.force_login(user)
    files = [
        ("holiday.jpg", image_bytes((1200, 800))),
        ("broken.jpg", truncated_jpeg()),  # read by the worker only: the form sees its header
        ("shop.png", image_bytes((300, 600), "RGB", "PNG")),
    ]
    job = wait_for_job(submitted_job(upload_files(client, files, sizes=("128",), custom="64x64")))

    assert job.status == Job.Status.SUCCEEDED, job.error
    page = client.get(reverse("dashboard:job", args=[job.pk])).content.decode()
    assert "1 of 3 files could not be used" in page
    assert '<span class="name">broken.jpg</span>: The image data is truncated or corrupt' in page
    status = client.get(reverse("dashboard:job_status", args=[job.pk])).json()
    assert (status["status"], status["images"], status["images_done"]) == ("succeeded", 3, 3)
    assert status["problems"] == [
        {"name": "broken.jpg", "error": "The image data is truncated or corrupt and could not be "
         "decoded."}
    ]  # fmt: skip
    # A folder per readable image; each name says the thumbnail's real size.
    assert archive_sizes(client, job) == {
        "holiday/holiday_128x85.jpg": (128, 85),
        "holiday/holiday_64x43.jpg": (64, 43),
        "shop/shop_64x128.png": (64, 128),
        "shop/shop_32x64.png": (32, 64),
    }


def test_a_file_the_form_cannot_read_is_left_out_and_listed_on_the_job_page(
    client, user, celery_worker
):
    client.force_login(user)
    files = [("notes.jpg", b"just some text, not a picture\n" * 20), ("cat.jpg", image_bytes())]
    response = upload_files(client, files, sizes=(), custom="64")
    job = wait_for_job(submitted_job(response))

    assert job.status == Job.Status.SUCCEEDED, job.error
    page = client.get(response.url)
    assert [str(m) for m in page.context["messages"]] == [
        "1 of 2 files were left out; the job page says why."
    ]
    content = page.content.decode()
    assert "1 of 2 files could not be used" in content
    assert '<span class="name">notes.jpg</span>: This file is not an image' in content
    assert archive_sizes(client, job) == {"cat_64x43.jpg": (64, 43)}  # one image: no folder


def test_a_job_of_many_images_reports_each_image_done_while_it_runs(client, user, celery_worker):
    # PNGs decode whole (JPEGs at 1/8 scale), so each of these takes ~0.1 s: long enough for
    # several progress writes (at most one per running.PROGRESS_INTERVAL) during the job.
    big = image_bytes((3000, 3000), "RGB", "PNG")
    count = 20
    client.force_login(user)
    files = [(f"scan-{n:02}.png", big) for n in range(count)]
    job = submitted_job(upload_files(client, files, sizes=(), custom="64"))
    url = reverse("dashboard:job_status", args=[job.pk])
    seen = []
    deadline = time.monotonic() + JOB_TIMEOUT
    while time.monotonic() < deadline:
        status = client.get(url).json()
        assert (status["images"], status["problems"]) == (count, [])
        seen.append((status["status"], status["images_done"]))
        if status["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.02)
    assert seen[-1] == ("succeeded", count), seen[-1]
    done_while_running = [done for state, done in seen if state == "running"]
    assert done_while_running == sorted(done_while_running)
    assert len({done for done in done_while_running if 0 < done < count}) >= 2, seen


def test_a_job_whose_images_are_all_unreadable_fails_saying_why(client, user, celery_worker):
    client.force_login(user)
    files = [("first.jpg", truncated_jpeg()), ("second.jpg", truncated_jpeg((300, 200)))]
    job = wait_for_job(submitted_job(upload_files(client, files, sizes=(), custom="64")))

    corrupt = "The image data is truncated or corrupt and could not be decoded."
    message = f"None of the 2 images could be read. first.jpg: {corrupt}; second.jpg: {corrupt}"
    assert (job.status, job.error) == (Job.Status.FAILED, message)
    assert job.archive.name == ""
    page = client.get(reverse("dashboard:job", args=[job.pk])).content.decode()
    assert "None of the 2 images could be read. first.jpg: The image data is truncated" in page
    status = client.get(reverse("dashboard:job_status", args=[job.pk])).json()
    assert (status["status"], status["error"], status["result"]) == ("failed", message, None)
