"""Unit tests for the kind's output choices and jobs of many images: fit modes, formats,
quality, transparency, metadata, names in the ZIP, per-image failures, progress, animation."""

from __future__ import annotations

import io
import random
import zipfile
from collections.abc import Sequence
from functools import partial
from pathlib import PurePosixPath

import pytest
from PIL import ExifTags, Image, features

from jobs.kinds import thumbnails
from jobs.kinds.thumbnails import (
    DEFAULT_OUTPUT,
    OUTPUT_EXTENSIONS,
    OUTPUT_FORMATS,
    Archive,
    Box,
    Output,
    SourceImage,
    ThumbnailError,
    animation,
    base,
    checks,
    make_archive,
    parse_box,
)
from tests.test_thumbnails_kind import BLUE, CORRUPT, GREEN, RED, close, encode, noisy

MAX_PIXELS = 120_000_000
BACKGROUND = (10, 200, 30)
YELLOW = (255, 255, 0)
CLEAR = (0, 0, 0, 0)
LOSSY = ["JPEG", "WEBP", "AVIF"]
WITH_ALPHA = ["PNG", "WEBP", "AVIF"]
ALL_FORMATS = ["JPEG", *WITH_ALPHA]


# --- helpers --------------------------------------------------------------------------------------


def writable(fmt: str) -> bool:
    """Whether the kind offers `fmt`. Only AVIF may be missing (a Pillow without libavif), and
    then the form must say so: asserted here, so a case is never passed over in silence."""
    if fmt in OUTPUT_FORMATS:
        return True
    from jobs.forms import ThumbnailJobForm

    assert fmt == "AVIF" and not features.check("avif")
    assert "AVIF is not available" in ThumbnailJobForm().fields["format"].help_text
    return False


def run(
    sources: Sequence[tuple[str, bytes]],
    *labels: str,
    output: Output = DEFAULT_OUTPUT,
    **options: object,
) -> tuple[Archive, dict[str, bytes]]:
    """make_archive over in-memory files; its result and every ZIP entry's bytes."""
    archive = io.BytesIO()
    images = [SourceImage(name, partial(io.BytesIO, data)) for name, data in sources]
    boxes = [parse_box(label, max_edge=4096) for label in labels]
    made = make_archive(images, boxes, archive, output=output, max_pixels=MAX_PIXELS, **options)
    with zipfile.ZipFile(archive) as zf:
        return made, {name: zf.read(name) for name in zf.namelist()}


