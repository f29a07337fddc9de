"""Thumbnail images for the ``thumbnails`` job kind: pure Pillow, no Django or Celery.

Speed comes from decoding once, as small as possible: a JPEG is decoded with DCT scaling
(``Image.draft``) at the smallest 1/1, 1/2, 1/4 or 1/8 scale that still covers the largest
thumbnail, and every smaller thumbnail is resized from the previous one. EXIF orientation is
applied to the already reduced image.

Every problem with the input surfaces as ``ThumbnailError`` whose message can be shown to the
person who uploaded the file; anything else escaping from here is a bug.
"""

from __future__ import annotations

import io
import math
import re
import struct
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

ALLOWED_FORMATS: frozenset[str] = frozenset({"JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"})

# Pillow's default JPEG subsampling (4:2:0) is kept; bench/thumbnails.py saves its baseline
# with this same quality so the quality comparison is like for like.
JPEG_QUALITY = 85
WEBP_QUALITY = 85

# The first step, from the decoded image to the largest thumbnail. A JPEG is drafted to the
# smallest DCT scale not below the output size, which leaves a < 2x step; a 2x margin (a 1/2
# instead of a 1/4 scale for 12 MP -> 512) cost 40% more time for the same PSNR. For that short
# step BILINEAR (an antialiasing triangle filter when shrinking) is ~2 ms cheaper than BICUBIC
# and ~4 ms cheaper than LANCZOS for 1000x750 -> 512x384, and within 0.1 dB of their PSNR after
# JPEG encoding (bench/thumbnails.py). Formats without draft() first reduce() by an integer box
# filter down to a 3x step; Pillow documents a reducing_gap >= 3 as indistinguishable from
# resampling the whole way.
_FIRST_STEP_FILTER = Image.Resampling.BILINEAR
_REDUCING_GAP = 3.0
# Each smaller thumbnail from the previous one: the integer part of the step by reduce() (a
# 2x2 box average for the usual halving, ~15x cheaper than LANCZOS), the rest by LANCZOS.
# Measured 0.1 dB below pure LANCZOS, 2 ms faster per 12 MP photo (bench/thumbnails.py).
_CASCADE_REDUCING_GAP = 1.0

_EXTENSIONS = {
    "JPEG": "jpg",
    "PNG": "png",
    "GIF": "gif",
    "WEBP": "webp",
    "BMP": "bmp",
    "TIFF": "tiff",
}
_OUTPUT_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}

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

# What Pillow raises on broken data while parsing or decoding (DecompressionBombError is
# handled separately: it is not an OSError).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)

_NOT_AN_IMAGE = "This file is not an image Parroter can read (JPEG, PNG, GIF, WebP, BMP or TIFF)."
_CORRUPT = "The image data is truncated or corrupt and could not be decoded."

# At most 9 digits: int() refuses very long digit strings with a ValueError of its own.
_BOX_PATTERN = re.compile(r"\s*(-?[0-9]{1,9})\s*(?:[xX]\s*(-?[0-9]{1,9})\s*)?")


class ThumbnailError(Exception):
    """A problem with the input a person can understand; str(exc) is shown to them verbatim."""


@dataclass(frozen=True)
class Box:
    """A requested bounding box; the thumbnail fits inside it."""

    width: int
    height: int

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    extension: str


@dataclass(frozen=True)
class Thumbnail:
    name: str
    width: int
    height: int
    bytes: int


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


def inspect_image(stream: BinaryIO, *, max_pixels: int) -> ImageInfo:
    """Identify an upload from its header alone, cheap enough to run inside a web request."""
    try:
        with _input_errors(max_pixels), _open(stream, max_pixels) as img:
            width, height = _displayed_size(img.size, _orientation(img))
            fmt = _format(img)
            return ImageInfo(fmt, width, height, _EXTENSIONS[fmt])
    finally:
        stream.seek(0)


