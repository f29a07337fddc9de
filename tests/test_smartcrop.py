"""Smart crop keeps an off-centre subject where the centre crop cuts it; a focal point places
the cut; plain crop is as it was."""

from __future__ import annotations

import io
import zipfile

import pytest
from PIL import Image

from jobs.kinds.thumbnails import Box, Output, SourceImage, make_archive, make_thumbnails
from jobs.kinds.thumbnails.attention import _best_window, interest
from tests.photos import red_pixels, subject_photo

MAX_PIXELS = 50_000_000


def render(img: Image.Image, box: Box, fit: str, focus=None) -> Image.Image:
    source = io.BytesIO()
    img.save(source, "PNG")
    source.seek(0)
    archive = io.BytesIO()
    output = Output(format="PNG", fit=fit)
    make_thumbnails(source, [box], archive, output=output, max_pixels=MAX_PIXELS, focus=focus)
    with zipfile.ZipFile(archive) as zf:
        return Image.open(io.BytesIO(zf.read(zf.namelist()[0]))).copy()


@pytest.mark.parametrize(
    ("size", "subject", "box"),
    [((600, 400), (110, 200), Box(200, 200)), ((400, 600), (200, 480), Box(200, 200))],
    ids=["landscape, subject left", "portrait, subject low"],
)
def test_smart_crop_keeps_an_off_centre_subject_the_centre_crop_cuts(size, subject, box):
    img = subject_photo(size, subject, radius=70)
    whole = red_pixels(render(img, Box(300, 300), "fit"))  # the same scale, nothing cut
    centre = red_pixels(render(img, box, "crop")) / whole
    smart = red_pixels(render(img, box, "smart")) / whole
    assert smart > 0.95, smart
    assert centre < 0.7, centre


def test_an_image_with_nothing_standing_out_is_cut_in_its_centre():
    flat = Image.new("RGB", (600, 400), (120, 130, 140))
    flat.paste((10, 10, 10), (299, 0, 301, 400))  # a thin line through the middle
    assert (
        render(flat, Box(200, 200), "smart").tobytes()
        == render(flat, Box(200, 200), "crop").tobytes()
    )
    assert _best_window([1.0] * 100, 0.5) == 0.5


def test_plain_crop_still_cuts_the_centre():
    img = subject_photo((600, 400), (110, 200), radius=70)
    thumb = render(img, Box(200, 200), "crop")
    scaled = img.resize((300, 200), Image.Resampling.LANCZOS)
    expected = scaled.crop((50, 0, 250, 200))
    difference = sum(abs(a - b) for a, b in zip(thumb.tobytes(), expected.tobytes(), strict=True))
    assert difference / len(expected.tobytes()) < 4  # the same window, resampled alike


@pytest.mark.parametrize(
    ("focus", "fit", "window"),
    [((0.0, 0.0), "crop", (0, 0)), ((1.0, 0.5), "smart", (100, 0)), ((0.5, 0.5), "crop", (50, 0))],
)
def test_a_focal_point_places_the_cut_kept_inside_the_image(focus, fit, window):
    img = subject_photo((600, 400), (110, 200), radius=70)
    thumb = render(img, Box(200, 200), fit, focus=focus)
    scaled = img.resize((300, 200), Image.Resampling.LANCZOS)
    left, top = window
    expected = scaled.crop((left, top, left + 200, top + 200))
    difference = sum(abs(a - b) for a, b in zip(thumb.tobytes(), expected.tobytes(), strict=True))
    assert difference / len(expected.tobytes()) < 4


def test_a_jobs_images_keep_each_their_own_focus():
    img = subject_photo((600, 400), (110, 200), radius=70)
    data = io.BytesIO()
    img.save(data, "PNG")

    def opener():
        return io.BytesIO(data.getvalue())

    images = [
        SourceImage("left.png", opener, (0.0, 0.5)),
        SourceImage("right.png", opener, (1.0, 0.5)),
    ]
    archive = io.BytesIO()
    made = make_archive(
        images,
        [Box(200, 200)],
        archive,
        output=Output(format="PNG", fit="crop"),
        max_pixels=MAX_PIXELS,
    )
    with zipfile.ZipFile(archive) as zf:
        left, right = (Image.open(io.BytesIO(zf.read(item.name))) for item in made.thumbnails)
        assert red_pixels(left) > 3 * max(red_pixels(right), 1)


def test_the_interest_map_is_small_whatever_the_image():
    found = interest(subject_photo((3000, 2000), (600, 1000), radius=300))
    assert (len(found.columns), len(found.rows)) == (128, 85)
    assert max(range(128), key=lambda column: found.columns[column]) < 50  # the subject's side


def test_an_image_smaller_than_the_box_is_cut_around_its_subject_too():
    # Never enlarged: the 300x200 image gives a 200x200 piece, cut along its width.
    img = subject_photo((300, 200), (50, 100), radius=30)
    whole = red_pixels(img)
    centre, smart = (render(img, Box(512, 512), fit) for fit in ("crop", "smart"))
    assert centre.size == smart.size == (200, 200)
    assert red_pixels(smart) / whole > 0.95
    assert red_pixels(centre) / whole < 0.6


def test_a_focal_point_along_a_portraits_height():
    img = subject_photo((400, 600), (200, 480), radius=70)
    thumb = render(img, Box(200, 200), "crop", focus=(0.5, 1.0))
    scaled = img.resize((200, 300), Image.Resampling.LANCZOS)
    expected = scaled.crop((0, 100, 200, 300))  # the bottom, kept inside the image
    difference = sum(abs(a - b) for a, b in zip(thumb.tobytes(), expected.tobytes(), strict=True))
    assert difference / len(expected.tobytes()) < 4


def test_a_focal_point_is_read_on_the_image_as_displayed():
    # Stored turned a quarter, with EXIF orientation 6 to show it upright: the subject is at
    # the top left of the image as displayed, where focus (0, 0) points.
    shown = subject_photo((1200, 800), (150, 150), radius=100)
    exif = Image.Exif()
    exif[0x0112] = 6
    source = io.BytesIO()
    shown.transpose(Image.Transpose.ROTATE_90).save(source, "JPEG", quality=95, exif=exif)
    thumbs = {}
    for focus in ((0.0, 0.0), (1.0, 1.0)):
        source.seek(0)
        archive = io.BytesIO()
        output = Output(format="PNG", fit="crop")
        make_thumbnails(
            source, [Box(200, 200)], archive, output=output, max_pixels=MAX_PIXELS, focus=focus
        )
        with zipfile.ZipFile(archive) as zf:
            thumbs[focus] = Image.open(io.BytesIO(zf.read(zf.namelist()[0]))).copy()
    whole = red_pixels(shown.resize((300, 200), Image.Resampling.LANCZOS))
    assert red_pixels(thumbs[0.0, 0.0]) / whole > 0.95
    assert red_pixels(thumbs[1.0, 1.0]) == 0
