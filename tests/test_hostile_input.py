"""Hostile input: mutated and crafted files, absurd structures, upload names and sizes.

Every file is generated here. The image-kind tests need no database; the page tests drive the
upload form and the download through Django's test client.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import random
import signal
import struct
import tempfile
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, TiffImagePlugin

from jobs import tokens
from jobs.kinds import thumbnails
from jobs.kinds.thumbnails import Box, ThumbnailError, base, checks, inspect_image, make_thumbnails
from jobs.models import Job
from tests.conftest import image_bytes
from tests.memory_ceiling import run_jobs

MAX_PIXELS = 120_000_000
QUICK = 5.0  # seconds: generous for a loaded 2-core machine; these took 3 s to minutes before
TOO_MANY_PARTS = base._TOO_MANY_PARTS
NOT_AN_IMAGE = base._NOT_AN_IMAGE


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail the test, rather than hang it, if the block runs longer than `seconds`."""

    def expire(_signum: int, _frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def refusal(run: Callable[[], object], seconds: float = QUICK) -> str:
    """The ThumbnailError message `run` ends with, within `seconds`."""
    started = time.perf_counter()
    with deadline(seconds * 2), pytest.raises(ThumbnailError) as caught:
        run()
    assert time.perf_counter() - started < seconds
    return str(caught.value)


def inspect(data: bytes, **limits: int) -> Callable[[], object]:
    """The upload check of `data` held in memory and in a temporary file, as Django keeps small
    and large uploads: both must end the same way."""

    def both() -> object:
        outcomes = []
        with tempfile.TemporaryFile() as on_disk:
            on_disk.write(data)
            for stream in (io.BytesIO(data), on_disk):
                stream.seek(0)
                try:
                    outcomes.append(inspect_image(stream, max_pixels=MAX_PIXELS, **limits))
                except ThumbnailError as exc:
                    outcomes.append(exc)
        in_memory, on_disk_outcome = (str(outcome) for outcome in outcomes)
        assert in_memory == on_disk_outcome
        if isinstance(outcomes[0], ThumbnailError):
            raise outcomes[0]
        return outcomes[0]

    return both


def make(data: bytes, **limits: int) -> Callable[[], object]:
    return lambda: make_thumbnails(
        io.BytesIO(data), [Box(128, 128)], io.BytesIO(), max_pixels=MAX_PIXELS, **limits
    )


def saved(img: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


# --- crafted files --------------------------------------------------------------------------------


def tiff_with_strips(strips: int, height: int) -> bytes:
    """A 1 x height grey TIFF whose StripOffsets and StripByteCounts share one array of SHORTs
    (2 bytes per strip), as in the reported files."""
    entries = [  # tag, type (3 SHORT, 4 LONG), count, value (None: the shared array)
        (256, 3, 1, 1),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 3, strips, None),
        (277, 3, 1, 1),
        (278, 3, 1, 1),
        (279, 3, strips, None),
    ]
    array_at = 8 + 2 + len(entries) * 12 + 4
    directory = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        inline = array_at if value is None else value
        packed = (
            struct.pack("<L", inline)
            if kind == 4 or value is None
            else struct.pack("<HH", inline, 0)
        )
        directory += struct.pack("<HHL", tag, kind, count) + packed
    return b"II*\0" + struct.pack("<L", 8) + directory + bytes(4) + struct.pack("<H", 8) * strips


def jpeg_with_junk(junk: int) -> bytes:
    """A small JPEG with `junk` zero bytes after its first segment (Pillow reads them singly)."""
    data = image_bytes((64, 64))
    end = 4 + int.from_bytes(data[4:6], "big")
    return data[:end] + bytes(junk) + data[end:]


def png_with_empty_chunks(count: int) -> bytes:
    data = image_bytes((8, 8), "L", "PNG", 0)
    return data[:33] + png_chunk(b"prVt", b"") * count + data[33:]  # after the signature + IHDR


def png_with_size(
    width: int, height: int, bits: int = 16, colour: int = 0, frames: int = 1
) -> bytes:
    """A PNG whose header says width x height at `bits` per sample (pixel data: a stub), grey
    (colour type 0), RGB (2) or RGBA (6); with `frames` > 1, an APNG's animation control."""
    header = struct.pack(">IIBBBBB", width, height, bits, colour, 0, 0, 0)
    animation = png_chunk(b"acTL", struct.pack(">II", frames, 0)) if frames > 1 else b""
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + animation
        + png_chunk(b"IDAT", zlib.compress(b"\0\0\0"))
        + png_chunk(b"IEND", b"")
    )


