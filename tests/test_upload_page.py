"""The upload page in real headless Chromium: files dropped on the page, checks made before the
upload leaves it, choices kept when the server refuses, the upload's progress bar, and the job
pages on a phone. Screenshots at 1280 and 390 px go to ARTIFACTS for people to look at."""

import base64
import os
import re

import pytest
from django.test import Client
from django.utils import timezone
from PIL import Image
from playwright.sync_api import expect

from jobs.models import Job
from tests.conftest import PHONE, image_bytes, snapshot

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

NOT_AN_IMAGE = b"just some notes, not a picture\n" * 20


@pytest.fixture
def open_page(browser, live_server, user):
    """A page of a new browser context signed in as alice (her session cookie, no login form),
    opened at path (None: not opened yet)."""
    client = Client()
    client.force_login(user)
    session = client.cookies["sessionid"].value

    def open_page(path: str | None = "/", **context_options):
        context = browser.new_context(viewport={"width": 1280, "height": 900}, **context_options)
        context.add_cookies([{"name": "sessionid", "value": session, "url": live_server.url}])
        page = context.new_page()
        if path is not None:
            page.goto(f"{live_server.url}{path}")
        return page

    return open_page


def drag_files(page, files: dict[str, tuple[bytes, str]]):
    """A DataTransfer holding these files (name -> (bytes, MIME type)), built in the page, as
    a person's drag from a file manager brings one."""
    payload = [
        {"name": name, "type": kind, "data": base64.b64encode(data).decode()}
        for name, (data, kind) in files.items()
    ]
    return page.evaluate_handle(
        """files => {
            const transfer = new DataTransfer();
            for (const file of files) {
                const bytes = Uint8Array.from(atob(file.data), c => c.charCodeAt(0));
                transfer.items.add(new File([bytes], file.name, {type: file.type}));
            }
            return transfer;
        }""",
        payload,
    )


def chosen_names(page) -> list[str]:
    """What the form would send: the file input's files."""
    return page.eval_on_selector("#id_images", "input => Array.from(input.files, f => f.name)")


def posts_of(page) -> list[str]:
    """Records every POST the page sends from now on."""
    sent = []
    page.on("request", lambda request: request.method == "POST" and sent.append(request.url))
    return sent


def test_files_dropped_on_the_page_become_one_job_that_lists_the_unreadable_one(
    open_page, celery_worker, tmp_path
):
    page = open_page()
    expect(page.locator("#chosen")).to_be_hidden()
    snapshot(page, "upload-empty")

    dropped = drag_files(
        page,
        {
            "garden.jpg": (image_bytes((1600, 1200), color=(40, 160, 90)), "image/jpeg"),
            "sea.png": (image_bytes((900, 600), "RGB", "PNG", (30, 90, 200)), "image/png"),
            "notes.jpg": (NOT_AN_IMAGE, "image/jpeg"),  # only the server can tell
            "sunset.webp": (image_bytes((800, 800), "RGB", "WEBP", (230, 120, 40)), "image/webp"),
        },
    )
    # Dragged over any part of the page, the drop zone lights up; it goes dark once dropped.
    page.dispatch_event("h1", "dragenter", {"dataTransfer": dropped})
    expect(page.locator("body")).to_have_class(re.compile(r"\bdragging-files\b"))
    page.dispatch_event("h1", "dragover", {"dataTransfer": dropped})
    page.dispatch_event("h1", "drop", {"dataTransfer": dropped})
    expect(page.locator("body")).not_to_have_class(re.compile(r"\bdragging-files\b"))

    files = page.locator("#file-list .file")
    expect(files).to_have_count(4)
    expect(files.nth(0)).to_contain_text("garden.jpg")
    expect(page.locator("#chosen-summary")).to_contain_text("4 of at most 200 images")
    assert chosen_names(page) == ["garden.jpg", "sea.png", "notes.jpg", "sunset.webp"]

    # A second drop adds to the list (the same file twice counts once); Remove takes one out.
    extra = drag_files(page, {"extra.gif": (image_bytes((64, 64), "P", "GIF", 3), "image/gif")})
    page.dispatch_event("h1", "drop", {"dataTransfer": extra})
    page.dispatch_event("h1", "drop", {"dataTransfer": dropped})
    expect(files).to_have_count(5)
    page.get_by_role("button", name="Remove extra.gif").click()
    expect(files).to_have_count(4)
    assert chosen_names(page) == ["garden.jpg", "sea.png", "notes.jpg", "sunset.webp"]
    snapshot(page, "upload-files")

    page.click("button:has-text('Start job')")
    page.wait_for_url("**/jobs/*/")
    expect(page.locator(".message")).to_contain_text("1 of 4 files were left out")
    expect(page.locator("#job-panel")).to_have_attribute("data-status", "succeeded", timeout=60_000)
    warning = page.locator("#job-panel .warning")
    expect(warning).to_contain_text("1 of 4 files could not be used")
    expect(warning).to_contain_text("notes.jpg")
    # One preview per image, named as in the ZIP, its three sizes one click away.
    expect(page.locator(".thumbs figure .name")).to_have_text(["garden/", "sea/", "sunset/"])
    expect(page.locator(".thumbs img")).to_have_count(3)
    expect(page.locator(".thumbs .sizes li")).to_have_count(9)
    snapshot(page, "job-succeeded-warnings")


