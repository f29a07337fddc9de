"""The SVG charts draw what the history says."""

from datetime import UTC, datetime, timedelta

import pytest

from dashboard import charts
from jobs.selectors import History, Slot

START = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def history(*slots: Slot) -> History:
    total = Slot(start=START)
    for slot in slots:
        total.add(slot)
    return History(
        window=timedelta(minutes=len(slots)), slot=timedelta(minutes=1), total=total,
        slots=list(slots),
    )  # fmt: skip


def slot(minute: int, run_bucket: int | None = None, **counts: int) -> Slot:
    made = Slot(start=START + timedelta(minutes=minute), counts=counts)
    if run_bucket is not None:
        made.run_buckets[run_bucket] = sum(counts.values())
    return made


def test_throughput_stacks_outcomes_in_proportion():
    chart = charts.throughput(
        history(slot(0, succeeded=6, failed=2), slot(1), slot(2, cancelled=1))
    )
    assert not chart.empty
    first = [bar for bar in chart.bars if bar.x == chart.left]
    heights = {bar.css: bar.height for bar in first}
    assert heights["succeeded"] == pytest.approx(3 * heights["failed"])
    assert heights["succeeded"] + heights["failed"] == pytest.approx(
        charts.PLOT_HEIGHT * 8 / 10  # the axis tops out at the next round number
    )
    assert len(chart.bars) == 3 and "2 failed" in first[1].title
    assert [label for _, label in chart.y_ticks] == ["0", "5", "10"]


def test_failure_rate_has_a_bar_only_where_jobs_failed():
    chart = charts.failure_rate(history(slot(0, succeeded=3, failed=1), slot(1, succeeded=5)))
    assert len(chart.bars) == 1 and "25 %" in chart.bars[0].title


def test_durations_join_neighbouring_slots_and_mark_lone_ones():
    chart = charts.durations(
        history(slot(0, 3, succeeded=2), slot(1, 3, succeeded=1), slot(2), slot(3, 7, failed=1)),
        metric="run",
    )
    assert {line.css for line in chart.lines} == {"p50", "p95"}
    assert all(len(line.points.split()) == 2 for line in chart.lines)
    assert {dot.css for dot in chart.dots} == {"p50", "p95"}
    step = charts.PLOT_WIDTH / 4
    assert [dot.x for dot in chart.dots] == pytest.approx([charts.LEFT + 3.5 * step] * 2)


def test_an_empty_history_says_so():
    empty = history(slot(0), slot(1))
    assert all(
        chart.empty for chart in [charts.throughput(empty), charts.durations(empty, metric="wait")]
    )
