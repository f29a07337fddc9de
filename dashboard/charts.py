"""Server-rendered SVG charts of job history, drawn here as a handful of paths.

No JavaScript chart library, and no template loop per bar either: each series is one <path> or
<path> built here. Marks are drawn in a grid of whole numbers (two units per slot across,
1000 down the plot) that one transform scales to the plot, so a day of 5-minute slots costs a
few bytes per bar whatever the range. The numbers behind each slot go to the page once, as
JSON (slot_data), and static/dashboard/ops.js shows them where the pointer is: the four charts
of a day used to carry 1,152 hover targets with a <title> each, 175 KB of the page.
"""

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from dashboard.templatetags.parroter import duration, percent
from jobs.history import History, Slot
from jobs.models import Job

WIDTH, HEIGHT = 480, 150
LEFT, RIGHT, TOP, BOTTOM = 46, 6, 8, 18  # room for the axis labels
PLOT_WIDTH, PLOT_HEIGHT = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
OUTCOMES = [Job.Status.SUCCEEDED, Job.Status.FAILED, Job.Status.CANCELLED]
# The marks' grid: x = 2 * slot + 1 is a slot's middle, y runs from 0 (top) to Y_UNITS (bottom).
Y_UNITS = 1000
# Ticks of the duration axis: round values whose labels fit the left margin.
DURATION_TICKS = (0.001, 0.01, 0.1, 1, 10, 60, 600, 3600, 36000)
MAX_Y_TICKS = 5


@dataclass
class Chart:
    name: str  # what ops.js shows for a slot: throughput, failures, wait or run
    label: str
    marks: SafeString = mark_safe("")  # noqa: S308 (empty)
    y_ticks: list[tuple[str, str]] = field(default_factory=list)  # (y, label)
    x_ticks: list[tuple[str, str]] = field(default_factory=list)  # (x, label)
    legend: list[tuple[str, str]] = field(default_factory=list)  # (label, css class)
    empty: bool = False
    slots: int = 0
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    plot_width: int = PLOT_WIDTH
    plot_height: int = PLOT_HEIGHT
    right_edge: int = WIDTH - RIGHT
    bottom_edge: int = TOP + PLOT_HEIGHT


