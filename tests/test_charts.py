"""The SVG charts draw what the history says."""

import re
from datetime import UTC, datetime, timedelta

import pytest

from dashboard import charts
from jobs.selectors import History, Slot

START = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def history(*slots: Slot) -> History:
    """Per-minute slots; the charts draw the slots (the total is for the counters)."""
    return History(
        window=timedelta(minutes=len(slots)), slot=timedelta(minutes=1),
        total=Slot(start=START), slots=list(slots),
    )  # fmt: skip


def slot(minute: int, run_bucket: int | None = None, **counts: int) -> Slot:
    made = Slot(start=START + timedelta(minutes=minute), counts=counts)
    if run_bucket is not None:
        made.run_buckets[run_bucket] = sum(counts.values())
    return made


def bars(chart: charts.Chart, css: str) -> list[tuple[float, float]]:
    """(x, height) of each bar in the path of one series."""
    path = re.search(rf'<path class="{css}" d="([^"]+)"', chart.marks)
    if path is None:
        return []
    found = re.findall(r"M([\d.]+) [\d.]+h[\d.]+v([\d.]+)", path.group(1))
    return [(float(x), float(height)) for x, height in found]


def tooltips(chart: charts.Chart) -> list[str]:
    return re.findall(r"<title>([^<]+)</title>", chart.marks)


def test_throughput_stacks_outcomes_in_proportion():
    chart = charts.for_history(
        history(slot(0, succeeded=6, failed=2), slot(1), slot(2, cancelled=1))
    )[0]
    assert not chart.empty
    (succeeded,) = bars(chart, "succeeded")
    (failed,) = bars(chart, "failed")
    assert succeeded[0] == failed[0] == charts.LEFT
    assert succeeded[1] == pytest.approx(3 * failed[1], abs=0.2)
    # The axis tops out at the next round number above the busiest slot (8 -> 10).
    assert succeeded[1] + failed[1] == pytest.approx(charts.PLOT_HEIGHT * 8 / 10, abs=0.2)
    assert [label for _, label in chart.y_ticks] == ["0", "5", "10"]
    assert tooltips(chart) == ["12:00: 6 succeeded, 2 failed", "12:02: 1 cancelled"]


def test_failure_rate_has_a_bar_only_where_jobs_failed():
    chart = charts.for_history(history(slot(0, succeeded=3, failed=1), slot(1, succeeded=5)))[1]
    assert len(bars(chart, "failed")) == 1
    assert tooltips(chart) == ["12:00: 25 % failed"]


def test_durations_join_neighbouring_slots_and_mark_lone_ones():
    chart = charts.for_history(
        history(slot(0, 3, succeeded=2), slot(1, 3, succeeded=1), slot(2), slot(3, 7, failed=1))
    )[3]  # run time
    lines = re.findall(r'<polyline class="(p\d+)" points="([^"]+)"', chart.marks)
    assert sorted(css for css, _ in lines) == ["p50", "p95"]
    assert all(len(points.split()) == 2 for _, points in lines)
    dots = re.findall(r'<circle class="(p\d+)" cx="([\d.]+)"', chart.marks)
    step = charts.PLOT_WIDTH / 4
    assert sorted(css for css, _ in dots) == ["p50", "p95"]
    assert [float(x) for _, x in dots] == pytest.approx([charts.LEFT + 3.5 * step] * 2, abs=0.1)
    assert len(tooltips(chart)) == 3  # the empty slot has nothing to say


def test_an_empty_history_says_so():
    drawn = charts.for_history(history(slot(0), slot(1)))
    assert all(chart.empty for chart in drawn)
    assert all(tooltips(chart) == [] for chart in drawn)