def gif_with_screen(width: int, height: int, transparent: bool = False) -> bytes:
    """A 4x4 GIF whose logical screen, the size Pillow reports, says width x height."""
    options = {"transparency": 0} if transparent else {}
    gif = bytearray(saved(Image.new("P", (4, 4)), "GIF", **options))
    gif[6:10] = struct.pack("<HH", width, height)
    return bytes(gif)


def black_rgb_png(width: int, height: int) -> bytes:
    """A whole RGB PNG, compressed row by row so that making it needs no large buffer."""
    packer = zlib.compressobj(9)
    row = bytes(1 + 3 * width)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return png_with_size(width, height, bits=8, colour=2).replace(
        png_chunk(b"IDAT", zlib.compress(b"\0\0\0")), png_chunk(b"IDAT", body)
    )


def animated_webp(width: int, height: int) -> bytes:
    """Two 1x1 frames on a width x height canvas: a few hundred bytes."""
    frames = [Image.new("RGBA", (1, 1), colour) for colour in ((255, 0, 0, 255), (0, 0, 255, 255))]
    data = bytearray(saved(frames[0], "WEBP", save_all=True, append_images=frames[1:]))
    at = data.index(b"VP8X") + 12
    data[at : at + 6] = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return bytes(data)


def tiff_with_compression(code: int) -> bytes:
    """An uncompressed TIFF whose Compression tag says `code` (enough: it is refused first)."""
    data = bytearray(saved(Image.new("RGB", (8, 8)), "TIFF"))
    (first,) = struct.unpack_from("<L", data, 4)
    (count,) = struct.unpack_from("<H", data, first)
    for at in range(first + 2, first + 2 + 12 * count, 12):
        if struct.unpack_from("<H", data, at)[0] == 259:
            struct.pack_into("<HHLHH", data, at, 259, 3, 1, code, 0)
            return bytes(data)
    raise AssertionError("Pillow wrote no Compression tag")


