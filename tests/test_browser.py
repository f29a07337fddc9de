"""A person's whole visit in real headless Chromium: sign in, upload, watch, download."""

import io
import shutil
import zipfile

import pytest
from PIL import Image
from playwright.sync_api import expect, sync_playwright

from tests.conftest import PASSWORDS, image_bytes, require

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CHROMIUM = shutil.which("chromium")
# Without these, Chromium keeps dialling out to the network, which is closed here.
QUIET_FLAGS = ["--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-quic", "--disable-gpu", "--no-first-run"]  # fmt: skip


@pytest.fixture
def browser(monkeypatch):
    require(
        CHROMIUM is not None, "Debian's chromium is not installed (`make test` installs it as root)"
    )
    # Playwright's sync API keeps an event loop in this thread. Tests take their database
    # fixtures before this one: ORM calls made under Playwright get a connection of their own
    # that is never closed, and PostgreSQL then refuses to drop the test database.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=QUIET_FLAGS
        )
        yield browser
        browser.close()


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
    page.set_input_files("#id_image", str(photo))
    page.click("button:has-text('Start job')")
    page.wait_for_url("**/jobs/*/")

    panel = page.locator("#job-panel")
    expect(panel).to_have_attribute("data-status", "succeeded", timeout=60_000)
    expect(page.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    previews = page.locator(".thumbs img")
    expect(previews).to_have_count(3)
    loaded = previews.evaluate_all("images => images.map(i => i.complete && i.naturalWidth)")
    assert sorted(loaded) == [128, 256, 512]

    with page.expect_download() as download_info:
        page.click("text=Download ZIP")
    download = download_info.value
    assert download.suggested_filename == "garden-thumbnails.zip"
    with zipfile.ZipFile(download.path()) as archive:
        sizes = sorted(
            Image.open(io.BytesIO(archive.read(name))).size for name in archive.namelist()
        )
    assert sizes == [(128, 85), (256, 171), (512, 341)]
