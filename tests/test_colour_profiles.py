"""Wide-gamut photos keep their colours: a Display P3 or Adobe RGB (1998) JPEG's thumbnails show
the same colours as the photo, measured as CIE76 colour differences (ΔE*ab) in CIELAB.

Pillow's ImageCms can create sRGB and LAB profiles but not these, so they are written here: an
ICC v2 display profile is a header, a tag table and seven small tags (a matrix of the primaries
adapted to the D50 white of the profile connection space, and a tone curve per channel).

Why CIE76 with a limit of 2.3: 2.3 is its just-noticeable difference (Sharma & Trussell, 1997).
CIEDE2000 would be closer to what people see, but for saturated colours like these patches it
compresses chroma differences, so CIE76 is the stricter measure and can be computed in one line.
Measured: 0 for JPEG and PNG thumbnails of flat patches, at most 1.5 for lossy WebP (its 4:2:0
YUV); ImageCms gives 8-bit Lab, so about 0.5 of any figure is rounding. Without the profile
the same thumbnails read as sRGB are 4 to 41 away.
"""

from __future__ import annotations

import io
import math
import struct
import zipfile

import pytest
from PIL import Image, ImageCms

from jobs.kinds.thumbnails import Output, SourceImage, make_archive, parse_box

D50 = (0.9642, 1.0, 0.8249)  # the ICC profile connection space's white
D65 = (0.95047, 1.0, 1.08883)
BRADFORD = ((0.8951, 0.2664, -0.1614), (-0.7502, 1.7135, 0.0367), (0.0389, -0.0685, 1.0296))
DELTA_E_LIMIT = 2.3
LAB = ImageCms.createProfile("LAB")
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


# --- an ICC v2 matrix/TRC profile ---------------------------------------------------------------

Matrix = tuple[tuple[float, float, float], ...]


def _product(a: Matrix, b: Matrix) -> Matrix:
    return tuple(
        tuple(sum(a[i][k] * b[k][j] for k in range(3)) for j in range(3)) for i in range(3)
    )


def _inverse(m: Matrix) -> Matrix:
    (a, b, c), (d, e, f), (g, h, i) = m
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    cofactors = (
        (e * i - f * h, c * h - b * i, b * f - c * e),
        (f * g - d * i, a * i - c * g, c * d - a * f),
        (d * h - e * g, b * g - a * h, a * e - b * d),
    )
    return tuple(tuple(x / det for x in row) for row in cofactors)