def bmp_with_compression(compression: int, bits: int = 32, masks: bytes = b"") -> bytes:
    """A 4x4 BMP with a BITMAPV4-style info header saying `compression` (data: zeros)."""
    info = struct.pack("<IiiHHIIiiII", 108, 4, 4, 1, bits, compression, 0, 2835, 2835, 0, 0)
    info += masks.ljust(108 - len(info), b"\0")
    pixels = bytes(4 * 4 * bits // 8)
    offset = 14 + len(info)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + pixels


# --- structures that used to cost minutes and gigabytes ------------------------------------------


def test_a_tiff_of_two_pixels_with_25_million_strips_is_refused_at_once() -> None:
    data = tiff_with_strips(25_000_000, 2)  # 48 MiB; the upload check took 67 s and +6.5 GB
    message = refusal(inspect(data))
    assert message == (
        "This TIFF is stored in 25,000,000 strips or tiles; Parroter reads at most 262,144. "
        "Save it again with larger strips and upload that."
    )


def test_a_tiff_with_5_million_strips_is_refused_by_upload_check_and_worker() -> None:
    data = tiff_with_strips(5_000_000, 5_000_000)  # 9.5 MiB; the worker took 33 s and 1.4 GB
    assert "5,000,000 strips" in refusal(inspect(data))
    assert "5,000,000 strips" in refusal(make(data))


def test_a_tiff_within_the_strip_limit_is_read() -> None:
    data = tiff_with_strips(2000, 2000)
    assert inspect(data)() == thumbnails.ImageInfo("TIFF", 1, 2000, "tiff")


def test_a_jpeg_with_megabytes_of_junk_between_segments_is_refused_quickly() -> None:
    data = jpeg_with_junk(45_000_000)  # Pillow reads junk one byte per call: ~15 s per 50 MB
    assert refusal(inspect(data)) == TOO_MANY_PARTS
    assert refusal(make(data)) == TOO_MANY_PARTS


def test_a_little_junk_in_a_jpeg_is_still_read() -> None:
    result = make(jpeg_with_junk(1000))()
    assert [(t.width, t.height) for t in result] == [(64, 64)]


def test_a_png_with_a_million_empty_chunks_is_refused_quickly() -> None:
    data = png_with_empty_chunks(1_000_000)  # 12 MB; 4 s to inspect before
    assert refusal(inspect(data), seconds=2) == TOO_MANY_PARTS
    assert refusal(make(data), seconds=2) == TOO_MANY_PARTS


def gif_with_one_byte_blocks(side: int) -> bytes:
    """A GIF of random pixels whose image data comes in sub-blocks of one byte instead of 255:
    valid, and two reads of Pillow's per byte."""
    pixels = random.Random(3).randbytes(side * side)  # noqa: S311 - test data
    frame = Image.frombytes("P", (side, side), pixels)
    frame.putpalette(list(range(256)) * 3)
    data = saved(frame, "GIF")
    flags = data[10]
    start = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # past the colour table
    while data[start] == 0x21:  # extensions: introducer, label, sub-blocks
        start += 2
        while data[start]:
            start += 1 + data[start]
        start += 1
    at = start + 10 + 1  # past the image descriptor (no local colour table), LZW code size
    lzw = bytearray()
    while data[at]:
        lzw += data[at + 1 : at + 1 + data[at]]
        at += 1 + data[at]
    blocks = b"".join(b"\x01" + lzw[i : i + 1] for i in range(len(lzw)))
    return data[: start + 11] + blocks + b"\x00\x3b"


def test_a_gif_of_one_byte_blocks_is_refused_quickly_by_the_worker() -> None:
    # The worker allows a GIF one read per 32 bytes more than other images (animated GIFs
    # come in 255-byte blocks, read twice); 1.5 MB of one-byte blocks needs 24 times that.
    data = gif_with_one_byte_blocks(1024)
    assert len(data) > 1_500_000
    assert inspect(data)().width == 1024  # the upload check reads the header only
    assert refusal(make(data)) == TOO_MANY_PARTS


@pytest.mark.parametrize(
    ("data", "size", "label", "needed"),
    [  # decoding the WebP took 1.87 GB; Pillow draws APNG frames over a copy of the canvas
        (animated_webp(10_000, 12_000), "10000×12000", "animated WebP", "1,832"),
        (png_with_size(10_000, 10_000, 8, 6, frames=2), "10000×10000", "animated PNG", "1,145"),
    ],
)
def test_an_animation_of_a_few_hundred_bytes_with_a_huge_canvas_is_refused(
    data: bytes, size: str, label: str, needed: str
) -> None:
    assert len(data) < 500
    message = refusal(inspect(data))
    assert message == (
        f"At {size} pixels this {label} needs about {needed} MB of memory to process; "
        "the limit is 1,024 MB per image. A smaller image, or a JPEG, will work."
    )
    assert refusal(make(data)) == message


def test_a_sixteen_bit_png_over_the_memory_budget_is_refused_and_an_8_bit_one_is_not() -> None:
    # 110 megapixels: within the pixel limit; 16-bit decoding costs 5 bytes per pixel (2, a
    # scaled copy in 2, the 8-bit result in 1), 8-bit 1.
    message = refusal(inspect(png_with_size(10_500, 10_500), max_memory=512 << 20))
    assert message.startswith("At 10500×10500 pixels this 16-bit PNG needs about 526 MB")
    assert refusal(make(png_with_size(10_500, 10_500), max_memory=512 << 20)) == message
    assert inspect(png_with_size(10_500, 10_500, bits=8), max_memory=512 << 20)().width == 10_500


def test_the_memory_budget_follows_the_format() -> None:
    # A 100 MP GIF (1 + 4 bytes per pixel as RGB) fits a 1 GiB budget, not a 256 MiB one.
    gif = gif_with_screen(10_000, 10_000)
    assert inspect(gif)().width == 10_000
    assert "this GIF needs about 477 MB" in refusal(inspect(gif, max_memory=256 << 20))
    # A still RGBA PNG of 100 MP fits (8 bytes per pixel), unlike the animated one above.
    assert inspect(png_with_size(10_000, 10_000, bits=8, colour=6))().width == 10_000


@pytest.mark.parametrize(
    ("data", "needed"),
    [  # bytes per pixel at the peak, as bench/memory.py measures them
        (png_with_size(10_000, 10_000, bits=8, colour=2), "382"),  # RGB: 4
        (gif_with_screen(10_000, 10_000), "477"),  # P: 1, as RGB 4
        # With transparency a P image becomes RGBA, which resize() premultiplies: 1 + 4 + 4
        # (the GIF was estimated at 5 and took 9).
        (gif_with_screen(10_000, 10_000, transparent=True), "859"),
        (png_with_size(10_000, 10_000, bits=8, colour=6), "763"),  # RGBA: 4, premultiplied 4
        (png_with_size(10_000, 10_000, bits=8, colour=4), "763"),  # LA: stored in 4, as RGBA
        (png_with_size(10_000, 10_000, bits=16, colour=0), "477"),  # 16-bit grey: 2 + 2 + 1
        (png_with_size(10_000, 10_000, bits=1, colour=0), "191"),  # 1-bit: 1, as L 1
    ],
    ids=["RGB", "P", "P-transparent", "RGBA", "LA", "16-bit", "1-bit"],
)
def test_the_memory_estimate_follows_the_mode(data: bytes, needed: str) -> None:
    assert f"needs about {needed} MB of memory to process;" in refusal(
        inspect(data, max_memory=128 << 20)
    )


def test_thumbnail_sizes_that_need_more_than_the_budget_are_refused_before_decoding() -> None:
    # A 100 MP RGBA PNG (header only) fits at any size, but scaling it to 4096 px adds the
    # resize's passes and results: 1.6 bytes for each of its pixels, 12 for each of the result.
    data = png_with_size(10_000, 10_000, bits=8, colour=6)
    assert inspect(data)().width == 10_000
    big = [Box(4096, 4096), Box(512, 512)]
    assert refusal(
        lambda: make_thumbnails(io.BytesIO(data), big, io.BytesIO(), max_pixels=MAX_PIXELS)
    ) == (
        "At 10000×10000 pixels this PNG needs about 1,048 MB of memory to make a 4096x4096 "
        "thumbnail; the limit is 1,024 MB per image. Smaller sizes will work."
    )
    assert refusal(make(data)) == base._CORRUPT  # 128 px fits; the stub data does not


def marker_padded_jpeg(padding: int = 130_000) -> bytes:
    """A valid JPEG with `padding` 0xFF fill bytes before its first marker after SOI: Pillow
    reads them one call each (~1 ms of CPU per thousand), within the per-file read limit."""
    data = image_bytes((64, 48))
    return data[:2] + b"\xff" * padding + data[2:]


# Pillow's Tests/images/seek_too_large.tif: a BigTIFF whose first directory is at 2**63 + ...
SEEK_TOO_LARGE_TIFF = bytes.fromhex("49492b0008000000ffffffffffffff80")


def test_a_bigtiff_whose_directory_lies_past_the_end_is_refused_as_corrupt() -> None:
    # In memory, the seek raised OverflowError and the upload answered 500.
    assert refusal(inspect(SEEK_TOO_LARGE_TIFF)) == base._CORRUPT
    assert refusal(make(SEEK_TOO_LARGE_TIFF)) == base._CORRUPT


def test_a_marker_padded_jpeg_within_the_read_limit_is_read() -> None:
    assert inspect(marker_padded_jpeg())().width == 64


def test_a_gif_frame_far_outside_its_screen_is_refused() -> None:
    data = bytearray(saved(Image.new("P", (4, 4)), "GIF"))
    at = data.index(b",") + 5  # the first image descriptor: x, y, then width and height
    data[at : at + 4] = struct.pack("<HH", 20_000, 20_000)
    assert "reaches far outside" in refusal(inspect(bytes(data)))


# --- formats and variants -------------------------------------------------------------------------


def test_supported_tiff_compressions_all_decode_here() -> None:
    for code in sorted(checks._TIFF_COMPRESSIONS):
        compression = TiffImagePlugin.COMPRESSION_INFO[code]
        mode = "1" if code in (2, 3, 4) else "RGB"
        data = saved(Image.new(mode, (16, 16)), "TIFF", compression=compression)
        result = make(data)()
        assert [(t.width, t.height) for t in result] == [(16, 16)], compression


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (50001, "This TIFF uses WebP compression, which Parroter cannot read."),
        (34677, "This TIFF uses SGI LogLuv compression, which Parroter cannot read."),
        (12345, "This TIFF uses a compression Parroter cannot read (number 12345)."),
    ],
)
def test_a_tiff_compression_parroter_cannot_read_is_named(code: int, message: str) -> None:
    data = tiff_with_compression(code)
    assert refusal(inspect(data)) == message
    assert refusal(make(data)) == message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (bmp_with_compression(5), "This BMP holds a PNG image inside, which Parroter cannot read."),
        (
            bmp_with_compression(4),
            "This BMP holds a JPEG image inside, which Parroter cannot read.",
        ),
        (
            # 32-bit bit fields in an order Pillow has no unpacker for
            bmp_with_compression(3, masks=struct.pack("<IIII", 0xF, 0xF0, 0xF00, 0xF000)),
            "This BMP stores its colours in a bit-field layout Parroter cannot read.",
        ),
    ],
    ids=["embedded-png", "embedded-jpeg", "bitfields"],
)
def test_a_bmp_variant_parroter_cannot_read_is_named(data: bytes, message: str) -> None:
    assert refusal(inspect(data)) == message
    assert refusal(make(data)) == message


