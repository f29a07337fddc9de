"""Thumbnail images for the ``thumbnails`` job kind: pure Pillow, no Django or Celery.

Speed comes from decoding once, as small as possible: a JPEG is decoded with DCT scaling
(``Image.draft``) at the smallest 1/1, 1/2, 1/4 or 1/8 scale that still covers the largest
thumbnail, and every smaller thumbnail is resized from the previous one. EXIF orientation is
applied to the already reduced image.

Every problem with the input surfaces as ``ThumbnailError`` whose message can be shown to the
person who uploaded the file; anything else escaping from here is a bug.

The package holds one concern per module: `base` (errors, messages, value types, formats),
`sizes`, `checks` (before and while an image is opened, and its memory), `plan` (what is
cut or padded from what scale), `encode` (colour and encoders), `animation` and `archive` (the
ZIP and its names). This module is the public API; the others are its parts.
"""

from jobs.kinds.thumbnails.animation import (
    ANIMATION_DECODE_BUDGET,
    ANIMATION_MEMORY_BUDGET,
    MAX_FRAMES,
)
from jobs.kinds.thumbnails.archive import (
    archive_stem,
    make_archive,
    make_thumbnails,
)
from jobs.kinds.thumbnails.base import (
    ALLOWED_FORMATS,
    DEFAULT_OUTPUT,
    DEFAULT_QUALITY,
    FIT_MODES,
    FORMAT_LABELS,
    MEDIA_TYPES,
    OUTPUT_EXTENSIONS,
    OUTPUT_FORMATS,
    Archive,
    Box,
    ImageInfo,
    ImageOutcome,
    Output,
    SourceImage,
    Thumbnail,
    ThumbnailError,
)
from jobs.kinds.thumbnails.checks import (
    DECODE_MEMORY_BUDGET,
    CheckBudget,
    inspect_image,
)
from jobs.kinds.thumbnails.sizes import (
    parse_box,
)

__all__ = [
    "ALLOWED_FORMATS",
    "ANIMATION_DECODE_BUDGET",
    "ANIMATION_MEMORY_BUDGET",
    "Archive",
    "archive_stem",
    "Box",
    "CheckBudget",
    "DECODE_MEMORY_BUDGET",
    "DEFAULT_OUTPUT",
    "DEFAULT_QUALITY",
    "FIT_MODES",
    "FORMAT_LABELS",
    "ImageInfo",
    "ImageOutcome",
    "inspect_image",
    "make_archive",
    "make_thumbnails",
    "MAX_FRAMES",
    "MEDIA_TYPES",
    "Output",
    "OUTPUT_EXTENSIONS",
    "OUTPUT_FORMATS",
    "parse_box",
    "SourceImage",
    "Thumbnail",
    "ThumbnailError",
]
