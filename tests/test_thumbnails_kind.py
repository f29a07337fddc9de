"""Unit tests for jobs.kinds.thumbnails: pure Pillow, no database, every input made here."""

from __future__ import annotations

import io
import random
import statistics
import struct
import zipfile

import pytest
from PIL import Image, ImageChops, ImageCms, ImageDraw, ImageFile, ImageOps, ImageStat

from jobs.kinds.thumbnails import (
    ALLOWED_FORMATS,
    Box,
    ImageInfo,
    Output,
    Thumbnail,
    ThumbnailError,
    inspect_image,
    make_thumbnails,
    parse_box,
)

MAX_PIXELS = 120_000_000
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
NOT_AN_IMAGE = "This file is not an image Parroter can read (JPEG, PNG, GIF, WebP, BMP or TIFF)."
CORRUPT = "The image data is truncated or corrupt and could not be decoded."


# --- helpers --------------------------------------------------------------------------------------


def encode(img: Image.Image, fmt: str, **params: object) -> io.BytesIO:
    stream = io.BytesIO()
    img.save(stream, fmt, **params)
    stream.seek(0)
    return stream


def boxes(*labels: str) -> list[Box]:
    return [parse_box(label, max_edge=4096) for label in labels]


def thumbnails(
    source: io.BytesIO, *labels: str, max_pixels: int = MAX_PIXELS
) -> tuple[list[Thumbnail], dict[str, Image.Image]]:
    """Run make_thumbnails; return its result and every ZIP entry decoded."""
    archive = io.BytesIO()
    result = make_thumbnails(source, boxes(*labels), archive, max_pixels=max_pixels)
    with zipfile.ZipFile(archive) as zf:
        images = {}
        for name in zf.namelist():
            with Image.open(io.BytesIO(zf.read(name))) as img:
                img.load()
                images[name] = img
    return result, images


def only(images: dict[str, Image.Image]) -> Image.Image:
    """The one thumbnail of a single-size run."""
    (image,) = images.values()
    return image


