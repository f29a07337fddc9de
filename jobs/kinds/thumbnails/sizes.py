"""The sizes a job asks for: "256" or "800x600", checked."""

from __future__ import annotations

import re
from collections.abc import Sequence

from jobs.kinds.thumbnails.base import (
    Box,
    ThumbnailError,
)

# At most 9 digits: int() refuses very long digit strings with a ValueError of its own.
_BOX_PATTERN = re.compile(r"\s*(-?[0-9]{1,9})\s*(?:[xX]\s*(-?[0-9]{1,9})\s*)?")


def parse_box(text: str, *, max_edge: int) -> Box:
    """Parse "256" (a square) or "800x600" into a Box with both sides in 1..max_edge."""
    match = _BOX_PATTERN.fullmatch(text)
    if match is None:
        shown = text.strip()
        shown = shown if len(shown) <= 20 else shown[:20] + "…"
        raise ThumbnailError(f"{shown!r} is not a size: use 256 or 800x600.")
    width = int(match[1])
    height = int(match[2]) if match[2] is not None else width
    if not (1 <= width <= max_edge and 1 <= height <= max_edge):
        raise ThumbnailError(
            f"Size {width}x{height}: width and height must be between 1 and {max_edge} pixels."
        )
    return Box(width, height)


def _check_boxes(boxes: Sequence[Box]) -> None:
    if not boxes:
        raise ThumbnailError("Choose at least one thumbnail size.")
    if len(set(boxes)) != len(boxes):
        twice = next(box for box in boxes if boxes.count(box) > 1)
        raise ThumbnailError(f"Size {twice.label} is requested twice; ask for each size once.")
