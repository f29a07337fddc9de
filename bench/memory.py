"""Peak memory of one thumbnail job per input format and mode, at a large but allowed size,
against the kind's estimate of it.

Run:  .venv/bin/python bench/memory.py                     (make bench-memory; about 2 minutes)
      .venv/bin/python bench/memory.py GIF "PNG RGBA"      (the cases whose names hold these)

Every format except JPEG (whose DCT scaling decodes at 1/8 size) must be decoded whole, so a
job's memory follows the pixel count times what the format and Pillow's mode cost per pixel;
the kind estimates that before decoding (_decode_cost) and refuses an image whose estimate is
over its decode budget. For each case a file is generated (cached in bench/corpus/memory/),
then a fresh process runs make_thumbnails() on it (128, 256 and 512 px boxes unless the case
says otherwise) and reports its peak RSS above what it used before the job (VmHWM - VmRSS, as
bench/thumbnails.py) and the largest estimate the job made. A job refused for its estimate runs
again without the budget, so that every estimate is set against a measured peak. The baseline,
measured in the same run, is the plain decode a tutorial does, Image.open() + load(), in its own
fresh process.

A case passes when
- the job stays below CEILING or is refused before decoding: the worker's per-job
  address-space limit (PARROTER_JOB_MEMORY, enforced in each pool process by
  parroter.celery_app) is set above CEILING, so a job that passes here never meets that limit;
- its peak is at most the estimate plus MARGIN: the estimate is an upper bound, so the budget
  bounds what a job takes;
- the estimate is at most SLACK times the peak plus MARGIN: the budget does not refuse images
  a worker could process.
Exit status 1 if a case fails.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import struct
import subprocess
import sys
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path and `jobs` would come from the
# virtualenv's editable install, another checkout's in a worktree: this checkout's instead.
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)

from PIL import Image  # noqa: E402 - after the path set-up above

from jobs.kinds import thumbnails  # noqa: E402
from jobs.kinds.thumbnails import (  # noqa: E402
    DECODE_MEMORY_BUDGET,
    Box,
    Output,
    ThumbnailError,
    checks,  # noqa: E402  (its _decode_cost is recorded)
)

CORPUS = ROOT / "bench" / "corpus" / "memory"
MAX_PIXELS = 120_000_000
MIB = 1024 * 1024
# The kind's own budget plus the interpreter's working margin; see the module docstring.
CEILING = DECODE_MEMORY_BUDGET + 128 * MIB
# A fixed allowance for what a job allocates beside what the estimate counts (the
# interpreter's working memory, encoders): peaks are at most 4 MiB over it in the cases below.
MARGIN = 32 * MIB
SLACK = 1.5
SIDE = 10_000  # 100 megapixels: below the 120 megapixel limit, above Pillow's 89 MP warning

warnings.simplefilter("ignore", Image.DecompressionBombWarning)


def _save(img: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def _saved(
    mode: str, fmt: str, side: int = SIDE, colour: object = 90, **params: object
) -> Callable[[], bytes]:
    """A side x side image of one colour in `mode`, saved by Pillow (P: a colour palette)."""

    def make() -> bytes:
        img = Image.new(mode, (side, side), colour)
        if mode == "P":
            img.putpalette([(7 * i) % 256 for i in range(768)])
        return _save(img, fmt, **params)

    return make


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _png(
    bits: int,
    colour: int,
    *chunks: bytes,
    frames: tuple[bytes, ...] = (),
    size: tuple[int, int] = (SIDE, SIDE),
) -> Callable[[], bytes]:
    """A PNG of zeros with `chunks` before its data and APNG `frames` after it, written
    directly (Pillow would take seconds, and hold the whole image)."""

    def make() -> bytes:
        width, height = size
        channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
        row = bytes(1 + math.ceil(width * channels * bits / 8))
        packer = zlib.compressobj(9)
        body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
        header = struct.pack(">IIBBBBB", width, height, bits, colour, 0, 0, 0)
        return b"".join(
            [b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", header), *chunks, _chunk(b"IDAT", body)]
            + list(frames)
            + [_chunk(b"IEND", b"")]
        )

    return make


def _frame_control(sequence: int, width: int, height: int) -> bytes:
    return _chunk(b"fcTL", struct.pack(">IIIIIHHBB", sequence, width, height, 0, 0, 1, 10, 0, 0))


_PALETTE = _chunk(b"PLTE", bytes(range(48)))
# An APNG whose first frame is the whole RGBA image and whose second is one pixel.
_APNG = _png(
    8,
    6,
    _chunk(b"acTL", struct.pack(">II", 2, 0)),
    _frame_control(0, SIDE, SIDE),
    frames=(
        _frame_control(1, 1, 1),
        _chunk(b"fdAT", struct.pack(">I", 2) + zlib.compress(bytes(5))),
    ),
)


def _animated_webp() -> bytes:
    """Two 1x1 frames on a SIDE x SIDE canvas (a few hundred bytes): VP8X canvas patched."""
    frames = [Image.new("RGBA", (1, 1), colour) for colour in ((255, 0, 0, 255), (0, 0, 255, 255))]
    data = bytearray(_save(frames[0], "WEBP", save_all=True, append_images=frames[1:]))
    at = data.index(b"VP8X") + 12  # chunk header (8) + flags (4): canvas width-1, height-1
    data[at : at + 6] = (SIDE - 1).to_bytes(3, "little") + (SIDE - 1).to_bytes(3, "little")
    return bytes(data)


def _animated_gif() -> bytes:
    """Two 1x1 frames with transparency on a SIDE x SIDE screen: logical screen patched."""
    frames = [Image.new("P", (1, 1), index) for index in (1, 2)]
    for frame in frames:
        frame.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255])
    # optimize=False: Pillow would drop the unused transparent index 0.
    options = {"save_all": True, "transparency": 0, "optimize": False}
    data = bytearray(_save(frames[0], "GIF", append_images=frames[1:], **options))
    data[6:10] = struct.pack("<HH", SIDE, SIDE)
    return bytes(data)


def _rle_bmp(palette: bytes) -> bytes:
    """An 8-bit BMP of SIDE x SIDE in a few hundred bytes: RLE8 "delta" escapes, each skipping
    255 rows (Pillow fills them with index 0)."""
    skips = b"\0\2\0\xff" * math.ceil(SIDE / 255)
    data = skips + b"\0\1"  # end of bitmap
    info = struct.pack("<IiiHHIIiiII", 40, SIDE, SIDE, 1, 8, 1, len(data), 2835, 2835, 256, 0)
    offset = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset) + info + palette + data


def _rgba_bmp(side: int) -> bytes:
    """A 32-bit BMP with an alpha mask (BITMAPV4 header, BI_BITFIELDS), which Pillow opens as
    RGBA; Pillow itself saves 32-bit BMPs without one (opened as RGB)."""
    masks = struct.pack("<IIII", 0xFF0000, 0xFF00, 0xFF, 0xFF000000)
    info = struct.pack("<IiiHHIIiiII", 108, side, side, 1, 32, 3, 0, 2835, 2835, 0, 0) + masks
    info = info.ljust(108, b"\0")
    pixels = b"\x40\x80\xc0\x80" * side * side
    offset = 14 + len(info)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + pixels


@dataclass(frozen=True)
class Case:
    make: Callable[[], bytes]
    boxes: tuple[int, ...] = (128, 256, 512)
    fit: str = "fit"


_PANORAMA = _png(8, 6, size=(25_000, 4000))
_COLOUR_PALETTE = bytes((7 * i) % 256 for i in range(4 * 256))  # Pillow opens the BMP as P
_GREY_PALETTE = bytes(i // 4 if i % 4 < 3 else 0 for i in range(4 * 256))  # as L
# Uncompressed BMPs as large as an upload may be (PARROTER_MAX_UPLOAD_BYTES, 50 MiB):
# 7000x7000 8-bit (47 MiB), 4000x4000 24-bit (46 MiB), 3600x3600 32-bit (49 MiB).
CASES: dict[str, Case] = {
    "JPEG RGB": Case(_saved("RGB", "JPEG", colour=(200, 80, 40))),
    "JPEG RGB to 4096": Case(_saved("RGB", "JPEG", colour=(200, 80, 40)), boxes=(4096, 512)),
    "JPEG RGB progressive": Case(_saved("RGB", "JPEG", colour=(200, 80, 40), progressive=True)),
    "JPEG L": Case(_saved("L", "JPEG")),
    "JPEG CMYK": Case(_saved("CMYK", "JPEG", colour=(20, 80, 40, 10))),
    "JPEG CMYK progressive": Case(
        _saved("CMYK", "JPEG", colour=(20, 80, 40, 10), progressive=True)
    ),
    "PNG RGB": Case(_png(8, 2)),
    "PNG RGB to 4096": Case(_png(8, 2), boxes=(4096, 512)),
    "PNG RGBA": Case(_png(8, 6)),
    "PNG RGBA to 4096": Case(_png(8, 6), boxes=(4096, 512)),
    # A 25000x4000 panorama cut to squares: its 4096 px square is the whole image's height,
    # so the first step is the whole image, and the next size is scaled from it.
    "PNG RGBA panorama, crop": Case(_PANORAMA, boxes=(4096, 512), fit="crop"),
    "PNG RGBA panorama, crop 3000": Case(_PANORAMA, boxes=(4096, 3000), fit="crop"),
    "PNG L": Case(_png(8, 0)),
    "PNG LA": Case(_png(8, 4)),
    "PNG P": Case(_png(8, 3, _PALETTE)),
    "PNG P+tRNS": Case(_png(8, 3, _PALETTE, _chunk(b"tRNS", b"\0"))),
    "PNG L+tRNS": Case(_png(8, 0, _chunk(b"tRNS", b"\0\0"))),
    "PNG RGB+tRNS": Case(_png(8, 2, _chunk(b"tRNS", bytes(6)))),
    "PNG 16-bit grey": Case(_png(16, 0)),
    "PNG 16-bit RGB": Case(_png(16, 2)),
    "PNG 16-bit RGBA": Case(_png(16, 6)),
    "PNG 1-bit": Case(_png(1, 0)),
    "PNG animated RGBA": Case(_APNG),
    "GIF P": Case(_saved("P", "GIF", colour=3)),
    "GIF P+transparency": Case(_saved("P", "GIF", colour=3, transparency=3)),
    "GIF animated": Case(_animated_gif),
    "WebP RGB": Case(_saved("RGB", "WEBP", colour=(200, 80, 40), quality=50, method=0)),
    "WebP RGBA": Case(_saved("RGBA", "WEBP", colour=(200, 80, 40, 128), quality=50, method=0)),
    "WebP animated": Case(_animated_webp),
    "TIFF RGB (LZW)": Case(_saved("RGB", "TIFF", colour=(200, 80, 40), compression="tiff_lzw")),
    # libtiff decodes a strip at a time into a buffer of its own: here the whole image.
    "TIFF RGB (LZW, 1 strip)": Case(
        _saved("RGB", "TIFF", colour=(200, 80, 40), compression="tiff_lzw", strip_size=1 << 31)
    ),
    "TIFF RGBA (LZW)": Case(
        _saved("RGBA", "TIFF", colour=(200, 80, 40, 128), compression="tiff_lzw")
    ),
    "TIFF L (LZW)": Case(_saved("L", "TIFF", compression="tiff_lzw")),
    "TIFF 16-bit grey (LZW)": Case(_saved("I;16", "TIFF", colour=300, compression="tiff_lzw")),
    "TIFF CMYK (LZW)": Case(
        _saved("CMYK", "TIFF", colour=(20, 80, 40, 10), compression="tiff_lzw")
    ),
    "TIFF 1-bit (LZW)": Case(_saved("1", "TIFF", colour=1, compression="tiff_lzw")),
    "BMP 8-bit": Case(_saved("P", "BMP", side=7000)),
    "BMP 8-bit RLE": Case(lambda: _rle_bmp(_COLOUR_PALETTE)),
    "BMP 8-bit grey RLE": Case(lambda: _rle_bmp(_GREY_PALETTE)),
    "BMP 24-bit": Case(_saved("RGB", "BMP", side=4000, colour=(200, 80, 40))),
    "BMP 32-bit alpha": Case(lambda: _rgba_bmp(3600)),
}


def corpus_file(name: str) -> Path:
    path = CORPUS / (name.replace(" ", "_").replace("(", "").replace(")", "") + ".bin")
    if not path.exists():
        CORPUS.mkdir(parents=True, exist_ok=True)
        path.write_bytes(CASES[name].make())
    return path


# --- worker (one fresh process per measurement) -------------------------------------------------


def proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def worker(approach: str, name: str, max_memory: int) -> None:
    Image.init()  # load every plugin now so it is not counted as work
    case = CASES[name]
    data = io.BytesIO(corpus_file(name).read_bytes())
    # The job's own estimates, as it makes them: the largest is the one its budget checks.
    estimates = [0]
    estimate = checks._decode_cost

    def recorded(*args: object, **kwargs: object) -> int:
        estimates.append(estimate(*args, **kwargs))
        return estimates[-1]

    checks._decode_cost = recorded  # where _check_memory looks it up
    rss_before = proc_status_kib("VmRSS")
    start = time.perf_counter()
    refused = ""
    if approach == "baseline":
        with Image.open(data) as img:
            img.load()
    else:
        try:
            thumbnails.make_thumbnails(
                data,
                [Box(size, size) for size in case.boxes],
                io.BytesIO(),
                output=Output(fit=case.fit),
                max_pixels=MAX_PIXELS,
                max_memory=max_memory,
            )
        except ThumbnailError as exc:
            refused = str(exc)
    seconds = time.perf_counter() - start
    peak = proc_status_kib("VmHWM") - rss_before
    result = {"seconds": seconds, "peak": peak * 1024, "refused": refused}
    print(json.dumps({**result, "estimate": max(estimates)}))


def measure(approach: str, name: str, max_memory: int = DECODE_MEMORY_BUDGET) -> dict:
    command = [sys.executable, __file__, "--worker", approach, name, str(max_memory)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", choices=["baseline", "project"], help=argparse.SUPPRESS)
    parser.add_argument("names", nargs="*", help="run only the cases whose names contain these")
    args = parser.parse_args()
    if args.worker:
        name, max_memory = args.names
        worker(args.worker, name, int(max_memory))
        return 0

    print(
        f"Peak RSS of one job, 128/256/512 px unless named; ceiling {CEILING / MIB:.0f} MiB; "
        f"pass: peak <= estimate + {MARGIN / MIB:.0f} MiB <= {SLACK} x peak + "
        f"{2 * MARGIN / MIB:.0f} MiB"
    )
    print(
        f"{'case':<28} {'size':>11} {'file':>9} {'baseline':>9} {'estimate':>9} "
        f"{'project':>9} {'ratio':>5} {'time':>6}"
    )
    failed = False
    for name in CASES:
        if args.names and not any(part in name for part in args.names):
            continue
        path = corpus_file(name)
        with Image.open(path) as img:
            width, height = img.size
        base = measure("baseline", name)
        project = measure("project", name)
        # Refused for its estimate: measure what it would have taken.
        unbounded = measure("project", name, 1 << 62) if project["refused"] else project
        peak, expected = unbounded["peak"], unbounded["estimate"]
        ok = (
            (project["refused"] or project["peak"] <= CEILING)
            and peak <= expected + MARGIN
            and expected <= SLACK * peak + MARGIN
        )
        failed |= not ok
        outcome = f"refused: {project['refused']}" if project["refused"] else ""
        print(
            f"{name:<28} {f'{width}x{height}':>11} {path.stat().st_size / MIB:7.2f}MB "
            f"{base['peak'] / MIB:6.0f}MiB {expected / MIB:6.0f}MiB {peak / MIB:6.0f}MiB "
            f"{peak / expected:5.2f} {unbounded['seconds']:5.1f}s "
            f"{'PASS' if ok else 'FAIL'} {outcome}",
            flush=True,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