def test_bmp_with_common_bit_fields_is_read() -> None:
    data = bmp_with_compression(3, masks=struct.pack("<IIII", 0xFF0000, 0xFF00, 0xFF, 0))
    assert inspect(data)() == thumbnails.ImageInfo("BMP", 4, 4, "bmp")


@pytest.mark.parametrize(
    ("data", "max_pixels", "size"),
    [
        (png_with_size(20_000, 20_000, bits=1), MAX_PIXELS, "20000×20000 pixels (400 megapixels)"),
        (png_with_size(2000, 1000, bits=8), 1_000_000, "2000×1000 pixels (2 megapixels)"),
        (png_with_size(2000, 1001, bits=8), 1_000_000, "2000×1001 pixels (2.1 megapixels)"),
        (  # Pillow's reallybig.bmp was "(6e+06 megapixels)"
            png_with_size(3_000_000, 2_000_000, bits=1),
            MAX_PIXELS,
            "3000000×2000000 pixels (6,000,000 megapixels)",
        ),
    ],
    ids=["above-pillows-own-limit", "above-ours-only", "rounded-up", "huge"],
)
def test_one_message_with_the_size_for_every_image_over_the_pixel_limit(
    data: bytes, max_pixels: int, size: str
) -> None:
    limit = f"{max_pixels // 1_000_000} megapixels"
    expected = f"The image is {size}; the limit is {limit}."
    for run in (
        inspect_image,
        lambda stream, **kw: make_thumbnails(stream, [Box(9, 9)], io.BytesIO(), **kw),
    ):
        with pytest.raises(ThumbnailError) as caught:
            run(io.BytesIO(data), max_pixels=max_pixels)
        assert str(caught.value) == expected


