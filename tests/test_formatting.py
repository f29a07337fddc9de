"""The units the console prints."""

from datetime import timedelta

import pytest
from django.utils import timezone

from dashboard.templatetags.parroter import ago, duration, host, percent, sizes


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
    assert host("celery@worker-3") == "worker-3" and host("") == "—"
    assert percent(0.0712) == "7.1 %" and percent(0.5) == "50 %" and percent(None) == "—"
    assert sizes({"sizes": [[128, 128], [800, 600]]}) == "128, 800×600"