def _times(m: Matrix, v: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(sum(m[i][k] * v[k] for k in range(3)) for i in range(3))


def colourants(primaries: list[tuple[float, float]]) -> list[tuple[float, ...]]:
    """XYZ of full red, green and blue for primaries given as xy chromaticities with a D65
    white (as the standards give them), Bradford-adapted to D50 as ICC profiles store them."""
    xyz = [(x / y, 1.0, (1 - x - y) / y) for x, y in primaries]
    columns = tuple(tuple(xyz[j][i] for j in range(3)) for i in range(3))
    scale = _times(_inverse(columns), D65)  # the primaries' amounts that make white
    to_xyz = tuple(tuple(columns[i][j] * scale[j] for j in range(3)) for i in range(3))
    cone_d65, cone_d50 = _times(BRADFORD, D65), _times(BRADFORD, D50)
    gain = tuple(
        tuple(cone_d50[i] / cone_d65[i] if i == j else 0 for j in range(3)) for i in range(3)
    )
    adapted = _product(_inverse(BRADFORD), _product(gain, _product(BRADFORD, to_xyz)))
    return [tuple(adapted[i][j] for i in range(3)) for j in range(3)]


def srgb_curve(entries: int = 1024) -> list[int]:
    """The sRGB transfer function (IEC 61966-2-1), which Display P3 uses too, as a table."""

    def linear(v: float) -> float:
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    return [round(65535 * linear(i / (entries - 1))) for i in range(entries)]


def icc_profile(name: str, primaries: list[tuple[float, float]], curve: list[int]) -> bytes:
    """An ICC v2 RGB display profile; `curve` is one u8Fixed8 gamma (x256) or a uint16 table."""

    def s15f16(values: tuple[float, ...]) -> bytes:
        return b"".join(struct.pack(">i", round(v * 65536)) for v in values)

    def xyz(values: tuple[float, ...]) -> bytes:
        return b"XYZ " + bytes(4) + s15f16(values)

    text = name.encode("ascii") + b"\0"
    trc = b"curv" + bytes(4) + struct.pack(f">I{len(curve)}H", len(curve), *curve)
    red, green, blue = colourants(primaries)
    tags = {
        # ASCII description, then empty Unicode and ScriptCode descriptions.
        b"desc": b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(78),
        b"wtpt": xyz(D50),
        b"rXYZ": xyz(red),
        b"gXYZ": xyz(green),
        b"bXYZ": xyz(blue),
        b"rTRC": trc,
        b"gTRC": trc,
        b"bTRC": trc,
    }
    table, data = b"", b""
    start = 128 + 4 + 12 * len(tags)
    for signature, body in tags.items():
        table += signature + struct.pack(">II", start + len(data), len(body))
        data += body + bytes(-len(body) % 4)  # tags start on 4-byte boundaries
    header = (
        struct.pack(">I", start + len(data))
        + bytes(4)  # preferred CMM
        + bytes((2, 0x10, 0, 0))  # version 2.1
        + b"mntrRGB XYZ "  # display device, RGB data, XYZ connection space
        + bytes(12)  # creation date
        + b"acsp"
        + bytes(28)  # platform, flags, manufacturer, model, attributes, rendering intent
        + s15f16(D50)
        + bytes(48)  # creator, profile id, reserved
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


DISPLAY_P3 = icc_profile(
    "Display P3 (Parroter test)", [(0.680, 0.320), (0.265, 0.690), (0.150, 0.060)], srgb_curve()
)
ADOBE_RGB = icc_profile(
    "Adobe RGB (1998) (Parroter test)",
    [(0.64, 0.33), (0.21, 0.71), (0.15, 0.06)],
    [563],  # gamma 563/256 = 2.19921875, as the Adobe RGB (1998) specification gives it
)
SRGB_WRITTEN = icc_profile(
    "sRGB (Parroter test)", [(0.64, 0.33), (0.30, 0.60), (0.15, 0.06)], srgb_curve()
)


# --- measuring ----------------------------------------------------------------------------------

# Saturated patches, most outside sRGB; none so saturated that 8-bit Lab (a, b in -128..127)
# would clip it. Laid out 3 x 2 on a 600x400 photo.
PATCHES = [(255, 0, 0), (0, 200, 60), (20, 40, 255), (255, 200, 0), (230, 0, 200), (0, 210, 210)]
PHOTO_SIZE = (600, 400)
CENTRES = [(200 * (n % 3) + 100, 200 * (n // 3) + 100) for n in range(len(PATCHES))]


def lab(img: Image.Image, xy: tuple[int, int], profile: bytes) -> tuple[float, float, float]:
    """CIELAB (D50) of the 3x3 mean around `xy`, through `profile`."""
    x, y = xy
    patch = img.convert("RGB").crop((x - 1, y - 1, x + 2, y + 2)).reduce(3)
    transform = ImageCms.buildTransform(
        ImageCms.ImageCmsProfile(io.BytesIO(profile)), LAB, "RGB", "LAB"
    )
    lightness, a, b = ImageCms.applyTransform(patch, transform).getpixel((0, 0))
    return lightness * 100 / 255, a - 128, b - 128  # 8-bit Lab: L scaled to 0..255, a/b offset


def delta_e(first: tuple[float, ...], second: tuple[float, ...]) -> float:
    return math.dist(first, second)  # CIE76


def photo(profile: bytes) -> bytes:
    img = Image.new("RGB", PHOTO_SIZE)
    for (x, y), colour in zip(CENTRES, PATCHES, strict=True):
        img.paste(colour, (x - 100, y - 100, x + 100, y + 100))
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=95, icc_profile=profile)
    return buffer.getvalue()


def thumbnail_of(source: bytes, label: str, output: Output) -> Image.Image:
    archive = io.BytesIO()
    make_archive(
        [SourceImage("wide.jpg", lambda: io.BytesIO(source))],
        [parse_box(label, max_edge=4096)],
        archive,
        output=output,
        max_pixels=PHOTO_SIZE[0] * PHOTO_SIZE[1],
    )
    with zipfile.ZipFile(archive) as zf:
        (name,) = zf.namelist()
        thumb = Image.open(io.BytesIO(zf.read(name)))
    thumb.load()
    return thumb


def centres_in(thumb: Image.Image, fit: str, label: str) -> list[tuple[int, int]]:
    """Where each patch's centre lands in a thumbnail made with `fit` into box `label`."""
    box = parse_box(label, max_edge=4096)
    width, height = PHOTO_SIZE
    # Crop covers the box (the box is within the photo here); fit is the thumbnail's own scale.
    scale = max(box.width / width, box.height / height) if fit == "crop" else thumb.width / width
    left = (round(width * scale) - thumb.width) // 2
    top = (round(height * scale) - thumb.height) // 2
    return [(round(x * scale) - left, round(y * scale) - top) for x, y in CENTRES]


# --- tests --------------------------------------------------------------------------------------


def test_the_written_profiles_match_published_values_and_an_independent_srgb() -> None:
    for profile in (DISPLAY_P3, ADOBE_RGB, SRGB_WRITTEN):
        # The adapted primaries add up to the D50 white (1/65536 steps of the stored numbers).
        stored = ImageCms.ImageCmsProfile(io.BytesIO(profile)).profile
        columns = (stored.red_colorant, stored.green_colorant, stored.blue_colorant)
        assert all(abs(sum(c[0][i] for c in columns) - D50[i]) < 1e-3 for i in range(3))
    # Apple's Display P3 profile stores red as X 0.5151, Y 0.2412, Z -0.0011.
    red = ImageCms.ImageCmsProfile(io.BytesIO(DISPLAY_P3)).profile.red_colorant[0]
    assert all(abs(a - b) < 2e-4 for a, b in zip(red, (0.5151, 0.2412, -0.0011), strict=True))
    # sRGB written the same way converts like lcms's own sRGB.
    for colour in PATCHES:
        pixel = Image.new("RGB", (3, 3), colour)
        assert delta_e(lab(pixel, (1, 1), SRGB_WRITTEN), lab(pixel, (1, 1), SRGB)) < 1.0


@pytest.mark.parametrize(("fit", "label"), [("fit", "120"), ("crop", "200x100")])
@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "PNG"])
@pytest.mark.parametrize("profile", [DISPLAY_P3, ADOBE_RGB], ids=["display-p3", "adobe-rgb"])
def test_a_wide_gamut_photo_keeps_its_colours(
    profile: bytes, fmt: str, fit: str, label: str
) -> None:
    source = photo(profile)
    with Image.open(io.BytesIO(source)) as decoded:
        wanted = [lab(decoded, centre, profile) for centre in CENTRES]
    thumb = thumbnail_of(source, label, Output(format=fmt, fit=fit))
    assert thumb.format == fmt
    # Whether the kind keeps the profile or converts to sRGB, the thumbnail says which.
    kept = thumb.info.get("icc_profile") or SRGB
    points = centres_in(thumb, fit, label)
    assert all(0 < x < thumb.width - 1 and 0 < y < thumb.height - 1 for x, y in points)
    shown = [lab(thumb, point, kept) for point in points]
    worst = max(delta_e(a, b) for a, b in zip(wanted, shown, strict=True))
    assert worst <= DELTA_E_LIMIT, f"ΔE*ab {worst:.2f}"
    # The check can fail: the same thumbnail read without its profile (as sRGB) is far off.
    as_srgb = [lab(thumb, point, SRGB) for point in points]
    assert max(delta_e(a, b) for a, b in zip(wanted, as_srgb, strict=True)) > 4 * DELTA_E_LIMIT


@pytest.mark.parametrize("fmt", ["WEBP", "PNG"])
def test_an_animated_wide_gamut_image_keeps_its_profile(fmt: str) -> None:
    frames = [Image.new("RGB", (120, 80), colour) for colour in PATCHES[:3]]
    buffer = io.BytesIO()
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], lossless=True,
                   duration=100, icc_profile=DISPLAY_P3)  # fmt: skip
    thumb = thumbnail_of(buffer.getvalue(), "60", Output(format=fmt))
    assert getattr(thumb, "n_frames", 1) == 3
    assert thumb.info.get("icc_profile") == DISPLAY_P3
