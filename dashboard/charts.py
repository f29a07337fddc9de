"""Server-rendered SVG charts of job history: geometry here, markup in ops/_chart.html.

No JavaScript chart library: a chart is a few dozen rects or one polyline per series, drawn
in a fixed viewBox that the browser scales to the card's width.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone

from dashboard.templatetags.parroter import duration, percent
from jobs.models import Job
from jobs.selectors import History, Slot

WIDTH, HEIGHT = 480, 150
LEFT, RIGHT, TOP, BOTTOM = 46, 6, 8, 18  # room for the axis labels
PLOT_WIDTH, PLOT_HEIGHT = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
OUTCOMES = [Job.Status.SUCCEEDED, Job.Status.FAILED, Job.Status.CANCELLED]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True)
class Line:
    points: str
    css: str


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    css: str
    title: str


@dataclass
class Chart:
    label: str
    bars: list[Bar] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    dots: list[Dot] = field(default_factory=list)  # values with no neighbour to join
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)
    empty: bool = False
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right_edge: int = WIDTH - RIGHT
    bottom_edge: int = TOP + PLOT_HEIGHT


def throughput(history: History) -> Chart:
    """Finished jobs per slot, stacked by outcome."""
    peak = max((slot.finished for slot in history.slots), default=0)
    top = _nice_ceiling(peak)
    chart = Chart(
        label="Finished jobs per " + _slot_name(history.slot),
        legend=[(status.label, status.value) for status in OUTCOMES],
        empty=peak == 0,
    )
    width = PLOT_WIDTH / len(history.slots)
    for index, slot in enumerate(history.slots):
        base = TOP + PLOT_HEIGHT
        for status in OUTCOMES:
            count = slot.counts.get(status, 0)
            if not count:
                continue
            height = PLOT_HEIGHT * count / top
            base -= height
            chart.bars.append(
                Bar(
                    x=LEFT + index * width,
                    y=base,
                    width=max(width - 0.5, 0.5),
                    height=height,
                    css=status,
                    title=f"{_when(slot, history)}: {count} {status.label.lower()}",
                )
            )
    chart.y_ticks = [(_y_linear(value, top), f"{value:g}") for value in (0, top / 2, top)]
    chart.x_ticks = _x_ticks(history)
    return chart


def failure_rate(history: History) -> Chart:
    """Failed / (succeeded + failed) per slot."""
    rates = [slot.failure_rate for slot in history.slots]
    peak = max((rate for rate in rates if rate is not None), default=None)
    top = max(_nice_ceiling(peak * 100) / 100, 0.01) if peak else 1.0
    chart = Chart(label="Failure rate", empty=peak is None)
    width = PLOT_WIDTH / len(history.slots)
    for index, (slot, rate) in enumerate(zip(history.slots, rates, strict=True)):
        if rate:
            height = PLOT_HEIGHT * rate / top
            chart.bars.append(
                Bar(
                    x=LEFT + index * width,
                    y=TOP + PLOT_HEIGHT - height,
                    width=max(width - 0.5, 0.5),
                    height=height,
                    css="failed",
                    title=f"{_when(slot, history)}: {percent(rate)} failed",
                )
            )
    chart.y_ticks = [(_y_linear(value, top), percent(value)) for value in (0, top / 2, top)]
    chart.x_ticks = _x_ticks(history)
    return chart


def durations(history: History, *, metric: str) -> Chart:
    """p50 and p95 of queue wait (metric="wait") or run time ("run") per slot, on a log
    scale: a 10 ms job and an hour-long backlog fit in one picture."""
    quantile: Callable[[Slot, float], float | None] = (
        Slot.wait_quantile if metric == "wait" else Slot.run_quantile
    )
    series = {q: [quantile(slot, q) for slot in history.slots] for q in (0.5, 0.95)}
    values = [value for points in series.values() for value in points if value]
    label = "Queue wait" if metric == "wait" else "Run time"
    chart = Chart(
        label=f"{label}, p50 and p95",
        legend=[("p50", "p50"), ("p95", "p95")],
        empty=not values,
    )
    low = 10 ** math.floor(math.log10(min(values, default=0.01)))
    high = 10 ** math.ceil(math.log10(max(max(values, default=1.0), low * 10)))
    step = PLOT_WIDTH / len(history.slots)
    for q, points in series.items():
        css = "p50" if q == 0.5 else "p95"
        for run in _runs(points):
            spots = [(LEFT + (i + 0.5) * step, _y_log(value, low, high)) for i, value in run]
            if len(run) == 1:
                index, value = run[0]
                title = f"{_when(history.slots[index], history)}: {css} {duration(value)}"
                chart.dots.append(Dot(x=spots[0][0], y=spots[0][1], css=css, title=title))
            else:
                points_text = " ".join(f"{x:.1f},{y:.1f}" for x, y in spots)
                chart.lines.append(Line(points=points_text, css=css))
    decades = range(round(math.log10(low)), round(math.log10(high)) + 1)
    chart.y_ticks = [(_y_log(10**power, low, high), duration(10**power)) for power in decades]
    chart.x_ticks = _x_ticks(history)
    return chart


def _runs(points: list[float | None]) -> list[list[tuple[int, float]]]:
    """Consecutive slots that have a value: a slot with no jobs breaks the line."""
    runs: list[list[tuple[int, float]]] = [[]]
    for index, value in enumerate(points):
        if value is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((index, max(value, 1e-3)))
    return [run for run in runs if run]


def _y_linear(value: float, top: float) -> float:
    return TOP + PLOT_HEIGHT * (1 - value / top)


def _y_log(value: float, low: float, high: float) -> float:
    span = math.log10(high) - math.log10(low)
    return TOP + PLOT_HEIGHT * (1 - (math.log10(value) - math.log10(low)) / span)


def _nice_ceiling(value: float) -> float:
    """The next 1, 2 or 5 × 10^n at or above value (at least 1): round axis labels."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    return next(step * magnitude for step in (1, 2, 5, 10) if step * magnitude >= value)


def _x_ticks(history: History) -> list[tuple[float, str]]:
    count = len(history.slots)
    step = PLOT_WIDTH / count
    every = max(count // 6, 1)
    fmt = "%a %d" if history.window > timedelta(days=1) else "%H:%M"
    return [
        (LEFT + index * step, timezone.localtime(history.slots[index].start).strftime(fmt))
        for index in range(0, count, every)
    ]


def _when(slot: Slot, history: History) -> str:
    return timezone.localtime(slot.start).strftime(
        "%a %d %H:%M" if history.window > timedelta(days=1) else "%H:%M"
    )


def _slot_name(slot: timedelta) -> str:
    minutes = int(slot.total_seconds() // 60)
    return "minute" if minutes == 1 else f"{minutes} minutes" if minutes < 60 else "hour"
