"""Whole visits in real headless Chromium: a person uploads, watches and downloads; an
operator watches the console live and retries a failed job from it."""

import io
import os
import signal
import time
import zipfile
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.utils import timezone
from PIL import Image
from playwright.sync_api import expect

from jobs import alerts, rollups, running
from jobs.api import api
from jobs.models import AlertDelivery, AlertReceiver, Job
from tests.conftest import (
    ARTIFACTS,
    PASSWORDS,
    celery_process,
    consumers,
    image_bytes,
    run_in_process,
    snapshot,
    start_held_job,
    start_monitor,
    stop_process,
    submit_image,
    wait_for_report,
    wait_until_answering,
    worker_arguments,
)
from tests.photos import noisy_photo

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_sign_in_upload_watch_progress_and_download(
    live_server, celery_worker, user, browser, tmp_path
):
    page = browser.new_page(accept_downloads=True)
    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(f"{live_server.url}/accounts/login/?next=/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", PASSWORDS["alice"])
    page.click("button:has-text('Sign in')")

    photo = tmp_path / "garden.jpg"
    photo.write_bytes(image_bytes((2400, 1600), color=(40, 160, 90)))
    page.set_input_files("#id_images", str(photo))
    page.click("button:has-text('Start job')")
    page.wait_for_url("**/jobs/*/")

    panel = page.locator("#job-panel")
    expect(panel).to_have_attribute("data-status", "succeeded", timeout=60_000)
    expect(page.get_by_role("progressbar")).to_have_count(0)  # the bar goes once done
    # One preview, the smallest size that fills its 150 px frame; every size a click away.
    preview = page.locator(".thumbs img")
    expect(preview).to_have_count(1)
    expect(preview).to_have_js_property("complete", True)
    assert preview.evaluate("image => image.currentSrc").endswith("/garden_256x171.jpg")
    page.click("summary:has-text('3 sizes')")
    expect(page.locator(".thumbs .sizes li a[target]")).to_have_text(
        ["128×85", "256×171", "512×341"]
    )

    with page.expect_download() as download_info:
        page.click("text=Download ZIP")
    download = download_info.value
    assert download.suggested_filename == "garden-thumbnails.zip"
    with zipfile.ZipFile(download.path()) as archive:
        sizes = sorted(
            Image.open(io.BytesIO(archive.read(name))).size for name in archive.namelist()
        )
    assert sizes == [(128, 85), (256, 171), (512, 341)]


def sign_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORDS[username])
    page.click("button:has-text('Sign in')")
    # Signed in once away from the form and the next page has loaded, its scripts run.
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