def make_thumbnails(
    source: BinaryIO,
    boxes: Sequence[Box],
    archive: BinaryIO,
    *,
    max_pixels: int,
    progress: Callable[[int], None] | None = None,
) -> list[Thumbnail]:
    """Write a STORED ZIP of one thumbnail per box into `archive`; return them in `boxes` order."""
    if not boxes:
        raise ThumbnailError("Choose at least one thumbnail size.")
    if len(set(boxes)) != len(boxes):
        twice = next(box for box in boxes if boxes.count(box) > 1)
        raise ThumbnailError(f"Size {twice.label} is requested twice; ask for each size once.")
    report = progress or _ignore_progress

    with _input_errors(max_pixels), _open(source, max_pixels) as img:
        fmt = _format(img)
        orientation = _orientation(img)
        sizes = {box: _fit(_displayed_size(img.size, orientation), box) for box in boxes}
        # Every output has the image's aspect ratio, so sorting by width orders them by scale.
        largest_first = sorted(set(sizes.values()), reverse=True)
        first = _decode(img, largest_first[0], orientation)
    report(10)

    encoded: dict[tuple[int, int], bytes] = {}
    output_format = _output_format(fmt, first.mode)
    current = first
    try:
        for done, size in enumerate(largest_first, start=1):
            if current.size != size:
                smaller = current.resize(
                    size, Image.Resampling.LANCZOS, reducing_gap=_CASCADE_REDUCING_GAP
                )
                current.close()
                current = smaller
            encoded[size] = _encode(current, output_format)
            report(10 + 80 * done // len(largest_first))
    finally:
        current.close()

    thumbnails = []
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for box in boxes:
            size = sizes[box]
            name = f"thumb_{box.label}.{_OUTPUT_EXTENSIONS[output_format]}"
            zf.writestr(name, encoded[size])
            thumbnails.append(Thumbnail(name, size[0], size[1], len(encoded[size])))
    report(100)
    return thumbnails


def _ignore_progress(_percent: int) -> None:
    pass


@contextmanager
def _input_errors(max_pixels: int) -> Iterator[None]:
    """Turn Pillow's exceptions about bad input into messages for people."""
    try:
        yield
    except Image.DecompressionBombError as exc:
        raise ThumbnailError(
            "The image has too many pixels to process safely; "
            f"the limit is {_megapixels(max_pixels, math.floor)} megapixels."
        ) from exc
    except UnidentifiedImageError as exc:
        raise ThumbnailError(_NOT_AN_IMAGE) from exc
    except _DECODE_ERRORS as exc:
        raise ThumbnailError(_CORRUPT) from exc


@contextmanager
def _open(stream: BinaryIO, max_pixels: int) -> Iterator[Image.Image]:
    """Open (header only) one of the allowed formats and enforce the pixel limit."""
    # Restricting the plugins also keeps exotic parsers (EPS, PSD, ...) away from uploads.
    with Image.open(stream, formats=sorted(ALLOWED_FORMATS)) as img:
        width, height = img.size
        if width * height > max_pixels:
            raise ThumbnailError(
                f"The image is {width}×{height} pixels "
                f"({_megapixels(width * height, math.ceil)} megapixels); "
                f"the limit is {_megapixels(max_pixels, math.floor)} megapixels."
            )
        yield img


def _megapixels(pixels: int, rounding: Callable[[float], int]) -> str:
    return f"{rounding(pixels / 100_000) / 10:g}"


def _format(img: Image.Image) -> str:
    # Multi-picture JPEGs from cameras open as MPO; their first picture is a plain JPEG.
    return "JPEG" if img.format == "MPO" else str(img.format)


def _orientation(img: Image.Image) -> int:
    """EXIF orientation 1..8, read from the header; a broken EXIF block counts as 1."""
    # PngImageFile.getexif() decodes the whole image to look for an eXIf chunk after the pixels.
    if img.format == "PNG" and "exif" not in img.info:
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


def _normalise_mode(img: Image.Image) -> Image.Image:
    """`img` itself if it is L, LA, RGB or RGBA, else a converted copy in one of those."""
    mode = img.mode
    transparent = "transparency" in img.info
    if mode in ("L", "RGB"):
        return img.convert(mode + "A") if transparent else img
    if mode in ("LA", "RGBA"):
        return img
    if mode in ("P", "PA"):
        return img.convert("RGBA" if mode == "PA" or transparent else "RGB")
    if mode.startswith("I;16") or mode == "I":
        # convert("L") would clip everything above 255 to white; scale 16 bits down instead.
        return img.convert("I").point(lambda value: value / 256).convert("L")
    if mode in ("1", "F"):
        return img.convert("L")
    # CMYK, YCbCr, LAB, RGBX, ...
    return img.convert("RGBA" if "A" in img.getbands() else "RGB")


def _matching_icc(profile: bytes | None, mode: str) -> bytes | None:
    """Keep the colour profile (wide-gamut photos need it) unless it no longer applies."""
    # Bytes 16..20 of an ICC header name its colour space; a CMYK profile on RGB would be wrong.
    space = b"GRAY" if mode in ("L", "LA") else b"RGB "
    return profile if profile is not None and profile[16:20] == space else None


def _output_format(source_format: str, mode: str) -> str:
    if source_format == "WEBP":
        return "WEBP"
    if mode in ("LA", "RGBA") or source_format in ("PNG", "GIF"):
        return "PNG"
    return "JPEG"


def _encode(img: Image.Image, output_format: str) -> bytes:
    buffer = io.BytesIO()
    options: dict[str, object] = {"icc_profile": img.info.get("icc_profile")}
    if output_format == "JPEG":
        options["quality"] = JPEG_QUALITY
    elif output_format == "WEBP":
        options["quality"] = WEBP_QUALITY
    img.save(buffer, output_format, **options)
    return buffer.getvalue()