def test_no_pillow_warning_escapes_for_a_large_image(recwarn: pytest.WarningsRecorder) -> None:
    warnings.simplefilter("always")
    data = saved(Image.new("L", (10_000, 9_500)), "PNG")  # 95 MP: above Pillow's warning level
    make_thumbnails(io.BytesIO(data), [Box(32, 32)], io.BytesIO(), max_pixels=MAX_PIXELS)
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_an_eps_file_is_never_opened() -> None:
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    assert refusal(inspect(eps)) == NOT_AN_IMAGE
    assert refusal(make(eps)) == NOT_AN_IMAGE


# --- the worker's memory ceiling ------------------------------------------------------------------


def test_a_job_over_the_workers_memory_ceiling_fails_clearly_and_the_process_carries_on() -> None:
    context = multiprocessing.get_context("spawn")  # see tests/memory_ceiling.py
    results = context.Queue()
    big = black_rgb_png(8000, 8000)  # 64 MP: 256 MB decoded, within the decode budget
    small = image_bytes((300, 200), fmt="PNG")
    child = context.Process(target=run_jobs, args=(128 << 20, [big, small], results))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert results.get(timeout=5) == ("refused", base._OUT_OF_MEMORY)
    assert results.get(timeout=5) == ("ok", 64)


def test_a_transparent_gif_the_budget_lets_through_fits_in_the_budget_plus_a_margin() -> None:
    # The largest square GIF with transparency whose estimate a 160 MiB budget accepts, made
    # under an address-space ceiling of the budget + 32 MiB: the estimate is the real bound.
    # (Estimated at 5 bytes a pixel, it took 9: 290 MiB at the size that budget accepted.)
    budget, margin = 160 << 20, 32 << 20
    fits, too_big = 1, 20_000
    while too_big - fits > 1:
        side = (fits + too_big) // 2
        try:
            inspect_image(
                io.BytesIO(gif_with_screen(side, side, True)),
                max_pixels=MAX_PIXELS,
                max_memory=budget,
            )
        except ThumbnailError:
            too_big = side
        else:
            fits = side
    side = fits * 99 // 100  # the 64 px thumbnail's own resize adds a little
    data = saved(Image.new("P", (side, side), 3), "GIF", transparency=3)
    context = multiprocessing.get_context("spawn")  # see tests/memory_ceiling.py
    results = context.Queue()
    child = context.Process(target=run_jobs, args=(budget + margin, [data], results, budget))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert results.get(timeout=5) == ("ok", 64)