def test_an_image_chosen_before_the_script_ran_is_uploaded(open_page, live_server, tmp_path):
    # A quick hand on a slow network: the file is chosen while upload.js is still on its way.
    page = open_page(None)
    held = []
    page.route("**/upload.js", lambda route: held.append(route))
    page.goto(f"{live_server.url}/", wait_until="commit")
    photo = tmp_path / "garden.jpg"
    photo.write_bytes(image_bytes((640, 480)))
    page.set_input_files("#id_images", str(photo))
    assert len(held) == 1, "the script arrived before the file was chosen"
    held[0].continue_()
    expect(page.locator("#file-list .file")).to_have_text([re.compile("^garden.jpg")])
    page.click("button:has-text('Start job')")
    page.wait_for_url("**/jobs/*/")
    assert Job.objects.get().images[0]["name"] == "garden.jpg"


def test_bad_sizes_are_all_named_before_anything_is_sent(open_page, tmp_path):
    page = open_page()
    sent = posts_of(page)
    photo = tmp_path / "garden.jpg"
    photo.write_bytes(image_bytes((1200, 800)))
    page.set_input_files("#id_images", str(photo))
    page.check("input[name=fit][value=pad]")
    page.select_option("#id_format", "WEBP")
    page.fill("#id_custom_sizes", "0x0, 300, big, 5000x10")
    page.click("button:has-text('Start job')")

    errors = page.locator("#errors-custom_sizes li")
    expect(errors).to_have_text(
        [
            "Size 0x0: width and height must be between 1 and 4096 pixels.",
            "'big' is not a size: use 256 or 800x600.",
            "Size 5000x10: width and height must be between 1 and 4096 pixels.",
        ]
    )
    expect(page.locator("#upload-alert")).to_contain_text("Nothing was uploaded yet")
    snapshot(page, "upload-errors")
    # Every size now parses, but there are too many: said as soon as the field changes.
    page.fill("#id_custom_sizes", "1, 2, 3, 4, 5, 6")
    page.locator("#id_custom_sizes").blur()
    expect(errors).to_have_text(["9 sizes asked for; at most 8 per job."])
    page.uncheck("input[name=sizes][value='128']")
    expect(errors).to_have_count(0)
    expect(page.locator("#upload-alert")).to_be_empty()
    assert sent == []  # not a byte left the page

    page.fill("#id_custom_sizes", "300x200")
    page.click("button:has-text('Start job')")
    page.wait_for_url("**/jobs/*/")
    job = Job.objects.get()
    assert job.params["sizes"] == [[256, 256], [512, 512], [300, 200]]
    assert (job.params["output"]["fit"], job.params["output"]["format"]) == ("pad", "WEBP")


