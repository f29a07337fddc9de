"""The resize plan: what each box and fit mode cuts or pads from the image scaled how far, the
decode at the smallest scale that covers it, EXIF orientation, and the cascade of sizes."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from PIL import Image

from jobs.kinds.thumbnails import attention
from jobs.kinds.thumbnails.base import (
    _DECODE_ERRORS,
    CROPS,
    Box,
)
from jobs.kinds.thumbnails.encode import (
    _in_mode,
    _matching_icc,
    _normalise_mode,
)

# The first step, from the decoded image to the largest thumbnail. A JPEG is drafted to the
# smallest DCT scale not below the output size, which leaves a < 2x step; a 2x margin (a 1/2
# instead of a 1/4 scale for 12 MP -> 512) cost 40% more time for the same PSNR. That short step
# is most of the kind's work after decoding, so it takes Pillow's cheapest averaging filter: BOX
# (an area average, as reduce() and the cascade are) takes 2.8 ms for 1000x750 -> 512x384,
# BILINEAR 4.3, BICUBIC 6.9, LANCZOS 9.8; after JPEG encoding BOX is 0.14 dB below BILINEAR at
# 512 px (0.04 at 128) and 0.2 dB below the tutorial's BICUBIC (bench/thumbnails.py). Formats
# without draft() first reduce() by an integer box filter down to a 3x step; Pillow documents a
# reducing_gap >= 3 as indistinguishable from resampling the whole way.
# (the image scaled, the piece cut from it) -> the centre of that piece, as fractions.
Placement = Callable[[tuple[int, int], tuple[int, int]], tuple[float, float]]

_FIRST_STEP_FILTER = Image.Resampling.BOX
_REDUCING_GAP = 3.0

# Each smaller thumbnail from the previous one: the integer part of the step by reduce() (a
# 2x2 box average for the usual halving, ~15x cheaper than LANCZOS), the rest by LANCZOS.
# Measured 0.1 dB below pure LANCZOS, 2 ms faster per 12 MP photo (bench/thumbnails.py).
_CASCADE_REDUCING_GAP = 1.0
_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = frozenset({5, 6, 7, 8})

# An EXIF block of a JPEG fits one 64 KiB segment; a larger one (PNG, WebP) would cost Pillow
# a Python int per number it holds, so its orientation is ignored.
_MAX_EXIF_BYTES = 65535


def _in_box_order(
    encoded: dict[tuple[int, int], bytes], plans: Sequence[tuple[tuple[int, int], tuple[int, int]]]
) -> dict[tuple[int, int], bytes]:
    return {out: encoded[out] for _, out in plans if out in encoded}


def _plan(size: tuple[int, int], box: Box, fit: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """(the whole image scaled, the thumbnail cut or padded from it) for one box and fit mode."""
    if fit in CROPS:
        # Cover the box, then cut a piece of it (its centre, its subject or the owner's focal
        # point: _placement). Never enlarged: an image smaller than the box gives the largest
        # piece of the box's shape it holds.
        width, height = size
        scale = min(max(box.width / width, box.height / height), 1.0)
        scaled = (max(1, round(width * scale)), max(1, round(height * scale)))
        k = min(scaled[0] / box.width, scaled[1] / box.height, 1.0)
        cut = (
            min(scaled[0], max(1, round(box.width * k))),
            min(scaled[1], max(1, round(box.height * k))),
        )
        return scaled, cut
    scaled = _fit(size, box)
    return scaled, ((box.width, box.height) if fit == "pad" else scaled)


def _placement(first: Image.Image, fit: str, focus: tuple[float, float] | None) -> Placement | None:
    """Where each crop of this image is centred: the owner's focal point, else (smart) the
    window that holds the most of its interest, found once on `first`; None: the centre."""
    if fit not in CROPS:
        return None
    if focus is not None:
        return lambda _scaled, _cut: focus
    if fit == "smart":
        return attention.interest(first).centre
    return None


def _cascade(
    first: Image.Image,
    plans: Sequence[tuple[tuple[int, int], tuple[int, int]]],
    background: tuple[int, ...] | None,
    placement: Placement | None = None,
) -> Iterator[tuple[tuple[int, int], Image.Image]]:
    """Each distinct thumbnail, largest first, each scaled from the one before it."""
    outputs: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for scaled, out in plans:
        if all(out not in sizes for sizes in outputs.values()):
            outputs.setdefault(scaled, []).append(out)
    current = first
    # Every scaled size has the image's aspect ratio, so sorting by width orders them by scale.
    for scaled in sorted(outputs, reverse=True):
        if current.size != scaled:
            current = current.resize(
                scaled, Image.Resampling.LANCZOS, reducing_gap=_CASCADE_REDUCING_GAP
            )
        for out in outputs[scaled]:
            centre = placement(scaled, out) if placement else None
            yield out, _shape(current, out, background, centre)


def _shape(
    img: Image.Image,
    out: tuple[int, int],
    background: tuple[int, ...] | None,
    centre: tuple[float, float] | None = None,
) -> Image.Image:
    """Cut `out` from `img` around `centre` (fractions of it; None: its centre), or centre `img`
    on a canvas of `out` (pad)."""
    if img.size == out:
        return img
    left, top = (img.width - out[0]) // 2, (img.height - out[1]) // 2
    if out[0] <= img.width and out[1] <= img.height:
        if centre is not None:  # kept inside the image
            left = min(max(round(centre[0] * img.width - out[0] / 2), 0), img.width - out[0])
            top = min(max(round(centre[1] * img.height - out[1] / 2), 0), img.height - out[1])
        return img.crop((left, top, left + out[0], top + out[1]))
    if background is None:  # transparent: the format keeps an alpha channel
        mode = "LA" if img.mode in ("L", "LA") else "RGBA"
        canvas = Image.new(mode, out, (0,) * len(mode))
    else:
        canvas = Image.new(img.mode, out, _in_mode(background, img.mode))
    canvas.paste(img, (-left, -top))
    canvas.info = dict(img.info)
    return canvas


def _orientation(img: Image.Image) -> int:
    """EXIF orientation 1..8, read from the header; a broken EXIF block counts as 1."""
    # PngImageFile.getexif() decodes the whole image to look for an eXIf chunk after the pixels.
    if img.format == "PNG" and "exif" not in img.info:
        return 1
    if len(img.info.get("exif", b"")) > _MAX_EXIF_BYTES:
        return 1
    try:
        value = img.getexif().get(_ORIENTATION_TAG, 1)
    except _DECODE_ERRORS:
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def _displayed_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation in _SWAPS_AXES else size


def _fit(size: tuple[int, int], box: Box) -> tuple[int, int]:
    """Fit `size` inside `box` keeping the aspect ratio, never enlarging, at least 1 px."""
    scale = min(box.width / size[0], box.height / size[1], 1.0)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _decode(img: Image.Image, largest: tuple[int, int], orientation: int) -> Image.Image:
    """Decode once, as small as the format allows, into the largest thumbnail (displayed)."""
    stored = _displayed_size(largest, orientation)
    # Only JPEG implements draft(); it picks the smallest DCT scale >= the requested size.
    img.draft(None, stored)
    img.load()
    normal = _normalise_mode(img)
    reduced = normal.resize(stored, _FIRST_STEP_FILTER, reducing_gap=_REDUCING_GAP)
    if normal is not img:
        normal.close()
    # Pixel operations copy .info; start clean so no EXIF, XMP or comment reaches an output.
    reduced.info = {}
    if icc := _matching_icc(img.info.get("icc_profile"), reduced.mode):
        reduced.info["icc_profile"] = icc
    if orientation == 1:
        return reduced
    upright = reduced.transpose(_TRANSPOSE[orientation])
    reduced.close()
    return upright
