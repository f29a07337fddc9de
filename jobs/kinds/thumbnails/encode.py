"""Colour and encoding: the modes images are normalised to, colour profiles, backgrounds, and
the encoders' settings per output format (a GIF's frames included)."""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageMode

from jobs.kinds.thumbnails.base import (
    _ALPHA_FORMATS,
    _LOSSY_FORMATS,
    Output,
)

# Animated GIF thumbnails keep transparency in the last palette index, for pixels under half opaque.
_GIF_TRANSPARENT = 255
_GIF_CLEAR = [255] * 128 + [0] * 128


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