def test_files_past_the_limits_or_not_images_are_named_before_anything_is_sent(open_page, settings):
    # Limits from settings reach the page's script through the template, not a second copy.
    settings.PARROTER_MAX_IMAGES = 2
    settings.PARROTER_MAX_UPLOAD_BYTES = 20_000
    settings.PARROTER_MAX_JOB_BYTES = 25_000
    page = open_page()
    sent = posts_of(page)
    expect(page.locator("#id_images_helptext")).to_contain_text("up to 2 images, each up to 19.5")
    dropped = drag_files(
        page,
        {
            # Only names, types and sizes count here: the page does not read the bytes.
            "big.jpg": (b"\xff" * 25_000, "image/jpeg"),
            "notes.txt": (b"\n" * 620, "text/plain"),
            "small.png": (b"\0" * 400, "image/png"),
        },
    )
    page.dispatch_event("h1", "drop", {"dataTransfer": dropped})
    # Said in the list as soon as they are there...
    expect(page.locator("#file-list .file.bad")).to_have_count(2)
    expect(page.locator("#chosen-summary .over")).to_have_count(2)
    page.click("button:has-text('Start job')")
    # ...and each by name once the person tries to start the job.
    expect(page.locator("#errors-images li")).to_have_text(
        [
            "3 files chosen; at most 2 per job.",
            "The files come to 25.4\xa0KB; the limit per job is 24.4\xa0KB.",
            "big.jpg: the file is 24.4\xa0KB; the limit is 19.5\xa0KB.",
            "notes.txt: not an image (text/plain).",
        ]
    )
    assert sent == []


def test_a_file_the_browser_cannot_judge_is_refused_by_the_server_and_stays_chosen(
    open_page, tmp_path
):
    page = open_page()
    notes = tmp_path / "notes.jpg"
    notes.write_bytes(NOT_AN_IMAGE)
    page.set_input_files("#id_images", str(notes))
    page.check("input[name=fit][value=crop]")
    page.select_option("#id_format", "PNG")
    page.fill("#id_custom_sizes", "300x200")
    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        page.click("button:has-text('Start job')")
    assert answer.value.status == 400

    expect(page.locator("#errors-images")).to_contain_text("not an image")
    expect(page.locator("#upload-alert")).to_contain_text("your images are still chosen")
    expect(page.locator("#upload-alert")).not_to_contain_text("choose your images again")
    expect(page.locator("#upload-progress")).to_be_hidden()
    assert chosen_names(page) == ["notes.jpg"]
    expect(page.locator("input[name=fit][value=crop]")).to_be_checked()
    expect(page.locator("#id_format")).to_have_value("PNG")
    expect(page.locator("#id_custom_sizes")).to_have_value("300x200")

    # The page's own checks still speak in the swapped-in places.
    page.get_by_role("button", name="Remove notes.jpg").click()
    page.click("button:has-text('Start job')")
    expect(page.locator("#errors-images")).to_have_text("Choose at least one image.")
    expect(page.locator("#upload-alert")).to_contain_text("Nothing was uploaded yet")

    # A good file instead: the job goes with the choices made before.
    photo = tmp_path / "garden.jpg"
    photo.write_bytes(image_bytes((1200, 800)))
    page.set_input_files("#id_images", str(photo))
    page.click("button:has-text('Start job')")
    page.wait_for_url("**/jobs/*/")
    job = Job.objects.get()
    assert job.source_name == "garden.jpg" and [300, 200] in job.params["sizes"]
    assert (job.params["output"]["fit"], job.params["output"]["format"]) == ("crop", "PNG")


def test_without_javascript_a_refused_upload_keeps_the_choices_and_asks_for_the_images(
    open_page, tmp_path
):
    page = open_page(java_script_enabled=False)
    notes = tmp_path / "notes.txt"
    notes.write_bytes(NOT_AN_IMAGE)
    expect(page.locator("#id_images")).to_be_visible()  # the plain file input, no drop zone
    page.set_input_files("#id_images", str(notes))
    page.uncheck("input[name=sizes][value='128']")
    page.fill("#id_custom_sizes", "640x480")
    page.check("input[name=fit][value=pad]")
    page.click("button:has-text('Start job')")
    page.wait_for_load_state()

    expect(page.locator("#upload-alert")).to_contain_text("choose your images again")
    expect(page.locator("#errors-images")).to_contain_text("not an image")
    assert chosen_names(page) == []
    expect(page.locator("input[name=sizes][value='128']")).not_to_be_checked()
    expect(page.locator("input[name=sizes][value='256']")).to_be_checked()
    expect(page.locator("#id_custom_sizes")).to_have_value("640x480")
    expect(page.locator("input[name=fit][value=pad]")).to_be_checked()
    assert not Job.objects.exists()
    snapshot(page, "upload-no-javascript-refused")