# --- mutated files: a clean refusal or a valid thumbnail set, never anything else ----------------

SEEDS = {
    "JPEG": image_bytes((48, 32), quality=80),
    "PNG": image_bytes((48, 32), "RGBA", "PNG", (10, 200, 30, 128)),
    "GIF": saved(Image.new("RGB", (48, 32), (200, 10, 10)).quantize(8), "GIF"),
    "WEBP": image_bytes((48, 32), fmt="WEBP"),
    "TIFF": image_bytes((48, 32), fmt="TIFF", compression="tiff_lzw"),
    "BMP": image_bytes((48, 32), fmt="BMP"),
}


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["flip", "truncate", "splice", "dimension", "pad", "insert"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if how == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "truncate":
            del data[at:]
        elif how == "splice":  # another format's header over this one's
            other = SEEDS[draw(st.sampled_from(sorted(SEEDS)))]
            data[at : at + 24] = other[:24]
        elif how == "dimension":  # a lying width or height, where a header keeps them
            value = draw(st.sampled_from([0, 1, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0xFFFF_FFFF]))
            data[at : at + 4] = value.to_bytes(4, draw(st.sampled_from(["little", "big"])))
        elif how == "pad":  # 0xFF fill bytes, which JPEG allows before any marker
            data[at:at] = b"\xff" * draw(st.sampled_from([1, 64, 4096, 140_000]))
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


@settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=mutated())
def test_a_mutated_image_is_refused_cleanly_or_makes_valid_thumbnails(data: bytes) -> None:
    with deadline(QUICK):
        try:
            inspect(data)()
        except ThumbnailError as exc:
            assert str(exc)
        archive = io.BytesIO()
        try:
            made = make_thumbnails(
                io.BytesIO(data), [Box(32, 32), Box(16, 16)], archive, max_pixels=MAX_PIXELS
            )
        except ThumbnailError as exc:
            assert str(exc)
            return
    with zipfile.ZipFile(archive) as zf:
        assert zf.namelist() == [thumb.name for thumb in made]
        for thumb in made:
            with Image.open(io.BytesIO(zf.read(thumb.name))) as img:
                img.load()
                assert img.size == (thumb.width, thumb.height)


# --- through the pages: names, formats, sizes -----------------------------------------------------

BOUNDARY = "hostileboundary"


def multipart(filename_header: str, data: bytes, sizes: tuple[str, ...] = ("128",)) -> bytes:
    """A multipart body with the file part's Content-Disposition written as given."""
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="sizes"\r\n\r\n{size}\r\n'.encode()
        for size in sizes
    ]
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="images"; {filename_header}\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def post_upload(client, filename_header: str, data: bytes):
    return client.generic(
        "POST",
        reverse("dashboard:upload"),
        multipart(filename_header, data),
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
    )


def succeed(job: Job) -> None:
    """Mark the job done with a small archive, as the worker would."""
    from django.core.files.base import ContentFile

    job.archive.save("thumbnails.zip", ContentFile(b"PK\x05\x06" + bytes(18)), save=False)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCEEDED, archive=job.archive.name)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("header", "shown"),
    [
        ('filename="../../etc/passwd.jpg"', "passwd.jpg"),
        ('filename="/abs/path/photo.jpg"', "photo.jpg"),
        ('filename="C:\\\\Users\\\\me\\\\photo.jpg"', "photo.jpg"),
        ("filename*=utf-8''a%00b%0Ac%0Dd%1Be.jpg", "abcde.jpg"),
        ("filename*=utf-8''%E5%86%99%E7%9C%9F%20%C3%A9t%C3%A9.jpg", "写真 été.jpg"),
        ('filename="<img src=x onerror=alert(1)>.jpg"', "<img src=x onerror=alert(1)>.jpg"),
        ('filename="no-extension"', "no-extension"),
        ('filename="wrong.gif"', "wrong.gif"),
        ('filename="quo\\"te.jpg"', 'quo"te.jpg'),
    ],
    ids=[
        "dotdot",
        "absolute",
        "windows",
        "control",
        "non-ascii",
        "html",
        "no-ext",
        "wrong-ext",
        "quote",
    ],
)
def test_hostile_upload_names_are_stored_safely_and_shown_escaped(
    client, user, media_root, header: str, shown: str
) -> None:
    client.force_login(user)
    response = post_upload(client, header, image_bytes((64, 48)))
    assert response.status_code == 302, response.content.decode()[:1000]
    job = Job.objects.get()
    assert job.source_name == shown
    assert job.source.name == f"jobs/{job.pk}/source.jpg"  # never the client's name
    assert (media_root / job.source.name).is_file()

    page = client.get(reverse("dashboard:job", args=[job.pk])).content.decode()
    assert "<img src=x" not in page
    if shown.startswith("<img"):
        assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in page

    succeed(job)
    download = client.get(reverse("dashboard:download", args=[job.pk]))
    assert download.status_code == 200
    disposition = download["Content-Disposition"]
    assert disposition.startswith("attachment; filename")
    assert not any(ord(char) < 32 or char == "\x7f" for char in disposition)
    assert "/" not in disposition.split("filename", 1)[1].replace("%2F", "")


