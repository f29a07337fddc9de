"""The units the console prints."""

from datetime import timedelta

import pytest
from django.utils import timezone

from dashboard.templatetags.parroter import (
    ago,
    bytes_text,
    duration,
    output,
    percent,
    sizes,
    worker_anchor,
    worker_name,
)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "—"), (0.012, "12 ms"), (3.44, "3.4 s"), (42, "42 s"), (125, "2 min 5 s"),
        (600, "10 min"), (3 * 3600 + 20 * 60, "3 h 20 min"), (7200, "2 h"), (3 * 86400, "3 d 0 h"),
    ],
)  # fmt: skip
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_ago_and_the_rest():
    now = timezone.now()
    assert ago(now - timedelta(seconds=3)) == "3 s ago"
    assert ago(now - timedelta(minutes=5, seconds=59)) == "5 min ago"
    assert ago(now - timedelta(days=2)) == "2 d ago"
    assert worker_name("celery@worker-3") == "celery@worker-3" and worker_name("") == "—"
    assert worker_name("housekeeping@vm.example.internal") == "housekeeping@vm"
    assert worker_anchor("celery@vm.example") == "worker-celery-vm-example"
    assert percent(0.0712) == "7.1 %" and percent(0.5) == "50 %" and percent(None) == "—"
    assert sizes({"sizes": [[128, 128], [800, 600]]}) == "128, 800×600"
    # As chosen, the custom ones last; shown smallest first.
    chosen = [[128, 128], [256, 256], [512, 512], [300, 300], [800, 600], [1024, 1024]]
    assert sizes({"sizes": chosen}) == "128, 256, 300, 512, 800×600, 1024"


@pytest.mark.parametrize(
    ("size", "text"),
    [(50 * 1024**2, "50\xa0MB"), (500 * 1024**2, "500\xa0MB"), (1536 * 1024, "1.5\xa0MB"),
     (256 * 1024, "256\xa0KB"), (1, "1\xa0byte"), (10 * 1024 + 100, "10.1\xa0KB")],
)  # fmt: skip
def test_byte_sizes_have_no_needless_decimal(size: int, text: str) -> None:
    assert bytes_text(size) == text


@pytest.mark.parametrize(
    ("chosen", "text"),
    [
        (None, "Same format as the image, fitted inside the box"),  # a job from before choices
        ({"format": "WEBP", "quality": 70, "fit": "crop", "background": "#ffffff",
          "transparent": True}, "WebP, quality 70, cropped to fill the box"),
        ({"format": "PNG", "quality": 85, "fit": "pad", "background": "#102030",
          "transparent": False}, "PNG, padded to the box, padding #102030"),
        ({"format": None, "quality": 85, "fit": "pad", "background": "#ffffff",
          "transparent": True}, "Same format as the image, quality 85, padded to the box, "
         "transparent padding where possible, else #ffffff"),
    ],
)  # fmt: skip
def test_output_says_how_thumbnails_are_made(chosen, text):
    params = {"sizes": [[128, 128]], **({"output": chosen} if chosen else {})}
    assert output(params) == text