def test_operator_watches_jobs_live_and_retries_a_failed_one(
    live_server, celery_worker, user, staff, browser, media_root, tmp_path
):
    operator = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(operator, live_server.url, "olivia")
    operator.goto(f"{live_server.url}/ops/")
    expect(operator.locator("#ops-jobs")).to_contain_text("No jobs yet")

    # Someone else uploads in their own session: the job appears without a reload.
    owner = browser.new_page()
    sign_in(owner, live_server.url, "alice")
    photo = tmp_path / "garden.jpg"
    photo.write_bytes(image_bytes((1600, 1200)))
    owner.set_input_files("#id_images", str(photo))
    owner.click("button:has-text('Start job')")
    owner.wait_for_url("**/jobs/*/")
    uploaded = operator.locator("#ops-jobs tr", has_text="garden.jpg")
    expect(uploaded).to_have_attribute("data-status", "succeeded", timeout=15_000)

    # A job the worker is busy with: its progress moves on the page as the worker reports it.
    held = start_held_job(user, media_root, name="held.png")
    row = operator.locator(f'#ops-jobs tr[data-job="{held.pk}"]')
    expect(row).to_have_attribute("data-status", "running", timeout=15_000)
    bar = row.get_by_role("progressbar")
    expect(bar).to_have_attribute("aria-valuenow", "0")
    Job.objects.filter(pk=held.pk).update(progress=40, updated_at=timezone.now())
    expect(bar).to_have_attribute("aria-valuenow", "40", timeout=10_000)

    # The worker reads an empty file: the job fails, visibly, with a clear message.
    source = media_root / held.source.name
    os.close(os.open(source, os.O_WRONLY))
    expect(row).to_have_attribute("data-status", "failed", timeout=15_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    operator.screenshot(path=str(ARTIFACTS / "ops-dashboard.png"), full_page=True)

    # It failed on its input: no Retry in the table. The operator replaces the file and forces
    # a retry from the job's page.
    expect(row.get_by_role("button", name="Retry")).to_have_count(0)
    expect(row.locator("td.error")).to_contain_text("The image data is truncated or corrupt")
    replacement = source.with_name("replacement.png")
    replacement.write_bytes(image_bytes((640, 480), "RGB", "PNG"))
    os.replace(replacement, source)
    row.locator("a", has_text=held.pk.hex[:8]).click()
    operator.get_by_role("button", name="Force a retry").click()
    expect(operator.locator(".message")).to_contain_text("The job is queued again (forced).")
    operator.goto(f"{live_server.url}/ops/")
    row = operator.locator(f'#ops-jobs tr[data-job="{held.pk}"]')
    expect(row).to_have_attribute("data-status", "succeeded", timeout=15_000)
    held.refresh_from_db()
    assert (held.status, held.attempts) == (Job.Status.SUCCEEDED, 2)


def test_a_paused_job_worker_shows_on_the_console_and_the_owners_page_within_15_s(
    live_server, own_broker, user, staff, browser, tmp_path
):
    hostname = f"paused-{os.getpid()}@testhost"
    worker = celery_process(
        worker_arguments(hostname), log=tmp_path / "w.log", REDIS_URL=own_broker.url
    )
    monitor = start_monitor(own_broker.url, log=tmp_path / "monitor.log")
    job = Job.objects.create(owner=user, source_name="waiting.jpg", params={"sizes": [[64, 64]]})
    try:
        wait_until_answering(worker, hostname)
        wait_for_report(lambda facts: consumers(facts, "celery") == 1, monitor=monitor, timeout=60)
        owner = browser.new_page(viewport={"width": 390, "height": 844})
        sign_in(owner, live_server.url, "alice")
        owner.goto(f"{live_server.url}/jobs/{job.pk}/")
        panel = owner.locator("#job-panel")
        expect(panel).to_contain_text("Waiting for a worker")
        operator = browser.new_page(viewport={"width": 1280, "height": 900})
        sign_in(operator, live_server.url, "olivia")
        operator.goto(f"{live_server.url}/ops/")
        banner = operator.locator("#ops-stats .alert", has_text="No worker is consuming celery")
        expect(banner).to_have_count(0)

        os.killpg(worker.process.pid, signal.SIGSTOP)
        paused = time.monotonic()

        def left() -> float:  # what remains of the 15 s, in ms, for the next expectation
            return max(15 - (time.monotonic() - paused), 0.1) * 1000

        expect(banner).to_contain_text("1 job waiting", timeout=left())
        expect(panel).to_contain_text("No worker is serving jobs right now", timeout=left())
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        operator.screenshot(path=str(ARTIFACTS / "ops-no-worker-1280.png"))
        owner.screenshot(path=str(ARTIFACTS / "job-no-worker-390.png"))

        os.killpg(worker.process.pid, signal.SIGCONT)
        expect(banner).to_have_count(0, timeout=15_000)
        expect(panel).to_contain_text("Waiting for a worker", timeout=15_000)
    finally:
        if worker.alive:
            os.killpg(worker.process.pid, signal.SIGCONT)
        stop_process(monitor)
        stop_process(worker)


def test_the_api_docs_work_offline_on_a_desktop_and_a_phone(live_server, user, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    elsewhere = []

    def this_host_only(route) -> None:
        if route.request.url.startswith(live_server.url):
            route.continue_()
        else:  # a CDN, swagger.io's validator, fonts: none may be needed
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", this_host_only)
    sign_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/api/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Parroter API")
    operations = page.locator(".opblock-summary-path")
    paths = api.get_openapi_schema()["paths"].values()
    every_operation = sum(len(methods) for methods in paths)
    expect(operations).to_have_count(every_operation)
    rerun = page.locator(".opblock-summary", has_text="Re-run a job with new settings")
    expect(rerun).to_be_visible()
    # Tried from the page with the session: the list of one's jobs answers 200.
    page.locator(".opblock-summary", has_text="List jobs").click()
    page.get_by_role("button", name="Try it out").click()
    page.get_by_role("button", name="Execute").click()
    status = page.locator(".live-responses-table tbody .response-col_status")
    expect(status).to_contain_text("200")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "api-docs-1280.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(operations).to_have_count(every_operation)
    page.screenshot(path=str(ARTIFACTS / "api-docs-390.png"), full_page=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the docs page scrolls sideways on a phone: {width}px"
    assert elsewhere == []


@pytest.mark.parametrize(
    ("viewport", "density", "screens"),
    [({"width": 1280, "height": 900}, 1, 3), ({"width": 390, "height": 844}, 2, 6)],
    ids=["desktop", "phone"],
)
def test_a_200_image_jobs_page_is_light_before_scrolling(
    live_server, celery_worker, user, browser, viewport, density, screens
):
    from django.core.files.base import ContentFile

    from jobs import services
    from jobs.kinds import thumbnails
    from tests.conftest import wait_for_job

    photo = noisy_photo((1200, 800))
    job = services.submit_job(
        owner=user,
        uploads=[
            services.Upload(ContentFile(photo, name="photo.jpg"), "photo.jpg", "jpg")
            for _ in range(200)
        ],
        boxes=[thumbnails.Box(size, size) for size in (128, 256, 1024)],
    )
    assert wait_for_job(job, timeout=120).status == Job.Status.SUCCEEDED

    page = browser.new_page(viewport=viewport, device_scale_factor=density)
    sign_in(page, live_server.url, "alice")
    finished = []
    page.on("requestfinished", lambda request: finished.append(request))
    page.goto(f"{live_server.url}/jobs/{job.pk}/", wait_until="networkidle")

    transferred = sum(
        request.sizes()["responseBodySize"] + request.sizes()["responseHeadersSize"]
        for request in finished
    )
    assert transferred <= 2_000_000, f"{transferred:,} bytes before scrolling"
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height <= screens * viewport["height"], f"{height} px tall"
    # The same name twice: shown as the ZIP names them.
    expect(page.locator(".thumbs .name").nth(1)).to_have_text("photo-2/")
    expect(page.locator(".pager")).to_contain_text("Images 1–48 of 200")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"job-200-images-{viewport['width']}.png"), full_page=True)
    page.click("text=Next →")
    expect(page.locator(".pager")).to_contain_text("Images 49–96 of 200")


def test_a_person_makes_an_api_token_copies_it_once_and_revokes_it(live_server, user, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, live_server.url, "alice")
    page.click("text=API tokens")
    expect(page.locator(".empty")).to_contain_text("No tokens yet")
    snapshot(page, "tokens-empty")
    page.fill("#id_name", "nightly export")
    page.click("button:has-text('Create token')")
    secret = page.locator("#api-token")
    expect(secret).to_contain_text("prt_")
    snapshot(page, "tokens-new")
    page.reload()
    expect(page.locator("#api-token")).to_have_count(0)  # shown once
    page.click("button[aria-label='Revoke nightly export']")
    expect(page.locator(".tokens .badge")).to_have_text("Revoked")
    snapshot(page, "tokens-revoked")


def test_times_are_shown_in_the_browsers_zone(live_server, user, browser):
    from datetime import UTC, datetime

    job = Job.objects.create(
        owner=user,
        source_name="garden.jpg",
        created_at=datetime(2026, 12, 4, 21, 15, 40, tzinfo=UTC),
    )
    context = browser.new_context(timezone_id="Asia/Tokyo", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in(page, live_server.url, "alice")  # the sign-in page tells the server the zone
    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    shown = page.locator(".meta time").first
    expect(shown).to_have_text("2026-12-05 06:15:40 JST")
    expect(shown).to_have_attribute("title", "2026-12-04 21:15:40 UTC")
    page.goto(f"{live_server.url}/accounts/settings/")
    expect(page.locator("#id_time_zone option").first).to_have_text(
        "My browser's zone (Asia/Tokyo)"
    )
    snapshot(page, "settings")
    context.close()


def test_a_job_is_rerun_with_a_focal_point_picked_on_its_picture(live_server, user, browser):
    from django.core.files.base import ContentFile

    from jobs import services
    from jobs.kinds import thumbnails

    photo = image_bytes((600, 400), color=(40, 90, 160))
    cut = photo[: len(photo) // 2]
    job = services.submit_job(
        owner=user,
        uploads=[
            services.Upload(ContentFile(data, name=name), name, "jpg")
            for name, data in (("harbour.jpg", photo), ("cut.jpg", cut), ("boats.jpg", photo))
        ],
        boxes=[thumbnails.Box(256, 256)],
    )
    run_in_process(job)

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    page.click("text=Re-run with new settings")
    expect(page.locator("h1")).to_have_text("Re-run with new settings")
    expect(page.locator(".replacements")).to_contain_text("cut.jpg")
    picture = page.locator(".focus-pick img").first
    box = picture.bounding_box()
    picture.click(position={"x": box["width"] * 0.25, "y": box["height"] * 0.75})
    expect(page.locator("#id_focus_0")).to_have_value("25, 75")
    expect(page.locator(".focus-mark").first).to_be_visible()
    page.check("input[name=fit][value=crop]")
    snapshot(page, "rerun")

    page.click("text=Re-run as a new job")
    expect(page.locator(".meta").filter(has_text="Re-run of")).to_contain_text("harbour.jpg")
    snapshot(page, "rerun-queued")
    page.click(
        ".meta a:has-text('harbour.jpg and 2 more')"
    )  # back to the first job, which lists its re-run
    expect(page.locator(".meta").filter(has_text="Re-run as")).to_be_visible()
    snapshot(page, "job-with-rerun")
    rerun = Job.objects.get(rerun_link__original=job)
    assert rerun.params["output"]["fit"] == "crop"
    assert rerun.images[0]["focus"] == [0.25, 0.75]
    assert [image["name"] for image in rerun.images] == ["harbour.jpg", "cut.jpg", "boats.jpg"]


def test_an_owner_is_asked_before_a_running_job_is_cancelled(live_server, user, browser):
    job = Job.objects.create(
        owner=user,
        source_name="harbour.jpg",
        status=Job.Status.RUNNING,
        started_at=timezone.now(),
        progress=47,
        params={"sizes": [[128, 128]], "images": [{"name": f"{n}.jpg"} for n in range(30)]},
        result={"images_done": 14},
    )
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    page.click("text=Cancel…")
    expect(page.locator(".warning")).to_contain_text("14 of 30 images are done")
    snapshot(page, "cancel-question")
    page.click("text=Keep it running")
    expect(page).to_have_url(f"{live_server.url}/jobs/{job.pk}/")
    page.click("text=Cancel…")
    page.click("text=Cancel the job")
    expect(page.locator(".badge.cancelled")).to_be_visible()
    job.refresh_from_db()
    assert job.error == "Cancelled by alice."


def test_an_operator_retries_with_a_reason_and_finds_it_in_the_audit_log(
    live_server, user, staff, browser
):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, live_server.url, "olivia")
    page.goto(f"{live_server.url}/ops/audit/")
    expect(page.locator(".empty")).to_contain_text("Nothing recorded yet")
    snapshot(page, "audit-empty")

    for name in ("harbour.jpg", "boats.jpg"):
        Job.objects.create(
            owner=user, source_name=name, status=Job.Status.FAILED,
            finished_at=timezone.now(), error="Broken.", params={"sizes": [[128, 128]]},
        )  # fmt: skip
    page.goto(f"{live_server.url}/ops/bulk/retry?status=failed")
    page.fill("#id_reason", "storage was full until 14:05")
    page.click("button:has-text('Retry 2 jobs')")
    expect(page.locator(".messages")).to_contain_text("Retry: 2 jobs changed.")
    page.click("text=Audit log")
    row = page.locator(".audit-table tbody tr").first
    expect(row).to_contain_text("Retried 2 jobs matching status=failed")
    expect(row).to_contain_text("storage was full until 14:05")
    snapshot(page, "audit-log")


def test_an_operator_pauses_the_jobs_queue_with_a_reason_and_resumes_it(
    live_server, user, staff, browser
):
    from jobs import monitoring

    now = timezone.now()
    monitoring.save_report(
        monitoring.ClusterFacts(
            checked_at=now,
            queues=[
                monitoring.QueueFacts("celery", 2, 1),
                monitoring.QueueFacts("housekeeping", 0, 1),
            ],
            workers=[
                monitoring.WorkerFacts("celery@web1", True, now, ("celery",), 2, 0, 41, 7, now),
                monitoring.WorkerFacts(
                    "housekeeping@ops", True, now, ("housekeeping",), 1, 0, 9, 8, now
                ),
            ],
        )
    )
    for name in ("harbour.jpg", "boats.jpg"):
        Job.objects.create(owner=user, source_name=name, params={"sizes": [[128, 128]]})
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, live_server.url, "olivia")
    page.goto(f"{live_server.url}/ops/")
    page.locator("#ops-workers a", has_text="Pause…").first.click()
    page.fill("#id_reason", "storage host out of disk")
    page.click("button:has-text('Pause celery')")
    alert = page.locator(".alert", has_text="is paused")
    expect(alert).to_contain_text("by olivia")
    expect(alert).to_contain_text("storage host out of disk")
    expect(alert).to_contain_text("2 jobs wait")
    snapshot(page, "ops-queue-paused")
    alert.locator("button", has_text="Resume").click()
    expect(page.locator(".messages")).to_contain_text("celery is resumed")
    expect(page.locator(".alert", has_text="is paused")).to_have_count(0)


def test_a_failed_chore_shows_its_error_in_red_on_the_console(live_server, staff, browser):
    from jobs.models import Chore

    now = timezone.now()
    error = "S3 did not answer within 5 s (ListObjectsV2 on bucket parroter-media)"
    Chore.objects.create(name="sweep_orphan_files", started_at=now, finished_at=now, error=error)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, live_server.url, "olivia")
    page.goto(f"{live_server.url}/ops/")
    detail = page.locator(".error-detail")
    expect(detail).to_have_text(error)
    expect(detail).to_have_css("color", "rgb(196, 50, 10)")  # --bad
    detail.scroll_into_view_if_needed()
    snapshot(page, "ops-chore-failed")