@pytest.mark.django_db
def test_a_long_non_ascii_name_is_shortened_and_still_downloads(client, user) -> None:
    client.force_login(user)
    response = post_upload(client, f'filename="{"é" * 300}.jpg"', image_bytes((64, 48)))
    assert response.status_code == 302
    job = Job.objects.get()
    assert len(job.source_name) == 255 and job.source_name.endswith("é.jpg")
    succeed(job)
    disposition = client.get(reverse("dashboard:download", args=[job.pk]))["Content-Disposition"]
    assert disposition.startswith("attachment; filename*=utf-8''%C3%A9")


@pytest.mark.django_db
def test_a_thousand_character_name_is_refused_with_a_page_that_says_why(client, user) -> None:
    # Django refuses part headers over 1 KiB (its MAX_TOTAL_HEADER_SIZE) before the view runs;
    # its 400 page (templates/400.html) names the likely cause.
    client.force_login(user)
    response = post_upload(client, f'filename="{"a" * 996}.jpg"', image_bytes((64, 48)))
    assert response.status_code == 400
    page = response.content.decode()
    assert "file name may be too long" in page and "rename the file" in page
    assert "Error" not in page and "Traceback" not in page
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_an_eps_renamed_jpg_is_refused_at_upload(client, user, media_root) -> None:
    client.force_login(user)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n0 0 moveto showpage\n"
    response = post_upload(client, 'filename="photo.jpg"', eps)
    assert response.status_code == 400
    assert NOT_AN_IMAGE in response.content.decode()
    assert not Job.objects.exists()


class RecordingTemporaryHandler(TemporaryFileUploadHandler):
    """Django's handler for large uploads, noting how much it was given to write."""

    written = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        RecordingTemporaryHandler.written += len(raw_data)
        return super().receive_data_chunk(raw_data, start)


@pytest.fixture
def recorded_uploads(settings) -> type[RecordingTemporaryHandler]:
    """Every upload goes to a temporary file behind the limit handler, counting what is written."""
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    settings.FILE_UPLOAD_HANDLERS = [
        "jobs.uploads.UploadLimitHandler",
        f"{__name__}.RecordingTemporaryHandler",
    ]
    RecordingTemporaryHandler.written = 0
    return RecordingTemporaryHandler


@pytest.mark.django_db
def test_an_upload_over_the_limit_is_not_written_to_disk_and_the_page_says_the_limit(
    client, user, settings, media_root, recorded_uploads
) -> None:
    settings.PARROTER_MAX_UPLOAD_BYTES = 256 * 1024
    temp_dir = settings.FILE_UPLOAD_TEMP_DIR
    before = set(os.listdir(temp_dir))
    body = image_bytes((64, 48)) + os.urandom(8 * 1024 * 1024)  # 8 MiB
    client.force_login(user)

    response = post_upload(client, 'filename="big.jpg"', body)

    assert response.status_code == 400
    assert "The file is 8\xa0MB; the limit is 256\xa0KB." in response.content.decode()
    # At most the limit (plus one 64 KiB chunk) reached the temporary file, which is gone.
    assert 0 < recorded_uploads.written <= 256 * 1024 + 64 * 1024
    assert set(os.listdir(temp_dir)) == before
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_an_upload_at_the_limit_is_accepted(client, user, settings) -> None:
    data = image_bytes((64, 48))
    settings.PARROTER_MAX_UPLOAD_BYTES = len(data)
    client.force_login(user)
    assert post_upload(client, 'filename="exact.jpg"', data).status_code == 302