def halves(
    size: tuple[int, int],
    left: int | tuple[int, ...],
    right: int | tuple[int, ...],
    mode: str = "RGB",
) -> Image.Image:
    img = Image.new(mode, size, right)
    img.paste(left, (0, 0, size[0] // 2, size[1]))
    return img


def quadrants(size: tuple[int, int]) -> Image.Image:
    """Red, blue / green, white quadrants crossed by black diagonals (detail to compare)."""
    width, height = size
    img = Image.new("RGB", size, WHITE)
    img.paste(RED, (0, 0, width // 2, height // 2))
    img.paste(BLUE, (width // 2, 0, width, height // 2))
    img.paste(GREEN, (0, height // 2, width // 2, height))
    draw = ImageDraw.Draw(img)
    for x in range(-height, width, 40):
        draw.line([(x, 0), (x + height, height)], fill=(0, 0, 0), width=4)
    return img


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return statistics.fmean(ImageStat.Stat(ImageChops.difference(a, b)).mean)


def with_orientation(img: Image.Image, orientation: int) -> io.BytesIO:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "Parroter Test Camera"  # Make, to check outputs carry no EXIF at all
    return encode(img, "JPEG", exif=exif.tobytes(), quality=95)


def close(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 40) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def noisy(size: tuple[int, int]) -> Image.Image:
    """Random RGB pixels, the same on every run."""
    pixels = random.Random(0).randbytes(size[0] * size[1] * 3)  # noqa: S311 - test data
    return Image.frombytes("RGB", size, pixels)


# --- parse_box ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("256", Box(256, 256)),
        ("800x600", Box(800, 600)),
        ("800X600", Box(800, 600)),
        (" 800 x 600 ", Box(800, 600)),
        ("1", Box(1, 1)),
        ("4096x1", Box(4096, 1)),
    ],
)
def test_parse_box_accepts(text: str, expected: Box) -> None:
    assert parse_box(text, max_edge=4096) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", "'abc' is not a size: use 256 or 800x600."),
        ("", "'' is not a size: use 256 or 800x600."),
        ("12x", "'12x' is not a size: use 256 or 800x600."),
        ("1.5", "'1.5' is not a size: use 256 or 800x600."),
        ("0x0", "Size 0x0: width and height must be between 1 and 4096 pixels."),
        ("0", "Size 0x0: width and height must be between 1 and 4096 pixels."),
        ("-5x10", "Size -5x10: width and height must be between 1 and 4096 pixels."),
        ("4097", "Size 4097x4097: width and height must be between 1 and 4096 pixels."),
        ("100x5000", "Size 100x5000: width and height must be between 1 and 4096 pixels."),
    ],
)
def test_parse_box_rejects_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ThumbnailError) as caught:
        parse_box(text, max_edge=4096)
    assert str(caught.value) == message


@pytest.mark.parametrize("text", ["z" * 5000, "9" * 5000])
def test_parse_box_shortens_long_junk_in_its_message(text: str) -> None:
    with pytest.raises(ThumbnailError) as caught:
        parse_box(text, max_edge=4096)
    assert len(str(caught.value)) < 80


def test_box_label() -> None:
    assert Box(128, 128).label == "128x128"
    assert Box(800, 600).label == "800x600"


# --- inspect_image --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "extension"),
    [
        ("JPEG", "jpg"),
        ("PNG", "png"),
        ("GIF", "gif"),
        ("WEBP", "webp"),
        ("BMP", "bmp"),
        ("TIFF", "tiff"),
    ],
)
def test_inspect_image_reports_format_size_and_extension(fmt: str, extension: str) -> None:
    stream = encode(Image.new("RGB", (30, 20), RED), fmt)
    stream.seek(5)
    assert inspect_image(stream, max_pixels=MAX_PIXELS) == ImageInfo(fmt, 30, 20, extension)
    assert stream.tell() == 0
    assert fmt in ALLOWED_FORMATS


def test_inspect_image_reads_only_the_header() -> None:
    # Decoding a PNG cut short would fail, so this passes only if nothing is decoded.
    whole = encode(noisy((300, 200)), "PNG").getvalue()
    cut = io.BytesIO(whole[: len(whole) // 2])
    assert inspect_image(cut, max_pixels=MAX_PIXELS) == ImageInfo("PNG", 300, 200, "png")


def test_inspect_image_reports_displayed_size_of_rotated_photo() -> None:
    stream = with_orientation(Image.new("RGB", (400, 200)), 6)
    assert inspect_image(stream, max_pixels=MAX_PIXELS) == ImageInfo("JPEG", 200, 400, "jpg")


def test_inspect_image_treats_multi_picture_jpeg_as_jpeg() -> None:
    stream = encode(
        Image.new("RGB", (40, 30), RED),
        "MPO",
        save_all=True,
        append_images=[Image.new("RGB", (40, 30))],
    )
    assert inspect_image(stream, max_pixels=MAX_PIXELS) == ImageInfo("JPEG", 40, 30, "jpg")
    result, images = thumbnails(stream, "16")
    assert result == [Thumbnail("image_16x12.jpg", 16, 12, result[0].bytes)]
    assert close(images["image_16x12.jpg"].getpixel((8, 6)), RED)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"Hello, this is a text file.\n" * 20,
        b"\x89PNG\r\n\x1a\n" + random.Random(1).randbytes(2000),  # noqa: S311 - test data
        encode(Image.new("RGB", (16, 16)), "PCX").getvalue(),  # a format Pillow reads, we do not
        encode(Image.new("RGB", (16, 16)), "ICO").getvalue(),
    ],
    ids=["empty", "text", "png-signature-then-junk", "pcx", "ico"],
)
def test_not_an_allowed_image_is_rejected_by_both(data: bytes) -> None:
    stream = io.BytesIO(data)
    with pytest.raises(ThumbnailError) as caught:
        inspect_image(stream, max_pixels=MAX_PIXELS)
    assert str(caught.value) == NOT_AN_IMAGE
    assert stream.tell() == 0
    with pytest.raises(ThumbnailError) as caught:
        thumbnails(io.BytesIO(data), "128")
    assert str(caught.value) == NOT_AN_IMAGE


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """A 20000x20000 (400 MP) PNG of one colour: about 50 kB, far past Pillow's own limit."""
    data = encode(Image.new("1", (20000, 20000)), "PNG").getvalue()
    assert len(data) < 100_000
    return data


def test_inspect_image_rejects_a_decompression_bomb(bomb: bytes) -> None:
    with pytest.raises(ThumbnailError, match="megapixels") as caught:
        inspect_image(io.BytesIO(bomb), max_pixels=MAX_PIXELS)
    assert "the limit is 120 megapixels" in str(caught.value)


def test_make_thumbnails_rejects_a_decompression_bomb(bomb: bytes) -> None:
    with pytest.raises(ThumbnailError, match="the limit is 120 megapixels"):
        thumbnails(io.BytesIO(bomb), "128")


def test_pixel_limit_below_pillows_own_is_enforced_from_the_header() -> None:
    stream = encode(Image.new("L", (2000, 1000)), "PNG")
    message = "The image is 2000×1000 pixels (2 megapixels); the limit is 1 megapixels."
    with pytest.raises(ThumbnailError) as caught:
        inspect_image(stream, max_pixels=1_000_000)
    assert str(caught.value) == message
    with pytest.raises(ThumbnailError) as caught:
        thumbnails(stream, "128", max_pixels=1_000_000)
    assert str(caught.value) == message


# --- make_thumbnails: sizes, names, archive, progress ---------------------------------------------


def test_sizes_fit_each_box_keeping_aspect_ratio_in_the_order_given() -> None:
    source = encode(noisy((1000, 600)), "JPEG")
    result, images = thumbnails(source, "256", "128", "512", "300x100")
    assert [(t.name, t.width, t.height) for t in result] == [
        ("image_256x154.jpg", 256, 154),
        ("image_128x77.jpg", 128, 77),
        ("image_512x307.jpg", 512, 307),
        ("image_167x100.jpg", 167, 100),
    ]
    for thumb in result:
        assert images[thumb.name].size == (thumb.width, thumb.height)
        assert images[thumb.name].format == "JPEG"
        assert images[thumb.name].mode == "RGB"


def test_archive_entries_are_stored_with_the_reported_sizes() -> None:
    archive = io.BytesIO()
    result = make_thumbnails(
        encode(noisy((300, 200)), "JPEG"), boxes("64", "128"), archive, max_pixels=MAX_PIXELS
    )
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos] == ["image_64x43.jpg", "image_128x85.jpg"]
        assert {i.compress_type for i in infos} == {zipfile.ZIP_STORED}
        assert [i.file_size for i in infos] == [t.bytes for t in result]
        assert zf.testzip() is None


def test_never_upscales_an_image_smaller_than_the_box() -> None:
    result, images = thumbnails(encode(noisy((100, 50)), "PNG"), "512", "80", "1000x20")
    assert [(t.width, t.height) for t in result] == [(100, 50), (80, 40), (40, 20)]
    assert images["image_100x50.png"].size == (100, 50)


def test_a_one_pixel_image_gives_one_pixel_thumbnails() -> None:
    result, images = thumbnails(encode(Image.new("RGB", (1, 1), BLUE), "PNG"), "128", "3x1")
    assert [(t.width, t.height) for t in result] == [(1, 1)]  # one file for both boxes
    assert images["image_1x1.png"].getpixel((0, 0)) == BLUE


def test_extreme_aspect_ratio_keeps_at_least_one_pixel() -> None:
    result, _ = thumbnails(encode(Image.new("L", (2000, 2)), "PNG"), "64")
    assert [(t.width, t.height) for t in result] == [(64, 1)]


def test_progress_is_non_decreasing_and_ends_at_100() -> None:
    calls: list[int] = []
    make_thumbnails(
        encode(noisy((600, 400)), "JPEG"),
        boxes("128", "512", "256"),
        io.BytesIO(),
        max_pixels=MAX_PIXELS,
        progress=calls.append,
    )
    assert len(calls) >= 4  # after decoding, after each of the three thumbnails
    assert calls == sorted(calls)
    assert all(0 <= p <= 100 for p in calls)
    assert calls[-1] == 100


def test_no_sizes_or_a_size_twice_is_an_error() -> None:
    with pytest.raises(ThumbnailError, match="at least one"):
        thumbnails(encode(noisy((50, 50)), "PNG"))
    with pytest.raises(ThumbnailError, match="128x128 is requested twice"):
        thumbnails(encode(noisy((50, 50)), "PNG"), "128", "256", "128x128")


def test_leaves_the_callers_stream_open_and_pillow_globals_alone() -> None:
    def pillow_globals() -> tuple[int | None, bool]:
        return Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES

    before = pillow_globals()
    source = encode(noisy((80, 60)), "JPEG")
    thumbnails(source, "32")
    assert not source.closed
    assert pillow_globals() == before
    assert before[1] is False


# --- make_thumbnails: orientation -----------------------------------------------------------------


def test_orientation_6_photo_becomes_portrait_with_the_left_half_on_top() -> None:
    # Orientation 6: the stored image must be turned 90° clockwise to be viewed upright.
    source = with_orientation(halves((400, 200), RED, BLUE), 6)
    result, images = thumbnails(source, "128")
    assert (result[0].width, result[0].height) == (64, 128)
    thumb = only(images)
    assert close(thumb.getpixel((32, 20)), RED)
    assert close(thumb.getpixel((32, 108)), BLUE)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillows_exif_transpose(orientation: int) -> None:
    source = with_orientation(quadrants((400, 200)), orientation)
    with Image.open(source) as img:
        expected = ImageOps.exif_transpose(img)
    source.seek(0)
    result, images = thumbnails(source, "128")
    thumb = images[result[0].name]
    assert thumb.size == ((64, 128) if orientation >= 5 else (128, 64))
    # Each quadrant's mean colour: a single pixel lies within a few of a diagonal, and reads
    # how far the resampling filter spreads it.
    means, want = (img.resize((2, 2), Image.Resampling.BOX) for img in (thumb, expected))
    for corner in [(0, 0), (1, 0), (0, 1), (1, 1)]:
        assert close(means.getpixel(corner), want.getpixel(corner))
    # The diagonals stay as sharp as in a direct resize only if the image was reduced once, in
    # the right orientation (about 10 here, mostly JPEG chroma loss; squeezed and re-stretched: 16).
    assert mean_difference(thumb, expected.resize(thumb.size, Image.Resampling.LANCZOS)) < 13


def test_output_carries_no_exif_or_comment_but_keeps_an_rgb_colour_profile() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "Parroter Test Camera"
    source = encode(
        noisy((300, 200)), "JPEG", exif=exif.tobytes(), icc_profile=srgb, comment=b"home address"
    )
    _, images = thumbnails(source, "64")
    thumb = only(images)
    assert "exif" not in thumb.info
    assert "comment" not in thumb.info
    assert len(thumb.getexif()) == 0
    assert thumb.info.get("icc_profile") == srgb


def test_a_cmyk_colour_profile_is_not_attached_to_rgb_output() -> None:
    cmyk_profile = bytes(16) + b"CMYK" + bytes(108)  # only the header field the module reads
    source = encode(Image.new("CMYK", (40, 40)), "JPEG", icc_profile=cmyk_profile)
    _, images = thumbnails(source, "20")
    assert "icc_profile" not in only(images).info


# --- make_thumbnails: modes and output formats ----------------------------------------------------


def test_rgba_png_keeps_transparency_as_png() -> None:
    source = encode(halves((200, 100), (0, 0, 0, 0), (255, 0, 0, 255), "RGBA"), "PNG")
    result, images = thumbnails(source, "100")
    thumb = only(images)
    assert result[0].name.endswith(".png")
    assert (thumb.format, thumb.mode, thumb.size) == ("PNG", "RGBA", (100, 50))
    assert thumb.getpixel((10, 25))[3] == 0
    assert thumb.getpixel((90, 25)) == (255, 0, 0, 255)


def test_palette_gif_with_transparency_becomes_rgba_png() -> None:
    img = Image.new("P", (200, 100), 1)
    img.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    ImageDraw.Draw(img).rectangle((0, 0, 99, 99), fill=0)
    result, images = thumbnails(encode(img, "GIF", transparency=0), "100")
    thumb = only(images)
    assert result[0].name.endswith(".png")
    assert thumb.mode == "RGBA"
    assert thumb.getpixel((10, 25))[3] == 0
    assert thumb.getpixel((90, 25)) == (0, 255, 0, 255)


def test_rgb_png_with_a_transparent_colour_becomes_rgba() -> None:
    source = encode(halves((200, 100), RED, BLUE), "PNG", transparency=RED)
    _, images = thumbnails(source, "100")
    thumb = only(images)
    assert thumb.mode == "RGBA"
    assert thumb.getpixel((10, 25))[3] == 0
    assert thumb.getpixel((90, 25)) == (0, 0, 255, 255)


def test_palette_png_without_transparency_becomes_rgb() -> None:
    img = Image.new("RGB", (64, 64), BLUE).quantize(4)
    _, images = thumbnails(encode(img, "PNG"), "32")
    thumb = only(images)
    assert thumb.mode == "RGB"
    assert thumb.getpixel((16, 16)) == BLUE


def test_animated_gif_stays_animated_with_its_frames_durations_and_loop() -> None:
    frames = [Image.new("RGB", (60, 40), colour) for colour in (RED, BLUE, GREEN)]
    source = encode(
        frames[0], "GIF", save_all=True, append_images=frames[1:], duration=[70, 80, 90], loop=2
    )
    result, images = thumbnails(source, "30")
    thumb = only(images)
    assert (result[0].name, thumb.format, thumb.size) == ("image_30x20.gif", "GIF", (30, 20))
    assert (thumb.n_frames, thumb.info["loop"]) == (3, 2)
    seen = []
    for index in range(3):
        thumb.seek(index)
        seen.append((thumb.info["duration"], thumb.convert("RGB").getpixel((15, 10))))
    assert seen == [(70, RED), (80, BLUE), (90, GREEN)]


def test_cmyk_jpeg_becomes_an_rgb_jpeg() -> None:
    source = encode(Image.new("CMYK", (120, 80), (0, 255, 255, 0)), "JPEG")  # red ink
    _, images = thumbnails(source, "60")
    thumb = only(images)
    assert (thumb.format, thumb.mode) == ("JPEG", "RGB")
    assert close(thumb.getpixel((30, 20)), RED)


def test_sixteen_bit_grey_png_is_scaled_not_clipped() -> None:
    # Top to bottom 0..65535; clipping to 8 bits would make nearly all of it white.
    wide = Image.linear_gradient("L").convert("I").point(lambda value: value * 257)
    source = encode(wide.convert("I;16"), "PNG")
    with Image.open(source) as opened:
        assert opened.mode == "I;16"
    source.seek(0)
    _, images = thumbnails(source, "64")
    thumb = only(images)
    assert thumb.mode == "L"
    assert abs(thumb.getpixel((32, 32)) - 128) <= 8
    assert thumb.getpixel((32, 1)) < 16
    assert thumb.getpixel((32, 62)) > 240


@pytest.mark.parametrize(
    ("mode", "fmt"), [("I;16", "PNG"), ("I;16", "TIFF"), ("I;16B", "TIFF"), ("I", "TIFF")]
)
def test_every_sixteen_bit_value_keeps_its_high_byte(mode: str, fmt: str) -> None:
    # Each of 0..65535 once, in each layout Pillow opens 16-bit grey as; not resized.
    layout = {"I;16": "<65536H", "I;16B": ">65536H", "I": "<65536i"}[mode]
    every = Image.frombytes(mode, (256, 256), struct.pack(layout, *range(65536)))
    source = encode(every, fmt)
    with Image.open(source) as opened:
        assert opened.mode == mode
    source.seek(0)
    archive = io.BytesIO()
    png = Output(format="PNG")
    make_thumbnails(source, boxes("256"), archive, output=png, max_pixels=MAX_PIXELS)
    with zipfile.ZipFile(archive) as zf, Image.open(io.BytesIO(zf.read(zf.namelist()[0]))) as thumb:
        assert thumb.mode == "L"
        assert thumb.tobytes() == bytes(value >> 8 for value in range(65536))


def test_bilevel_image_becomes_grey() -> None:
    _, images = thumbnails(encode(halves((64, 64), 0, 1, "1"), "PNG"), "32")
    thumb = only(images)
    assert thumb.mode == "L"
    assert (thumb.getpixel((4, 16)), thumb.getpixel((28, 16))) == (0, 255)


@pytest.mark.parametrize(
    ("img", "fmt", "expected_format", "expected_mode"),
    [
        (Image.new("RGB", (64, 48), RED), "BMP", "JPEG", "RGB"),
        (Image.new("RGB", (64, 48), RED), "TIFF", "JPEG", "RGB"),
        (Image.new("L", (64, 48), 200), "JPEG", "JPEG", "L"),
        (Image.new("RGBA", (64, 48), (255, 0, 0, 128)), "TIFF", "PNG", "RGBA"),
        (Image.new("RGB", (64, 48), RED), "WEBP", "WEBP", "RGB"),
        (Image.new("RGBA", (64, 48), (255, 0, 0, 128)), "WEBP", "WEBP", "RGBA"),
    ],
    ids=["bmp", "tiff", "grey-jpeg", "tiff-alpha", "webp", "webp-alpha"],
)
def test_output_format_follows_source_and_alpha(
    img: Image.Image, fmt: str, expected_format: str, expected_mode: str
) -> None:
    result, images = thumbnails(encode(img, fmt), "32")
    thumb = images[result[0].name]
    extension = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[expected_format]
    assert result[0].name == f"image_32x24.{extension}"
    assert (thumb.format, thumb.mode, thumb.size) == (expected_format, expected_mode, (32, 24))


# --- make_thumbnails: broken input ----------------------------------------------------------------


def test_truncated_jpeg_is_a_clear_error_not_an_oserror() -> None:
    whole = encode(noisy((256, 256)), "JPEG").getvalue()
    half = io.BytesIO(whole[: len(whole) // 2])
    # The header is intact, so the cheap check passes; only decoding can find the damage.
    assert inspect_image(half, max_pixels=MAX_PIXELS).width == 256
    with pytest.raises(ThumbnailError) as caught:
        thumbnails(half, "128")
    assert str(caught.value) == CORRUPT
    assert not isinstance(caught.value, OSError)


def test_png_with_corrupt_pixel_data_is_a_clear_error() -> None:
    data = bytearray(encode(noisy((64, 64)), "PNG").getvalue())
    start = data.index(b"IDAT") + 20
    data[start : start + 200] = bytes(200)
    with pytest.raises(ThumbnailError) as caught:
        thumbnails(io.BytesIO(bytes(data)), "32")
    assert str(caught.value) == CORRUPT
