"""The SVG charts draw what the history says, in bounded markup, with axis labels that fit."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dashboard import charts
from jobs.history import History, Slot
from jobs.models import DURATION_BOUNDS

START = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
# The axis labels' font is 11 px; no character of theirs is wider than this, digits and
# lowercase letters of a sans-serif being 5.5-6.5 px.
CHAR_WIDTH = 7.0


def history(*slots: Slot, slot_minutes: int = 1) -> History:
    """Slots of slot_minutes; the charts draw the slots (the total is for the counters)."""
    return History(
        window=timedelta(minutes=len(slots) * slot_minutes),
        slot=timedelta(minutes=slot_minutes),
        total=Slot(start=START), slots=list(slots),
    )  # fmt: skip


def slot(minute: int, run_bucket: int | None = None, retried: int = 0, **counts: int) -> Slot:
    made = Slot(start=START + timedelta(minutes=minute), counts=counts, retried=retried)
    if run_bucket is not None:
        made.run_buckets[run_bucket] = sum(counts.values())
    return made


def path_data(chart: charts.Chart, css: str) -> str | None:
    found = re.search(rf'<path class="{css}" d="([^"]+)"', chart.marks)
    return found.group(1) if found else None


def segments(d: str) -> list[tuple[str, float, float, float]]:
    """The path's drawing commands in absolute grid units: ("bar", x, base, top) for a
    vertical stroke, ("dot", x, y, y) for a round cap on a tiny horizontal one."""
    x = y = 0.0
    drawn = []
    for command, numbers in re.findall(r"([MmVh])([^MmVh]*)", d):  # a dot is "h.1"
        values = [float(n) for n in re.findall(r"-?[\d.]+", numbers)]
        if command == "M":
            x, y = values
        elif command == "m":
            x, y = x + values[0], y + values[1]
        elif command == "V":
            drawn.append(("bar", x, y, values[0]))
            y = values[0]
        elif command == "h":
            drawn.append(("dot", x, y, y))
            x += values[0]
    return drawn


def bars(chart: charts.Chart, css: str) -> list[tuple[float, float]]:
    """(slot index, height in plot pixels) of each bar of one series."""
    d = path_data(chart, css)
    scale = charts.PLOT_HEIGHT / charts.Y_UNITS
    return [
        ((x - 1) / 2, (base - top) * scale)
        for kind, x, base, top in segments(d or "")
        if kind == "bar"
    ]


def test_throughput_stacks_outcomes_in_proportion():
    chart = charts.for_history(
        history(slot(0, succeeded=6, failed=2), slot(1), slot(2, cancelled=1))
    )[0]
    assert not chart.empty
    (succeeded,) = bars(chart, "succeeded")
    (failed,) = bars(chart, "failed")
    (cancelled,) = bars(chart, "cancelled")
    assert succeeded[0] == failed[0] == 0 and cancelled[0] == 2
    assert succeeded[1] == pytest.approx(3 * failed[1], abs=0.2)
    # The axis tops out at the next round number above the busiest slot (8 -> 10).
    assert succeeded[1] + failed[1] == pytest.approx(charts.PLOT_HEIGHT * 8 / 10, abs=0.2)
    assert [label for _, label in chart.y_ticks] == ["0", "5", "10"]


def test_retries_are_their_own_series_over_the_bars():
    chart = charts.for_history(
        history(slot(0, failed=17), slot(1, succeeded=2, retried=14), slot(2, succeeded=3))
    )[0]
    assert ("Retried", "retried") in chart.legend
    dots = segments(path_data(chart, "retried"))
    assert [(kind, (x - 1) / 2) for kind, x, _, _ in dots] == [("dot", 1)]
    # At the height of 14 on an axis to 20, beside the 17 failures of the slot before.
    assert dots[0][2] == pytest.approx(charts.Y_UNITS * (1 - 14 / 20), abs=1)
    assert bars(chart, "failed")[0][1] == pytest.approx(charts.PLOT_HEIGHT * 17 / 20, abs=0.2)


def test_slot_data_carries_each_slots_numbers_for_the_hover_text():
    data = json.loads(
        charts.slot_data(history(slot(0, 3, succeeded=6, failed=2, retried=1), slot(1)))
    )
    assert data["labels"] == [
        charts.timezone.localtime(START + timedelta(minutes=n)).strftime("%H:%M") for n in (0, 1)
    ]
    first, empty = data["rows"]
    assert first[:4] == [6, 2, 0, 1]
    assert first[4:6] == [None, None]  # no queue waits recorded in this slot
    assert 50 <= first[6] <= 100 and 50 <= first[7] <= 100  # bucket 3: 50-100 ms, in ms
    assert empty == []


def test_failure_rate_has_a_bar_only_where_jobs_failed():
    chart = charts.for_history(history(slot(0, succeeded=3, failed=1), slot(1, succeeded=5)))[1]
    assert len(bars(chart, "failed")) == 1


def test_durations_join_neighbouring_slots_and_mark_lone_ones():
    chart = charts.for_history(
        history(slot(0, 3, succeeded=2), slot(1, 3, succeeded=1), slot(2), slot(3, 7, failed=1))
    )[3]  # run time
    lines = re.findall(r'<path class="(p\d+) line" d="M([\d.]+) [\d.]+l([^"]+)"', chart.marks)
    assert sorted(css for css, _, _ in lines) == ["p50", "p95"]
    # From the first slot's middle, one step (dx, dy) to the second's.
    assert all(start == "1" and len(re.findall(r"-?\d+", rest)) == 2 for _, start, rest in lines)
    dots = re.findall(r'<circle class="(p\d+)" cx="([\d.]+)"', chart.marks)
    step = charts.PLOT_WIDTH / 4
    assert sorted(css for css, _ in dots) == ["p50", "p95"]
    assert [float(x) for _, x in dots] == pytest.approx([charts.LEFT + 3.5 * step] * 2, abs=0.1)


def test_an_empty_history_says_so():
    drawn = charts.for_history(history(slot(0), slot(1)))
    assert all(chart.empty for chart in drawn)
    assert all("<path" not in chart.marks for chart in drawn)


def fits(label: str) -> bool:
    return len(label) * CHAR_WIDTH <= charts.LEFT - 4  # right-aligned 4 px left of the plot


@given(
    low=st.integers(0, len(DURATION_BOUNDS) - 1),
    high=st.integers(0, len(DURATION_BOUNDS)),
    count=st.integers(1, 10**7),
)
def test_axis_labels_fit_the_margin_whatever_the_values(low, high, count):
    """The log axis is labelled with round durations (10 ms, 1 s, 1 min, 1 h), never "1 min 40
    s" (clipped to "nin 40 s"), and counts stay short (50k, 2M)."""
    busy = slot(0, min(low, high), succeeded=count)
    busy.wait_buckets[max(low, high)] = count
    drawn = charts.for_history(history(busy, slot(1, max(low, high), failed=1)))
    for chart in drawn:
        labels = [label for _, label in chart.y_ticks]
        assert labels and all(fits(label) for label in labels), (chart.label, labels)
    wait_labels = [label for _, label in drawn[2].y_ticks]
    assert set(wait_labels) <= {charts.duration_tick(t) for t in charts.DURATION_TICKS}
    assert len(wait_labels) <= charts.MAX_Y_TICKS


@pytest.mark.parametrize(
    ("range_slots", "slot_minutes"), [(60, 1), (288, 5), (168, 60)]
)  # the console's 1 h, 24 h and 7 d
def test_every_range_draws_a_bounded_svg(range_slots, slot_minutes):
    """A busy slot everywhere, every outcome, retries and both durations: each chart's marks
    stay within a few hundred points per series and a few bytes per point."""
    slots = []
    for index in range(range_slots):
        made = slot(index * slot_minutes, 5 + index % 9, retried=index % 3,
                    succeeded=900 + index, failed=40 + index % 17, cancelled=9)  # fmt: skip
        made.wait_buckets[index % 16] = 949 + index
        slots.append(made)
    drawn = charts.for_history(history(*slots, slot_minutes=slot_minutes))
    for chart in drawn:
        assert len(chart.marks) <= 14 * 4 * range_slots + 400, chart.label
    assert sum(len(chart.marks) for chart in drawn) <= 40_000
    assert len(charts.slot_data(history(*slots, slot_minutes=slot_minutes))) <= 64 * range_slots
