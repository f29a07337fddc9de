"""Animated GIF, WebP and PNG: when they stay animated (frames and memory within bounds) and
how every frame goes through the same plan."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from jobs.kinds.thumbnails.base import (
    _ANIMATED_FORMATS,
    FORMAT_LABELS,
    Output,
)
from jobs.kinds.thumbnails.checks import (
    _mebibytes,
)
from jobs.kinds.thumbnails.encode import (
    _background,
    _encode,
)
from jobs.kinds.thumbnails.plan import (
    _cascade,
    _decode,
)

# Animated thumbnails hold every frame of every size until encoded: at most this many frames,
# and this much memory for them; beyond either the first frame is used, and the job says so.
# Measured (make bench): a 100-frame 500x500 GIF to 128/256/512 boxes takes 1.7 s and 195 MiB
# animated, 0.15 s and 7 MiB as its first frame; as WebP 2.3 s, APNG 7.6 s, AVIF 19 s. At the
# budget (twice that GIF's held frames) the slowest, AVIF, stays well inside the 300 s task limit.
MAX_FRAMES = 300
ANIMATION_MEMORY_BUDGET = 256 * 1024 * 1024

# Every frame is decoded on the whole canvas, however little of it changes: a file of a few
# hundred bytes can ask for 300 frames of 100 megapixels. Measured: 100 frames of 2000x2000
# (400 million pixels decoded) take 5 s as APNG and 7 s as GIF, so this bound is about 30 s.
ANIMATION_DECODE_BUDGET = 2_000_000_000


def _animation_refusal(
    frames: int,
    canvas: tuple[int, int],
    output_format: str,
    plans: Sequence[tuple[tuple[int, int], tuple[int, int]]],
    max_frames: int,
) -> str | None:
    """Why an animated image gets still thumbnails of its first frame; None if it need not."""
    if frames <= 1:
        return None
    if output_format not in _ANIMATED_FORMATS:
        return f"{FORMAT_LABELS[output_format]} has no animation, so its first frame was used."
    if frames > max_frames:
        return f"Parroter animates at most {max_frames} frames, so its first frame was used."
    if frames * canvas[0] * canvas[1] > ANIMATION_DECODE_BUDGET:
        return (
            f"{frames} frames of {canvas[0]}×{canvas[1]} pixels would take too long to "
            "decode, so its first frame was used."
        )
    # Every frame of every thumbnail is held until it is encoded (RGBA, 4 bytes a pixel).
    pixels = sum(out[0] * out[1] for _, out in set(plans))
    if 4 * pixels * frames > ANIMATION_MEMORY_BUDGET:
        return (
            f"its animated thumbnails would need more than {_mebibytes(ANIMATION_MEMORY_BUDGET)} "
            "MB of memory, so its first frame was used. Smaller sizes will be animated."
        )
    return None


def _render_animation(
    img: Image.Image,
    first: Image.Image,
    plans: Sequence[tuple[tuple[int, int], tuple[int, int]]],
    orientation: int,
    output: Output,
    output_format: str,
) -> dict[tuple[int, int], bytes]:
    """Every frame of every thumbnail, with the source's frame durations and loop count."""
    background = _background(output, output_format)
    frames: dict[tuple[int, int], list[Image.Image]] = {}
    durations = []
    largest = first.size
    for index in range(img.n_frames):
        if index:
            img.seek(index)
            first = _decode(img, largest, orientation)
        durations.append(int(img.info.get("duration") or 100))
        for size, thumb in _cascade(first.convert("RGBA"), plans, background):
            frames.setdefault(size, []).append(thumb)
    loop = img.info.get("loop")  # None: a GIF without a loop count, which plays once
    icc = first.info.get("icc_profile")  # a wide-gamut animation keeps its colours too
    return {
        size: _encode(sequence, output_format, output.quality, icc, background, durations, loop)
        for size, sequence in frames.items()
    }