@pytest.mark.django_db
def test_files_past_the_job_total_are_not_written_to_disk_and_the_page_says_the_limit(
    client, user, settings, recorded_uploads
) -> None:
    # Each file is under the per-file limit; together they pass the job's: writing stops there.
    settings.PARROTER_MAX_JOB_BYTES = 512 * 1024
    files = [
        SimpleUploadedFile(f"part-{n}.jpg", image_bytes((64, 48)) + os.urandom(200 * 1024))
        for n in range(6)
    ]
    client.force_login(user)

    response = client.post(reverse("dashboard:upload"), {"images": files, "sizes": ["128"]})

    assert response.status_code == 400
    assert "the limit per job is 512\xa0KB" in response.content.decode()
    assert recorded_uploads.written <= 512 * 1024 + 64 * 1024
    assert not Job.objects.exists()


# --- one request's checks, whatever its files -------------------------------------------------


@pytest.fixture(params=["in-memory", "on-disk"])
def upload_storage(request, settings) -> str:
    """Django keeps small uploads in memory and large ones in temporary files: test both."""
    if request.param == "on-disk":
        settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    return request.param


def submit_through(client, way: str, user, files: list[SimpleUploadedFile]):
    """POST `files` to the upload page or the API (with a token, as scripts send them)."""
    data = {"images": files, "sizes": ["128"]}
    if way == "page":
        client.force_login(user)
        return client.post(reverse("dashboard:upload"), data)
    _, plain = tokens.create_api_token(user=user, name="hostile")
    return client.post("/api/jobs", data, HTTP_AUTHORIZATION=f"Bearer {plain}")


@pytest.mark.django_db
@pytest.mark.parametrize("way", ["page", "api"])
def test_a_broken_file_beside_a_good_one_is_refused_alone(
    client, user, upload_storage, way
) -> None:
    files = [
        SimpleUploadedFile("seek_too_large.tif", SEEK_TOO_LARGE_TIFF),
        SimpleUploadedFile("good.jpg", image_bytes((40, 30))),
    ]
    response = submit_through(client, way, user, files)
    assert response.status_code == (302 if way == "page" else 201), response.content
    job = Job.objects.get()
    assert [image["name"] for image in job.images] == ["good.jpg"]
    assert job.params["refused"] == [{"name": "seek_too_large.tif", "error": base._CORRUPT}]


@pytest.mark.django_db
def test_an_unexpected_error_in_one_files_check_refuses_that_file_alone(
    client, user, monkeypatch, caplog
) -> None:
    def broken(_stream: object, _head: bytes) -> None:
        raise RuntimeError("a bug in a safety check")

    monkeypatch.setattr(checks, "_check_tiff_directory", broken)
    files = [
        SimpleUploadedFile("odd.tif", image_bytes((40, 30), fmt="TIFF")),
        SimpleUploadedFile("good.jpg", image_bytes((40, 30))),
    ]
    assert submit_through(client, "page", user, files).status_code == 302
    job = Job.objects.get()
    assert [image["name"] for image in job.images] == ["good.jpg"]
    assert job.params["refused"] == [{"name": "odd.tif", "error": base._NOT_CHECKED}]
    assert "a bug in a safety check" in caplog.text  # operators get the traceback


@pytest.mark.django_db
def test_one_requests_checks_stop_at_its_cpu_budget_whatever_its_files(
    client, user, settings, upload_storage
) -> None:
    # 40 files of marker padding, each accepted alone at ~130 ms of CPU: 5 s in all before.
    settings.PARROTER_UPLOAD_CHECK_SECONDS = 0.3
    padded = marker_padded_jpeg()
    files = [SimpleUploadedFile("good.jpg", image_bytes((40, 30)))] + [
        SimpleUploadedFile(f"padded-{n}.jpg", padded) for n in range(40)
    ]
    started = time.thread_time()
    response = submit_through(client, "api", user, files)
    spent = time.thread_time() - started

    assert response.status_code == 201, response.content
    assert spent < 2.0
    job = Job.objects.get()
    refused = {item["name"]: item["error"] for item in job.params["refused"]}
    assert job.images[0]["name"] == "good.jpg"
    assert 20 < len(refused) < 40  # some padded files fitted in the budget, most did not
    assert set(refused.values()) == {base._CHECKS_OUT_OF_TIME}
    assert refused.keys() == {f"padded-{n}.jpg" for n in range(40 - len(refused), 40)}
