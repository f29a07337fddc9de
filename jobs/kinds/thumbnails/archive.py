"""The job's output: each image rendered to its thumbnails, named as people read them, and
packed into one ZIP as it goes."""

from __future__ import annotations

import contextlib
import re
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath
from typing import BinaryIO

from jobs.kinds.thumbnails.animation import (
    MAX_FRAMES,
    _animation_refusal,
    _render_animation,
)
from jobs.kinds.thumbnails.base import (
    _INTERNAL,
    _MISSING,
    _OUT_OF_TIME,
    DEFAULT_OUTPUT,
    FORMAT_LABELS,
    OUTPUT_EXTENSIONS,
    Archive,
    Box,
    ImageOutcome,
    Output,
    SourceImage,
    Thumbnail,
    ThumbnailError,
    logger,
)
from jobs.kinds.thumbnails.checks import (
    DECODE_MEMORY_BUDGET,
    _check_memory,
    _format,
    _input_errors,
    _open,
)
from jobs.kinds.thumbnails.encode import (
    _background,
    _encode,
    _normal_mode,
    _same_format,
)
from jobs.kinds.thumbnails.plan import (
    _cascade,
    _decode,
    _displayed_size,
    _in_box_order,
    _orientation,
    _placement,
    _plan,
)
from jobs.kinds.thumbnails.sizes import (
    _check_boxes,
)

# Names inside the archive come from the uploaded names, kept to what every unzip accepts.
_UNSAFE_NAME = re.compile(r"[^\w.-]+")
_MAX_STEM = 80
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", *(f"COM{n}" for n in range(1, 10)),
     *(f"LPT{n}" for n in range(1, 10))}
)  # fmt: skip


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
                outcomes.append(
                    ImageOutcome(
                        image.name, folder, _OUT_OF_TIME, error_kind=ThumbnailError.TIME_LIMIT
                    )
                )
                continue

            def image_progress(fraction: float, done: int = index) -> None:
                report(int(100 * (done + fraction) / len(images)), done)

            try:
                with image.open() as source:
                    encoded, extension, note = _render(
                        source,
                        boxes,
                        output,
                        max_pixels,
                        max_memory,
                        max_frames,
                        image_progress,
                        image.focus,
                    )
            except ThumbnailError as exc:
                outcomes.append(ImageOutcome(image.name, folder, str(exc), error_kind=exc.kind))
                continue
            except FileNotFoundError:  # gone from storage (removed by hand, a restore without it)
                outcomes.append(
                    ImageOutcome(image.name, folder, _MISSING, error_kind=ThumbnailError.INTERNAL)
                )
                continue
            except let_through:
                raise
            except Exception:
                logger.exception("image %r could not be processed", image.name)
                outcomes.append(
                    ImageOutcome(image.name, folder, _INTERNAL, error_kind=ThumbnailError.INTERNAL)
                )
                continue
            # Written only once every size is encoded: a failing image leaves no entry behind.
            for (width, height), data in encoded.items():
                name = f"{prefix}{folder}_{width}x{height}.{extension}"
                zf.writestr(name, data)
                made.append(Thumbnail(name, width, height, len(data), image=index))
            outcomes.append(ImageOutcome(image.name, folder, note=note))
    if not made:
        raise ThumbnailError(_nothing_readable(outcomes), _failure_kind(outcomes))
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
    focus: tuple[float, float] | None = None,
) -> list[Thumbnail]:
    """make_archive for one image already open: its thumbnails, or ThumbnailError."""
    report = progress or _ignore_progress
    result = make_archive(
        [SourceImage(name, lambda: contextlib.nullcontext(source), focus)],
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


def _failure_kind(outcomes: Sequence[ImageOutcome]) -> str:
    """Permanent only when every image's input was at fault: else a retry may still help."""
    kinds = [item.error_kind for item in outcomes]
    temporary = [kind for kind in kinds if kind not in ThumbnailError.PERMANENT]
    return temporary[0] if temporary else kinds[0]


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
    focus: tuple[float, float] | None,
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
        placement = _placement(first, output.fit, focus)
        for out, thumb in _cascade(first, plans, background, placement):
            encoded[out] = _encode([thumb], output_format, output.quality, icc, background)
            del thumb
            progress(0.1 + 0.9 * len(encoded) / len(plans))
    note = f"This {FORMAT_LABELS[fmt]} is animated ({frames} frames): {refusal}" if refusal else ""
    return _in_box_order(encoded, plans), OUTPUT_EXTENSIONS[output_format], note