def test_the_progress_bar_fills_while_a_large_upload_goes_up(open_page, tmp_path):
    page = open_page()
    # Each value the bar takes is kept in sessionStorage, which outlives the page's navigation.
    page.evaluate(
        """() => {
            const bar = document.querySelector("#upload-progress [role=progressbar]");
            new MutationObserver(() => {
                const seen = JSON.parse(sessionStorage.seen || "[]");
                sessionStorage.seen = JSON.stringify([...seen, +bar.getAttribute("aria-valuenow")]);
            }).observe(bar, {attributes: true, attributeFilter: ["aria-valuenow"]});
        }"""
    )
    # 1.5 MB of noise (PNG cannot shrink it) going up at 200 kB/s until the screenshots are
    # taken, then at full speed.
    noise = tmp_path / "noise.png"
    Image.frombytes("RGB", (700, 700), os.urandom(700 * 700 * 3)).save(noise)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")

    def upload_at(throughput: int) -> None:
        conditions = {"offline": False, "latency": 0, "downloadThroughput": -1}
        cdp.send("Network.emulateNetworkConditions", {**conditions, "uploadThroughput": throughput})

    upload_at(200_000)
    page.set_input_files("#id_images", str(noise))
    page.click("button:has-text('Start job')")

    bar = page.locator("#upload-progress [role=progressbar]")
    expect(bar).to_be_visible()
    expect(bar).to_have_attribute("aria-valuenow", re.compile(r"^[1-9][0-9]?$"))  # under way
    expect(page.locator("button:has-text('Start job')")).to_be_disabled()
    expect(page.locator("#upload-status")).to_contain_text("Uploading…")
    snapshot(page, "upload-uploading")
    upload_at(-1)
    page.wait_for_url("**/jobs/*/")

    seen = page.evaluate("JSON.parse(sessionStorage.seen)")
    assert seen == sorted(seen), seen  # it only moves forward
    assert seen[-1] == 100
    assert any(0 < value < 100 for value in seen), seen
    assert Job.objects.get().source_name == "noise.png"


def test_job_pages_and_your_jobs_fit_a_phone(open_page, live_server, user):
    images = [{"name": f"IMG_{n:04d}_a_rather_long_camera_name.jpg", "file": ""} for n in range(6)]
    running = Job.objects.create(
        owner=user,
        source_name=images[0]["name"],
        status=Job.Status.RUNNING,
        progress=40,
        params={"sizes": [[128, 128]], "images": images},
        result={"images_done": 2},
        started_at=timezone.now(),
    )
    failed = Job.objects.create(
        owner=user,
        source_name="scan.tif",
        status=Job.Status.FAILED,
        error="None of the 3 images could be read: scan.tif: the file is truncated.",
        params={"sizes": [[128, 128]], "images": images[:3]},
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )

    page = open_page(f"/jobs/{running.pk}/")
    expect(page.locator("#job-panel")).to_contain_text("2 of 6 images done")
    snapshot(page, "job-running")
    page.goto(f"{live_server.url}/jobs/{failed.pk}/")
    expect(page.get_by_role("button", name="Try again")).to_be_visible()
    snapshot(page, "job-failed")

    page.goto(f"{live_server.url}/jobs/")
    expect(page.locator(".my-jobs tbody tr")).to_have_count(2)
    snapshot(page, "your-jobs")
    page.set_viewport_size({"width": PHONE, "height": 844})
    table = page.locator(".my-jobs")
    assert table.evaluate("t => t.scrollWidth <= t.parentElement.clientWidth")  # no inner scroll
