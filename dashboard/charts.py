"""Server-rendered SVG charts of job history, drawn here as a handful of paths.

No JavaScript chart library, and no template loop per bar either: a week of 5-minute slots is
thousands of bars, so each series is one <path> built here, and each slot with data gets one
invisible hover target carrying its numbers as a tooltip. The browser scales the fixed
viewBox to the card's width.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone
from django.utils.html import escape, format_html_join
from django.utils.safestring import SafeString, mark_safe

from dashboard.templatetags.parroter import duration, percent
from jobs.models import Job
from jobs.selectors import History, Slot

WIDTH, HEIGHT = 480, 150
LEFT, RIGHT, TOP, BOTTOM = 46, 6, 8, 18  # room for the axis labels
PLOT_WIDTH, PLOT_HEIGHT = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
OUTCOMES = [Job.Status.SUCCEEDED, Job.Status.FAILED, Job.Status.CANCELLED]


@dataclass
class Chart:
    label: str
    marks: SafeString = mark_safe("")  # noqa: S308 (empty)
    y_ticks: list[tuple[str, str]] = field(default_factory=list)  # (y, label)
    x_ticks: list[tuple[str, str]] = field(default_factory=list)  # (x, label)
    legend: list[tuple[str, str]] = field(default_factory=list)  # (label, css class)
    empty: bool = False
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right_edge: int = WIDTH - RIGHT
    bottom_edge: int = TOP + PLOT_HEIGHT


@dataclass
class _Bars:
    """Rectangles per css class, drawn as one path each: 'M x y h w v h h -w z' per bar."""

    slot_width: float
    paths: dict[str, list[str]] = field(default_factory=dict)

    def add(self, css: str, index: int, top: float, height: float) -> None:
        x = LEFT + index * self.slot_width
        width = max(self.slot_width - 0.5, 0.5)
        self.paths.setdefault(css, []).append(
            f"M{x:.1f} {top:.1f}h{width:.1f}v{height:.1f}h{-width:.1f}z"
        )

    def svg(self) -> SafeString:
        return format_html_join(
            "", '<path class="{}" d="{}"/>', ((css, "".join(d)) for css, d in self.paths.items())
        )


def for_history(history: History) -> list[Chart]:
    """The console's four charts, sharing the slots' time labels."""
    labels = _labels(history)
    return [
        throughput(history, labels),
        failure_rate(history, labels),
        durations(history, labels, metric="wait"),
        durations(history, labels, metric="run"),
    ]


def throughput(history: History, labels: list[str]) -> Chart:
    """Finished jobs per slot, stacked by outcome."""
    peak = max((slot.finished for slot in history.slots), default=0)
    top = _nice_ceiling(peak)
    bars = _Bars(_slot_width(history))
    for index, slot in enumerate(history.slots):
        base = TOP + PLOT_HEIGHT
        for status in OUTCOMES:
            if count := slot.counts.get(status, 0):
                height = PLOT_HEIGHT * count / top
                base -= height
                bars.add(status, index, base, height)
    texts = [
        ", ".join(f"{slot.counts[s]} {s.label.lower()}" for s in OUTCOMES if slot.counts.get(s))
        for slot in history.slots
    ]
    hover = _hover(history, labels, texts)
    return Chart(
        label="Finished jobs per " + _slot_name(history.slot),
        marks=bars.svg() + hover,
        legend=[(status.label, status.value) for status in OUTCOMES],
        empty=peak == 0,
        y_ticks=[_y_tick(_y_linear(value, top), f"{value:g}") for value in (0, top / 2, top)],
        x_ticks=_x_ticks(history),
    )


def failure_rate(history: History, labels: list[str]) -> Chart:
    """Failed / (succeeded + failed) per slot."""
    rates = [slot.failure_rate for slot in history.slots]
    peak = max((rate for rate in rates if rate is not None), default=None)
    top = max(_nice_ceiling(peak * 100) / 100, 0.01) if peak else 1.0
    bars = _Bars(_slot_width(history))
    for index, rate in enumerate(rates):
        if rate:
            height = PLOT_HEIGHT * rate / top
            bars.add("failed", index, TOP + PLOT_HEIGHT - height, height)
    hover = _hover(history, labels, [f"{percent(rate)} failed" if rate else "" for rate in rates])
    return Chart(
        label="Failure rate",
        marks=bars.svg() + hover,
        empty=peak is None,
        y_ticks=[_y_tick(_y_linear(value, top), percent(value)) for value in (0, top / 2, top)],
        x_ticks=_x_ticks(history),
    )


def durations(history: History, labels: list[str], *, metric: str) -> Chart:
    """p50 and p95 of queue wait (metric="wait") or run time ("run") per slot, on a log
    scale: a 10 ms job and an hour-long backlog fit in one picture. A slot with no finished
    job breaks the line; a value with no neighbour is a dot."""
    quantile: Callable[[Slot, float], float | None] = (
        Slot.wait_quantile if metric == "wait" else Slot.run_quantile
    )
    series = {q: [quantile(slot, q) for slot in history.slots] for q in (0.5, 0.95)}
    values = [value for points in series.values() for value in points if value]
    low = 10 ** math.floor(math.log10(min(values, default=0.01)))
    high = 10 ** math.ceil(math.log10(max(max(values, default=1.0), low * 10)))
    step = _slot_width(history)
    lines, dots = [], []
    for q, points in series.items():
        css = "p50" if q == 0.5 else "p95"
        for run in _runs(points):
            spots = [(LEFT + (i + 0.5) * step, _y_log(value, low, high)) for i, value in run]
            if len(spots) == 1:
                dots.append((css, f"{spots[0][0]:.1f}", f"{spots[0][1]:.1f}"))
            else:
                lines.append((css, " ".join(f"{x:.1f},{y:.1f}" for x, y in spots)))

    texts = [
        f"p50 {duration(p50)}, p95 {duration(p95)}" if p50 is not None else ""
        for p50, p95 in zip(series[0.5], series[0.95], strict=True)
    ]
    marks = (
        format_html_join("", '<polyline class="{}" points="{}"/>', lines)
        + format_html_join("", '<circle class="{}" cx="{}" cy="{}" r="3"/>', dots)
        + _hover(history, labels, texts)
    )
    decades = range(round(math.log10(low)), round(math.log10(high)) + 1)
    label = "Queue wait" if metric == "wait" else "Run time"
    return Chart(
        label=f"{label}, p50 and p95",
        marks=marks,
        legend=[("p50", "p50"), ("p95", "p95")],
        empty=not values,
        y_ticks=[_y_tick(_y_log(10**power, low, high), duration(10**power)) for power in decades],
        x_ticks=_x_ticks(history),
    )


def _hover(history: History, labels: list[str], texts: list[str]) -> SafeString:
    """An invisible full-height target per slot that has something to say, with a tooltip.
    (Plain strings escaped once: format_html per target cost more than the chart itself.)"""
    width = _slot_width(history)
    return mark_safe(  # noqa: S308 (numbers we format; the only text is escaped)
        "".join(
            f'<rect class="hover" x="{LEFT + index * width:.1f}" y="{TOP}" width="{width:.2f}" '
            f'height="{PLOT_HEIGHT}"><title>{escape(f"{label}: {text}")}</title></rect>'
            for index, (label, text) in enumerate(zip(labels, texts, strict=True))
            if text
        )
    )


def _labels(history: History) -> list[str]:
    fmt = "%a %d %H:%M" if history.window > timedelta(days=1) else "%H:%M"
    return [timezone.localtime(slot.start).strftime(fmt) for slot in history.slots]


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


def _slot_width(history: History) -> float:
    return PLOT_WIDTH / len(history.slots)


def _y_linear(value: float, top: float) -> float:
    return TOP + PLOT_HEIGHT * (1 - value / top)


def _y_log(value: float, low: float, high: float) -> float:
    span = math.log10(high) - math.log10(low)
    return TOP + PLOT_HEIGHT * (1 - (math.log10(value) - math.log10(low)) / span)


def _y_tick(y: float, text: str) -> tuple[str, str]:
    return f"{y:.1f}", text


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
    return [
        (
            f"{LEFT + index * _slot_width(history):.1f}",
            timezone.localtime(history.slots[index].start).strftime(fmt),
        )
        for index in range(0, count, every)
    ]


def _slot_name(slot: timedelta) -> str:
    minutes = int(slot.total_seconds() // 60)
    return "minute" if minutes == 1 else f"{minutes} minutes" if minutes < 60 else "hour"
