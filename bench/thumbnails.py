"""Benchmark jobs.kinds.thumbnails.make_thumbnails against the classic tutorial approach, a job
of many images against single-image jobs, and what animated thumbnails cost.

Run:  .venv/bin/python bench/thumbnails.py            (full: 40 x 12 MP JPEGs + one 108 MP JPEG,
                                                       a 200-image job)
      .venv/bin/python bench/thumbnails.py --quick    (smoke run: 4 x 12 MP + one 27 MP,
                                                       a 20-image job)

Corpus: photo-like 4000x3000 JPEGs (gradients, translucent shapes, sharp lines, coarse texture
and fine noise of sigma --noise; quality 90), generated with Pillow only and cached in
bench/corpus/ (git-ignored). Decoding is dominated by Huffman decoding, whose cost follows the
file size and is the same at every DCT scale, so the speed ratio depends on how detailed (noisy)
the photos are: by default two corpora are timed, sigma 3 (typical, ~2.8 MB per photo) and
sigma 6 (detailed, ~4.1 MB), each against its own baseline.

baseline: the tutorial way. Image.open(), then per size copy() + thumbnail() (Pillow's
    defaults: BICUBIC, reducing_gap=2.0; a copy() is already decoded, so there is no draft())
    and save as JPEG into a ZIP opened as the tutorial does, ZipFile(..., "w"): ZIP_STORED.
project: make_thumbnails() with boxes 128, 256 and 512 (ZIP_STORED too).
Both save JPEGs with the project's DEFAULT_QUALITY (85), Pillow's default 4:2:0 subsampling and
no optimize pass, so they encode alike; both write their ZIP into memory.

Each measurement runs in a fresh subprocess (this script with --worker) so its peak memory is
its own: the VmHWM high-water mark after the work minus VmRSS just before it. The machine is
shared, so a comparison's runners run in turn, round after round (baseline, project, floor,
baseline, project, floor, ...; --runs rounds, default 5), and a busy spell falls on all of them.
Times are the worker's CPU time (time.process_time around each image): every runner uses one
core, so on a quiet machine that is its wall time, and on a busy one it leaves out the time
other processes took. A runner's best is each image's fastest time over the rounds, summed (the
whole runs' fastest for the job of many images, which is not timed image by image), printed
with the median and the spread (slowest - fastest, as % of the fastest) of its rounds, and its
wall time the same way beside it; ratios and targets use the CPU best. CPU time still follows
the hardware: the baseline's ~28,000 page faults per image (its sys share is printed) cost
more on a busy host, so its time moves more between runs than the kind's or the floor's.
--only floor runs the 12 MP corpora alone (about 2 minutes). Every run's figures are saved in
bench/data/thumbnails-samples.json.

Quality: for a few 12 MP images, each thumbnail is decoded from its JPEG bytes and compared
(PSNR) with the full-resolution decode resized by LANCZOS straight to the same dimensions.

Many images (--batch, default 200): one make_archive() job over --batch 12 MP typical photos
(the corpus repeated; every one a SourceImage of its own that opens its file when reached, the
ZIP written to a temporary file, as the worker does) against make_thumbnails() on each of the
same photos in turn ("project"), interleaved, best of --runs. Targets: the job's images per
second within BATCH_SPEED_TARGET of the single-image figure, in CPU time (both use one core, so
on a quiet machine that is their wall time; on a shared one wall time varies by 30% from run to
run with what other processes take, and is printed beside it), and its peak memory within
BATCH_MEMORY_TARGET of the single-image runs' (which hold one image at a time): a job that held
its images, decoded, as thumbnails or encoded, would grow with their number.

Animation (information, no target): a 100-frame 500x500 GIF to the same three boxes, animated
(every frame of every size) against its first frame only (max_frames=1), time and peak memory.

Exit status is 1 if a target fails.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter

from jobs.kinds.thumbnails import (
    DEFAULT_QUALITY,
    MAX_FRAMES,
    Archive,
    Box,
    SourceImage,
    make_archive,
    make_thumbnails,
)

SIZES = (128, 256, 512)
BOXES = [Box(size, size) for size in SIZES]
MAX_PIXELS = 120_000_000
PHOTO_SIZE = (4000, 3000)
BIG_SIZE = (12000, 9000)
QUICK_BIG_SIZE = (6000, 4500)
QUALITY_SAMPLES = 5

SPEED_TARGET = 3.5  # project/baseline images per second, 12 MP typical photos
TYPICAL_NOISE = 3.0  # the corpus of typical photos, which SPEED_TARGET applies to
# project/decode-only time, every corpus: the kind may add at most this much to the decode
# floor. Detailed photos cannot reach SPEED_TARGET (Huffman decoding alone is ~3.8x the
# baseline there), so what is asked of every corpus is to stay near that physical limit.
FLOOR_TARGET = 1.2
MEMORY_TARGET = 1 / 20  # project/baseline peak memory, big image
PSNR_TOLERANCE_DB = 1.0  # project may be at most this much below baseline, per size
BATCH_SPEED_TARGET = 0.9  # job of many images / single-image images per second
BATCH_MEMORY_TARGET = 1.5  # job of many images / single-image runs, peak memory
ANIMATION_SIZE = (500, 500)
ANIMATION_FRAMES = 100
SAMPLES_FILE = Path(__file__).parent / "data" / "thumbnails-samples.json"

# The 108 MP image is above Pillow's 89 MP warning threshold and below our 120 MP limit.
warnings.simplefilter("ignore", Image.DecompressionBombWarning)


# --- corpus -------------------------------------------------------------------------------------


def photo_like(size: tuple[int, int], rng: random.Random, noise: float) -> Image.Image:
    """Smooth gradients and soft shapes, upscaled, then texture, sharp lines and fine noise."""
    small = (480, 360)
    channels = [
        ImageChops.blend(
            Image.linear_gradient("L").rotate(rng.uniform(0, 360), fillcolor=rng.randrange(256)),
            Image.radial_gradient("L"),
            rng.uniform(0.2, 0.8),
        ).resize(small)
        for _ in range(3)
    ]
    img = Image.merge("RGB", channels)
    draw = ImageDraw.Draw(img, "RGBA")
    for _ in range(25):
        colour = (
            rng.randrange(256),
            rng.randrange(256),
            rng.randrange(256),
            rng.randrange(80, 256),
        )
        points = [
            (rng.randrange(small[0]), rng.randrange(small[1])) for _ in range(rng.randrange(3, 7))
        ]
        if rng.random() < 0.5:
            x, y, rx, ry = *points[0], rng.randrange(10, 120), rng.randrange(10, 120)
            draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=colour)
        else:
            draw.polygon(points, fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(1.5)).resize(size, Image.Resampling.BICUBIC)

    # ImageChops.add(a, b, 1.0, -128) adds noise centred on 128 as zero-mean noise.
    texture = Image.merge(
        "RGB",
        [
            Image.effect_noise((size[0] // 8, size[1] // 8), 12).resize(
                size, Image.Resampling.BICUBIC
            )
            for _ in range(3)
        ],
    )
    img = ImageChops.add(img, texture, 1.0, -128)
    draw = ImageDraw.Draw(img)
    scale = size[0] / PHOTO_SIZE[0]
    for _ in range(40):
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        if rng.random() < 0.5:
            end = (rng.randrange(size[0]), rng.randrange(size[1]))
            draw.line([(x, y), end], fill=colour, width=max(1, int(rng.randrange(1, 12) * scale)))
        else:
            side = int(rng.randrange(20, 400) * scale)
            draw.rectangle(
                (x, y, x + side, y + side // 2), outline=colour, width=max(1, int(3 * scale))
            )
    return ImageChops.add(img, Image.effect_noise(size, noise).convert("RGB"), 1.0, -128)


def ensure_jpegs(paths: list[Path], size: tuple[int, int], noise: float, first_seed: int) -> None:
    """Generate the photo-like JPEGs in `paths` that are not cached yet."""
    missing = [(seed, path) for seed, path in enumerate(paths, first_seed) if not path.exists()]
    for n, (seed, path) in enumerate(missing, start=1):
        print(f"\rgenerating {path.parent}/: {n}/{len(missing)}", end="", flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Shapes and colours come from a fixed seed per file; effect_noise() cannot be seeded,
        # so a regenerated corpus has other noise with the same statistics.
        image = photo_like(size, random.Random(seed), noise)  # noqa: S311 - test data
        partial = path.with_suffix(".part")
        image.save(partial, "JPEG", quality=90)
        partial.rename(path)
    if missing:
        print()


def corpus_photos(directory: Path, count: int, noise: float) -> list[Path]:
    width, height = PHOTO_SIZE
    photos = [directory / f"photo_{width}x{height}_n{noise:g}_{i:02d}.jpg" for i in range(count)]
    ensure_jpegs(photos, PHOTO_SIZE, noise, first_seed=0)
    return photos


def corpus_big(directory: Path, size: tuple[int, int], noise: float) -> Path:
    big = directory / f"big_{size[0]}x{size[1]}_n{noise:g}.jpg"
    ensure_jpegs([big], size, noise, first_seed=1000)
    return big


def corpus_animation(directory: Path) -> Path:
    """A GIF as people make them: a photo-like still with a few shapes moving over it, each
    frame in its own 256-colour palette."""
    width, height = ANIMATION_SIZE
    path = directory / f"animated_{width}x{height}_{ANIMATION_FRAMES}f.gif"
    if path.exists():
        return path
    print(f"generating {path}", flush=True)
    rng = random.Random(2000)  # noqa: S311 - test data
    still = photo_like(ANIMATION_SIZE, rng, TYPICAL_NOISE)
    balls = [(rng.randrange(width), rng.randrange(height), rng.randrange(20, 60)) for _ in range(4)]
    frames = []
    for index in range(ANIMATION_FRAMES):
        frame = still.copy()
        draw = ImageDraw.Draw(frame)
        for n, (x, y, radius) in enumerate(balls):
            cx = (x + 7 * index * (n + 1)) % width
            cy = (y + 5 * index) % height
            colour = (255 - 60 * n, 40 * n, 90 + 40 * n)
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)
        frames.append(frame.quantize(256))
    directory.mkdir(parents=True, exist_ok=True)
    partial_path = path.with_suffix(".part")
    frames[0].save(
        partial_path, "GIF", save_all=True, append_images=frames[1:], duration=40, loop=0
    )
    partial_path.rename(path)
    return path


# --- the two approaches -------------------------------------------------------------------------


def baseline(path: Path) -> bytes:
    """The classic tutorial: full decode, then copy() + thumbnail() per size."""
    archive = io.BytesIO()
    with Image.open(path) as img, zipfile.ZipFile(archive, "w") as zf:
        for size in SIZES:
            thumb = img.copy()
            thumb.thumbnail((size, size))
            out = io.BytesIO()
            thumb.save(out, "JPEG", quality=DEFAULT_QUALITY)
            zf.writestr(f"thumb_{size}x{size}.jpg", out.getvalue())
    return archive.getvalue()


def project(path: Path) -> bytes:
    archive = io.BytesIO()
    with path.open("rb") as source:
        make_thumbnails(source, BOXES, archive, max_pixels=MAX_PIXELS)
    return archive.getvalue()


def decode_only(path: Path) -> bytes:
    """The floor under any approach that decodes: the project's reduced decode and nothing else."""
    with Image.open(path) as img:
        img.draft("RGB", (max(SIZES), max(SIZES)))
        img.load()
    return b""