def test_a_job_past_the_images_a_day_is_refused_with_the_files_still_chosen(
    live_server, user, browser, settings, tmp_path
):
    settings.PARROTER_MAX_IMAGES_PER_DAY = 3
    photos = []
    for number in range(2):
        photo = tmp_path / f"dune-{number}.jpg"
        photo.write_bytes(image_bytes((640, 480), color=(200, 170, 90)))
        photos.append(str(photo))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, live_server.url, "alice")
    page.set_input_files("#id_images", photos)
    page.click("button:has-text('Start job')")
    page.wait_for_url("**/jobs/*/")

    page.goto(f"{live_server.url}/")
    page.set_input_files("#id_images", photos)
    page.click("button:has-text('Start job')")
    alert = page.locator("#upload-alert")
    expect(alert).to_contain_text("This job has 2 images and you can start 1 more today")
    expect(alert).to_contain_text("Nothing was uploaded. Your images are still chosen.")
    snapshot(page, "upload-over-quota")
    assert page.url == f"{live_server.url}/"
    # The refusal swapped in only the errors: the two files are still chosen.
    assert page.locator("#id_images").evaluate("input => input.files.length") == 2
    assert Job.objects.count() == 1


def test_an_operator_sees_a_firing_alert_on_the_console_and_its_history(
    live_server, user, staff, browser
):
    alerts.seed_rules(django_apps, None)  # the migration's rows, gone after an earlier flush
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, live_server.url, "olivia")
    page.goto(f"{live_server.url}/ops/alerts/")
    expect(page.locator(".empty")).to_contain_text("No alert has fired yet.")
    snapshot(page, "alerts-empty")

    AlertReceiver.objects.create(name="ops channel", kind="webhook", target="http://127.0.0.1:9/")
    AlertReceiver.objects.create(name="on call", kind="email", target="oncall@example.com")
    now = timezone.now()
    at = now - timedelta(minutes=3)
    for status, count in (("failed", 9), ("succeeded", 21)):
        for _ in range(count):
            Job.objects.create(owner=user, source_name="dune.jpg", status=status,
                               queued_at=at, started_at=at, finished_at=at)  # fmt: skip
    rollups.record(Job.objects.all())
    alerts.evaluate(now=now)
    for delivery in AlertDelivery.objects.all():
        try:
            alerts.deliver(delivery_id=delivery.pk)
        except alerts.DeliveryError:
            alerts.give_up(delivery_id=delivery.pk)
    page.goto(f"{live_server.url}/ops/")
    banner = page.locator(".alert", has_text="Alert: Jobs failing")
    expect(banner).to_contain_text("30% of jobs failed in the last 10 minutes")
    snapshot(page, "ops-alert-firing")
    banner.locator("a", has_text="Alerts").click()
    expect(page.locator(".alert-history")).to_contain_text("gave up after 1 attempts")
    snapshot(page, "alerts")


