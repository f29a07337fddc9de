"""Smart crop against the centre crop: how much of an off-centre subject each keeps, and what
finding it costs per image.

Run:  .venv/bin/python -m bench.smartcrop        (make bench-smartcrop, under a minute)

Set: 66 made-up photos (tests/photos.py subject_photo: a graded background with noise and one
detailed red subject of radius 12% of the short side), 2400x1600 and 1600x2400, the subject's
centre at 11 positions from 12% to 88% along the axis a square crop cuts (the middle included,
where the centre crop is already right), each on a lightly (8%) and a heavily (25%) textured
background and on one of heavy noise of every colour, the hard case for an interest map (it is
all detail and colour); saved as JPEG (quality 90) and thumbnailed
through jobs.kinds.thumbnails.make_thumbnails to 512x512 and 256x256, as a job does.

Kept: the subject's pixels in the 512x512 thumbnail over those in the same image fitted at the
same scale (nothing cut). Time: CPU (time.process_time) of make_thumbnails per image with
fit=crop (the baseline) and fit=smart, interleaved, best of --rounds.

Targets: smart crop's time within 1.3x of the centre crop's; it keeps on average >= 90% of the
subject, and never less than the centre crop minus 5 points on any image. PASS/FAIL per target;
exit status 1 on any FAIL.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
import zipfile

from PIL import Image

from jobs.kinds.thumbnails import Box, Output, make_thumbnails
from tests.photos import red_pixels, subject_photo

POSITIONS = [0.12, 0.2, 0.28, 0.36, 0.44, 0.5, 0.56, 0.64, 0.72, 0.8, 0.88]
# (noise blended in, of every colour?): light, heavy, and heavy colour noise, the hardest.
TEXTURES = [(0.08, False), (0.25, False), (0.25, True)]
BOXES = [Box(512, 512), Box(256, 256)]
TIME_TARGET = 1.3
KEPT_TARGET = 0.90
MAX_PIXELS = 120_000_000


def photo_set() -> list[tuple[str, bytes, tuple[int, int]]]:
    """(name, JPEG bytes, the size the 512 thumbnail is cut from when fitted uncut)."""
    made = []
    for landscape in (True, False):
        size = (2400, 1600) if landscape else (1600, 2400)
        for texture, coloured in TEXTURES:
            for position in POSITIONS:
                along = round(position * max(size))
                centre = (along, size[1] // 2) if landscape else (size[0] // 2, along)
                img = subject_photo(
                    size, centre, radius=192, texture=texture, seed=len(made), coloured=coloured
                )
                data = io.BytesIO()
                img.save(data, "JPEG", quality=90)
                uncut = (768, 512) if landscape else (512, 768)
                noise = f"{texture:.0%}{' colour' if coloured else ''}"
                name = f"{'landscape' if landscape else 'portrait'} {noise} at {position:.0%}"
                made.append((name, data.getvalue(), uncut))
    return made


def thumbnail(data: bytes, boxes: list[Box], fit: str) -> tuple[float, Image.Image]:
    """CPU seconds of make_thumbnails, and its first (largest) thumbnail."""
    archive = io.BytesIO()
    start = time.process_time()
    made = make_thumbnails(
        io.BytesIO(data), boxes, archive, output=Output(fit=fit), max_pixels=MAX_PIXELS
    )
    spent = time.process_time() - start
    with zipfile.ZipFile(archive) as zf:
        first = Image.open(io.BytesIO(zf.read(made[0].name)))
        first.load()
    return spent, first


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed runs per image and mode")
    args = parser.parse_args()
    photos = photo_set()
    times: dict[str, list[float]] = {"crop": [], "smart": []}
    kept: dict[str, list[float]] = {"crop": [], "smart": []}
    print(f"{len(photos)} photos, boxes {', '.join(box.label for box in BOXES)}")
    for name, data, uncut in photos:
        _, whole = thumbnail(data, [Box(*uncut)], "fit")
        subject = red_pixels(whole)
        best: dict[str, float] = {}
        share: dict[str, float] = {}
        for _ in range(args.rounds):  # interleaved: the machine's noise falls on both alike
            for fit in ("crop", "smart"):
                spent, thumb = thumbnail(data, BOXES, fit)
                best[fit] = min(best.get(fit, spent), spent)
                share[fit] = red_pixels(thumb) / subject  # the same thumbnail every round
        for fit in ("crop", "smart"):
            times[fit].append(best[fit])
            kept[fit].append(share[fit])
        print(
            f"  {name:<24} kept: centre {kept['crop'][-1]:6.1%}  smart {kept['smart'][-1]:6.1%}"
            f"   CPU: centre {best['crop'] * 1000:6.1f} ms  smart {best['smart'] * 1000:6.1f} ms"
        )
    ratio = sum(times["smart"]) / sum(times["crop"])
    centre_ms, smart_ms = (statistics.mean(times[fit]) * 1000 for fit in ("crop", "smart"))
    print(
        f"\nper image, best of {args.rounds}: centre crop {centre_ms:.1f} ms, smart crop "
        f"{smart_ms:.1f} ms of CPU (+{smart_ms - centre_ms:.1f} ms)"
    )
    mean, worst = statistics.mean, min
    print(
        f"subject kept: centre crop mean {mean(kept['crop']):.1%}, worst {worst(kept['crop']):.1%}"
        f"; smart crop mean {mean(kept['smart']):.1%}, worst {worst(kept['smart']):.1%}"
    )
    pairs = zip(photos, kept["crop"], kept["smart"], strict=True)
    worse = [name for (name, _, _), centre, smart in pairs if smart < centre - 0.05]
    checks = [
        (f"smart crop's time {ratio:.2f}x the centre crop's (target <= {TIME_TARGET}x)",
         ratio <= TIME_TARGET),
        (f"smart crop keeps {statistics.mean(kept['smart']):.1%} of the subject on average "
         f"(target >= {KEPT_TARGET:.0%}; the centre crop {statistics.mean(kept['crop']):.1%})",
         statistics.mean(kept["smart"]) >= KEPT_TARGET),
        (f"images where smart crop keeps 5 points less than the centre crop: {len(worse)}"
         + (f" ({', '.join(worse)})" if worse else "") + " (target 0)", not worse),
    ]  # fmt: skip
    for text, passed in checks:
        print(f"{'PASS' if passed else 'FAIL'}  {text}")
    ok = all(passed for _, passed in checks)
    print(f"\nsmartcrop: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
