"""Peak memory of one thumbnail job per input format, at a large but allowed size.

Run:  .venv/bin/python bench/memory.py        (make bench-memory)

Every format except JPEG (whose DCT scaling decodes at 1/8 size) must be decoded whole, so a
job's memory follows the pixel count times what the format and Pillow's mode cost per pixel.
For each case a file is generated (cached in bench/corpus/memory/), then a fresh process runs
make_thumbnails() on it (128, 256 and 512 px boxes) and reports its peak RSS above what it used
before the job (VmHWM - VmRSS, as bench/thumbnails.py). The baseline, measured in the same run,
is the plain decode a tutorial does, Image.open() + load(), in its own fresh process.

A case passes when the job either stays below CEILING or is refused before decoding (the kind's
decode-memory budget): the worker's per-job address-space limit (PARROTER_JOB_MEMORY, enforced
in each pool process by parroter.celery_app) is set above CEILING, so a job that passes here
never meets that limit. Exit status 1 if a case fails.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import subprocess
import sys
import time
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from jobs.kinds.thumbnails import DECODE_MEMORY_BUDGET, Box, ThumbnailError, make_thumbnails

CORPUS = Path(__file__).parent / "corpus" / "memory"
BOXES = [Box(size, size) for size in (128, 256, 512)]
MAX_PIXELS = 120_000_000
MIB = 1024 * 1024
# The kind's own budget plus the interpreter's working margin; see the module docstring.
CEILING = DECODE_MEMORY_BUDGET + 128 * MIB
SIDE = 10_000  # 100 megapixels: below the 120 megapixel limit, above Pillow's 89 MP warning

warnings.simplefilter("ignore", Image.DecompressionBombWarning)


def _save(img: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def _animated_webp() -> bytes:
    """Two 1x1 frames on a SIDE x SIDE canvas (a few hundred bytes): VP8X canvas patched."""
    frames = [Image.new("RGBA", (1, 1), colour) for colour in ((255, 0, 0, 255), (0, 0, 255, 255))]
    data = bytearray(_save(frames[0], "WEBP", save_all=True, append_images=frames[1:]))
    at = data.index(b"VP8X") + 12  # chunk header (8) + flags (4): canvas width-1, height-1
    data[at : at + 6] = (SIDE - 1).to_bytes(3, "little") + (SIDE - 1).to_bytes(3, "little")
    return bytes(data)


def _png16() -> bytes:
    """A 16-bit grey PNG of SIDE x SIDE zeros, written directly (Pillow would take seconds)."""
    row = b"\0" + bytes(SIDE * 2)
    body = zlib.compress(row * SIDE, 9)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", SIDE, SIDE, 16, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


CASES: dict[str, Callable[[], bytes]] = {
    "JPEG RGB": lambda: _save(Image.new("RGB", (SIDE, SIDE), (200, 80, 40)), "JPEG"),
    "PNG RGB": lambda: _save(Image.new("RGB", (SIDE, SIDE), (200, 80, 40)), "PNG"),
    "PNG 16-bit grey": _png16,
    "GIF": lambda: _save(Image.new("P", (SIDE, SIDE), 3), "GIF"),
    "WebP animated": _animated_webp,
    "TIFF RGB (LZW)": lambda: _save(
        Image.new("RGB", (SIDE, SIDE), (200, 80, 40)), "TIFF", compression="tiff_lzw"
    ),
    # 8-bit BMP is uncompressed: 7000x7000 (49 MB) is the largest under the 50 MiB upload limit.
    "BMP 8-bit grey": lambda: _save(Image.new("L", (7000, 7000), 90), "BMP"),
}


def corpus_file(name: str) -> Path:
    path = CORPUS / (name.replace(" ", "_").replace("(", "").replace(")", "") + ".bin")
    if not path.exists():
        CORPUS.mkdir(parents=True, exist_ok=True)
        path.write_bytes(CASES[name]())
    return path


# --- worker (one fresh process per measurement) -------------------------------------------------


def proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def worker(approach: str, path: Path) -> None:
    Image.init()  # load every plugin now so it is not counted as work
    data = io.BytesIO(path.read_bytes())
    rss_before = proc_status_kib("VmRSS")
    start = time.perf_counter()
    refused = ""
    if approach == "baseline":
        with Image.open(data) as img:
            img.load()
    else:
        try:
            make_thumbnails(data, BOXES, io.BytesIO(), max_pixels=MAX_PIXELS)
        except ThumbnailError as exc:
            refused = str(exc)
    seconds = time.perf_counter() - start
    peak = proc_status_kib("VmHWM") - rss_before
    print(json.dumps({"seconds": seconds, "peak_kib": peak, "refused": refused}))


def measure(approach: str, path: Path) -> dict:
    command = [sys.executable, __file__, "--worker", approach, str(path)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", choices=["baseline", "project"], help=argparse.SUPPRESS)
    parser.add_argument("path", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.path)
        return 0

    print(f"Peak RSS of one job, 128/256/512 px; ceiling {CEILING / MIB:.0f} MiB")
    print(f"{'format':<18} {'size':>11} {'file':>9} {'baseline':>10} {'project':>10} {'time':>7}")
    failed = False
    for name in CASES:
        path = corpus_file(name)
        with Image.open(path) as img:
            width, height = img.size
        base = measure("baseline", path)
        project = measure("project", path)
        peak = project["peak_kib"] * 1024
        ok = peak <= CEILING
        failed |= not ok
        outcome = f"refused: {project['refused']}" if project["refused"] else ""
        print(
            f"{name:<18} {f'{width}x{height}':>11} {path.stat().st_size / MIB:7.2f}MB "
            f"{base['peak_kib'] / 1024:8.0f}MiB {peak / MIB:8.0f}MiB "
            f"{project['seconds']:6.2f}s {'PASS' if ok else 'FAIL'} {outcome}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