def job(paths: list[Path], max_frames: int = MAX_FRAMES) -> Archive:
    """The files as one job, as the worker runs it: each image opened when the kind reaches it,
    the ZIP written to a temporary file (so its size is not counted as the kind's memory)."""
    sources = [SourceImage(path.name, partial(path.open, "rb")) for path in paths]
    with tempfile.TemporaryFile() as archive:
        return make_archive(sources, BOXES, archive, max_pixels=MAX_PIXELS, max_frames=max_frames)


def batch(paths: list[Path]) -> None:
    assert not any(image.error for image in job(paths).images)


def animation(path: Path, *, max_frames: int = MAX_FRAMES) -> bytes:
    note = job([path], max_frames).images[0].note
    assert bool(note) == (max_frames == 1), note  # animated, or its first frame only
    return b""


APPROACHES: dict[str, Callable[[Path], bytes]] = {"baseline": baseline, "project": project}
RUNNERS = {
    **APPROACHES,
    "decode-only": decode_only,
    "animated": animation,
    "first-frame": partial(animation, max_frames=1),
}
# Runners given every file at once.
JOB_RUNNERS: dict[str, Callable[[list[Path]], None]] = {"batch": batch}


# --- worker (one fresh process per measurement) -------------------------------------------------


def proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def worker(approach: str, files: list[Path]) -> None:
    Image.init()  # load every plugin now so it is not counted as work
    rss_before = proc_status_kib("VmRSS")
    cpu_each: list[float] = []
    wall_each: list[float] = []
    usage = resource.getrusage(resource.RUSAGE_SELF)
    start, cpu_start = time.perf_counter(), time.process_time()
    if approach in JOB_RUNNERS:
        JOB_RUNNERS[approach](files)
    else:
        for path in files:
            wall, cpu = time.perf_counter(), time.process_time()
            RUNNERS[approach](path)
            cpu_each.append(time.process_time() - cpu)
            wall_each.append(time.perf_counter() - wall)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    used = resource.getrusage(resource.RUSAGE_SELF)
    # Not ru_maxrss: Linux carries it over execve(), so this child would report the peak of
    # the parent that generated the corpus. VmHWM is the same high-water mark, for this
    # process's own address space only.
    peak = proc_status_kib("VmHWM")
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "sys_seconds": used.ru_stime - usage.ru_stime,
                "page_faults": used.ru_minflt - usage.ru_minflt,
                "cpu_each": cpu_each,
                "wall_each": wall_each,
                "images": len(files),
                "peak_kib": peak - rss_before,
            }
        )
    )


