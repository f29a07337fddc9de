"""The checks before and while an image is opened: its real format, structure (TIFF
directories, BMP compression), a budget of reads and of CPU, and the memory its decode and
resizes will take, estimated per format and mode before any pixel is decoded."""

from __future__ import annotations

import io
import itertools
import math
import struct
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import BinaryIO

from PIL import Image, ImageFile, UnidentifiedImageError

from jobs.kinds.thumbnails.base import (
    _CHECKS_OUT_OF_TIME,
    _CORRUPT,
    _DECODE_ERRORS,
    _EXTENSIONS,
    _NOT_AN_IMAGE,
    _NOT_CHECKED,
    _OUT_OF_MEMORY,
    _TOO_MANY_PARTS,
    ALLOWED_FORMATS,
    FORMAT_LABELS,
    Box,
    ImageInfo,
    ThumbnailError,
    logger,
)
from jobs.kinds.thumbnails.encode import (
    _normal_mode,
)
from jobs.kinds.thumbnails.plan import (
    _CASCADE_REDUCING_GAP,
    _REDUCING_GAP,
    _displayed_size,
    _orientation,
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


class CheckBudget:
    """The CPU time every inspect_image of one request may spend together: a per-file limit
    alone lets 200 costly files (each within it) hold a web worker for half a minute."""

    _EVERY = 1024  # reads between looks at the clock, which costs a system call

    def __init__(self, seconds: float) -> None:
        self._until = time.thread_time() + seconds

    def charge(self, reads: int) -> None:
        if reads % self._EVERY == 0 and time.thread_time() > self._until:
            raise ThumbnailError(_CHECKS_OUT_OF_TIME, ThumbnailError.OVER_LIMIT)


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
        raise ThumbnailError(_OUT_OF_MEMORY, ThumbnailError.OVER_LIMIT) from exc


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
                f"the limit is {_megapixels(max_pixels, math.floor)} megapixels.",
                ThumbnailError.OVER_LIMIT,
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
            raise ThumbnailError(_TOO_MANY_PARTS, ThumbnailError.OVER_LIMIT)
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
        raise ThumbnailError(_TOO_MANY_PARTS, ThumbnailError.OVER_LIMIT)
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
            f"{_MAX_TIFF_BLOCKS:,}. Save it again with larger strips and upload that.",
            ThumbnailError.OVER_LIMIT,
        )
    if numbers > _MAX_TIFF_NUMBERS:
        raise ThumbnailError(_TOO_MANY_PARTS, ThumbnailError.OVER_LIMIT)
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
