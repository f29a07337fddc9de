"""Thumbnail images for the ``thumbnails`` job kind: pure Pillow, no Django or Celery.

Speed comes from decoding once, as small as possible: a JPEG is decoded with DCT scaling
(``Image.draft``) at the smallest 1/1, 1/2, 1/4 or 1/8 scale that still covers the largest
thumbnail, and every smaller thumbnail is resized from the previous one. EXIF orientation is
applied to the already reduced image.

Every problem with the input surfaces as ``ThumbnailError`` whose message can be shown to the
person who uploaded the file; anything else escaping from here is a bug.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import math
import re
import struct
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

from PIL import Image, ImageFile, ImageMode, UnidentifiedImageError, features

logger = logging.getLogger(__name__)

ALLOWED_FORMATS: frozenset[str] = frozenset({"JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"})

# Pillow's default JPEG subsampling (4:2:0) is kept; bench/thumbnails.py saves its baseline
# with this same quality so the quality comparison is like for like.
DEFAULT_QUALITY = 85
FIT_MODES = ("fit", "crop", "pad")
# What a person may choose; "same as the source" is Output(format=None). AVIF needs a Pillow
# built with libavif (the wheels are).
OUTPUT_FORMATS = (
    ("JPEG", "PNG", "WEBP", "AVIF") if features.check("avif") else ("JPEG", "PNG", "WEBP")
)
OUTPUT_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "AVIF": "avif", "GIF": "gif"}
# What a thumbnail is served as, by its extension: a fixed table, not the host's mimetypes
# database (which may not know webp or avif, and an unknown type would be served as HTML).
MEDIA_TYPES = {
    "jpg": "image/jpeg", "png": "image/png", "webp": "image/webp", "avif": "image/avif",
    "gif": "image/gif",
}  # fmt: skip
FORMAT_LABELS = {
    "JPEG": "JPEG", "PNG": "PNG", "GIF": "GIF", "WEBP": "WebP", "AVIF": "AVIF", "BMP": "BMP",
    "TIFF": "TIFF",
}  # fmt: skip
_ALPHA_FORMATS = frozenset({"PNG", "WEBP", "AVIF", "GIF"})
_LOSSY_FORMATS = frozenset({"JPEG", "WEBP", "AVIF"})
_ANIMATED_FORMATS = frozenset({"GIF", "PNG", "WEBP", "AVIF"})
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
# Animated GIF thumbnails keep transparency in the last palette index, for pixels under half opaque.
_GIF_TRANSPARENT = 255
_GIF_CLEAR = [255] * 128 + [0] * 128
# Names inside the archive come from the uploaded names, kept to what every unzip accepts.
_UNSAFE_NAME = re.compile(r"[^\w.-]+")
_MAX_STEM = 80
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", *(f"COM{n}" for n in range(1, 10)),
     *(f"LPT{n}" for n in range(1, 10))}
)  # fmt: skip

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
# OverflowError: an offset or size past what a seek or an allocation can take (a BigTIFF
# directory at 2**63 on a stream held in memory).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, OverflowError, struct.error)

_NOT_AN_IMAGE = "This file is not an image Parroter can read (JPEG, PNG, GIF, WebP, BMP or TIFF)."
_CORRUPT = "The image data is truncated or corrupt and could not be decoded."
_TOO_MANY_PARTS = (
    "This file is made of far more separate parts than an ordinary image and was not read. "
    "Save it again with an image editor and upload that."
)
_OUT_OF_TIME = (
    "Not made: the job ran out of time before this image. Submit it again in a smaller job."
)
_MISSING = "The uploaded file is no longer stored; upload it again."
_INTERNAL = (
    "Parroter could not process this image because of an internal error; operators can see "
    "the details."
)
_NOT_CHECKED = (
    "Parroter could not check this file because of an internal error; operators can see the "
    "details. The other files were checked as usual."
)
_CHECKS_OUT_OF_TIME = (
    "Not checked: the files of this upload took all the time Parroter gives one upload to "
    "check (files made of far more parts than an ordinary image take longest). "
    "Send this file again in an upload of its own."
)
_OUT_OF_MEMORY = (
    "Processing this image needed more memory than Parroter allows for one job. "
    "A smaller image, or a JPEG, will work."
)

# What one job may spend decoding its image. Every format but JPEG is decoded whole, so the
# cost is pixels x bytes per pixel for its format and mode, plus what the first thumbnail's
# size adds (_decode_cost); bench/memory.py measures it per format and mode.
# With two pool processes on a 2-core host that keeps a busy worker under about 2.5 GB.
DECODE_MEMORY_BUDGET = 1024 * 1024 * 1024

# Pillow reads some structures one small read at a time (JPEG bytes between markers, PNG
# chunks, GIF blocks): a hostile file of 50 MB could keep it busy for minutes. An ordinary
# image takes a few thousand reads (data comes in 64 KiB blocks); this many take < 0.5 s.
_MAX_READS = 1 << 17
# Except a GIF decoded whole: its data comes in blocks of at most 255 bytes, two reads each,
# once to count the frames and once to decode them, so one read per 64 bytes (a 100-frame
# 500x500 GIF of 12 MB: 184,000 reads). The worker allows it one more read per this many bytes
# of the file (twice what it needs; a 50 MB GIF of one-byte blocks: ~4 s). The upload check
# reads headers only and keeps the plain limit.
_GIF_BYTES_PER_READ = 32

# Pillow unpacks every number in a TIFF's first directory into Python ints at open (25 million
# offsets took 67 s and 6.5 GB), and libtiff then visits every strip or tile. A 120 MP image
# stored one row per strip needs at most ~120,000 of them.
_MAX_TIFF_BLOCKS = 1 << 18
_MAX_TIFF_NUMBERS = 1 << 20
_TIFF_NUMERIC_TYPES = frozenset({3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 16, 17, 18})  # not bytes/text
_TIFF_BLOCK_TAGS = frozenset({273, 324})  # StripOffsets, TileOffsets
_TIFF_COMPRESSION_TAG = 259
# Compressions this Pillow and its libtiff decode (tests/test_hostile_input.py checks each).
_TIFF_COMPRESSIONS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 32773, 32946, 34925, 50000})
_TIFF_COMPRESSION_NAMES = {
    32809: "ThunderScan",
    34676: "SGI LogL",
    34677: "SGI LogLuv",
    34712: "JPEG 2000",
    50001: "WebP",
}
# An EXIF block of a JPEG fits one 64 KiB segment; a larger one (PNG, WebP) would cost Pillow
# a Python int per number it holds, so its orientation is ignored.
_MAX_EXIF_BYTES = 65535

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
class Output:
    """What the thumbnails are made as. format None: chosen from the source (a JPEG stays a
    JPEG, transparency becomes PNG, WebP stays WebP). Padding, and transparency a format cannot
    keep (JPEG), take the background colour; with `transparent`, formats that can keep it do."""

    format: str | None = None
    quality: int = DEFAULT_QUALITY
    fit: str = "fit"
    background: tuple[int, int, int] = (255, 255, 255)
    transparent: bool = True


DEFAULT_OUTPUT = Output()


@dataclass(frozen=True)
class SourceImage:
    """One image of a job: its uploaded name (shown, and the stem of its thumbnails' names)
    and how to open it, so that a job of many images holds one at a time."""

    name: str
    open: Callable[[], AbstractContextManager[BinaryIO]]


@dataclass(frozen=True)
class Thumbnail:
    name: str
    width: int
    height: int
    bytes: int
    image: int = 0  # which SourceImage it was made from


@dataclass(frozen=True)
class ImageOutcome:
    name: str
    folder: str  # its stem in the archive (a folder when the job has several images)
    error: str = ""
    note: str = ""


@dataclass(frozen=True)
class Archive:
    thumbnails: list[Thumbnail]
    images: list[ImageOutcome]


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


class CheckBudget:
    """The CPU time every inspect_image of one request may spend together: a per-file limit
    alone lets 200 costly files (each within it) hold a web worker for half a minute."""

    _EVERY = 1024  # reads between looks at the clock, which costs a system call

    def __init__(self, seconds: float) -> None:
        self._until = time.thread_time() + seconds

    def charge(self, reads: int) -> None:
        if reads % self._EVERY == 0 and time.thread_time() > self._until:
            raise ThumbnailError(_CHECKS_OUT_OF_TIME)


def inspect_image(
    stream: BinaryIO,
    *,
    max_pixels: int,
    max_memory: int = DECODE_MEMORY_BUDGET,
    budget: CheckBudget | None = None,
) -> ImageInfo:
    """Identify an upload from its header alone, cheap enough to run inside a web request.

    Every way a file can fail ends in ThumbnailError, so one bad file never costs the others
    of its upload: an unexpected error (a bug, here or in Pillow) is logged and refuses it."""
    try:
        if budget is not None:
            budget.charge(0)
        with _input_errors(), _open(stream, max_pixels, max_memory, budget, whole=False) as img:
            width, height = _displayed_size(img.size, _orientation(img))
            fmt = _format(img)
            return ImageInfo(fmt, width, height, _EXTENSIONS[fmt])
    except ThumbnailError:
        raise
    except Exception as exc:
        logger.exception("an upload's check failed")
        raise ThumbnailError(_NOT_CHECKED) from exc
    finally:
        stream.seek(0)


def make_archive(
    images: Sequence[SourceImage],
    boxes: Sequence[Box],
    archive: BinaryIO,
    *,
    output: Output = DEFAULT_OUTPUT,
    max_pixels: int,
    max_memory: int = DECODE_MEMORY_BUDGET,
    max_frames: int = MAX_FRAMES,
    progress: Callable[[int, int], None] | None = None,
    stop_after: float | None = None,
    let_through: tuple[type[BaseException], ...] = (),
) -> Archive:
    """Write a STORED ZIP of every image's thumbnails into `archive`, one image at a time.

    One image's thumbnails sit at the top of the archive; several images get a folder each.
    An image that cannot be read is reported in the result and the others still go in; if
    none can be read, ThumbnailError says why. `progress(percent, images_done)` follows along.
    Past `stop_after` (time.monotonic()), no further image is started: the archive holds those
    made so far and the rest are reported as not made. An unexpected error in one image (a bug,
    here or in Pillow) is logged and reported for that image alone, except the `let_through`
    kinds, which end the whole run (the caller's time limit, temporary storage errors).
    """
    _check_boxes(boxes)
    report = progress or _ignore_progress
    folders = _unique_stems([image.name for image in images])
    made: list[Thumbnail] = []
    outcomes: list[ImageOutcome] = []
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for index, (image, folder) in enumerate(zip(images, folders, strict=True)):
            prefix = f"{folder}/" if len(images) > 1 else ""
            if index and stop_after is not None and time.monotonic() > stop_after:
                outcomes.append(ImageOutcome(image.name, folder, error=_OUT_OF_TIME))
                continue

            def image_progress(fraction: float, done: int = index) -> None:
                report(int(100 * (done + fraction) / len(images)), done)

            try:
                with image.open() as source:
                    encoded, extension, note = _render(
                        source, boxes, output, max_pixels, max_memory, max_frames, image_progress
                    )
            except ThumbnailError as exc:
                outcomes.append(ImageOutcome(image.name, folder, error=str(exc)))
                continue
            except FileNotFoundError:  # gone from storage (removed by hand, a restore without it)
                outcomes.append(ImageOutcome(image.name, folder, error=_MISSING))
                continue
            except let_through:
                raise
            except Exception:
                logger.exception("image %r could not be processed", image.name)
                outcomes.append(ImageOutcome(image.name, folder, error=_INTERNAL))
                continue
            # Written only once every size is encoded: a failing image leaves no entry behind.
            for (width, height), data in encoded.items():
                name = f"{prefix}{folder}_{width}x{height}.{extension}"
                zf.writestr(name, data)
                made.append(Thumbnail(name, width, height, len(data), image=index))
            outcomes.append(ImageOutcome(image.name, folder, note=note))
    if not made:
        raise ThumbnailError(_nothing_readable(outcomes))
    report(100, len(images))
    return Archive(made, outcomes)


def make_thumbnails(
    source: BinaryIO,
    boxes: Sequence[Box],
    archive: BinaryIO,
    *,
    name: str = "image",
    output: Output = DEFAULT_OUTPUT,
    max_pixels: int,
    max_memory: int = DECODE_MEMORY_BUDGET,
    progress: Callable[[int], None] | None = None,
) -> list[Thumbnail]:
    """make_archive for one image already open: its thumbnails, or ThumbnailError."""
    report = progress or _ignore_progress
    result = make_archive(
        [SourceImage(name, lambda: contextlib.nullcontext(source))],
        boxes,
        archive,
        output=output,
        max_pixels=max_pixels,
        max_memory=max_memory,
        progress=lambda percent, _done: report(percent),
    )
    return result.thumbnails


def _ignore_progress(*_args: int) -> None:
    pass


def _check_boxes(boxes: Sequence[Box]) -> None:
    if not boxes:
        raise ThumbnailError("Choose at least one thumbnail size.")
    if len(set(boxes)) != len(boxes):
        twice = next(box for box in boxes if boxes.count(box) > 1)
        raise ThumbnailError(f"Size {twice.label} is requested twice; ask for each size once.")


def _nothing_readable(outcomes: Sequence[ImageOutcome]) -> str:
    if len(outcomes) == 1:
        return outcomes[0].error
    shown = "; ".join(f"{item.name}: {item.error}" for item in outcomes[:3])
    more = f" (and {len(outcomes) - 3} more)" if len(outcomes) > 3 else ""
    return f"None of the {len(outcomes)} images could be read. {shown}{more}"


def archive_stem(name: str) -> str:
    """A file name's stem made safe for a ZIP entry on any system: "My photo.JPG" -> "My_photo"."""
    stem = PurePosixPath(name.replace("\\", "/")).stem
    safe = _UNSAFE_NAME.sub("_", stem).strip("._")[:_MAX_STEM] or "image"
    # Windows cannot make a file or folder named CON, NUL, COM1... whatever follows a dot.
    head, dot, rest = safe.partition(".")
    return f"{head}_{dot}{rest}" if head.upper() in _WINDOWS_RESERVED else safe


def _unique_stems(names: Sequence[str]) -> list[str]:
    """archive_stem of each name, numbered where two would be the same (case-insensitively)."""
    taken: set[str] = set()
    stems = []
    for name in names:
        stem = candidate = archive_stem(name)
        number = 2
        while candidate.casefold() in taken:
            candidate, number = f"{stem}-{number}", number + 1
        taken.add(candidate.casefold())
        stems.append(candidate)
    return stems


def _render(
    source: BinaryIO,
    boxes: Sequence[Box],
    output: Output,
    max_pixels: int,
    max_memory: int,
    max_frames: int,
    progress: Callable[[float], None],
) -> tuple[dict[tuple[int, int], bytes], str, str]:
    """One image's thumbnails, encoded and keyed by size; their extension; a note for people."""
    with _input_errors():
        with _open(source, max_pixels, max_memory, None, whole=True) as img:
            fmt = _format(img)
            orientation = _orientation(img)
            size = _displayed_size(img.size, orientation)
            plans = [_plan(size, box, output.fit) for box in boxes]
            frames = getattr(img, "n_frames", 1) if fmt in ("GIF", "PNG", "WEBP") else 1
            decoded_mode = _normal_mode(img.mode, "transparency" in img.info)
            output_format = output.format or _same_format(fmt, decoded_mode, animated=frames > 1)
            background = _background(output, output_format)
            refusal = _animation_refusal(frames, img.size, output_format, plans, max_frames)
            animated = frames > 1 and refusal is None
            # The sizes _decode and _cascade scale the image to, largest first.
            steps = sorted({scaled for scaled, _ in plans}, reverse=True)
            stored_steps = [_displayed_size(step, orientation) for step in steps]
            _check_memory(img, max_memory, stored_steps, animated, boxes)
            first = _decode(img, steps[0], orientation)
            progress(0.1)
            if animated:  # every frame is read while the file is open
                encoded = _render_animation(img, first, plans, orientation, output, output_format)
                return _in_box_order(encoded, plans), OUTPUT_EXTENSIONS[output_format], ""
        encoded = {}
        icc = first.info.get("icc_profile")
        # No enumerate(), which keeps the last item it gave: each thumbnail is freed before the
        # next size is scaled (a crop can be most of the image).
        for out, thumb in _cascade(first, plans, background):
            encoded[out] = _encode([thumb], output_format, output.quality, icc, background)
            del thumb
            progress(0.1 + 0.9 * len(encoded) / len(plans))
    note = f"This {FORMAT_LABELS[fmt]} is animated ({frames} frames): {refusal}" if refusal else ""
    return _in_box_order(encoded, plans), OUTPUT_EXTENSIONS[output_format], note


def _in_box_order(
    encoded: dict[tuple[int, int], bytes], plans: Sequence[tuple[tuple[int, int], tuple[int, int]]]
) -> dict[tuple[int, int], bytes]:
    return {out: encoded[out] for _, out in plans if out in encoded}


def _plan(size: tuple[int, int], box: Box, fit: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """(the whole image scaled, the thumbnail cut or padded from it) for one box and fit mode."""
    if fit == "crop":
        # Cover the box, then cut its centre. Never enlarged: an image smaller than the box
        # gives the largest piece of the box's shape it holds.
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


def _cascade(
    first: Image.Image,
    plans: Sequence[tuple[tuple[int, int], tuple[int, int]]],
    background: tuple[int, ...] | None,
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
            yield out, _shape(current, out, background)


def _shape(
    img: Image.Image, out: tuple[int, int], background: tuple[int, ...] | None
) -> Image.Image:
    """Cut the centre of `img` to `out` (crop), or centre it on a canvas of `out` (pad)."""
    if img.size == out:
        return img
    left, top = (img.width - out[0]) // 2, (img.height - out[1]) // 2
    if out[0] <= img.width and out[1] <= img.height:
        return img.crop((left, top, left + out[0], top + out[1]))
    if background is None:  # transparent: the format keeps an alpha channel
        mode = "LA" if img.mode in ("L", "LA") else "RGBA"
        canvas = Image.new(mode, out, (0,) * len(mode))
    else:
        canvas = Image.new(img.mode, out, _in_mode(background, img.mode))
    canvas.paste(img, (-left, -top))
    canvas.info = dict(img.info)
    return canvas


def _in_mode(colour: tuple[int, ...], mode: str) -> tuple[int, ...] | int:
    rgb = colour[:3]
    if mode in ("L", "LA"):
        grey = round(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])
        return grey if mode == "L" else (grey, 255)
    return rgb if mode == "RGB" else (*rgb, 255)


def _background(output: Output, output_format: str) -> tuple[int, ...] | None:
    """The colour of padding and of flattened transparency; None keeps them transparent."""
    if output.transparent and output_format in _ALPHA_FORMATS:
        return None
    return output.background


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


@contextmanager
def _input_errors() -> Iterator[None]:
    """Turn Pillow's exceptions about bad input into messages for people, and keep its warnings
    about bad input (DecompressionBombWarning, corrupt EXIF, ...) out of the logs."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    except Image.DecompressionBombError as exc:  # only a GIF frame reaching past its screen
        raise ThumbnailError(
            "A frame of this GIF reaches far outside the image's stated size; "
            "Parroter does not process it."
        ) from exc
    except UnidentifiedImageError as exc:
        raise ThumbnailError(_NOT_AN_IMAGE) from exc
    except _DECODE_ERRORS as exc:
        raise ThumbnailError(_CORRUPT) from exc
    except MemoryError as exc:  # the worker's per-job address-space limit (celery_app)
        raise ThumbnailError(_OUT_OF_MEMORY) from exc


@contextmanager
def _open(
    stream: BinaryIO,
    max_pixels: int,
    max_memory: int,
    budget: CheckBudget | None,
    *,
    whole: bool,
) -> Iterator[Image.Image]:
    """Open (header only) one of the allowed formats and enforce the pixel and memory limits;
    `whole`: every frame will be decoded."""
    _check_structure(stream)
    size = stream.seek(0, io.SEEK_END)
    stream.seek(0)
    reader = _BoundedReader(stream, budget)
    with _identify(reader) as img:
        if whole and img.format == "GIF":
            reader.allowed += size // _GIF_BYTES_PER_READ
        width, height = img.size
        if width * height > max_pixels:
            raise ThumbnailError(
                f"The image is {width}×{height} pixels "
                f"({_megapixels(width * height, math.ceil)} megapixels); "
                f"the limit is {_megapixels(max_pixels, math.floor)} megapixels."
            )
        # Before the sizes are known (the upload check): as if far smaller than the image, and
        # animated if the header says so, as it is by default; _render checks again with both.
        _check_memory(img, max_memory, animated=_animated_header(img))
        try:
            yield img
        finally:
            # Free the decoded pixels, which would stay while _render makes the thumbnails
            # from its first one: leaving `with` closes no more than the file, and
            # ImageFile.close() would close the caller's stream too.
            Image.Image.close(img)


def _identify(stream: BinaryIO) -> ImageFile.ImageFile:
    """Image.open(stream, formats=ALLOWED_FORMATS) without Pillow's own decompression-bomb check,
    which fires above 2 x Image.MAX_IMAGE_PIXELS with a message of its own: _open checks the
    (by default stricter) max_pixels itself, so every image over the limit is told its size."""
    # Only the allowed plugins: exotic parsers (EPS through Ghostscript, PSD, ...) never run.
    Image.init()
    prefix = stream.read(16)
    for fmt in sorted(ALLOWED_FORMATS):
        factory, accept = Image.OPEN[fmt]
        if accept(prefix) is not True:  # a str is Pillow's "support not installed"
            continue
        stream.seek(0)
        try:
            return factory(stream, "")
        except (SyntaxError, IndexError, TypeError, struct.error):
            continue  # not this format after all; Image.open tries the next one the same way
        except OSError as exc:
            if fmt == "BMP" and _bmp_compression(stream) in (3, 6):
                raise ThumbnailError(
                    "This BMP stores its colours in a bit-field layout Parroter cannot read."
                ) from exc
            raise
    raise ThumbnailError(_NOT_AN_IMAGE)


class _BoundedReader:
    """`stream` as Pillow sees it, refusing the file after `allowed` reads (_MAX_READS) or once
    the request's `budget` is spent."""

    def __init__(self, stream: BinaryIO, budget: CheckBudget | None) -> None:
        self._stream = stream
        self._budget = budget
        self._reads = 0
        self.allowed = _MAX_READS

    def read(self, size: int = -1) -> bytes:
        self._reads += 1
        if self._reads > self.allowed:
            raise ThumbnailError(_TOO_MANY_PARTS)
        if self._budget is not None:
            self._budget.charge(self._reads)
        return self._stream.read(size)

    def __getattr__(self, name: str) -> object:
        # seek, tell, and fileno for libtiff, which then reads the file itself.
        return getattr(self._stream, name)


def _check_structure(stream: BinaryIO) -> None:
    """Refuse what Pillow would take too long, too much memory, or a misleading error to parse."""
    stream.seek(0)
    head = stream.read(8)
    if head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        _check_tiff_directory(stream, head)
    elif head[:2] == b"BM":
        compression = _bmp_compression(stream)
        if compression in (4, 5):
            inner = "a JPEG" if compression == 4 else "a PNG"
            raise ThumbnailError(
                f"This BMP holds {inner} image inside, which Parroter cannot read."
            )
    stream.seek(0)


def _bmp_compression(stream: BinaryIO) -> int | None:
    """The compression field of a BMP's info header (absent from the old 12-byte header)."""
    stream.seek(14)
    header = stream.read(20)
    if len(header) < 20 or int.from_bytes(header[:4], "little") < 40:
        return None
    return int.from_bytes(header[16:20], "little")


def _check_tiff_directory(stream: BinaryIO, head: bytes) -> None:
    """Look at the entries of a TIFF's first directory before Pillow unpacks them."""
    order = "<" if head[:2] == b"II" else ">"
    big = head[2:4] in (b"+\0", b"\0+")
    if big:  # BigTIFF: the first directory's offset follows the 8-byte header
        (first,) = struct.unpack(order + "Q", stream.read(8).ljust(8, b"\0"))
        count_format, entry_format, entry_size = "Q", "HHQ8s", 20
    else:
        (first,) = struct.unpack(order + "L", head[4:8])
        count_format, entry_format, entry_size = "H", "HHL4s", 12
    if first >= stream.seek(0, io.SEEK_END):  # BytesIO.seek(2**63) raises OverflowError
        raise ThumbnailError(_CORRUPT)
    stream.seek(first)
    raw_count = stream.read(struct.calcsize(count_format))
    if len(raw_count) < struct.calcsize(count_format):
        return  # Pillow reports the damage
    (count,) = struct.unpack(order + count_format, raw_count)
    if count > 0xFFFF:
        raise ThumbnailError(_TOO_MANY_PARTS)
    entries = stream.read(count * entry_size)
    numbers = blocks = 0
    compression = 1
    for at in range(0, len(entries) - entry_size + 1, entry_size):
        tag, kind, values, inline = struct.unpack(
            order + entry_format, entries[at : at + entry_size]
        )
        if kind in _TIFF_NUMERIC_TYPES:
            numbers += values
        if tag in _TIFF_BLOCK_TAGS:
            blocks = max(blocks, values)
        elif tag == _TIFF_COMPRESSION_TAG and kind in (3, 4) and values == 1:
            size = 2 if kind == 3 else 4  # SHORT or LONG, held in the entry itself
            compression = int.from_bytes(inline[:size], "little" if order == "<" else "big")
    if blocks > _MAX_TIFF_BLOCKS:
        raise ThumbnailError(
            f"This TIFF is stored in {blocks:,} strips or tiles; Parroter reads at most "
            f"{_MAX_TIFF_BLOCKS:,}. Save it again with larger strips and upload that."
        )
    if numbers > _MAX_TIFF_NUMBERS:
        raise ThumbnailError(_TOO_MANY_PARTS)
    if compression not in _TIFF_COMPRESSIONS:
        name = _TIFF_COMPRESSION_NAMES.get(compression)
        raise ThumbnailError(
            f"This TIFF uses {name} compression, which Parroter cannot read."
            if name
            else f"This TIFF uses a compression Parroter cannot read (number {compression})."
        )


def _check_memory(
    img: Image.Image,
    max_memory: int,
    steps: Sequence[tuple[int, int]] = (),
    animated: bool = False,
    boxes: Sequence[Box] = (),
) -> None:
    """Refuse `img` if making its thumbnails would take more than `max_memory` (_decode_cost);
    the message names the largest of `boxes` when smaller ones would fit."""
    cost = _decode_cost(img, steps, animated)
    if cost <= max_memory:
        return
    purpose, advice = "to process", "A smaller image, or a JPEG, will work."
    if boxes and _decode_cost(img, (), animated) <= max_memory:
        largest = max(boxes, key=lambda box: box.width * box.height)
        purpose, advice = f"to make a {largest.label} thumbnail", "Smaller sizes will work."
    width, height = img.size
    raise ThumbnailError(
        f"At {width}×{height} pixels this {_describe(img)} needs about {_mebibytes(cost)} MB "
        f"of memory {purpose}; the limit is {_mebibytes(max_memory)} MB per image. {advice}"
    )


def _decode_cost(
    img: Image.Image, steps: Sequence[tuple[int, int]] = (), animated: bool = False
) -> int:
    """Bytes making thumbnails of `img` takes at most, scaled to each of `steps` in turn
    (largest first, in its stored orientation; none: all far smaller than the image), every
    frame if `animated`.

    That is the decoded image, and beside it what Pillow holds while decoding or else the
    copies _normalise_mode and the first resize() make of it, whichever is more; or, if more,
    what _cascade holds. bench/memory.py measures every format and mode against this: with
    thumbnails far smaller than the image, bytes a pixel at the peak are
      L 1; 1-bit 2 (+ L); RGB 4; P 5 (+ RGB); 16-bit grey 5 (+ 8-bit scaled in 16, + L);
      RGBA, LA (stored in 4) and CMYK 8 (+ premultiplied RGBa / La, + RGB); P or L with
      transparency 9 and RGB with it 12 (+ RGBA or LA, + premultiplied); APNG + its canvas
      again; GIF animated 9, as with transparency; WebP 16 (libwebp's two canvases and the
      frame's bytes); JPEG 1/64 of those (1/8 scale) + 2 a DCT coefficient if progressive
      (3 at 4:2:0, 8 for CMYK); TIFF + its largest strip or tile; RLE BMP + 2."""
    width, height = img.size
    transparent = "transparency" in img.info
    if img.format == "GIF" and animated:
        # Every frame after the first is drawn on an RGB or RGBA canvas from a converted copy
        # of the frame: 9 bytes a pixel at the peak, as a still GIF with transparency.
        transparent = True
    normal = _normal_mode(img.mode, transparent)
    size = _decoded_size(img, steps[0] if steps else None)
    pixels = size[0] * size[1]
    stored = _bytes_per_pixel(img.mode)
    if normal == img.mode:
        converted = 0
    elif img.mode.startswith("I"):  # scaled to 8 bits (in 2 or 4 bytes a pixel), then L
        converted = (stored if img.mode in ("I", "I;16") else 8) + 1
    else:
        converted = _bytes_per_pixel(normal)
    held = decoding = 0
    if img.format in ("JPEG", "MPO") and img.info.get("progressive"):
        # libjpeg keeps every DCT coefficient of a progressive JPEG whatever the scale it
        # decodes at: 2 bytes each, 64 per 8x8 block of each component at its sampling.
        h_max = max(h for _, h, _, _ in img.layer)
        v_max = max(v for _, _, v, _ in img.layer)
        sampled = sum(h * v for _, h, v, _ in img.layer) / (h_max * v_max)
        decoding = math.ceil(2 * width * height * sampled)
    elif img.format == "WEBP":
        # Pillow reads every WebP with libwebp's animation decoder, which keeps two RGBA
        # canvases, and hands each frame over as bytes before copying it into the image.
        held, decoding = 8 * pixels, 4 * pixels
    elif img.format == "TIFF" and img.tile and img.tile[0].codec_name == "libtiff":
        # libtiff decodes a strip or tile at a time into a buffer of its own.
        decoding = _tiff_block_bytes(img)
    elif img.format == "BMP" and img.tile and img.tile[0].codec_name == "bmp_rle":
        # Pillow's RLE decoder grows the image in a bytearray, then copies it in.
        decoding = 2 * pixels
    elif img.format == "PNG" and animated:
        # Pillow draws an APNG's frames over a copy of the canvas it keeps from the one before.
        held = stored * pixels
    source = stored * pixels + held
    first = _resize_cost(size, steps[0] if steps else None, normal, _REDUCING_GAP)
    # The image itself is freed before _cascade, unless every frame is to be read.
    cascade = _cascade_cost(steps, normal, animated) + (source if animated else 0)
    return max(source + max(decoding, converted * pixels + first), cascade)


def _cascade_cost(steps: Sequence[tuple[int, int]], mode: str, animated: bool) -> int:
    """Bytes _cascade holds at most: the first thumbnail (and, animated, its RGBA copy), and
    the thumbnail each smaller size is scaled from, with what scaling it allocates."""
    if not steps:
        return 0
    kept = _bytes_per_pixel(mode) * math.prod(steps[0])
    if animated:
        mode = "RGBA"
        kept += 4 * math.prod(steps[0])
    depth = _bytes_per_pixel(mode)
    return kept + max(
        (
            (depth * math.prod(before) if before != steps[0] else 0)
            + _resize_cost(before, after, mode, _CASCADE_REDUCING_GAP)
            for before, after in itertools.pairwise(steps)
        ),
        default=0,
    )


def _decoded_size(img: Image.Image, first_step: tuple[int, int] | None) -> tuple[int, int]:
    """The size `img` is decoded at: a JPEG's DCT scaling (draft(), as Pillow picks it) is the
    smallest of 1/8, 1/4, 1/2 and 1/1 still covering the first step (None: 1/8)."""
    width, height = img.size
    if img.format not in ("JPEG", "MPO"):
        return width, height
    fits = 8 if first_step is None else min(width // first_step[0], height // first_step[1])
    scale = next((scale for scale in (8, 4, 2) if fits >= scale), 1)
    return -(-width // scale), -(-height // scale)


def _bytes_per_pixel(mode: str) -> int:
    """How Pillow stores a pixel of `mode`: 1, L and P in a byte, I;16 in 2, the rest (LA, PA
    included) in 4."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def _resize_cost(
    size: tuple[int, int], target: tuple[int, int] | None, mode: str, gap: float
) -> int:
    """Bytes resize(target, reducing_gap=gap) of an image of `size` in `mode` (L, LA, RGB or
    RGBA) allocates: a copy if that is its size; else, for LA and RGBA, a premultiplied copy
    (resize() works in La and RGBa), reduce()'s result (by an integer factor), the horizontal
    pass at the new width, and the result and its copy converted back from premultiplied or
    turned upright (_decode). None: a target far smaller than the image."""
    width, height = size
    depth = _bytes_per_pixel(mode)
    if target == size:
        return depth * width * height
    premultiplied = 4 * width * height if mode in ("LA", "RGBA") else 0
    if target is None:
        return premultiplied
    x_factor = max(1, int(width / target[0] / gap))
    y_factor = max(1, int(height / target[1] / gap))
    reduced = 0
    if x_factor > 1 or y_factor > 1:
        width, height = -(-width // x_factor), -(-height // y_factor)
        reduced = width * height
    return premultiplied + depth * (reduced + target[0] * height + 2 * math.prod(target))


def _tiff_block_bytes(img: Image.Image) -> int:
    """The size of a TIFF's largest strip or tile, decoded: what libtiff reads it into."""
    tags = img.tag_v2
    width, height = img.size
    bits = tags.get(258, 1)
    bits = sum(bits) if isinstance(bits, tuple) else bits
    if 322 in tags:  # TileWidth, TileLength
        width, rows = tags[322], tags.get(323, height)
    else:
        rows = min(tags.get(278, height), height)  # RowsPerStrip
    return rows * math.ceil(width * bits / 8)


def _describe(img: Image.Image) -> str:
    if img.mode.startswith("I;16"):
        return f"16-bit {img.format}"
    if _animated_header(img):
        return f"animated {FORMAT_LABELS[img.format]}"
    return str(img.format)


def _animated_header(img: Image.Image) -> bool:
    """Whether the header says `img` is animated: an APNG's or a WebP's does (a GIF's frames
    are known only once the whole file is read)."""
    return img.format in ("PNG", "WEBP") and getattr(img, "n_frames", 1) > 1


def _mebibytes(size: int) -> str:
    return f"{math.ceil(size / (1024 * 1024)):,}"


def _megapixels(pixels: int, rounding: Callable[[float], int]) -> str:
    """To a tenth, written as people read it: "0.3", "151.6", "6,000,000" (never "6e+06")."""
    tenths = rounding(pixels / 100_000)
    return f"{tenths // 10:,}" if tenths % 10 == 0 else f"{tenths / 10:,.1f}"


def _format(img: Image.Image) -> str:
    # Multi-picture JPEGs from cameras open as MPO; their first picture is a plain JPEG.
    return "JPEG" if img.format == "MPO" else str(img.format)


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


def _normalise_mode(img: Image.Image) -> Image.Image:
    """`img` itself if it is L, LA, RGB or RGBA, else a converted copy in one of those."""
    mode = img.mode
    normal = _normal_mode(mode, "transparency" in img.info)
    if normal == mode:
        return img
    if mode.startswith("I;16") or mode == "I":
        # convert("L") would clip everything above 255 to white; scale 16 bits down instead.
        # point() scales I and I;16 in their own width (I;16: 2 bytes a pixel, not I's 4);
        # I;16B and the like go through I (their convert("I;16") clips at 255).
        wide = img if mode in ("I", "I;16") else img.convert("I")
        return wide.point(lambda value: value / 256).convert("L")
    return img.convert(normal)


def _normal_mode(mode: str, transparent: bool) -> str:
    """What _normalise_mode makes of an image of `mode`: L, LA, RGB or RGBA."""
    if mode in ("L", "RGB"):
        return mode + "A" if transparent else mode
    if mode in ("LA", "RGBA"):
        return mode
    if mode in ("P", "PA"):
        return "RGBA" if mode == "PA" or transparent else "RGB"
    if mode.startswith("I;16") or mode in ("I", "1", "F"):
        return "L"
    # CMYK, YCbCr, LAB, RGBX, ...
    return "RGBA" if "A" in ImageMode.getmode(mode).bands else "RGB"


def _matching_icc(profile: bytes | None, mode: str) -> bytes | None:
    """Keep the colour profile (wide-gamut photos need it) unless it no longer applies."""
    # Bytes 16..20 of an ICC header name its colour space; a CMYK profile on RGB would be wrong.
    space = b"GRAY" if mode in ("L", "LA") else b"RGB "
    return profile if profile is not None and profile[16:20] == space else None


def _same_format(source_format: str, mode: str, *, animated: bool) -> str:
    """The output format when "same as the source" is chosen."""
    if source_format == "WEBP":
        return "WEBP"
    if animated and source_format == "GIF":  # an animated GIF stays a GIF, an APNG a PNG
        return "GIF"
    if mode in ("LA", "RGBA") or source_format in ("PNG", "GIF"):
        return "PNG"
    return "JPEG"


def _encode(
    frames: Sequence[Image.Image],
    output_format: str,
    quality: int,
    icc: bytes | None,
    background: tuple[int, ...] | None,
    durations: Sequence[int] = (),
    loop: int | None = 0,
) -> bytes:
    # A background (see _background): always for JPEG, in every format when the person asked
    # for opaque thumbnails; None keeps transparency.
    if background is not None:
        frames = [_flatten(frame, background) for frame in frames]
    options: dict[str, object] = {}
    if icc:
        options["icc_profile"] = icc
    if output_format in _LOSSY_FORMATS:
        options["quality"] = quality
    if len(frames) > 1:
        # Every frame is whole: each replaces the one before instead of being drawn over it.
        if output_format == "GIF":
            options["disposal"] = 2
            if background is None:
                frames = [_gif_frame(frame) for frame in frames]
                options.update(transparency=_GIF_TRANSPARENT, optimize=False)
        elif output_format == "PNG":
            options.update(disposal=1, blend=0)
        options.update(save_all=True, append_images=frames[1:], duration=list(durations))
        # No loop count: a GIF that plays once, as a GIF says it; WebP and APNG say it with 1.
        if loop is not None or output_format != "GIF":
            options["loop"] = 1 if loop is None else loop
    buffer = io.BytesIO()
    frames[0].save(buffer, output_format, **options)
    return buffer.getvalue()


def _gif_frame(frame: Image.Image) -> Image.Image:
    """An RGBA frame as a palette image whose index _GIF_TRANSPARENT is transparent, in every
    frame. A frame disposed of is restored to the background colour, which Pillow (and the GIF
    spec) take as transparent only when that frame names a transparent index; Pillow's own
    conversion names one only in frames with transparent pixels, so a frame's transparent areas
    showed the opaque frame before it. (Browsers clear to transparent either way.)"""
    indexed = frame.convert("RGB").quantize(_GIF_TRANSPARENT, Image.Quantize.FASTOCTREE)
    palette = indexed.getpalette() or []
    indexed.putpalette(palette + [0] * (768 - len(palette)))
    indexed.paste(_GIF_TRANSPARENT, mask=frame.getchannel("A").point(_GIF_CLEAR, "1"))
    indexed.info["transparency"] = _GIF_TRANSPARENT
    return indexed


def _flatten(img: Image.Image, colour: tuple[int, ...]) -> Image.Image:
    if img.mode not in ("LA", "RGBA"):
        return img
    flat = Image.new(img.mode[:-1], img.size, _in_mode(colour, img.mode[:-1]))
    flat.paste(img, mask=img.getchannel("A"))
    flat.info = img.info
    return flat