def test_an_operator_triages_failure_groups_and_an_owner_is_told_what_to_do(
    live_server, user, staff, browser
):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, live_server.url, "olivia")
    page.goto(f"{live_server.url}/ops/failures/")
    expect(page.locator(".empty")).to_contain_text("No job failed in the last 24h.")
    snapshot(page, "failures-empty")

    broken = []
    for name in ("harbour.jpg", "boats.jpg", "quay.jpg"):
        broken.append(submit_image(user, image_bytes((64, 48))[:200], name=name))
    for job in broken + [submit_image(user, b"", name="empty.png")]:
        run_in_process(job)
    # A temporary group too: a job stopped at the time limit, which a retry may finish.
    slow = Job.objects.create(
        owner=user, source_name="panorama.tif", status=Job.Status.RUNNING, task_id="t-slow",
        params={"sizes": [[128, 128]]}, started_at=timezone.now(),
    )  # fmt: skip
    running.record_failure(
        slow, "The job took longer than 300 seconds and was stopped.", "time_limit"
    )
    page.goto(f"{live_server.url}/ops/failures/")
    groups = page.locator(".failure-group")
    expect(groups).to_have_count(3)
    expect(groups.filter(has_text="took longer")).to_contain_text("Retry them…")
    snapshot(page, "failures")
    groups.first.locator("button", has_text="Acknowledge").click()
    expect(page.locator(".messages")).to_contain_text("Acknowledged")
    page.locator(".failure-group", has_text="truncated").locator("a", has_text="Its jobs").click()
    expect(page.locator("#ops-jobs tbody tr")).to_have_count(3)

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/jobs/{broken[1].pk}/")
    expect(page.locator("#job-panel")).to_contain_text("Trying again would fail the same way")
    snapshot(page, "job-failed-for-good")