def one(source: bytes, label: str, output: Output = DEFAULT_OUTPUT) -> Image.Image:
    """The one thumbnail of one image and one size, decoded."""
    _, entries = run([("image", source)], label, output=output)
    (data,) = entries.values()
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def rgba(img: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    return img.convert("RGBA").getpixel(xy)


def position_coded(size: tuple[int, int]) -> Image.Image:
    """Red grows left to right, green top to bottom: a pixel's colour says where it came from."""
    width, height = size
    row = bytes(round(255 * x / (width - 1)) for x in range(width))
    column = bytes(round(255 * y / (height - 1)) for y in range(height))
    red = Image.frombytes("L", (width, 1), row).resize(size, Image.Resampling.NEAREST)
    green = Image.frombytes("L", (1, height), column).resize(size, Image.Resampling.NEAREST)
    return Image.merge("RGB", (red, green, Image.new("L", size)))


def assert_shows(thumb: Image.Image, size: tuple[int, int], shown: tuple[float, ...]) -> None:
    """`thumb`, made from position_coded(size), shows exactly the source rectangle `shown`
    (left, top, right, bottom): its edge pixels have the colours of that rectangle's edges."""
    width, height = thumb.size
    left, top, right, bottom = shown
    step_x, step_y = (right - left) / width, (bottom - top) / height

    def red_at(x: float) -> float:  # a pixel's centre, in source pixels
        return 255 * (left + (x + 0.5) * step_x - 0.5) / (size[0] - 1)

    def green_at(y: float) -> float:
        return 255 * (top + (y + 0.5) * step_y - 0.5) / (size[1] - 1)

    middle = (width // 2, height // 2)
    for x in (0, width - 1):
        assert abs(thumb.getpixel((x, middle[1]))[0] - red_at(x)) <= 4, (x, shown)
    for y in (0, height - 1):
        assert abs(thumb.getpixel((middle[0], y))[1] - green_at(y)) <= 4, (y, shown)


# --- fit modes ------------------------------------------------------------------------------------


def test_fit_keeps_the_whole_image_inside_the_box() -> None:
    size = (1000, 500)
    thumb = one(encode(position_coded(size), "PNG").getvalue(), "120x90", Output(fit="fit"))
    assert thumb.size == (120, 60)
    assert_shows(thumb, size, (0, 0, *size))


@pytest.mark.parametrize(
    ("size", "label", "out", "shown"),
    [
        ((1000, 500), "100x100", (100, 100), (250, 0, 750, 500)),  # wide: the sides go
        ((500, 1000), "100x100", (100, 100), (0, 250, 500, 750)),  # tall: top and bottom go
        ((1000, 500), "100x20", (100, 20), (0, 150, 1000, 350)),  # a flatter box than the image
        # Smaller than the box: never enlarged, the largest piece of the box's shape instead.
        ((300, 200), "400x400", (200, 200), (50, 0, 250, 200)),
        ((300, 200), "600x200", (300, 100), (0, 50, 300, 150)),
    ],
    ids=["wide", "tall", "flat-box", "small-square", "small-wide"],
)
def test_crop_fills_exactly_the_box_with_the_centre_of_the_image(
    size: tuple[int, int], label: str, out: tuple[int, int], shown: tuple[int, ...]
) -> None:
    thumb = one(encode(position_coded(size), "PNG").getvalue(), label, Output(fit="crop"))
    assert thumb.size == out
    assert_shows(thumb, size, shown)


@pytest.mark.parametrize("transparent", [True, False], ids=["transparent", "opaque"])
@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_pad_centres_the_image_on_exactly_the_box(fmt: str, transparent: bool) -> None:
    if not writable(fmt):
        return
    source = encode(Image.new("RGB", (200, 100), RED), "PNG").getvalue()
    output = Output(format=fmt, fit="pad", background=BACKGROUND, transparent=transparent)
    thumb = one(source, "100x100", output)
    assert (thumb.format, thumb.size) == (fmt, (100, 100))
    # The image, scaled to 100x50, fills rows 25..74; padding above and below.
    padding = CLEAR if transparent and fmt != "JPEG" else (*BACKGROUND, 255)
    for y in (10, 90):
        assert close(rgba(thumb, (50, y)), padding, 12)
    for x, y in [(2, 30), (50, 50), (97, 70)]:
        assert close(rgba(thumb, (x, y)), (*RED, 255), 12)
    if fmt == "PNG":  # lossless: the image's rectangle to the pixel
        image_area = Image.eval(thumb.convert("RGB"), lambda v: 255 if v > 128 else 0)
        assert image_area.getchannel("R").getbbox() == (0, 25, 100, 75)


# --- formats, quality, transparency, metadata -----------------------------------------------------


def test_avif_is_offered_exactly_when_this_pillow_can_write_it() -> None:
    from jobs.forms import FORMAT_CHOICES, ThumbnailJobForm

    available = features.check("avif")
    assert ("AVIF" in OUTPUT_FORMATS) == available
    assert ("AVIF" in dict(FORMAT_CHOICES)) == available
    help_text = ThumbnailJobForm().fields["format"].help_text
    assert ("AVIF is not available" in help_text) == (not available)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_each_output_format_is_made_as_chosen(fmt: str, mode: str) -> None:
    if not writable(fmt):
        return
    img = Image.new(mode, (90, 60), (*RED, 255))
    if mode == "RGBA":
        img.paste(CLEAR, (0, 0, 45, 60))
    made, entries = run(
        [("shop photo.png", encode(img, "PNG").getvalue())], "30", output=Output(fmt)
    )
    assert list(entries) == [f"shop_photo_30x20.{OUTPUT_EXTENSIONS[fmt]}"]
    thumb = Image.open(io.BytesIO(entries[made.thumbnails[0].name]))
    assert (thumb.format, thumb.size) == (fmt, (30, 20))
    keeps_alpha = mode == "RGBA" and fmt != "JPEG"
    assert thumb.mode == ("RGBA" if keeps_alpha else "RGB")
    assert close(rgba(thumb, (25, 10)), (*RED, 255), 12)
    left = rgba(thumb, (4, 10))
    if mode == "RGB":
        assert close(left, (*RED, 255), 12)
    elif keeps_alpha:
        assert left[3] == 0
    else:  # a JPEG has no alpha: the default background, white
        assert close(left, (255, 255, 255, 255), 12)


@pytest.mark.parametrize("fmt", LOSSY)
def test_quality_changes_the_size_of_lossy_outputs(fmt: str) -> None:
    if not writable(fmt):
        return
    source = encode(noisy((256, 256)), "PNG").getvalue()
    sizes = [
        run([("n.png", source)], "256", output=Output(fmt, quality=quality))[0].thumbnails[0].bytes
        for quality in (20, 90)
    ]
    assert sizes[0] < 0.7 * sizes[1], sizes


def test_quality_does_not_touch_a_lossless_output() -> None:
    source = encode(noisy((64, 64)), "PNG").getvalue()
    made = [run([("n.png", source)], "64", output=Output("PNG", quality=q))[1] for q in (20, 90)]
    assert made[0] == made[1]


def translucent_source() -> bytes:
    """Left half fully transparent, right half red at half opacity."""
    img = Image.new("RGBA", (80, 40), CLEAR)
    img.paste((*RED, 128), (40, 0, 80, 40))
    return encode(img, "PNG").getvalue()


def test_rgba_to_jpeg_is_flattened_onto_the_background_colour() -> None:
    thumb = one(translucent_source(), "40", Output("JPEG", background=BLUE))
    assert thumb.mode == "RGB"
    assert close(thumb.getpixel((5, 10)), BLUE, 8)
    assert close(thumb.getpixel((35, 10)), (128, 0, 127), 8)  # half red over blue


@pytest.mark.parametrize("fmt", WITH_ALPHA)
def test_opaque_output_fills_transparency_with_the_background_in_every_format(fmt: str) -> None:
    # The form's "Fill transparent areas with the background colour, in every format".
    if not writable(fmt):
        return
    thumb = one(translucent_source(), "40", Output(fmt, background=BLUE, transparent=False))
    assert close(rgba(thumb, (5, 10)), (*BLUE, 255), 8)
    assert close(rgba(thumb, (35, 10)), (128, 0, 127, 255), 8)


CAMERA = b"Parroter Test Camera"


def with_location(fmt: str) -> bytes:
    """An image whose EXIF holds a camera and a GPS position (and, where the format keeps
    XMP, a GPS position there too)."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = CAMERA.decode()
    exif[ExifTags.IFD.GPSInfo] = {1: "N", 2: (52.0, 22.0, 7.5), 3: "E", 4: (4.0, 53.0, 0.0)}
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
        b'22-rdf-syntax-ns#"><rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/" '
        b'exif:GPSLatitude="52,22.1N"/></rdf:RDF></x:xmpmeta>'
    )
    data = encode(noisy((120, 80)), fmt, exif=exif.tobytes(), xmp=xmp).getvalue()
    with Image.open(io.BytesIO(data)) as img:  # the source does carry them
        assert img.getexif().get_ifd(ExifTags.IFD.GPSInfo)[2] == (52.0, 22.0, 7.5)
    assert CAMERA in data
    return data


@pytest.mark.parametrize("fmt", [None, *ALL_FORMATS])
@pytest.mark.parametrize("source_format", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_no_exif_or_gps_reaches_any_output_format(source_format: str, fmt: str | None) -> None:
    if fmt and not writable(fmt):
        return
    _, entries = run([("here.img", with_location(source_format))], "64", "32", output=Output(fmt))
    assert len(entries) == 2
    for data in entries.values():
        assert CAMERA not in data
        assert b"GPSLatitude" not in data
        with Image.open(io.BytesIO(data)) as thumb:
            assert "exif" not in thumb.info and "xmp" not in thumb.info
            assert len(thumb.getexif()) == 0


# --- names in the archive ---------------------------------------------------------------------


def test_names_say_the_real_size_under_a_unique_folder_per_image() -> None:
    jpeg = encode(noisy((300, 200)), "JPEG").getvalue()
    png = encode(noisy((100, 150)), "PNG").getvalue()
    names = ["photo.jpg", "Photo.png", "PHOTO.JPEG", "photo-2.jpg"]
    made, entries = run(list(zip(names, [jpeg, png, jpeg, jpeg], strict=True)), "128", "64x64")
    assert [image.folder for image in made.images] == ["photo", "Photo-2", "PHOTO-3", "photo-2-2"]
    assert [image.name for image in made.images] == names
    folders = {image.folder.casefold() for image in made.images}
    assert len(folders) == len(names)
    for thumb in made.thumbnails:
        folder = made.images[thumb.image].folder
        with Image.open(io.BytesIO(entries[thumb.name])) as img:
            assert img.size == (thumb.width, thumb.height)
        extension = "png" if thumb.image == 1 else "jpg"
        assert thumb.name == f"{folder}/{folder}_{img.width}x{img.height}.{extension}"
    assert sorted(entries) == sorted(t.name for t in made.thumbnails)
    assert "photo/photo_128x85.jpg" in entries and "Photo-2/Photo-2_43x64.png" in entries


def test_one_image_has_its_thumbnails_at_the_top_of_the_archive() -> None:
    _, entries = run([("holiday.jpg", encode(noisy((300, 200)), "JPEG").getvalue())], "128")
    assert list(entries) == ["holiday_128x85.jpg"]


HOSTILE_NAMES = [
    "../../x.jpg",
    "/etc/passwd.png",
    "a\\b.png",
    "..\\..\\windows\\system.jpg",
    "..",
    ".jpg",
    "C:\\photos\\cat.jpg",
    "con.jpg",
    "a" * 500 + ".jpg",
    "日本語の写真.jpg",
    "café au lait.jpeg",
    "tab\tand\nnewline.jpg",
    "emoji 🐱.png",
]


def test_hostile_names_stay_safe_inside_the_archive(tmp_path) -> None:
    jpeg = encode(noisy((40, 30)), "JPEG").getvalue()
    made, entries = run([(name, jpeg) for name in HOSTILE_NAMES], "16")
    assert len(made.images) == len(HOSTILE_NAMES) and not any(i.error for i in made.images)
    folders = [image.folder for image in made.images]
    assert len({folder.casefold() for folder in folders}) == len(folders)
    assert folders[:2] == ["x", "passwd"] and folders[2] == "b"
    for name in entries:
        path = PurePosixPath(name)
        assert len(path.parts) == 2 and not path.is_absolute()
        assert not {"..", "."} & set(path.parts) and "\\" not in name and ":" not in name
        assert all(ord(char) >= 32 for char in name)
        assert len(path.parts[0]) <= 80 and not path.parts[0].startswith(".")
    with zipfile.ZipFile(io.BytesIO(zip_of(entries))) as zf:
        zf.extractall(tmp_path / "out")
    extracted = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert len(extracted) == len(entries)
    assert all(p.resolve().is_relative_to((tmp_path / "out").resolve()) for p in extracted)
    assert "日本語の写真" in folders and "café_au_lait" in folders


@pytest.mark.parametrize(
    ("name", "stem"),
    [("con.jpg", "con_"), ("NUL.png", "NUL_"), ("com1.tar.gif", "com1_.tar"), ("console.jpg",
     "console"), ("lpt9.webp", "lpt9_")],
)  # fmt: skip
def test_names_windows_cannot_make_are_changed(name: str, stem: str) -> None:
    assert thumbnails.archive_stem(name) == stem


def zip_of(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("fit", "labels", "expected"),
    [
        ("fit", ("256", "300x50"), ["s_100x50.png"]),  # neither enlarges 100x50
        ("crop", ("100", "200"), ["s_50x50.png"]),  # both the largest square: all of it
    ],
)
def test_two_boxes_giving_the_same_thumbnail_write_it_once(
    fit: str, labels: tuple[str, ...], expected: list[str]
) -> None:
    size = (100, 50) if fit == "fit" else (50, 50)
    made, entries = run(
        [("s.png", encode(noisy(size), "PNG").getvalue())], *labels, output=Output(fit=fit)
    )
    assert list(entries) == expected
    assert [t.name for t in made.thumbnails] == expected


# --- many images: failures and progress -------------------------------------------------------


def batch_with_a_bad_image() -> list[tuple[str, bytes]]:
    whole = encode(noisy((200, 100)), "JPEG").getvalue()
    return [
        ("first.jpg", whole),
        ("broken.jpg", whole[: len(whole) // 2]),
        ("notes.png", b"just some text\n" * 10),
        ("last.png", encode(noisy((90, 120)), "PNG").getvalue()),
    ]


def test_a_bad_image_among_good_ones_is_reported_and_the_others_are_made() -> None:
    calls: list[tuple[int, int]] = []
    made, entries = run(batch_with_a_bad_image(), "64", "32", progress=lambda *c: calls.append(c))
    outcomes = [(i.name, i.folder, i.error) for i in made.images]
    assert outcomes == [
        ("first.jpg", "first", ""),
        ("broken.jpg", "broken", CORRUPT),
        ("notes.png", "notes", base._NOT_AN_IMAGE),
        ("last.png", "last", ""),
    ]
    assert sorted(entries) == [
        "first/first_32x16.jpg",
        "first/first_64x32.jpg",
        "last/last_24x32.png",
        "last/last_48x64.png",
    ]
    assert {t.image for t in made.thumbnails} == {0, 3}
    # Progress: (percent, images done) never goes back and ends at (100, every image).
    assert calls == sorted(calls) and len(calls) >= 4
    assert all(0 <= percent <= 100 and 0 <= done <= 4 for percent, done in calls)
    assert calls[-1] == (100, 4)
    assert [done for _, done in calls] == sorted(done for _, done in calls)


def test_when_no_image_can_be_read_the_error_lists_them() -> None:
    bad = [item for item in batch_with_a_bad_image() if item[0] in ("broken.jpg", "notes.png")]
    with pytest.raises(ThumbnailError) as caught:
        run(bad, "64")
    assert str(caught.value) == (
        f"None of the 2 images could be read. broken.jpg: {CORRUPT}; "
        f"notes.png: {base._NOT_AN_IMAGE}"
    )
    with pytest.raises(ThumbnailError) as caught:
        run([(f"{n}.jpg", b"") for n in range(5)], "64")
    assert str(caught.value).startswith("None of the 5 images could be read. 0.jpg: ")
    assert str(caught.value).endswith(" (and 2 more)")


# --- animation ------------------------------------------------------------------------------------

DURATIONS = [70, 80, 90]
PALETTE = [*(0, 0, 0), *RED, *BLUE, *GREEN, *YELLOW] + [0] * (256 - 5) * 3


def gif_frame(left: int, right: int) -> Image.Image:
    """A 60x40 palette frame: index 0 is transparent, then red, blue, green, yellow."""
    frame = Image.new("P", (60, 40), left)
    frame.putpalette(PALETTE)
    frame.paste(right, (30, 0, 60, 40))
    return frame


def animated(fmt: str, frames: list[Image.Image], loop: int | None = 2) -> bytes:
    params = {"loop": loop} if loop is not None else {}
    if fmt == "GIF":
        # optimize=False keeps the transparent index in every frame, so Pillow (which restores a
        # disposed frame to it) and browsers (which clear to transparent) show the same.
        params.update(disposal=2, transparency=0, optimize=False)
    else:  # index 0 is transparent in these formats too
        frames = [transparent_index_0(frame).convert("RGBA") for frame in frames]
    data = encode(
        frames[0], fmt, save_all=True, append_images=frames[1:], duration=DURATIONS, **params
    )
    return data.getvalue()


def transparent_index_0(frame: Image.Image) -> Image.Image:
    marked = frame.copy()
    marked.info["transparency"] = 0
    return marked


RED_BLUE_GREEN = [gif_frame(1, 1), gif_frame(1, 2), gif_frame(3, 3)]
# (left, right) colour of each frame of RED_BLUE_GREEN.
EXPECTED_FRAMES = [(RED, RED), (RED, BLUE), (GREEN, GREEN)]


def frames_of(
    data: bytes,
) -> tuple[Image.Image, list[tuple[int, tuple[int, ...], tuple[int, ...]]]]:
    """The decoded thumbnail and, per frame, (duration, RGBA at the left, at the right)."""
    img = Image.open(io.BytesIO(data))
    seen = []
    for index in range(getattr(img, "n_frames", 1)):
        img.seek(index)
        frame = img.convert("RGBA")
        seen.append((int(img.info.get("duration", 0)), rgba(frame, (5, 10)), rgba(frame, (25, 10))))
    return img, seen


@pytest.mark.parametrize(
    ("source", "fmt", "extension"),
    [
        ("GIF", None, "gif"),
        ("GIF", "PNG", "png"),
        ("GIF", "WEBP", "webp"),
        ("GIF", "AVIF", "avif"),
        ("WEBP", None, "webp"),
        ("WEBP", "PNG", "png"),
        ("WEBP", "AVIF", "avif"),
        ("PNG", None, "png"),
        ("PNG", "WEBP", "webp"),
    ],
)
def test_animations_keep_their_frames_durations_and_loop(
    source: str, fmt: str | None, extension: str
) -> None:
    if fmt and not writable(fmt):
        return
    made, entries = run([("clip", animated(source, RED_BLUE_GREEN))], "30", output=Output(fmt))
    assert made.images[0].note == ""
    thumb, seen = frames_of(entries[f"clip_30x20.{extension}"])
    assert (thumb.size, thumb.n_frames) == ((30, 20), 3)
    assert [duration for duration, _, _ in seen] == DURATIONS
    for (_, left, right), colours in zip(seen, EXPECTED_FRAMES, strict=True):
        assert close(left, (*colours[0], 255), 12) and close(right, (*colours[1], 255), 12)
    if extension != "avif":  # Pillow writes no loop count into AVIF (it always repeats)
        assert thumb.info["loop"] == 2


@pytest.mark.parametrize("fmt", [None, "PNG", "WEBP"])
def test_an_animation_that_plays_once_still_plays_once(fmt: str | None) -> None:
    # A GIF without a loop count plays once; WebP and APNG say so with loop=1.
    _, entries = run(
        [("once.gif", animated("GIF", RED_BLUE_GREEN, loop=None))], "30", output=Output(fmt)
    )
    (data,) = entries.values()
    with Image.open(io.BytesIO(data)) as thumb:
        assert thumb.n_frames == 3
        assert thumb.info.get("loop") == (None if fmt is None else 1)


# Frames 1 and 3 are opaque; frame 2 is transparent on its left half.
SEE_THROUGH = [gif_frame(1, 1), gif_frame(0, 2), gif_frame(3, 3)]


@pytest.mark.parametrize(
    ("source_format", "fmt"),
    [
        ("GIF", None),
        ("GIF", "PNG"),
        ("GIF", "WEBP"),
        ("GIF", "AVIF"),
        ("PNG", None),
        ("PNG", "WEBP"),
    ],
)
def test_transparent_areas_of_animated_frames_stay_transparent(
    source_format: str, fmt: str | None
) -> None:
    if fmt and not writable(fmt):
        return
    source = animated(source_format, SEE_THROUGH)
    _, seen = frames_of(source)
    assert seen[1][1] == CLEAR  # as Pillow decodes the source, too
    _, entries = run([("clip.gif", source)], "30", output=Output(fmt))
    (data,) = entries.values()
    _, seen = frames_of(data)
    assert len(seen) == 3
    assert seen[1][1][3] == 0, seen[1]
    assert close(seen[1][2], (*BLUE, 255), 12)
    assert close(seen[2][1], (*GREEN, 255), 12)


@pytest.mark.parametrize("fmt", [None, "PNG", "WEBP"])
def test_opaque_animations_fill_transparent_areas_with_the_background(fmt: str | None) -> None:
    output = Output(fmt, background=YELLOW, transparent=False)
    _, entries = run([("clip.gif", animated("GIF", SEE_THROUGH))], "30", output=output)
    (data,) = entries.values()
    _, seen = frames_of(data)
    assert close(seen[1][1], (*YELLOW, 255), 12) and close(seen[0][1], (*RED, 255), 12)


def test_a_long_animated_gif_is_not_taken_for_a_hostile_file(monkeypatch) -> None:
    # Pillow reads a GIF's data in blocks of at most 255 bytes, two reads each, and twice over
    # (counting the frames, then decoding them): one read per 64 bytes. The kind's limit on
    # reads grows with the file, so a long GIF (a 12 MB one needs 184,000) is still read;
    # with the limit made small here, a GIF of 130 kB needs the same allowance.
    rng = random.Random(7)  # noqa: S311 - test data
    frames = []
    for _ in range(10):
        frame = Image.frombytes("P", (100, 100), rng.randbytes(100 * 100))
        frame.putpalette(list(range(256)) * 3)
        frames.append(frame)
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:]).getvalue()
    assert len(data) > 100_000
    monkeypatch.setattr(checks, "_MAX_READS", 500)
    made, entries = run([("noise.gif", data)], "50")
    assert made.images[0].error == ""
    (thumb,) = entries.values()
    assert Image.open(io.BytesIO(thumb)).n_frames == 10


def still_with_note(made: Archive, entries: dict[str, bytes], note: str) -> Image.Image:
    assert made.images[0].note == note
    (data,) = entries.values()
    thumb = Image.open(io.BytesIO(data))
    assert getattr(thumb, "n_frames", 1) == 1
    assert close(rgba(thumb, (5, 10)), (*RED, 255), 12)  # the first frame
    return thumb


@pytest.mark.parametrize("source", ["GIF", "WEBP", "PNG"])
def test_more_frames_than_allowed_give_the_first_frame_and_say_so(source: str) -> None:
    data = animated(source, RED_BLUE_GREEN)
    made, entries = run([("clip", data)], "30", max_frames=2)
    label = {"GIF": "GIF", "WEBP": "WebP", "PNG": "PNG"}[source]
    note = (
        f"This {label} is animated (3 frames): Parroter animates at most 2 frames, "
        "so its first frame was used."
    )
    assert still_with_note(made, entries, note).format == source
    made, _ = run([("clip", data)], "30", max_frames=3)
    assert made.images[0].note == ""


def test_an_animation_over_the_memory_budget_gives_the_first_frame_and_says_so(
    monkeypatch,
) -> None:
    data = animated("GIF", RED_BLUE_GREEN)
    # Every frame of every thumbnail is held: 3 frames x (30x20 + 16x11) x 4 bytes.
    needed = 3 * (30 * 20 + 16 * 11) * 4
    monkeypatch.setattr(animation, "ANIMATION_MEMORY_BUDGET", needed)
    made, _ = run([("clip.gif", data)], "30", "16")
    assert made.images[0].note == ""
    monkeypatch.setattr(animation, "ANIMATION_MEMORY_BUDGET", needed - 1)
    made, entries = run([("clip.gif", data)], "30", "16")
    note = (
        "This GIF is animated (3 frames): its animated thumbnails would need more than 1 MB "
        "of memory, so its first frame was used. Smaller sizes will be animated."
    )
    assert made.images[0].note == note
    assert all(Image.open(io.BytesIO(d)).n_frames == 1 for d in entries.values())


def test_an_animation_too_long_to_decode_gives_the_first_frame_and_says_so(monkeypatch) -> None:
    data = animated("PNG", RED_BLUE_GREEN)
    decoded = 3 * 60 * 40  # every frame on the whole 60x40 canvas
    monkeypatch.setattr(animation, "ANIMATION_DECODE_BUDGET", decoded)
    made, _ = run([("clip.png", data)], "30")
    assert made.images[0].note == ""
    monkeypatch.setattr(animation, "ANIMATION_DECODE_BUDGET", decoded - 1)
    made, entries = run([("clip.png", data)], "30")
    note = (
        "This PNG is animated (3 frames): 3 frames of 60×40 pixels would take too long to "
        "decode, so its first frame was used."
    )
    assert still_with_note(made, entries, note).format == "PNG"


def test_jpeg_chosen_for_an_animation_gives_the_first_frame_and_says_so() -> None:
    made, entries = run(
        [("clip.gif", animated("GIF", RED_BLUE_GREEN))], "30", output=Output("JPEG")
    )
    note = "This GIF is animated (3 frames): JPEG has no animation, so its first frame was used."
    assert still_with_note(made, entries, note).format == "JPEG"


def test_past_the_deadline_no_further_image_is_started_and_the_rest_are_named() -> None:
    data = encode(noisy((120, 80)), "JPEG").getvalue()
    images = [SourceImage(f"p{n}.jpg", partial(io.BytesIO, data)) for n in range(3)]
    archive = io.BytesIO()
    # A deadline already past: the first image is always made, the others are not started.
    result = make_archive(
        images, [Box(32, 32)], archive, max_pixels=10**8, stop_after=float("-inf")
    )
    assert [thumb.name for thumb in result.thumbnails] == ["p0/p0_32x21.jpg"]
    assert [(item.name, item.error.startswith("Not made: the job ran out of time")) for item in
            result.images] == [("p0.jpg", False), ("p1.jpg", True), ("p2.jpg", True)]  # fmt: skip


def test_a_source_gone_from_storage_is_named_and_the_others_go_in() -> None:
    def gone():
        raise FileNotFoundError("jobs/x/source-2.jpg")

    data = encode(noisy((120, 80)), "JPEG").getvalue()
    images = [SourceImage("here.jpg", partial(io.BytesIO, data)), SourceImage("gone.jpg", gone)]
    result = make_archive(images, [Box(32, 32)], io.BytesIO(), max_pixels=10**8)
    assert [thumb.image for thumb in result.thumbnails] == [0]
    assert result.images[1].error == "The uploaded file is no longer stored; upload it again."


class Broken(io.BytesIO):
    """A source whose reading fails in a way no input should cause (a bug, not bad data)."""

    def read(self, *args):
        raise KeyError("a bug")


def test_an_unexpected_error_in_one_image_is_reported_for_it_alone(caplog) -> None:
    data = encode(noisy((120, 80)), "JPEG").getvalue()
    images = [SourceImage("bug.jpg", Broken), SourceImage("fine.jpg", partial(io.BytesIO, data))]
    result = make_archive(images, [Box(32, 32)], io.BytesIO(), max_pixels=10**8)
    assert [thumb.image for thumb in result.thumbnails] == [1]
    assert result.images[0].error.startswith("Parroter could not process this image")
    assert "image 'bug.jpg' could not be processed" in caplog.text  # with its traceback


def test_what_the_caller_lets_through_ends_the_run() -> None:
    # The worker's time limit and temporary storage errors are the job's, not one image's.
    images = [SourceImage("bug.jpg", Broken)]
    with pytest.raises(KeyError):
        make_archive(images, [Box(32, 32)], io.BytesIO(), max_pixels=10**8, let_through=(KeyError,))