def measure(approach: str, files: list[Path]) -> dict[str, float]:
    command = [sys.executable, __file__, "--worker", approach]
    done = subprocess.run([*command, *map(str, files)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


SAMPLES: dict[str, dict[str, list[dict]]] = {}  # every run's figures, saved by main()


def best_of(
    runs: int, files: list[Path], names: list[str], title: str = ""
) -> dict[str, dict[str, float]]:
    """Per runner, over `runs` rounds that run every runner in turn (a, b, c, a, b, c, ...): its
    best time, with the median and the spread (slowest - fastest, as a share of the fastest) of
    its runs' totals, in CPU and in wall time, and its smallest peak. Whatever slows the machine
    for a while falls on every runner of that round.

    Best: where every runner times each image apart, each image's fastest time over the runs,
    summed (a burst of load that slows a few images of one run is left out, whichever run it
    hit); otherwise (a job of many images) the fastest run."""
    results: dict[str, list[dict]] = {name: [] for name in names}
    for _ in range(runs):
        for name in names:
            results[name].append(measure(name, files))
    SAMPLES[title or ", ".join(names)] = results
    per_image = all(r["cpu_each"] for rs in results.values() for r in rs)
    return {name: summary(rs, per_image) for name, rs in results.items()}


def summary(runs: list[dict], per_image: bool) -> dict[str, float]:
    out: dict[str, float] = {
        "peak_mib": min(r["peak_kib"] for r in runs) / 1024,
        "images": runs[0]["images"],
        "runs": len(runs),
        "sys_share": min(r["sys_seconds"] / r["cpu_seconds"] for r in runs),
    }
    for clock, total, each in (
        ("cpu", "cpu_seconds", "cpu_each"),
        ("wall", "seconds", "wall_each"),
    ):
        totals = sorted(r[total] for r in runs)
        if per_image:
            best = sum(min(times) for times in zip(*(r[each] for r in runs), strict=True))
        else:
            best = totals[0]
        out[total] = best
        out[f"{clock}_median"] = statistics.median(totals)
        out[f"{clock}_spread"] = (totals[-1] - totals[0]) / totals[0]
    return out


# --- quality --------------------------------------------------------------------------------------


def psnr(image: Image.Image, reference: Image.Image) -> float:
    histogram = ImageChops.difference(image, reference).histogram()
    squared = sum(count * (i % 256) ** 2 for i, count in enumerate(histogram))
    mse = squared / (image.width * image.height * len(image.getbands()))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def quality(samples: list[Path]) -> dict[str, dict[int, float]]:
    """Mean PSNR per approach and size against a full-resolution LANCZOS reference."""
    scores: dict[str, dict[int, list[float]]] = {n: {s: [] for s in SIZES} for n in APPROACHES}
    for path in samples:
        with Image.open(path) as source:
            full = source.convert("RGB")
        for name, run in APPROACHES.items():
            with zipfile.ZipFile(io.BytesIO(run(path))) as zf:
                # Both write one entry per size in the order asked (the kind names real sizes).
                for size, entry in zip(SIZES, zf.namelist(), strict=True):
                    with Image.open(io.BytesIO(zf.read(entry))) as thumb:
                        decoded = thumb.convert("RGB")
                    reference = full.resize(decoded.size, Image.Resampling.LANCZOS)
                    scores[name][size].append(psnr(decoded, reference))
    return {
        n: {s: statistics.fmean(v) for s, v in by_size.items()} for n, by_size in scores.items()
    }


# --- report ---------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def print_speed(title: str, result: dict[str, dict[str, float]]) -> None:
    """Per runner: CPU ms per image, best of the runs, with their median and spread (slowest
    - fastest, % of the fastest); then wall time, the same way; then peak memory."""
    runs = next(iter(result.values()))["runs"]
    print(f"{title}; per image, best of {runs} runs (median run, spread of the runs)")
    for name, r in result.items():
        n = r["images"]
        print(
            f"  {name:11} CPU {1000 * r['cpu_seconds'] / n:7.1f} ms"
            f" ({1000 * r['cpu_median'] / n:7.1f}, {100 * r['cpu_spread']:4.1f}%;"
            f" sys {100 * r['sys_share']:2.0f}%)"
            f"  wall {1000 * r['seconds'] / n:7.1f} ms"
            f" ({1000 * r['wall_median'] / n:7.1f}, {100 * r['wall_spread']:4.1f}%)"
            f"  peak {r['peak_mib']:7.1f} MiB"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--count", type=int, help="number of 12 MP JPEGs (default 40, quick 4)")
    parser.add_argument(
        "--noise",
        type=float,
        nargs="+",
        default=[3.0, 6.0],
        help="sigma of the fine noise, one corpus each (default 3 and 6: typical and detailed"
        " photos); memory and quality are measured on the last",
    )
    parser.add_argument(
        "--runs", type=int, default=5, help="interleaved rounds, best of (default 5)"
    )
    parser.add_argument(
        "--only",
        choices=["floor"],
        help="floor: only the 12 MP corpora (baseline, project, decode-only floor) and their"
        " two targets",
    )
    parser.add_argument(
        "--batch", type=int, help="images in the job of many images (default 200, quick 20)"
    )
    parser.add_argument("--corpus", type=Path, default=Path(__file__).parent / "corpus")
    parser.add_argument(
        "--worker", choices=sorted([*RUNNERS, *JOB_RUNNERS]), help=argparse.SUPPRESS
    )
    parser.add_argument("files", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        worker(args.worker, args.files)
        return 0

    count = args.count or (4 if args.quick else 40)
    big_size = QUICK_BIG_SIZE if args.quick else BIG_SIZE
    big_mp = big_size[0] * big_size[1] / 1e6
    print(
        f"boxes {', '.join(b.label for b in BOXES)}; JPEG quality {DEFAULT_QUALITY}, 4:2:0;"
        f" both ZIP_STORED; best of {args.runs} interleaved rounds, fresh process each;"
        " ratios in CPU time"
    )
    speed_ratios, floor_ratios = {}, {}
    corpora = {}
    for noise in args.noise:
        photos = corpora[noise] = corpus_photos(args.corpus, count, noise)
        mean_mb = statistics.fmean(p.stat().st_size for p in photos) / 1e6
        print(
            f"\ncorpus noise sigma {noise:g}: {len(photos)} x {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}"
            f" JPEG (mean {mean_mb:.1f} MB)"
        )
        speed = best_of(args.runs, photos, [*APPROACHES, "decode-only"], f"sigma {noise:g}")
        print_speed(f"12 MP JPEGs ({len(photos)} images per run)", speed)
        # Judged on CPU time: every runner uses one core, so on a quiet machine it is their
        # wall time, and on a shared one it leaves out the time other processes took.
        cpu = {name: r["cpu_seconds"] for name, r in speed.items()}
        wall = {name: r["seconds"] for name, r in speed.items()}
        speed_ratios[noise] = (
            cpu["baseline"] / cpu["project"],
            wall["baseline"] / wall["project"],
        )
        floor = cpu["baseline"] / cpu["decode-only"]
        print(f"  (decoding alone, at the project's scale, would be {floor:.2f}x the baseline)")
        floor_ratios[noise] = (
            cpu["project"] / cpu["decode-only"],
            wall["project"] / wall["decode-only"],
        )
        print(
            f"  ratio project/decode-only floor {floor_ratios[noise][0]:.3f} in CPU time"
            f" ({floor_ratios[noise][1]:.3f} in wall time)",
            flush=True,
        )

    checks = [
        (
            f"speed project/baseline on 12 MP typical photos (noise sigma {noise:g}):"
            f" {ratio:.2f}x in CPU time, {wall_ratio:.2f}x in wall time"
            f" (target >= {SPEED_TARGET}x in CPU time)",
            ratio >= SPEED_TARGET,
        )
        for noise, (ratio, wall_ratio) in speed_ratios.items()
        if noise == TYPICAL_NOISE
    ]
    checks += [
        (
            f"time project/decode-only floor on 12 MP, noise sigma {noise:g}: {ratio:.3f}x"
            f" in CPU time, {wall_ratio:.3f}x in wall time (target <= {FLOOR_TARGET}x in CPU"
            " time)",
            ratio <= FLOOR_TARGET,
        )
        for noise, (ratio, wall_ratio) in floor_ratios.items()
    ]
    for noise, (ratio, wall_ratio) in speed_ratios.items():
        if noise != TYPICAL_NOISE:
            print(
                f"(info) speed project/baseline on 12 MP, noise sigma {noise:g}: {ratio:.2f}x"
                f" in CPU time, {wall_ratio:.2f}x in wall time"
            )
    if args.only == "floor":
        return report(checks)

    big = corpus_big(args.corpus, big_size, noise)
    print(f"\n{big_mp:.0f} MP JPEG, noise sigma {noise:g} ({big.stat().st_size / 1e6:.1f} MB)")
    memory = best_of(args.runs, [big], list(APPROACHES))
    print_speed("1 image per run", memory)

    print(
        f"\nPSNR in dB vs full decode + LANCZOS, mean of {min(QUALITY_SAMPLES, len(photos))} images"
    )
    psnrs = quality(photos[:QUALITY_SAMPLES])
    print(f"  {'size':>5} {'baseline':>9} {'project':>9} {'diff':>7}")
    for size in SIZES:
        base, ours = psnrs["baseline"][size], psnrs["project"][size]
        print(f"  {size:>5} {base:9.2f} {ours:9.2f} {ours - base:+7.2f}")

    # The job of many images: typical photos, the corpus repeated to --batch files.
    job_photos = corpora.get(TYPICAL_NOISE) or corpora[args.noise[0]]
    job_size = args.batch or (20 if args.quick else 200)
    job_files = [job_photos[i % len(job_photos)] for i in range(job_size)]
    print(
        f"\nA job of {job_size} images ({len(job_photos)} photos of the corpus repeated) against"
        " make_thumbnails() on each in turn"
    )
    many = best_of(args.runs, job_files, ["project", "batch"])
    print_speed(f"12 MP JPEGs ({job_size} images per run)", many)
    # Judged on CPU time: both run on one core, so on a quiet machine it is their wall time,
    # and on a shared one (as here) it leaves out the time other processes took.
    job_speed = many["project"]["cpu_seconds"] / many["batch"]["cpu_seconds"]
    job_wall_speed = many["project"]["seconds"] / many["batch"]["seconds"]
    job_memory = many["batch"]["peak_mib"] / many["project"]["peak_mib"]

    gif = corpus_animation(args.corpus)
    with Image.open(gif) as opened:
        print(
            f"\nAnimated GIF {opened.width}x{opened.height}, {opened.n_frames} frames"
            f" ({gif.stat().st_size / 1e6:.1f} MB), boxes {', '.join(b.label for b in BOXES)}"
        )
    animated = best_of(args.runs, [gif], ["animated", "first-frame"])
    print_speed("1 image per run", animated)

    memory_ratio = memory["project"]["peak_mib"] / memory["baseline"]["peak_mib"]
    worst_psnr = min(psnrs["project"][s] - psnrs["baseline"][s] for s in SIZES)
    checks += [
        (
            f"peak memory project/baseline on {big_mp:.0f} MP: 1/{1 / memory_ratio:.0f}"
            f" ({memory_ratio:.3f}; target <= 1/{1 / MEMORY_TARGET:.0f})",
            memory_ratio <= MEMORY_TARGET,
        ),
        (
            f"PSNR project - baseline, worst size: {worst_psnr:+.2f} dB"
            f" (target >= -{PSNR_TOLERANCE_DB} dB)",
            worst_psnr >= -PSNR_TOLERANCE_DB,
        ),
        (
            f"speed {job_size}-image job / single images on 12 MP typical photos:"
            f" {job_speed:.2f}x in CPU time, {job_wall_speed:.2f}x in wall time"
            f" (target >= {BATCH_SPEED_TARGET}x in CPU time)",
            job_speed >= BATCH_SPEED_TARGET,
        ),
        (
            f"peak memory {job_size}-image job / single images:"
            f" {many['batch']['peak_mib']:.1f} / {many['project']['peak_mib']:.1f} MiB ="
            f" {job_memory:.2f}x (target <= {BATCH_MEMORY_TARGET}x)",
            job_memory <= BATCH_MEMORY_TARGET,
        ),
    ]
    print(
        f"\n(info) speed project/baseline on {big_mp:.0f} MP:"
        f" {memory['baseline']['cpu_seconds'] / memory['project']['cpu_seconds']:.2f}x in CPU"
        f" time, {memory['baseline']['seconds'] / memory['project']['seconds']:.2f}x in wall time"
    )
    moving, still = animated["animated"], animated["first-frame"]
    print(
        f"(info) animated / first frame only: CPU time"
        f" {moving['cpu_seconds'] / still['cpu_seconds']:.1f}x,"
        f" peak memory {moving['peak_mib']:.1f} / {still['peak_mib']:.1f} MiB"
    )
    return report(checks)


def report(checks: list[tuple[str, bool]]) -> int:
    SAMPLES_FILE.parent.mkdir(parents=True, exist_ok=True)
    SAMPLES_FILE.write_text(json.dumps(SAMPLES))
    print(f"\n(every run's times in {SAMPLES_FILE})")
    for text, ok in checks:
        print(f"{verdict(ok)}  {text}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