class _Path:
    """One path's data in the grid, in relative moves: a bar is 'm2 380V600' (from the last
    point to the bar's base, then up to its top) and a dot 'm2-15h.1' (a round cap on a tenth of a
    unit): 8-11 bytes a slot where a rectangle took 25."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.at: tuple[float, float] | None = None

    def _move(self, x: int, y: int) -> str:
        if self.at is None:
            return f"M{x} {y}"
        return f"m{x - self.at[0]:g}{_signed(y - self.at[1])}"

    def bar(self, x: int, base: int, top: int) -> None:
        self.parts.append(f"{self._move(x, base)}V{top}")
        self.at = (x, top)

    def dot(self, x: int, y: int) -> None:
        # Not h0: Chromium draws no cap on a zero-length segment with a non-scaling stroke.
        self.parts.append(f"{self._move(x, y)}h.1")
        self.at = (x + 0.1, y)

    @property
    def path(self) -> str:
        return "".join(self.parts)


def _line(points: list[tuple[int, int]]) -> str:
    """A polyline as path data: 'M1 620l2-20 2 10' (each point relative to the one before)."""
    (x0, y0), *rest = points
    steps = [f"{x - px}{_signed(y - py)}" for (px, py), (x, y) in zip(points, rest, strict=False)]
    return f"M{x0} {y0}l" + " ".join(steps)


def _signed(number: float) -> str:
    """A path number after another: a minus sign separates it, else a space."""
    return f"{number:g}" if number < 0 else f" {number:g}"


def _grid(history: History, content: str) -> SafeString:
    """Marks drawn in the grid, scaled onto the plot."""
    across = PLOT_WIDTH / (2 * len(history.slots))
    return format_html(
        '<g transform="translate({} {}) scale({} {})">{}</g>',
        LEFT, TOP, f"{across:.6g}", f"{PLOT_HEIGHT / Y_UNITS:.6g}", content,
    )  # fmt: skip


def _y(value: float, top: float) -> int:
    return round(Y_UNITS * (1 - value / top))


def for_history(history: History) -> list[Chart]:
    """The console's four charts, sharing the slots' time labels."""
    x_ticks = _x_ticks(history)
    charts = [
        throughput(history),
        failure_rate(history),
        durations(history, metric="wait"),
        durations(history, metric="run"),
    ]
    for chart in charts:
        chart.x_ticks, chart.slots = x_ticks, len(history.slots)
    return charts


def throughput(history: History) -> Chart:
    """Finished attempts per slot, stacked by outcome, and the jobs retried in each slot as a
    dot at their own height: 17 failed, then 14 retried, reads as such."""
    peak = max((max(slot.finished, slot.retried) for slot in history.slots), default=0)
    top = _nice_ceiling(peak)
    paths = {status: _Path() for status in OUTCOMES}
    retried = _Path()
    for index, slot in enumerate(history.slots):
        x, base, stacked = 2 * index + 1, Y_UNITS, 0
        for status in OUTCOMES:
            if count := slot.counts.get(status, 0):
                stacked += count
                # At least one unit high: a single failure among thousands still shows.
                end = min(_y(stacked, top), base - 1)
                paths[status].bar(x, base, end)
                base = end
        if slot.retried:
            retried.dot(x, _y(slot.retried, top))
    bars = format_html_join(
        "", '<path class="{}" d="{}"/>', ((css, d.path) for css, d in paths.items() if d.path)
    )
    dots = format_html('<path class="retried" d="{}"/>', retried.path) if retried.path else ""
    return Chart(
        name="throughput",
        label="Finished jobs per " + slot_name(history.slot),
        marks=_grid(history, format_html('<g class="bars">{}</g>{}', bars, dots)),
        legend=[
            *((status.label, status.value) for status in OUTCOMES),
            ("Retried", "retried"),
        ],
        empty=peak == 0,
        y_ticks=[_y_tick(_y_pixels(value, top), _count(value)) for value in (0, top / 2, top)],
    )


def failure_rate(history: History) -> Chart:
    """Failed / (succeeded + failed) per slot."""
    rates = [slot.failure_rate for slot in history.slots]
    peak = max((rate for rate in rates if rate is not None), default=None)
    top = max(_nice_ceiling(peak * 100) / 100, 0.01) if peak else 1.0
    bars = _Path()
    for index, rate in enumerate(rates):
        if rate:
            bars.bar(2 * index + 1, Y_UNITS, min(_y(rate, top), Y_UNITS - 1))
    marks = format_html('<g class="bars"><path class="failed" d="{}"/></g>', bars.path)
    return Chart(
        name="failures",
        label="Failure rate",
        marks=_grid(history, marks) if bars.path else mark_safe(""),  # noqa: S308 (empty)
        empty=peak is None,
        y_ticks=[
            _y_tick(_y_pixels(value, top), percent(value) if value else "0 %")
            for value in (0, top / 2, top)
        ],
    )


def durations(history: History, *, metric: str) -> Chart:
    """p50 and p95 of queue wait (metric="wait") or run time ("run") per slot, on a log
    scale: a 10 ms job and an hour-long backlog fit in one picture. A slot with no finished
    job breaks the line; a value with no neighbour is a dot."""
    quantile: Callable[[Slot, float], float | None] = (
        Slot.wait_quantile if metric == "wait" else Slot.run_quantile
    )
    series = {q: [quantile(slot, q) for slot in history.slots] for q in (0.5, 0.95)}
    values = [max(v, DURATION_TICKS[0]) for points in series.values() for v in points if v]
    low, high = _log_range(values)
    span = math.log10(high / low)

    def y(value: float) -> int:
        return round(Y_UNITS * (1 - math.log10(max(value, low) / low) / span))

    lines, dots = [], []
    step = PLOT_WIDTH / len(history.slots)
    for q, points in series.items():
        css = "p50" if q == 0.5 else "p95"
        for run in _runs(points):
            if len(run) == 1:
                index, value = run[0]
                top = TOP + PLOT_HEIGHT * y(value) / Y_UNITS
                dots.append((css, f"{LEFT + (index + 0.5) * step:.1f}", f"{top:.1f}"))
            else:
                lines.append((css, _line([(2 * i + 1, y(value)) for i, value in run])))
    marks = _grid(history, format_html_join("", '<path class="{} line" d="{}"/>', lines))
    marks += format_html_join("", '<circle class="{}" cx="{}" cy="{}" r="3"/>', dots)
    ticks = [tick for tick in DURATION_TICKS if low <= tick <= high]
    if len(ticks) > MAX_Y_TICKS:  # keep the ends, thin the middle
        ticks = ticks[:: math.ceil((len(ticks) - 1) / (MAX_Y_TICKS - 1))] + [ticks[-1]]
        ticks = list(dict.fromkeys(ticks))
    label = "Queue wait" if metric == "wait" else "Run time"
    return Chart(
        name=metric,
        label=f"{label}, p50 and p95",
        marks=marks if values else mark_safe(""),  # noqa: S308 (empty)
        legend=[("p50", "p50"), ("p95", "p95")],
        empty=not values,
        y_ticks=[
            _y_tick(TOP + PLOT_HEIGHT * y(tick) / Y_UNITS, duration_tick(tick)) for tick in ticks
        ],
    )


def _log_range(values: list[float]) -> tuple[float, float]:
    """The duration ticks just below the smallest value and just above the largest (at least
    a decade apart), so the axis is labelled at both ends."""
    if not values:
        return 0.01, 1.0
    low = max((tick for tick in DURATION_TICKS if tick <= min(values)), default=DURATION_TICKS[0])
    high = min(
        (tick for tick in DURATION_TICKS if tick >= max(max(values), low * 10)),
        default=DURATION_TICKS[-1],
    )
    return low, high


def duration_tick(seconds: float) -> str:
    """A round duration as the axis says it: 10 ms, 1 s, 1 min, 10 min, 1 h (the console's
    units, without the decimal it gives seconds under ten)."""
    return duration(seconds).replace(".0 s", " s")


SPARK_HEIGHT = 24


def sparkline(counts: list[int], *, slot: str) -> SafeString:
    """A failure group's trend: one bar per slot, scaled to its own peak (the count is beside
    it in words), oldest on the left. Numbers only, made here: plain formatting is safe, and
    format_html per bar cost ~15 ms for a page of weeks of hourly bars."""
    peak = max(counts, default=0) or 1
    width = 2 if len(counts) > 60 else 4
    bars = "".join(
        f'<rect x="{index * width}" y="{SPARK_HEIGHT - height}" width="{max(width - 1, 1)}" '
        f'height="{height}"></rect>'
        for index, count in enumerate(counts)
        if count and (height := max(1, round(SPARK_HEIGHT * count / peak)))
    )
    label = f"Failures per {slot}, the last {len(counts)} {slot}s: at most {max(counts, default=0)}"
    return format_html(
        '<svg class="spark" width="{}" height="{}" viewBox="0 0 {} {}" role="img" '
        'aria-label="{}"><title>{}</title>{}</svg>',
        len(counts) * width, SPARK_HEIGHT, len(counts) * width, SPARK_HEIGHT, label, label,
        mark_safe(bars),  # noqa: S308 - numbers made above
    )  # fmt: skip


def slot_data(history: History) -> str:
    """What ops.js shows for each slot, as JSON: the slots' time labels, and per slot
    [succeeded, failed, cancelled, retried, wait p50, wait p95, run p50, run p95] (durations in
    milliseconds to two significant digits, as precise as quantiles interpolated in histogram
    buckets are; trailing empties left out)."""
    rows = []
    for slot in history.slots:
        row = [slot.counts.get(status, 0) for status in OUTCOMES] + [slot.retried]
        if slot.finished:
            row += [
                _rounded(value)
                for value in (
                    slot.wait_quantile(0.5), slot.wait_quantile(0.95),
                    slot.run_quantile(0.5), slot.run_quantile(0.95),
                )
            ]  # fmt: skip
        while row and not row[-1]:
            row.pop()
        rows.append(row)
    return json.dumps({"labels": _labels(history), "rows": rows}, separators=(",", ":"))


def _rounded(value: float | None) -> int | None:
    if value is None:
        return None
    return int(float(f"{value * 1000:.2g}"))


def _labels(history: History) -> list[str]:
    fmt = "%a %d %H:%M" if history.window > timedelta(days=1) else "%H:%M"
    zone = timezone.get_current_timezone()  # once, not per slot (timezone.localtime asks each time)
    return [slot.start.astimezone(zone).strftime(fmt) for slot in history.slots]


def _runs(points: list[float | None]) -> list[list[tuple[int, float]]]:
    """Consecutive slots that have a value."""
    runs: list[list[tuple[int, float]]] = [[]]
    for index, value in enumerate(points):
        if value is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((index, max(value, 1e-3)))
    return [run for run in runs if run]


def _y_pixels(value: float, top: float) -> float:
    return TOP + PLOT_HEIGHT * (1 - value / top)


def _y_tick(y: float, text: str) -> tuple[str, str]:
    return f"{y:.1f}", text


def _count(value: float) -> str:
    """An axis count short enough for the margin: 5, 2,500, 50k, 2M."""
    if value >= 1e6:
        return f"{value / 1e6:g}M"
    if value >= 1e4:
        return f"{value / 1e3:g}k"
    return f"{value:,.0f}" if value == int(value) else f"{value:g}"


def _nice_ceiling(value: float) -> float:
    """The next 1, 2 or 5 × 10^n at or above value (at least 1): round axis labels."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    return next(step * magnitude for step in (1, 2, 5, 10) if step * magnitude >= value)


def _x_ticks(history: History) -> list[tuple[str, str]]:
    count = len(history.slots)
    every = max(count // 6, 1)
    fmt = "%a %d" if history.window > timedelta(days=1) else "%H:%M"
    step = PLOT_WIDTH / count
    return [
        (
            f"{LEFT + index * step:.1f}",
            timezone.localtime(history.slots[index].start).strftime(fmt),
        )
        for index in range(0, count, every)
    ]


def slot_name(slot: timedelta) -> str:
    minutes = int(slot.total_seconds() // 60)
    return "minute" if minutes == 1 else f"{minutes} minutes" if minutes < 60 else "hour"
