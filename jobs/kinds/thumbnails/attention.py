"""Smart crop: where the interesting part of an image is, found once per image on a small copy,
and the window of each crop that holds the most of it.

Interest is weighed as libvips' `smartcrop` attention strategy weighs it: edges (detail),
colour (chroma) and skin tones, on a copy of at most MAP_EDGE pixels a side. A fill-and-crop
cuts along one axis only (the scaled image covers the box in the other), so each crop's window
is found on one profile, the interest summed across the other axis: the position whose window
holds the most, the one nearest the middle among equals, so an image with nothing that stands
out is cut in its centre as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate

from PIL import Image, ImageChops, ImageFilter

MAP_EDGE = 128
# Skin tones, as libvips finds them: Cb and Cr within these bounds (YCbCr, 0-255).
_SKIN_CB = (77, 127)
_SKIN_CR = (133, 173)
# A window must hold this much more than the centred one to move the cut off the centre: noise
# and a background's texture do not.
_MARGIN = 1.05


@dataclass(frozen=True)
class Interest:
    """How interesting each column and each row of an image is (left to right, top to bottom)."""

    columns: list[float]
    rows: list[float]

    def centre(self, scaled: tuple[int, int], cut: tuple[int, int]) -> tuple[float, float]:
        """Where to centre a `cut` from the image scaled to `scaled`, as fractions of it."""
        return (
            _best_window(self.columns, cut[0] / scaled[0]),
            _best_window(self.rows, cut[1] / scaled[1]),
        )


def interest(img: Image.Image) -> Interest:
    scale = min(MAP_EDGE / max(img.size), 1.0)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    small = (img if img.size == size else img.resize(size, Image.Resampling.BOX)).convert("RGB")
    # The filter sees past the border as black: the outermost pixels are edges of nothing.
    inside = Image.new("L", size, 0)
    inside.paste(255, (1, 1, size[0] - 1, size[1] - 1))
    edges = ImageChops.multiply(small.convert("L").filter(ImageFilter.FIND_EDGES), inside)
    # Colourfulness as chroma (the brightest channel less the darkest), not HSV's saturation,
    # which calls every dark pixel with a tint saturated: a dark sky outweighed the subject.
    red, green, blue = small.split()
    chroma = ImageChops.subtract(
        ImageChops.lighter(ImageChops.lighter(red, green), blue),
        ImageChops.darker(ImageChops.darker(red, green), blue),
    ).point(lambda value: value // 2)
    _, cb, cr = small.convert("YCbCr").split()
    skin = ImageChops.multiply(
        cb.point(lambda value: 255 if _SKIN_CB[0] <= value <= _SKIN_CB[1] else 0),
        cr.point(lambda value: 255 if _SKIN_CR[0] <= value <= _SKIN_CR[1] else 0),
    ).point(lambda value: value * 3 // 8)
    weight = ImageChops.add(ImageChops.add(edges, chroma), skin)
    # tobytes() of an L image is its values, on every Pillow pyproject.toml allows
    # (get_flattened_data() is new in 12.1, getdata() deprecated there).
    columns = weight.resize((size[0], 1), Image.Resampling.BOX).tobytes()
    rows = weight.resize((1, size[1]), Image.Resampling.BOX).tobytes()
    return Interest([float(value) for value in columns], [float(value) for value in rows])


def _best_window(profile: list[float], span: float) -> float:
    """The centre (0..1) of the window `span` of the profile long that holds the most of it."""
    length = len(profile)
    width = max(1, round(span * length))
    if width >= length:
        return 0.5
    sums = list(accumulate(profile, initial=0.0))
    starts = range(length - width + 1)
    held = [sums[start + width] - sums[start] for start in starts]
    middle = (length - width) / 2
    centred = held[round(middle)]
    best = max(starts, key=lambda start: (held[start], -abs(start - middle)))
    if held[best] <= centred * _MARGIN:
        return 0.5
    return (best + width / 2) / length
