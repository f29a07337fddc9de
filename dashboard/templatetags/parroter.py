"""Small formatting filters the job and console pages share."""

import json
from datetime import UTC, datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html

from jobs.kinds import thumbnails
from jobs.units import byte_size

register = template.Library()


@register.filter
def duration(seconds: float | None) -> str:
    """12 ms, 3.4 s, 2 min 5 s, 3 h 20 min: the units an operator reads at a glance."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if minutes < 10 and secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} d {hours % 24} h"


MOMENT_FORMATS = {"minutes": "%Y-%m-%d %H:%M", "seconds": "%Y-%m-%d %H:%M:%S", "day": "%Y-%m-%d"}


def _local(moment: datetime, precision: str) -> str:
    """ "2026-12-04 22:15 CET" in the viewer's zone (the active one), the zone named."""
    local = timezone.localtime(moment)
    zone = local.tzname() or ""
    if zone[:1] in "+-":  # a zone without an abbreviation: "+03"
        zone = f"UTC{zone}"
    shown = local.strftime(MOMENT_FORMATS[precision])
    return shown if precision == "day" else f"{shown} {zone}"


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@register.filter
def when(moment: datetime | None, precision: str = "minutes") -> str:
    """A time in the viewer's zone, the zone named ("2026-12-04 22:15 CET"), UTC on hover."""
    if moment is None:
        return "—"
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        moment.astimezone(UTC).isoformat(),
        _utc(moment),
        _local(moment, precision),
    )


@register.filter
def when_title(moment: datetime | None) -> str:
    """For the hover text of a relative time ("5 min ago"): the moment locally and in UTC."""
    if moment is None:
        return ""
    return f"{_local(moment, 'seconds')} ({_utc(moment)})"


@register.filter
def ago(moment: datetime | None) -> str:
    """How long ago, compactly (3 s ago, 5 min ago, 2 h ago), for dense tables."""
    if moment is None:
        return "—"
    seconds = max((timezone.now() - moment).total_seconds(), 0)
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds // 3600:.0f} h ago"
    return f"{seconds // 86400:.0f} d ago"


@register.filter
def worker_name(worker: str) -> str:
    """celery@worker-3.example.internal -> celery@worker-3: the node name, which tells two
    workers on one host apart, without the host's domain."""
    node, _, host = worker.rpartition("@")
    short = host.split(".", 1)[0]
    return f"{node}@{short}" if node else short or "—"


@register.filter
def worker_anchor(worker: str) -> str:
    """The id of the worker's row in the console's workers table."""
    return "worker-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in worker)


@register.filter
def percent(fraction: float | None) -> str:
    if fraction is None:
        return "—"
    return f"{fraction * 100:.1f} %" if fraction < 0.1 else f"{fraction * 100:.0f} %"


@register.filter
def sizes(params: dict) -> str:
    """The boxes a job asked for, smallest first: 128, 256, 800×600."""
    return ", ".join(
        str(width) if width == height else f"{width}×{height}"
        for width, height in sorted(params.get("sizes", []), key=lambda box: (box[0] * box[1], box))
    )


@register.filter
def choices_text(choices: dict) -> str:
    """A preset's settings in a line: "320, 640, 1280 · WebP, quality 80 · crop"."""
    boxes = [*choices.get("sizes", []), *filter(None, choices.get("custom_sizes", "").split(","))]
    fmt = choices.get("format")
    made = thumbnails.FORMAT_LABELS.get(fmt, "same format")
    if fmt in ("JPEG", "WEBP", "AVIF"):
        made += f", quality {choices.get('quality') or thumbnails.DEFAULT_QUALITY}"
    fit = choices.get("fit") or "fit"
    return " · ".join([", ".join(box.strip() for box in boxes) or "no sizes", made, fit])


@register.filter
def bytes_text(size: int) -> str:
    return byte_size(size)


FIT_WORDS = {
    "fit": "fitted inside",
    "crop": "cropped to fill",
    "smart": "cropped around the subject to fill",
    "pad": "padded to",
}


@register.filter
def output(params: dict) -> str:
    """How a job's thumbnails are made: "WebP, quality 80, cropped to fill the box"."""
    chosen = params.get("output") or {}
    fmt = chosen.get("format")
    parts = [thumbnails.FORMAT_LABELS[fmt] if fmt else "Same format as the image"]
    if fmt in ("JPEG", "WEBP", "AVIF") or (not fmt and chosen):
        parts.append(f"quality {chosen.get('quality', thumbnails.DEFAULT_QUALITY)}")
    parts.append(f"{FIT_WORDS[chosen.get('fit', 'fit')]} the box")
    if chosen.get("fit") == "pad":
        parts.append(
            "transparent padding where possible, else " + chosen["background"]
            if chosen.get("transparent")
            else f"padding {chosen['background']}"
        )
    return ", ".join(parts)


@register.filter
def wait_quantile(slot, q: float) -> float | None:
    return slot.wait_quantile(q)


@register.filter
def run_quantile(slot, q: float) -> float | None:
    return slot.run_quantile(q)


@register.filter
def as_json(value, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, sort_keys=True)
