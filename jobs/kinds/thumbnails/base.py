"""What the thumbnail kind's modules share: its errors and messages, the value types of its
public API, and the formats it reads and writes."""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO

from PIL import features

logger = logging.getLogger("jobs.kinds.thumbnails")  # one name for the whole kind

ALLOWED_FORMATS: frozenset[str] = frozenset({"JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"})

# Pillow's default JPEG subsampling (4:2:0) is kept; bench/thumbnails.py saves its baseline
# with this same quality so the quality comparison is like for like.
DEFAULT_QUALITY = 85
FIT_MODES = ("fit", "crop", "smart", "pad")
# The fit modes that fill the box and cut: its centre, or its subject (smart crop).
CROPS = frozenset({"crop", "smart"})

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
_EXTENSIONS = {
    "JPEG": "jpg",
    "PNG": "png",
    "GIF": "gif",
    "WEBP": "webp",
    "BMP": "bmp",
    "TIFF": "tiff",
}

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


class ThumbnailError(Exception):
    """A problem with the input a person can understand; str(exc) is shown to them verbatim.
    Its kind says why: BAD_INPUT (unreadable, corrupt, unsupported) or OVER_LIMIT (too large
    for the limits); neither can succeed on a retry."""

    BAD_INPUT = "bad_input"
    OVER_LIMIT = "over_limit"
    PERMANENT = (BAD_INPUT, OVER_LIMIT)
    # Why an image of a batch was left out when it was not its input: the job may still
    # succeed on a retry.
    TIME_LIMIT = "time_limit"
    INTERNAL = "internal"

    def __init__(self, message: str, kind: str = BAD_INPUT) -> None:
        super().__init__(message)
        self.kind = kind


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
    and how to open it, so that a job of many images holds one at a time; and the point of it
    a crop keeps, as fractions of its width and height as displayed (None: the fit decides)."""

    name: str
    open: Callable[[], AbstractContextManager[BinaryIO]]
    focus: tuple[float, float] | None = None


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
    error_kind: str = ""  # a ThumbnailError kind, when error is set


@dataclass(frozen=True)
class Archive:
    thumbnails: list[Thumbnail]
    images: list[ImageOutcome]
