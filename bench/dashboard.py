"""Benchmark the operator console and the Job admin at 1,000,000 jobs, on SQLite and PostgreSQL.

Run:  .venv/bin/python bench/dashboard.py                      (1,000,000 jobs, both databases)
      .venv/bin/python bench/dashboard.py --jobs 100000        (quick run)
      .venv/bin/python bench/dashboard.py --databases postgresql
      make bench-dashboard                                     (BENCH_ARGS="--jobs 100000")

Data: --jobs jobs created over the last 30 days with a daily and weekly rhythm, owned by 2,000
users with a Zipf-like skew (the busiest is a shop's catalogue import account), ~93.5%
succeeded, ~5% failed (with the messages and tracebacks the worker writes), ~1.5% cancelled,
a few hundred queued and a handful running (the newest: a catalogue import in progress).
Queue waits are mostly sub-second, with a few worker outages whose jobs waited minutes; run
times ~10-50 ms with a tail of big images. Every job that reached a worker has the
django-celery-results TaskResult row the worker would have stored (result_extended=True:
task_args is the JSON of Celery's argsrepr), retried jobs also the row of their earlier task.
JobRollup rows are summed with jobs.rollups' own arithmetic (rollups.deltas), each finish in one
of PARROTER_ROLLUP_SHARDS shards by its job id (busy pool processes fill every shard), bulk-loaded,
checked against direct counts over the jobs, then compacted as the hourly chore leaves them
(jobs.housekeeping.compact_rollups: minutes for the last day, hours for the last week, days
before), checking that no total and none of the 1 h, 24 h and 7 d histories changed.
Loading: COPY (psycopg 3) on PostgreSQL, executemany in large
transactions with the journal off on SQLite, secondary indexes dropped during the load and
recreated from their own definitions, then VACUUM ANALYZE / ANALYZE.

Server time: wall time of django.test.Client().get(url) in-process, signed in as staff, with
DEBUG off and persistent database connections (DATABASE_CONN_MAX_AGE=60, as in
deploy/env.example); p50 and p95 of --repeat requests after --warmup. A private Redis
(parroter.local_redis) serves the cache and broker URL; no Celery worker runs. PostgreSQL is a
private cluster (parroter.local_postgres, the same helper .ci/run uses). Each database is
loaded and measured in a fresh process (this script with --measure), one after the other.

The audit log (/ops/audit/), loaded after the console is measured: --audit-entries entries (as
many as jobs by default) over 400 days, as load_audit describes; its first page, a keyset page
half the log deep, and each filter at its hardest (a rare action, a rare person, a common
action by a rare person, a rare action by a common person, one job of a bulk action), against
an OFFSET page of the log half way down.

Baselines, measured in the same run: an OFFSET page (Job.objects.all()[N/2:N/2+50]) and
django-celery-results' stock TaskResult admin (bench/dashboard_urls.py) first page and
task-id search; each printed with the ratio baseline time / project time.

Retention, last on each database (it deletes the oldest jobs): jobs.housekeeping.
purge_expired_jobs with the cutoff at the 501st-oldest finished job, so exactly one batch of
500 jobs (and their TaskResult rows) expires: wall time and statements. Then the idle hourly
run (the same cutoff again: nothing expired), p50/p95, and the plans of its queries; then, in
runs of their own on the next oldest jobs, Python's peak memory (tracemalloc, which slows the
code it traces) for one batch and for four in one call. The bench's jobs have
no files on disk, so the post_delete receiver finds no folder. Baselines: reading the next batch
by primary key, and a scan of the jobs table for the same cutoff. Targets, both databases:
one batch <= 2 s, peak memory <= 50 MB, idle run p95 <= 50 ms and by index.

Targets (p95): PostgreSQL <= 50 ms for every console page, search and partial (the stats
partial of each range: 1 h, 24 h, 7 d), <= 5 ms for the unchanged poll (which must answer 204),
<= 150 ms for Job admin pages; SQLite within 3x of those. The console's first page <= 80 KB of
HTML. A URL that answers 404 is reported as missing (FAIL). Exit status is 1 if a target fails.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import platform
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
import traceback
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path, where this very file would be
# imported as the project's `dashboard` app: put the repository root there instead.
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)
for _path in (str(ROOT), str(ROOT / "platform")):
    if _path not in sys.path:
        sys.path.insert(1, _path)

DATA_DIR = ROOT / "bench" / "data"
DATABASES = ("sqlite", "postgresql")

OWNERS = 2_000
STAFF_USERNAME = "ops"
BUSY_OWNER = "acme-catalog"
WORKERS = [f"celery@worker-{n}" for n in range(1, 7)]
DAYS = 30
CHUNK = 20_000
PAGE_DEPTH = 1_000

# Targets, p95 in milliseconds, on PostgreSQL; SQLite gets SQLITE_FACTOR times as much.
CONSOLE_TARGET_MS = 50.0
POLL_TARGET_MS = 5.0
ADMIN_TARGET_MS = 150.0
SQLITE_FACTOR = 3.0
# The console's first page, in kilobytes of HTML (the 24 h charts' markup included).
PAGE_TARGET_KB = 80.0

# Targets for the retention chore (jobs.housekeeping.purge_expired_jobs), the same on both
# databases. A batch is one transaction: on SQLite it holds the only write lock (every worker
# finishing a job waits for it, and gives up after the 20 s busy timeout of the settings), on
# PostgreSQL the row locks of its 500 jobs; 2 s keeps a waiting writer far from that timeout.
# Its Python memory is one batch (Django's delete collector loads the 500 rows to send
# post_delete): 50 MB is ten times that, and far below what loading every expired job would
# take, and several batches must stay within it too. The hourly run that finds nothing expired
# must be an index probe: 50 ms is what a worker can spend on it every hour without notice, and
# a few times less than a scan of the 1M jobs takes (printed beside it: 0.2-0.3 s on the dev box).
RETENTION_BATCH_TARGET_S = 2.0
RETENTION_MEMORY_TARGET_MB = 50.0
RETENTION_IDLE_TARGET_MS = 50.0
RETENTION_MANY_BATCHES = 4  # the bounded-memory run: this many batches in one call

# The cluster's settings for this run, printed with the results. Only the load-time ones
# (maintenance_work_mem, max_wal_size) and the buffer cache differ from a stock cluster.
POSTGRES_SETTINGS = {
    "shared_buffers": "512MB",
    "maintenance_work_mem": "512MB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
}

# Fractions of the finished jobs.
# The audit log (--audit-entries, as many as jobs by default) over AUDIT_DAYS: operators'
# retries, cancels and deletions, admin changes and tokens; one rare action (queue pauses) and
# one rare person (AUDIT_RARE_ACTOR, who only retries) spread evenly through it; every
# AUDIT_BULK_EVERY-th entry a bulk action of AUDIT_BULK_JOBS jobs, the others of one job each.
AUDIT_DAYS = 400
AUDIT_OPERATORS = [f"operator-{n:02}" for n in range(1, 26)]
AUDIT_ACTIONS = [("retry", 45), ("cancel", 30), ("delete", 10), ("admin", 10), ("token_create", 5)]
AUDIT_RARE_ACTOR, AUDIT_RARE_ACTOR_ENTRIES = "night.shift", 50
AUDIT_PAUSES = 200
AUDIT_BULK_EVERY, AUDIT_BULK_JOBS = 1_000, 200
P_FAILED = 0.05
P_CANCELLED = 0.015
P_RETRIED_AFTER_FAILURE = 0.005  # of succeeded jobs: an operator retried an earlier failure
P_REDELIVERED = 0.003  # of succeeded jobs: the worker died once, the message came back


# --- realistic values ----------------------------------------------------------------------------

# Relative upload rate per hour of the day (UTC): Europe's working day into America's.
HOURLY = [
    0.35, 0.30, 0.25, 0.25, 0.30, 0.40, 0.60, 0.90, 1.20, 1.50, 1.70, 1.80,
    1.80, 1.80, 1.90, 1.90, 1.80, 1.60, 1.40, 1.20, 1.00, 0.80, 0.60, 0.45,
]  # fmt: skip
WEEKEND = 0.55

FIRST_NAMES = [
    "james", "mary", "robert", "patricia", "john", "jennifer", "michael", "linda", "david",
    "elizabeth", "william", "barbara", "richard", "susan", "joseph", "jessica", "thomas", "sarah",
    "charles", "karen", "christopher", "lisa", "daniel", "nancy", "matthew", "betty", "anthony",
    "sandra", "mark", "margaret", "donald", "ashley", "steven", "kimberly", "andrew", "emily",
    "paul", "donna", "joshua", "michelle", "kenneth", "carol", "kevin", "amanda", "brian",
    "melissa", "george", "deborah", "timothy", "stephanie", "sophie", "lukas", "emma", "noah",
    "mia", "leon", "hannah", "felix", "lea", "jonas", "lina", "marie", "elias", "yuki", "haruto",
    "aiko", "sota", "mateo", "lucia", "hugo", "chloe", "louis", "camille", "arthur", "ines",
    "raphael", "manon"
]  # fmt: skip
LAST_NAMES = [
    "smith", "johnson", "williams", "brown", "jones", "garcia", "miller", "davis", "rodriguez",
    "martinez", "hernandez", "lopez", "gonzalez", "wilson", "anderson", "thomas", "taylor",
    "moore", "jackson", "martin", "lee", "perez", "thompson", "white", "harris", "sanchez",
    "clark", "ramirez", "lewis", "robinson", "walker", "young", "allen", "king", "wright", "scott",
    "torres", "nguyen", "hill", "flores", "green", "adams", "nelson", "baker", "hall", "rivera",
    "campbell", "mitchell", "carter", "roberts", "muller", "schmidt", "schneider", "fischer",
    "weber", "meyer", "wagner", "becker", "schulz", "hoffmann", "dubois", "durand", "lefebvre",
    "moreau", "laurent", "simon", "michel", "tanaka", "suzuki", "takahashi", "watanabe", "ito",
    "rossi", "russo", "ferrari", "esposito", "bianchi", "romano"
]  # fmt: skip

GENERIC_NAMES = [
    "photo.jpg", "image.png", "image (1).png", "download.jpg", "unnamed.jpg", "image0.jpeg",
    "photo (2).jpg", "IMG.jpg", "picture.png", "file.jpg",
]  # fmt: skip
DESIGN_NAMES = [
    "banner_final_v2.webp", "logo.gif", "hero@2x.png", "avatar.webp", "header-bg.jpg",
    "banner_final_FINAL.png", "og-image.png", "thumbnail.jpg", "cover.webp", "icon.bmp",
]  # fmt: skip
PRODUCT_VIEWS = ["front", "back", "side", "detail", "top", "packshot", "lifestyle"]


def _name_android(rng: random.Random, taken: datetime) -> str:
    return f"IMG_{taken:%Y%m%d_%H%M%S}.jpg"


def _name_pixel(rng: random.Random, taken: datetime) -> str:
    return f"PXL_{taken:%Y%m%d_%H%M%S}{rng.randrange(1000):03d}.jpg"


def _name_iphone(rng: random.Random, taken: datetime) -> str:
    return f"IMG_{rng.randrange(1, 10000):04d}.JPG"


def _name_camera(rng: random.Random, taken: datetime) -> str:
    number = rng.randrange(1, 10000)
    return rng.choice(
        [f"DSC{number + 10000 * rng.randrange(4):05d}.JPG", f"DSCN{number:04d}.JPG",
         f"_DSC{number:04d}.jpg", f"P{1000000 + number:07d}.JPG", f"_MG_{number:04d}.jpg"]
    )  # fmt: skip


def _name_product(rng: random.Random, taken: datetime) -> str:
    sku = rng.randrange(1000, 99999)
    view = rng.choice(PRODUCT_VIEWS)
    if rng.random() < 0.7:
        return f"product-{sku}-{view}.png"
    return f"sku-{sku}-{view}.jpg"


def _name_generic(rng: random.Random, taken: datetime) -> str:
    return rng.choice(GENERIC_NAMES)


def _name_screenshot(rng: random.Random, taken: datetime) -> str:
    pick = rng.random()
    if pick < 0.5:
        return f"Screenshot {taken:%Y-%m-%d} at {taken:%H.%M.%S}.png"
    if pick < 0.85:
        return f"Screenshot_{taken:%Y%m%d-%H%M%S}.png"
    return f"Screenshot ({rng.randrange(1, 400)}).png"


def _name_whatsapp(rng: random.Random, taken: datetime) -> str:
    return f"WhatsApp Image {taken:%Y-%m-%d} at {taken:%H.%M.%S}.jpeg"


def _name_design(rng: random.Random, taken: datetime) -> str:
    if rng.random() < 0.3:
        return f"scan{rng.randrange(1, 2000):04d}.tif"
    return rng.choice(DESIGN_NAMES)


NAME_STYLES: list[tuple[Callable[[random.Random, datetime], str], float]] = [
    (_name_android, 0.28),
    (_name_pixel, 0.07),
    (_name_iphone, 0.15),
    (_name_camera, 0.10),
    (_name_product, 0.12),
    (_name_generic, 0.07),
    (_name_screenshot, 0.08),
    (_name_whatsapp, 0.07),
    (_name_design, 0.06),
]

# Source format by file extension: (the stored source's extension, the thumbnails' extension).
FORMATS = {
    ".jpg": ("jpg", "jpg"), ".jpeg": ("jpg", "jpg"), ".png": ("png", "png"),
    ".webp": ("webp", "webp"), ".gif": ("gif", "png"), ".tif": ("tiff", "jpg"),
    ".bmp": ("bmp", "jpg"),
}  # fmt: skip
BYTES_PER_PIXEL = {"jpg": 0.22, "png": 1.1, "webp": 0.14}
IMAGE_SIZES = [
    (4000, 3000), (3000, 4000), (4032, 3024), (3024, 4032), (4080, 3072), (1920, 1080),
    (1080, 1920), (2048, 2048), (1200, 1200), (2560, 1440), (6000, 4000), (1170, 2532),
]  # fmt: skip
DEFAULT_SIZES = [[128, 128], [256, 256], [512, 512]]
CUSTOM_SIZES = [
    [[300, 300]], [[800, 600], [128, 128]], [[1024, 1024]], [[64, 64], [128, 128]],
    [[200, 200], [400, 400], [800, 800]], [[1200, 630]], [[150, 150], [600, 600]],
]  # fmt: skip

NOT_AN_IMAGE = "This file is not an image Parroter can read (JPEG, PNG, GIF, WebP, BMP or TIFF)."
CORRUPT = "The image data is truncated or corrupt and could not be decoded."
INTERNAL = (
    "Parroter could not finish this job because of an internal error. "
    "Operators can see the details; retrying may help."
)
TIME_LIMIT = "The job took longer than 300 seconds and was stopped."
INTERRUPTED = (
    "The job was interrupted 3 times (the worker stopped, or the job ran out of time or memory) "
    "and was given up."
)

SITE = "/app/.venv/lib/python3.11/site-packages"
_CELERY_FRAMES = f"""Traceback (most recent call last):
  File "{SITE}/celery/app/trace.py", line 453, in trace_task
    R = retval = fun(*args, **kwargs)
                 ^^^^^^^^^^^^^^^^^^^^
  File "{SITE}/celery/app/trace.py", line 736, in __protected_call__
    return self.run(*args, **kwargs)
           ^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/app/jobs/tasks.py", line 14, in run_job
    outcome = running.run_job(job_id=job_id, task_id=self.request.id, worker=self.request.hostname)
              ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
"""
_KIND_FRAMES = """Traceback (most recent call last):
  File "/app/jobs/running.py", line 233, in run_job
    archive_name, made = _make_thumbnail_archive(job)
                         ^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/app/jobs/running.py", line 310, in _make_thumbnail_archive
    made = thumbnails.make_thumbnails(
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/app/jobs/kinds/thumbnails.py", line 156, in make_thumbnails
    with _input_errors(max_pixels), _open(source, max_pixels) as img:
  File "/usr/lib/python3.11/contextlib.py", line 155, in __exit__
    self.gen.throw(typ, value, traceback)
  File "/app/jobs/kinds/thumbnails.py", line 207, in _input_errors
    raise ThumbnailError({constant}) from exc
"""
_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"


def _kind_traceback(cause: str, constant: str, message: str) -> str:
    return (
        f"{cause}\n{_CAUSE}{_KIND_FRAMES.format(constant=constant)}"
        f"jobs.kinds.thumbnails.ThumbnailError: {message}\n{_CAUSE}{_CELERY_FRAMES}"
        f'  File "/app/jobs/running.py", line 235, in run_job\n'
        f"    raise JobFailed(str(exc)) from exc\njobs.running.JobFailed: {message}\n"
    )


def _simple_traceback(line: str, raise_line: str, message: str) -> str:
    return (
        f'{_CELERY_FRAMES}  File "/app/jobs/running.py", line {line}, in run_job\n'
        f"    {raise_line}\njobs.running.JobFailed: {message}\n"
    )


_PIL_UNIDENTIFIED = (
    f'Traceback (most recent call last):\n  File "{SITE}/PIL/Image.py", line 3572, in open\n'
    f"    raise UnidentifiedImageError(msg)\nPIL.UnidentifiedImageError: cannot identify image "
    f"file <_io.BufferedReader name='/data/media/jobs/{{job}}/source.{{ext}}'>"
)
_PIL_TRUNCATED = (
    f'Traceback (most recent call last):\n  File "{SITE}/PIL/ImageFile.py", line 293, in load\n'
    f"    raise OSError(msg)\nOSError: image file is truncated (57 bytes not processed)"
)


TASK_KWARGS = json.dumps("{}")
TASK_META = json.dumps({"children": []})


@dataclass(frozen=True)
class Failure:
    weight: float
    error: str  # the job's error, shown to people
    exc_type: str  # the TaskResult's stored exception
    exc_module: str
    exc_message: str
    traceback: str  # may name {job} and {ext}
    run: tuple[float, float]  # lognormal median (s) and sigma of the failed attempt
    attempts: int = 1
    kind: str = "bad_input"  # Job.FailureKind

    @property
    def signature(self) -> str:
        from jobs import failures

        return failures.signature(self.kind, self.error)


def _pixels_message(width: int, height: int) -> str:
    megapixels = math.ceil(width * height / 100_000) / 10
    return (
        f"The image is {width}×{height} pixels ({megapixels:g} megapixels); "
        "the limit is 120 megapixels."
    )


_PIXELS = _pixels_message(12000, 10800)
_NO_SPACE = "[Errno 28] No space left on device"
FAILURES = [
    Failure(0.44, NOT_AN_IMAGE, "JobFailed", "jobs.running", NOT_AN_IMAGE,
            _kind_traceback(_PIL_UNIDENTIFIED, "_NOT_AN_IMAGE", NOT_AN_IMAGE), (0.003, 0.4)),
    Failure(0.30, CORRUPT, "JobFailed", "jobs.running", CORRUPT,
            _kind_traceback(_PIL_TRUNCATED, "_CORRUPT", CORRUPT), (0.02, 0.6)),
    Failure(0.10, _PIXELS, "JobFailed", "jobs.running", _PIXELS,
            _simple_traceback("235", "raise JobFailed(str(exc)) from exc", _PIXELS),
            (0.002, 0.3), kind="over_limit"),
    Failure(0.06, INTERNAL, "OSError", "builtins", _NO_SPACE,
            f"{_CELERY_FRAMES}  File \"/app/jobs/running.py\", line 320, in "
            f"_make_thumbnail_archive\n    return storage.save(name, pending), made\n"
            f"OSError: {_NO_SPACE}\n", (0.03, 0.5), kind="internal"),
    Failure(0.03, TIME_LIMIT, "JobFailed", "jobs.running", TIME_LIMIT,
            _simple_traceback("245", "raise JobFailed(message) from exc", TIME_LIMIT),
            (300.0, 0.0), kind="time_limit"),
    Failure(0.07, INTERRUPTED, "JobFailed", "jobs.running", INTERRUPTED,
            _simple_traceback("229", "raise JobFailed(message)", INTERRUPTED), (0.002, 0.3),
            attempts=4, kind="interrupted"),
]  # fmt: skip
# A long tail of rarer failures, so the failure groups number about forty, as a real service's
# do: formats using features the decoder lacks, each its own group.
_TAIL_FORMATS = ["TIFF", "BMP", "GIF", "WebP", "PNG", "JPEG"]
_TAIL_FEATURES = ["a colour space", "a compression", "an extension block", "a layout",
                  "a palette", "a sample format"]  # fmt: skip
FAILURES += [
    Failure(0.0015, message, "JobFailed", "jobs.running", message,
            _simple_traceback("235", "raise JobFailed(str(exc)) from exc", message), (0.002, 0.3))
    for fmt in _TAIL_FORMATS
    for feature in _TAIL_FEATURES
    for message in [f"This {fmt} uses {feature} Parroter cannot read."]
]  # fmt: skip


# --- the data set --------------------------------------------------------------------------------


# File-name prefixes the console's search is timed with, across the range of match counts (in
# the 1M data set): a month of one camera's names (~170k), a day's (a few thousand, spread
# through the million), an hour's, ten numbers of another camera, and none. Typed in either
# case: search ignores it.
NAME_PREFIXES = ("IMG_202611", "img_20261110", "img_20261110_14", "dscn004", "no-such-name")


@dataclass
class Facts:
    """What the measurements need to know about the data set."""

    jobs: int = 0
    task_results: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    sample_job_id: str = ""
    sample_task_id: str = ""
    busy_owner: str = BUSY_OWNER
    busy_owner_jobs: int = 0
    busy_owner_failed: int = 0
    # Matches per name prefix searched (case-insensitive), see NAME_PREFIXES.
    name_prefixes: dict[str, int] = field(default_factory=dict)
    rollup_minutes: int = 0  # minutes of the month in which some attempt finished
    rollup_rows: int = 0  # as loaded: one per minute, kind, outcome and shard
    rollup_rows_compacted: int = 0  # as the hourly compaction chore leaves them
    samples: list[dict] = field(default_factory=list)  # a few generated jobs, to read back
    audit_entries: int = 0
    failure_groups: int = 0
    # The console filtered by the biggest failure group and by a rare one of the tail.
    big_group: str = ""
    rare_group: str = ""
    audit_job_id: str = ""  # a job in a bulk action's entry from the middle of the log
    audit_middle_id: int = 0  # the entry half way down the log: a keyset page that deep


def _dt(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _zipf_cum_weights(n: int, exponent: float = 1.1) -> list[float]:
    total, cum = 0.0, []
    for rank in range(1, n + 1):
        total += 1 / rank**exponent
        cum.append(total)
    return cum


def _cum(weights: list[float]) -> list[float]:
    total, cum = 0.0, []
    for weight in weights:
        total += weight
        cum.append(total)
    return cum


class Generator:
    """Jobs and their TaskResult rows, oldest first, as dicts of model attribute values."""

    def __init__(self, *, jobs: int, now: datetime, seed: int, owner_ids: list[int]) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - test data, reproducible on purpose
        self.n = jobs
        self.now = now.timestamp()
        self.owner_ids = owner_ids  # owner_ids[0] is the busy owner
        self.queued = max(1, round(jobs * 0.0003))
        self.running = min(6, max(1, jobs // 10_000))
        self.finished = jobs - self.queued - self.running
        self.style_cum = _cum([w for _, w in NAME_STYLES])
        self.failure_cum = _cum([f.weight for f in FAILURES])
        self.signatures = {failure.error: failure.signature for failure in FAILURES}
        rng = self.rng
        # Each owner mostly names files one way (their phone, their shop's export); the busy
        # owner is a shop's catalogue import.
        self.owner_style = {
            owner: rng.choices(range(len(NAME_STYLES)), cum_weights=self.style_cum)[0]
            for owner in owner_ids
        }
        self.owner_style[owner_ids[0]] = [s for s, _ in NAME_STYLES].index(_name_product)
        # A few worker outages over the month (deploys, a full disk): jobs waited minutes.
        start = self.now - DAYS * 86400
        self.outages = sorted(
            (begin, begin + rng.uniform(3, 45) * 60)
            for begin in (rng.uniform(start, self.now - 3 * 3600) for _ in range(8))
        )

    def created_times(self) -> list[float]:
        """Creation times of the finished jobs: hourly bins weighted by the daily rhythm."""
        start = self.now - DAYS * 86400
        end = self.now - 6 * 60  # the newest minutes belong to the import still in progress
        bins, weights = [], []
        hour = start - start % 3600
        while hour < end:
            moment = _dt(hour)
            weight = HOURLY[moment.hour] * (WEEKEND if moment.weekday() >= 5 else 1.0)
            low, high = max(hour, start), min(hour + 3600, end)
            bins.append((low, high))
            weights.append(weight * (high - low) / 3600)
            hour += 3600
        rng = self.rng
        chosen = rng.choices(bins, cum_weights=_cum(weights), k=self.finished)
        times = [rng.uniform(low, high) for low, high in chosen]
        times.sort()
        return times

    def _outage_wait(self, queued: float) -> float:
        for begin, end in self.outages:
            if begin <= queued < end:
                return end - queued + self.rng.uniform(0, 20)
            if begin > queued:
                break
        return 0.0

    def _wait(self) -> float:
        rng = self.rng
        if rng.random() < 0.01:  # a busy moment: the prefetched slots were taken
            return rng.lognormvariate(math.log(4.0), 1.0)
        return rng.lognormvariate(math.log(0.12), 0.9)

    def _run(self) -> float:
        rng = self.rng
        if rng.random() < 0.03:  # big images, slow disks
            return rng.lognormvariate(math.log(0.4), 1.2)
        return rng.lognormvariate(math.log(0.025), 0.4)

    def chunks(self, size: int = CHUNK) -> Iterator[tuple[list[dict], list[dict]]]:
        rng = self.rng
        owners = rng.choices(self.owner_ids, cum_weights=_zipf_cum_weights(len(self.owner_ids)),
                             k=self.finished)  # fmt: skip
        jobs: list[dict] = []
        results: list[dict] = []
        for created, owner in zip(self.created_times(), owners, strict=True):
            self._finished_job(created, owner, jobs, results)
            if len(jobs) >= size:
                yield jobs, results
                jobs, results = [], []
        # A catalogue import in progress: the newest jobs, a handful running, the rest queued.
        unfinished = self.running + self.queued
        begin = self.now - 5 * 60
        times = sorted(rng.uniform(begin, self.now - 1) for _ in range(unfinished))
        for index, created in enumerate(times):
            owner = self.owner_ids[0] if rng.random() < 0.9 else rng.choice(self.owner_ids)
            self._unfinished_job(created, owner, index < self.running, jobs, results)
        yield jobs, results

    def _base(self, created: float, owner: int) -> dict:
        rng = self.rng
        job_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        text_id = str(job_id)
        if owner == self.owner_ids[0] or rng.random() < 0.7:
            style = self.owner_style[owner]
        else:
            style = rng.choices(range(len(NAME_STYLES)), cum_weights=self.style_cum)[0]
        taken = _dt(created - rng.lognormvariate(math.log(6 * 3600), 1.5))
        name = NAME_STYLES[style][0](rng, taken)
        source_ext, thumb_ext = FORMATS[name[name.rindex(".") :].lower()]
        sizes = DEFAULT_SIZES if rng.random() < 0.88 else rng.choice(CUSTOM_SIZES)
        created_dt = _dt(created)
        return {
            "id": job_id,
            "owner_id": owner,
            "kind": "thumbnails",
            "status": "queued",
            "progress": 0,
            "params": {"sizes": sizes},
            "source": f"jobs/{text_id}/source.{source_ext}",
            "source_name": name,
            "search_name": name.casefold(),
            "archive": "",
            "result": {},
            "error": "",
            "failure_kind": "",
            "failure_signature": "",
            "task_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "attempts": 0,
            "max_attempts": 3,
            "worker": "",
            "created_at": created_dt,
            "queued_at": created_dt,
            "started_at": None,
            "finished_at": None,
            "updated_at": created_dt,
            "_thumb_ext": thumb_ext,
            "_source_ext": source_ext,
            "_id": text_id,
        }

    def _thumbnails(self, job: dict) -> list[dict]:
        rng = self.rng
        width, height = rng.choice(IMAGE_SIZES)
        ext = job["_thumb_ext"]
        made = []
        for box_w, box_h in job["params"]["sizes"]:
            scale = min(box_w / width, box_h / height, 1.0)
            w, h = max(1, round(width * scale)), max(1, round(height * scale))
            size = int(w * h * BYTES_PER_PIXEL[ext] * rng.uniform(0.6, 1.5)) + 600
            made.append(
                {"name": f"thumb_{box_w}x{box_h}.{ext}", "width": w, "height": h, "bytes": size}
            )
        return made

    def _finished_job(self, created: float, owner: int, jobs: list, results: list) -> None:
        rng = self.rng
        job = self._base(created, owner)
        worker = rng.choice(WORKERS)
        queued = created + rng.uniform(0.0005, 0.004)
        u = rng.random()
        if u < P_FAILED:
            failure = FAILURES[rng.choices(range(len(FAILURES)), cum_weights=self.failure_cum)[0]]
            started = queued + self._wait() + self._outage_wait(queued)
            median, sigma = failure.run
            run = (
                median + rng.uniform(0.01, 0.05)
                if sigma == 0
                else rng.lognormvariate(math.log(median), sigma)
            )
            finished = min(started + run, self.now - 1)
            job.update(status="failed", error=failure.error, attempts=failure.attempts,
                       progress=10 if failure.run[0] > 1 else 0, failure_kind=failure.kind,
                       failure_signature=self.signatures[failure.error])  # fmt: skip
            results.append(self._failure_result(job, failure, worker, started, finished))
        elif u < P_FAILED + P_CANCELLED:
            job.update(status="cancelled", error=f"Cancelled by {STAFF_USERNAME}.")
            if rng.random() < 0.6:  # while queued, in a backlog; its message was skipped later
                finished = queued + rng.lognormvariate(math.log(20), 1.2)
                started = None
                delivered = finished + rng.uniform(0.05, 30)
                results.append(
                    self._result(job, "SUCCESS", {"job": job["_id"], "skipped": True},
                                 worker, delivered, delivered + rng.uniform(0.001, 0.004))
                )  # fmt: skip
            else:  # while running: revoked, its partial outputs removed
                started = queued + self._wait() + self._outage_wait(queued)
                finished = started + self._run() * rng.uniform(0.2, 0.9) + rng.uniform(0.5, 8)
                job.update(attempts=1, worker=worker, progress=rng.choice([10, 36, 63]))
                revoked = {"exc_type": "TaskRevokedError", "exc_message": ["cancelled"],
                           "exc_module": "celery.exceptions"}  # fmt: skip
                results.append(
                    self._result(job, "REVOKED", revoked, worker, started, finished + 0.002)
                )
            finished = min(finished, self.now - 1)
        else:
            attempts = 1
            if rng.random() < P_RETRIED_AFTER_FAILURE:
                # The first attempt failed (a full disk); an operator retried it later under a
                # new task id, whose attempt succeeded. The old task's row stays.
                failed_start = queued + self._wait()
                failed_end = failed_start + rng.lognormvariate(math.log(0.03), 0.5)
                old = dict(job, task_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)))
                results.append(
                    self._failure_result(old, FAILURES[3], worker, failed_start, failed_end)
                )
                queued = failed_end + rng.lognormvariate(math.log(1800), 1.0)
                attempts = 2
            elif rng.random() < P_REDELIVERED:
                attempts = 2  # the worker died mid-run; acks_late brought the message back
            started = queued + self._wait() + self._outage_wait(queued)
            finished = min(started + self._run(), self.now - 1)
            started = min(started, finished)
            made = self._thumbnails(job)
            job.update(
                status="succeeded", progress=100, attempts=attempts,
                archive=f"jobs/{job['_id']}/thumbnails.zip", result={"thumbnails": made},
            )  # fmt: skip
            results.append(
                self._result(job, "SUCCESS", {"job": job["_id"], "thumbnails": made},
                             worker, started, finished + rng.uniform(0.0005, 0.003))
            )  # fmt: skip
        if job["attempts"]:
            job["worker"] = worker
        if started is not None:
            started = min(started, finished)
        job.update(
            queued_at=_dt(queued),
            started_at=None if started is None else _dt(started),
            finished_at=_dt(finished),
            updated_at=_dt(finished),
        )
        jobs.append(job)

    def _unfinished_job(self, created: float, owner: int, running: bool, jobs, results) -> None:
        rng = self.rng
        job = self._base(created, owner)
        job["queued_at"] = _dt(created + rng.uniform(0.0005, 0.004))
        if running:
            worker = rng.choice(WORKERS)
            started = self.now - rng.uniform(0.5, 20)
            job.update(status="running", attempts=1, worker=worker,
                       progress=rng.choice([10, 36, 63, 90]), started_at=_dt(started),
                       updated_at=_dt(self.now - rng.uniform(0.1, 0.5)))  # fmt: skip
            started_info = {"pid": rng.randrange(1000, 60000), "hostname": worker}
            results.append(self._result(job, "STARTED", started_info, worker, started, started))
        jobs.append(job)

    def _result(
        self, job: dict, status: str, result, worker: str, started: float, done: float
    ) -> dict:
        return {
            "task_id": job["task_id"],
            "periodic_task_name": None,
            "task_name": "jobs.run_job",
            # result_extended: the JSON of the message's argsrepr, saferepr([job_id]), which
            # for a UUID is json.dumps(f"['{job_id}']") (checked when the rows are read back).
            "task_args": f"\"['{job['_id']}']\"",
            "task_kwargs": TASK_KWARGS,
            "status": status,
            "worker": worker,
            "content_type": "application/json",
            "content_encoding": "utf-8",
            "result": json.dumps(result),
            "date_created": _dt(started),
            "date_started": _dt(started),
            "date_done": _dt(done),
            "traceback": None,
            "meta": TASK_META,
        }

    def _failure_result(
        self, job: dict, failure: Failure, worker: str, started: float, finished: float
    ) -> dict:
        stored = {"exc_type": failure.exc_type, "exc_message": [failure.exc_message],
                  "exc_module": failure.exc_module}  # fmt: skip
        row = self._result(job, "FAILURE", stored, worker, started, finished + 0.002)
        row["traceback"] = failure.traceback.format(job=job["_id"], ext=job["_source_ext"])
        return row


# --- loading -------------------------------------------------------------------------------------


class Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, name: str, start: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def _column_plan(model, vendor: str) -> tuple[list[str], list[tuple[str, Callable | None]], list]:
    """Columns to write for a model (auto ids and db_default-only columns left to the
    database), how to convert each generated value, and constants for fields this bench does
    not generate (a field added later gets its model default)."""
    from django.db import connection
    from django.db.models import NOT_PROVIDED
    from django.db.models.fields import AutoFieldMixin

    sqlite = vendor == "sqlite"
    converters: dict[str, Callable | None] = {
        "UUIDField": (lambda v: v.hex) if sqlite else None,
        # Django keeps aware datetimes on SQLite as naive UTC text, str(value).
        "DateTimeField": (lambda v: None if v is None else str(v.replace(tzinfo=None)))
        if sqlite
        else None,
        "JSONField": json.dumps,
    }
    columns, plan, constants = [], [], []
    for model_field in model._meta.concrete_fields:
        if isinstance(model_field, AutoFieldMixin):
            continue
        kind = model_field.get_internal_type()
        plan_entry = (model_field.attname, converters.get(kind))
        if model_field.attname in GENERATED_FIELDS[model._meta.label]:
            columns.append(model_field.column)
            plan.append(plan_entry)
        elif model_field.has_default() or model_field.db_default is NOT_PROVIDED:
            value = model_field.get_db_prep_save(model_field.get_default(), connection)
            constants.append((model_field.column, value))
    return columns + [c for c, _ in constants], plan, [v for _, v in constants]


GENERATED_FIELDS = {
    "jobs.Job": {
        "id", "owner_id", "kind", "status", "progress", "params", "source", "source_name",
        "search_name", "archive", "result", "error", "task_id", "attempts", "max_attempts",
        "failure_kind", "failure_signature",
        "worker", "created_at", "queued_at", "started_at", "finished_at", "updated_at",
    },
    "jobs.JobRollup": {
        "minute", "kind", "status", "shard", "jobs", "retried", "run_seconds", "wait_seconds",
        *(f"{metric}_{index}" for metric in ("run", "wait") for index in range(16)),
    },
    "jobs.AuditEntry": {
        "at", "actor_id", "actor_name", "action", "summary", "details", "address", "reason", "jobs",
    },
    "jobs.AuditedJob": {"entry_id", "job_id"},
    "django_celery_results.TaskResult": {
        "task_id", "periodic_task_name", "task_name", "task_args", "task_kwargs", "status",
        "worker", "content_type", "content_encoding", "result", "date_created", "date_started",
        "date_done", "traceback", "meta",
    },
}  # fmt: skip


class Writer:
    """Bulk rows into one table: COPY on PostgreSQL, executemany on SQLite."""

    def __init__(self, model, vendor: str) -> None:
        self.table = model._meta.db_table
        self.vendor = vendor
        self.columns, self.plan, self.constants = _column_plan(model, vendor)

    def rows(self, items: list[dict]) -> Iterator[tuple]:
        plan, constants = self.plan, self.constants
        for item in items:
            yield (
                *[item[name] if convert is None else convert(item[name]) for name, convert in plan],
                *constants,
            )

    def write(self, items: list[dict]) -> None:
        from django.db import connection

        raw = connection.connection
        if self.vendor == "postgresql":
            from psycopg import sql

            statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(self.table), sql.SQL(", ").join(map(sql.Identifier, self.columns))
            )
            with raw.cursor() as cursor, cursor.copy(statement) as copy:
                for row in self.rows(items):
                    copy.write_row(row)
        else:
            quote = connection.ops.quote_name
            statement = (
                f"INSERT INTO {quote(self.table)} ({', '.join(map(quote, self.columns))}) "  # noqa: S608
                f"VALUES ({', '.join('?' * len(self.columns))})"
            )
            raw.executemany(statement, self.rows(items))


def _secondary_indexes(table: str) -> list[tuple[str, str]]:
    """(name, CREATE INDEX statement) of the indexes that back no constraint."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
                "JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = %s::regclass "
                "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)",
                [table],
            )
        else:
            cursor.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = %s "
                "AND sql IS NOT NULL",
                [table],
            )
        return cursor.fetchall()


def _execute(statement: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement)


def make_users() -> list[int]:
    """The owners (index 0 the busiest) and the staff user; returns the owners' ids."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User

    rng = random.Random(7)  # noqa: S311 - test data
    password = make_password("bench-password")  # one hash for everyone: hashing is slow
    joined = datetime.now(UTC) - timedelta(days=400)
    names, users = {BUSY_OWNER, STAFF_USERNAME}, []
    users.append(User(username=BUSY_OWNER, email="catalog@acme.example", password=password,
                      date_joined=joined))  # fmt: skip
    while len(users) < OWNERS:
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        name = rng.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}{rng.randrange(100)}"])
        if name in names:
            continue
        names.add(name)
        joined_at = joined + timedelta(minutes=rng.randrange(500_000))
        users.append(User(username=name, email=f"{name}@example.com", password=password,
                          first_name=first.title(), last_name=last.title(),
                          date_joined=joined_at))  # fmt: skip
    User.objects.bulk_create(users, batch_size=500)
    User.objects.create(username=STAFF_USERNAME, password=password, is_staff=True,
                        is_superuser=True, email="ops@example.com")  # fmt: skip
    ids = dict(User.objects.filter(username__in=[u.username for u in users])
               .values_list("username", "id"))  # fmt: skip
    return [ids[u.username] for u in users]


def _rollup_job(values: dict):
    """A Job to hand to rollups.record(): only the fields it reads, without Model.__init__."""
    from jobs.models import Job

    job = Job.__new__(Job)
    job.__dict__.update(
        kind=values["kind"],
        status=values["status"],
        queued_at=values["queued_at"],
        started_at=values["started_at"],
        finished_at=values["finished_at"],
    )
    return job


def load(jobs: int, seed: int, timer: Timer) -> Facts:
    from django.conf import settings
    from django.db import connection, transaction
    from django_celery_results.models import TaskResult

    from jobs import rollups
    from jobs.models import Job, JobRollup

    vendor = connection.vendor
    shards = settings.PARROTER_ROLLUP_SHARDS
    start = time.perf_counter()
    owner_ids = make_users()
    timer.add("users", start)

    dropped = []
    for table in (Job._meta.db_table, TaskResult._meta.db_table):
        for name, definition in _secondary_indexes(table):
            _execute(f"DROP INDEX {connection.ops.quote_name(name)}")
            dropped.append(definition)
    connection.ensure_connection()
    if vendor == "sqlite":
        raw = connection.connection
        raw.execute("PRAGMA journal_mode=OFF")
        raw.execute("PRAGMA synchronous=OFF")
        raw.execute("PRAGMA cache_size=-1000000")

    job_writer, result_writer = Writer(Job, vendor), Writer(TaskResult, vendor)
    # The rollups of every finished attempt, summed here with jobs.rollups' own arithmetic
    # (rollups.deltas) and written in one bulk load after the jobs: what moving the finishes'
    # pending rows would have left, without 80,000 upserts.
    rollup_rows: dict[tuple, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    facts = Facts(name_prefixes=dict.fromkeys(NAME_PREFIXES, 0))
    generator = Generator(jobs=jobs, now=datetime.now(UTC), seed=seed, owner_ids=owner_ids)
    sample_rng = random.Random(seed + 1)  # noqa: S311 - test data
    busy = owner_ids[0]
    chunks = generator.chunks()
    done = 0
    while True:
        start = time.perf_counter()
        try:
            batch, results = next(chunks)
        except StopIteration:
            break
        timer.add("generate", start)
        with transaction.atomic():
            start = time.perf_counter()
            job_writer.write(batch)
            timer.add("jobs", start)
            start = time.perf_counter()
            result_writer.write(results)
            timer.add("task results", start)
            start = time.perf_counter()
            # Each finish in a shard of its own as busy pool processes would spread them, so
            # the last two hours' charts (never compacted) read every shard's row.
            by_shard = defaultdict(list)
            for job in batch:
                if job["finished_at"] is not None:
                    by_shard[job["id"].int % shards].append(_rollup_job(job))
            for shard, finished in by_shard.items():
                for key, delta in rollups.deltas(finished).items():
                    row = rollup_rows[(*key, shard)]
                    for column, amount in delta.items():
                        row[column] += amount
            timer.add("rollups (sum)", start)
        for job in batch:
            status = job["status"]
            facts.by_status[status] = facts.by_status.get(status, 0) + 1
            if job["owner_id"] == busy:
                facts.busy_owner_jobs += 1
                facts.busy_owner_failed += status == "failed"
            for prefix in NAME_PREFIXES:
                facts.name_prefixes[prefix] += job["search_name"].startswith(prefix.casefold())
        for job in sample_rng.sample(batch, min(2, len(batch))):
            facts.samples.append({k: v for k, v in job.items() if not k.startswith("_")})
        facts.jobs += len(batch)
        facts.task_results += len(results)
        done += len(batch)
        print(f"\r  loaded {done:,}/{jobs:,} jobs", end="", flush=True)
    print()
    start = time.perf_counter()
    with transaction.atomic():
        Writer(JobRollup, vendor).write(
            [
                {
                    **dict.fromkeys(GENERATED_FIELDS["jobs.JobRollup"], 0),
                    **{c: v if c.endswith("_seconds") else int(v) for c, v in row.items()},
                    "minute": minute,
                    "kind": kind,
                    "status": status,
                    "shard": shard,
                }  # fmt: skip
                for (minute, kind, status, shard), row in sorted(rollup_rows.items())
            ]
        )
    timer.add("rollups (bulk)", start)
    facts.rollup_minutes = len({minute for minute, *_ in rollup_rows})
    facts.failure_groups = load_failure_groups(facts)
    # The searched-for job: a succeeded one from the middle of the month.
    middle = [s for s in facts.samples if s["status"] == "succeeded"]
    chosen = middle[len(middle) // 2]
    facts.sample_job_id, facts.sample_task_id = str(chosen["id"]), chosen["task_id"]

    start = time.perf_counter()
    for definition in dropped:
        _execute(definition)
    timer.add("indexes", start)
    start = time.perf_counter()
    if vendor == "sqlite":
        raw = connection.connection
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("PRAGMA synchronous=NORMAL")
        raw.execute("ANALYZE")
    else:
        _execute("VACUUM ANALYZE")
    timer.add("analyze", start)
    connection.close()
    return facts


def load_failure_groups(facts: Facts) -> int:
    """One FailureGroup per failure signature, as the services make them at the first failure;
    the biggest and a rare group chosen to measure the console filtered by one."""
    from jobs import failures
    from jobs.models import FailureGroup

    month_ago = datetime.now(UTC) - timedelta(days=DAYS)
    FailureGroup.objects.bulk_create(
        FailureGroup(
            signature=failure.signature,
            kind=failure.kind,
            pattern=failures.pattern(failure.error),
            example=failure.error,
            first_seen=month_ago,
        )  # fmt: skip
        for failure in FAILURES
    )
    facts.big_group = max(FAILURES, key=lambda failure: failure.weight).signature
    facts.rare_group = FAILURES[-1].signature
    return len(FAILURES)


def load_audit(entries: int, seed: int, timer: Timer, facts: Facts) -> None:
    """The audit log, oldest first, so ids grow with time as they do (see AUDIT_DAYS)."""
    from django.contrib.auth.models import User
    from django.db import connection, transaction

    from jobs.models import AuditedJob, AuditEntry

    vendor = connection.vendor
    rng = random.Random(seed + 2)  # noqa: S311 - test data
    actor_id = User.objects.get(username=STAFF_USERNAME).pk
    actions, weights = zip(*AUDIT_ACTIONS, strict=True)
    rare_every, pause_every = entries // AUDIT_RARE_ACTOR_ENTRIES, entries // AUDIT_PAUSES
    first_at = datetime.now(UTC) - timedelta(days=AUDIT_DAYS)
    step = timedelta(days=AUDIT_DAYS) / entries
    entry_writer, job_writer = Writer(AuditEntry, vendor), Writer(AuditedJob, vendor)
    start = time.perf_counter()
    for chunk_start in range(0, entries, CHUNK):
        rows, jobs = [], []
        for index in range(chunk_start, min(chunk_start + CHUNK, entries)):
            entry_id = index + 1  # an empty table's ids, in insertion order (checked below)
            count = AUDIT_BULK_JOBS if index % AUDIT_BULK_EVERY == 0 else 1
            if index % rare_every == rare_every // 2:
                name, action = AUDIT_RARE_ACTOR, "retry"
            elif index % pause_every == pause_every // 3:
                name, action = rng.choice(AUDIT_OPERATORS), "pause"
            else:
                name, action = rng.choice(AUDIT_OPERATORS), rng.choices(actions, weights)[0]
            job_ids = [uuid.uuid4() for _ in range(count)]
            rows.append({
                "at": first_at + step * index, "actor_id": actor_id, "actor_name": name,
                "action": action, "summary": f"{action.title()} {count} jobs",
                "details": {"filter": {"status": "failed"}} if count > 1 else {},
                "address": f"10.0.{index % 250}.{index % 199 + 1}", "reason": "", "jobs": count,
            })  # fmt: skip
            jobs += [{"entry_id": entry_id, "job_id": job_id} for job_id in job_ids]
            if count > 1 and not facts.audit_job_id and index >= entries // 2:
                facts.audit_job_id = str(job_ids[AUDIT_BULK_JOBS // 2])
        with transaction.atomic():
            entry_writer.write(rows)
            job_writer.write(jobs)
        print(f"\r  loaded {chunk_start + len(rows):,}/{entries:,} audit entries", end="")
    print()
    timer.add("audit log", start)
    top = AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first()
    assert top == entries == AuditEntry.objects.count(), "audit ids are not 1..N"
    facts.audit_entries, facts.audit_middle_id = entries, entries // 2
    start = time.perf_counter()
    if vendor == "sqlite":
        _execute("ANALYZE")
    else:
        _execute(f"VACUUM ANALYZE {AuditEntry._meta.db_table}")
        _execute(f"VACUUM ANALYZE {AuditedJob._meta.db_table}")
    timer.add("analyze", start)


def measure_audit(facts: Facts, *, repeat: int, warmup: int, budget: float) -> list:
    """The audit log's page: first, half the log deep, and each filter where it is hardest (a
    rare action, a rare person, a common action by a rare person, one job of a bulk action)."""
    from jobs.models import AuditEntry

    bench = Bench(repeat=repeat, warmup=warmup, budget=budget)
    audit = "/ops/audit/"
    print("  audit log")
    deep = facts.audit_middle_id
    lines = [
        ("first page", {}),
        (f"{facts.audit_entries - deep:,} entries deep (keyset)", {"after": deep}),
        (f"action=pause ({AUDIT_PAUSES} spread)", {"action": "pause"}),
        (f"by {AUDIT_RARE_ACTOR} ({AUDIT_RARE_ACTOR_ENTRIES} spread)", {"actor": AUDIT_RARE_ACTOR}),
        (f"retry by {AUDIT_RARE_ACTOR}", {"action": "retry", "actor": AUDIT_RARE_ACTOR}),
        (f"pause by {AUDIT_OPERATORS[0]}", {"action": "pause", "actor": AUDIT_OPERATORS[0]}),
        ("one job of a bulk action", {"job": facts.audit_job_id}),
    ]
    for name, query in lines:
        bench.time_url(f"/ops/audit/ {name}", f"{audit}?{urlencode(query)}", "console")
    offset = deep
    bench.time_call(f"audit OFFSET page [{offset:,}:{offset + 50:,}]",
                    f"list(AuditEntry.objects.all()[{offset}:{offset + 50}])", "baseline",
                    lambda: list(AuditEntry.objects.all()[offset : offset + 50]))  # fmt: skip
    return bench.results


# --- checks --------------------------------------------------------------------------------------


def check_data(facts: Facts) -> list[tuple[str, bool]]:
    """Rollups against direct counts over jobs; generated rows read back through the ORM."""
    from django.db.models import Count, Q, Sum
    from django_celery_results.models import TaskResult

    from jobs.models import Job, JobRollup

    checks = []
    counts = dict(Job.objects.values_list("status").annotate(n=Count("pk")).order_by())
    checks.append((f"job counts by status {counts}", counts == facts.by_status))
    rolled = dict(JobRollup.objects.values_list("status").annotate(n=Sum("jobs")).order_by())
    finished = {s: n for s, n in counts.items() if s in ("succeeded", "failed", "cancelled")}
    checks.append((f"rollup totals by status equal the jobs {rolled}", rolled == finished))

    rng = random.Random(3)  # noqa: S311 - test data
    keys = list(
        JobRollup.objects.values_list("minute", "kind", "status")
        .annotate(Sum("jobs"), Sum("run_seconds"), Sum("wait_seconds"))
        .order_by()
    )  # a minute's shards summed, as every reader does
    sample = rng.sample(keys, min(40, len(keys)))
    window = Q()
    for minute, *_ in sample:
        window |= Q(finished_at__gte=_dt(minute * 60), finished_at__lt=_dt(minute * 60 + 60))
    direct: dict[tuple, list[float]] = {}
    for kind, status, queued, started, finished_at in Job.objects.filter(window).values_list(
        "kind", "status", "queued_at", "started_at", "finished_at"
    ):
        entry = direct.setdefault((int(finished_at.timestamp() // 60), kind, status), [0, 0, 0])
        entry[0] += 1
        if started:
            entry[1] += (finished_at - started).total_seconds()
            entry[2] += (started - queued).total_seconds()
    wrong = [
        key
        for minute, kind, status, jobs, run, wait in sample
        for key in [(minute, kind, status)]
        if key not in direct
        or direct[key][0] != jobs
        or not math.isclose(direct[key][1], run, rel_tol=1e-9, abs_tol=1e-6)
        or not math.isclose(direct[key][2], wait, rel_tol=1e-9, abs_tol=1e-6)
    ]
    checks.append(
        (
            f"{len(sample)} sampled rollup rows (jobs, run and wait sums) equal the jobs of their "
            f"minute{'; wrong: ' + str(wrong[:3]) if wrong else ''}",
            not wrong,
        )  # fmt: skip
    )

    mismatched = []
    for sample_job in facts.samples[:: max(1, len(facts.samples) // 20)]:
        stored = Job.objects.filter(pk=sample_job["id"]).values(*sample_job).first()
        if stored != sample_job:
            mismatched.append(str(sample_job["id"]))
        result = TaskResult.objects.filter(task_id=sample_job["task_id"]).first()
        if sample_job["status"] in ("succeeded", "failed", "running") and (
            result is None or result.task_args != json.dumps(f"['{sample_job['id']}']")
        ):
            mismatched.append(sample_job["task_id"])
    checks.append(
        (
            f"generated jobs read back equal through the ORM{': ' if mismatched else ''}"
            f"{', '.join(mismatched[:3])}",
            not mismatched,
        )  # fmt: skip
    )
    return checks


def compact_as_the_chore_does(facts: Facts) -> list[tuple[str, bool]]:
    """Leave the rollups as the hourly compaction chore keeps them (minutes for the last day,
    hours for the last week, days before), and check that no total and no chart changed."""
    from django.db import connection
    from django.db.models import Sum

    from dashboard.forms import HISTORY_RANGES
    from jobs import housekeeping
    from jobs.history import job_history
    from jobs.models import JobRollup

    def seen() -> tuple:
        totals = JobRollup.objects.values_list("status").annotate(
            jobs=Sum("jobs"), run=Sum("run_seconds"), retried=Sum("retried")
        )
        histories = [
            job_history(window=window, slot=slot, now=now)
            for window, slot in HISTORY_RANGES.values()
        ]
        rounded = {s: (j, round(r, 3), t) for s, j, r, t in totals}
        # Every slot's numbers; sums of seconds to the microsecond (added in another order).
        slots = [
            (slot.start, slot.counts, slot.retried, slot.run_buckets, slot.wait_buckets,
             round(slot.run_seconds, 6), round(slot.wait_seconds, 6))
            for history in histories for slot in history.slots
        ]  # fmt: skip
        return rounded, [(h.total.counts, h.total.retried) for h in histories], slots

    now = datetime.now(UTC)
    facts.rollup_rows = JobRollup.objects.count()
    before = seen()
    outcome = housekeeping.compact_rollups()
    facts.rollup_rows_compacted = JobRollup.objects.count()
    # A month loaded at once and compacted in one go leaves PostgreSQL's table ~95% dead space
    # (80k rows' pages for 3.5k live ones), which a month of hourly runs never builds up: each
    # frees one hour's rows, and the next hour's inserts reuse that space (autovacuum). FULL
    # gives the table that steady state. SQLite puts freed pages on its freelist, outside the
    # table's b-tree, so its scans never read them.
    with connection.cursor() as cursor:
        table = JobRollup._meta.db_table
        if connection.vendor == "postgresql":
            cursor.execute(f"VACUUM FULL ANALYZE {table}")
        else:
            cursor.execute(f"ANALYZE {table}")
    after = seen()
    return [
        (
            f"{facts.rollup_minutes:,} minutes with finishes; compaction merged "
            f"{outcome['rows']:,} of {facts.rollup_rows:,} rollup rows into 5-minute rows, "
            f"hours and days, {facts.rollup_rows_compacted:,} left; totals by status unchanged",
            before[0] == after[0] and before[1] == after[1],
        ),
        (
            "every slot of the 1 h, 24 h and 7 d histories is the same before and after compaction",
            before[2] == after[2],
        ),  # fmt: skip
    ]


# --- measuring -----------------------------------------------------------------------------------


@dataclass
class Measurement:
    name: str
    url: str
    group: str  # console, poll, admin, baseline, info
    samples: list[float] = field(default_factory=list)  # seconds
    status: int | None = None
    note: str = ""
    bytes: int | None = None  # of the first response
    # One more request, profiled: its queries (seconds, sql, params) and wall time.
    queries: list[tuple[float, str, list]] = field(default_factory=list)
    profiled_seconds: float | None = None
    plans: list[str] = field(default_factory=list)  # EXPLAIN of its slowest queries

    @property
    def p50(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def p95(self) -> float | None:
        if not self.samples:
            return None
        if len(self.samples) < 2:
            return self.samples[0]
        return statistics.quantiles(self.samples, n=20, method="inclusive")[18]


def _percentile_reps(first: float, repeat: int, budget: float) -> int:
    """Slow URLs (the baselines) get fewer repetitions, at least 3."""
    return max(3, min(repeat, int(budget / max(first, 1e-6))))


class QueryLog:
    """Every query the default connection runs meanwhile, with its own wall time."""

    def __init__(self) -> None:
        self.queries: list[tuple[float, str, list]] = []

    def __call__(self, execute, sql, params, many, context):
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            if not many:
                self.queries.append((time.perf_counter() - start, sql, list(params or ())))

    def __enter__(self) -> QueryLog:
        from django.db import connection

        self._wrapped = connection.execute_wrapper(self)
        self._wrapped.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self._wrapped.__exit__(*exc_info)


def explain(sql: str, params: list) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
            return "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        return "\n".join(f"{'  ' * (row[1] > 0)}{row[-1]}" for row in cursor.fetchall())


def explain_missed(results: list[Measurement], vendor: str, *, slowest: int = 2) -> None:
    """EXPLAIN the slowest SELECTs of every measurement that misses its target."""
    database = "sqlite" if vendor == "sqlite" else "postgresql"
    for measurement in results:
        target = target_ms(measurement.group, database)
        if target is None or measurement.p95 is None or measurement.p95 * 1000 <= target:
            continue
        selects = [q for q in measurement.queries if q[1].lstrip().upper().startswith("SELECT")]
        for seconds, sql, params in sorted(selects, key=lambda q: q[0], reverse=True)[:slowest]:
            if seconds < 0.005:
                break
            try:
                plan = explain(sql, params)
            except Exception as exc:  # a plan is a diagnosis; never fail the run for it
                plan = f"(EXPLAIN failed: {exc})"
            measurement.plans.append(
                f"{seconds * 1000:.1f} ms: {_interpolate(sql, params)}\n{plan}"
            )


def _interpolate(sql: str, params: list) -> str:
    """The SQL with its parameters in place and a long select list elided, for reading only."""
    shown = sql
    for value in params:
        text = str(value) if isinstance(value, int | float) else "'" + str(value) + "'"
        shown = shown.replace("%s", text, 1)
    select, found, rest = shown.partition(" FROM ")
    if found and len(select) > 120:
        shown = f"{select[:60]} … FROM {rest}"
    return shown


class Bench:
    def __init__(self, *, repeat: int, warmup: int, budget: float) -> None:
        from django.test import Client

        from jobs.models import Job

        self.repeat, self.warmup, self.budget = repeat, warmup, budget
        self.client = Client()
        staff = Job.owner.field.related_model.objects.get(username=STAFF_USERNAME)
        self.client.force_login(staff)
        self.results: list[Measurement] = []

    def get(self, url: str):
        return self.client.get(url)

    def time_url(self, name: str, url: str, group: str, *, expect: int = 200) -> Measurement:
        measurement = Measurement(name, url, group)
        self.results.append(measurement)
        try:
            response = self.get(url)
        except Exception as exc:  # a broken page is reported, not fatal
            measurement.note = f"error: {type(exc).__name__}: {exc}"[:200]
            return measurement
        measurement.status = response.status_code
        measurement.bytes = len(response.content)
        if response.status_code == 404:
            measurement.note = "missing (404)"
            return measurement
        if response.status_code != expect:
            measurement.note = f"answered {response.status_code}, expected {expect}"
            return measurement
        first = time.perf_counter()
        self.get(url)
        first = time.perf_counter() - first
        for _ in range(self.warmup - 1):
            self.get(url)
        for _ in range(_percentile_reps(first, self.repeat, self.budget)):
            start = time.perf_counter()
            self.get(url)
            measurement.samples.append(time.perf_counter() - start)
        with QueryLog() as log:
            start = time.perf_counter()
            self.get(url)
            measurement.profiled_seconds = time.perf_counter() - start
        measurement.queries = log.queries
        return measurement

    def time_call(self, name: str, label: str, group: str, call: Callable[[], object]):
        measurement = Measurement(name, label, group)
        self.results.append(measurement)
        first = time.perf_counter()
        call()
        first = time.perf_counter() - first
        for _ in range(self.warmup - 1):
            call()
        for _ in range(_percentile_reps(first, self.repeat, self.budget)):
            start = time.perf_counter()
            call()
            measurement.samples.append(time.perf_counter() - start)
        with QueryLog() as log:
            start = time.perf_counter()
            call()
            measurement.profiled_seconds = time.perf_counter() - start
        measurement.queries = log.queries
        return measurement

    def missing(self, name: str, url: str, group: str, note: str) -> Measurement:
        measurement = Measurement(name, url, group, note=note)
        self.results.append(measurement)
        return measurement


NEXT_LINK = re.compile(r"<a\b[^>]*\brel=[\"']?next\b[^>]*>", re.IGNORECASE)
HREF = re.compile(r"\bhref=\"([^\"]*)\"", re.IGNORECASE)
OPS_JOBS_TAG = re.compile(r"<[a-z]+\b[^>]*\bid=\"ops-jobs\"[^>]*>", re.IGNORECASE)
VERSION = re.compile(r"\bdata-version=\"([^\"]*)\"")


def next_href(content: str) -> str | None:
    tag = NEXT_LINK.search(content)
    if not tag:
        return None
    href = HREF.search(tag.group(0))
    return html.unescape(href.group(1)) if href else None


def measure(facts: Facts, *, repeat: int, warmup: int, budget: float, depth: int) -> list:
    from django.core.cache import cache
    from django.db.models import Q
    from django.urls import NoReverseMatch, reverse

    from bench.dashboard_urls import STOCK_ADMIN_PREFIX
    from jobs.models import Job

    cache.clear()
    bench = Bench(repeat=repeat, warmup=warmup, budget=budget)

    def url(name: str, default: str) -> str:
        try:
            return reverse(name)
        except NoReverseMatch:
            return default

    ops = url("dashboard:ops", "/ops/")
    ops_jobs = url("dashboard:ops_jobs", "/ops/jobs")
    ops_stats = url("dashboard:ops_stats", "/ops/stats")
    prefix = facts.sample_job_id.replace("-", "")[:8]

    print("  console")
    bench.time_url("/ops/ first page", ops, "console")
    owner_filter = urlencode({"status": "failed", "kind": "thumbnails", "owner": facts.busy_owner})
    bench.time_url("/ops/ failed + kind + busy owner", f"{ops}?{owner_filter}", "console")
    bench.time_url("/ops/ search: job id prefix", f"{ops}?{urlencode({'q': prefix})}", "console")
    bench.time_url("/ops/ search: task id", f"{ops}?{urlencode({'q': facts.sample_task_id})}",
                   "console")  # fmt: skip
    for text in NAME_PREFIXES:
        matches = facts.name_prefixes[text]
        name = f"/ops/ search: name prefix {text} ({matches:,} matches)"
        bench.time_url(name, f"{ops}?{urlencode({'q': text})}", "console")

    # A page PAGE_DEPTH pages deep, reached by following the table's next links.
    deep_name = f"/ops/ page {depth:,} deep (next links)"
    page_url, pages, started = ops_jobs, 0, time.perf_counter()
    response = bench.get(page_url)
    while response.status_code == 200 and pages < depth - 1:
        href = next_href(response.content.decode())
        if href is None:
            break
        page_url = ops_jobs + ("?" + urlsplit(href).query if urlsplit(href).query else "")
        response = bench.get(page_url)
        pages += 1
    walked = time.perf_counter() - started
    if response.status_code == 404:
        bench.missing(deep_name, ops_jobs, "console", "missing (404)")
    elif pages < depth - 1:
        bench.missing(deep_name, page_url, "console",
                      f"only {pages + 1} pages reachable ({response.status_code})")  # fmt: skip
    else:
        href = next_href(response.content.decode())
        if href is None:
            bench.missing(deep_name, page_url, "console", "no next link on the last page")
        else:
            per_page = walked / max(pages, 1) * 1000
            print(f"    followed {pages + 1:,} next links in {walked:.1f} s ({per_page:.1f} ms per"
                  " partial)")  # fmt: skip
            query = urlsplit(href).query
            bench.time_url(deep_name, f"{ops}?{query}", "console")
            bench.time_url(f"/ops/jobs partial {depth:,} deep", f"{ops_jobs}?{query}", "console")

    for name in ("1h", "24h", "7d"):
        bench.time_url(f"/ops/stats range={name}", f"{ops_stats}?range={name}", "console")

    print("  poll")
    response = bench.get(ops_jobs)
    tag = OPS_JOBS_TAG.search(response.content.decode()) if response.status_code == 200 else None
    version = VERSION.search(tag.group(0)) if tag else None
    if response.status_code == 404:
        bench.missing("unchanged poll (204)", ops_jobs, "poll", "missing (404)")
    elif version is None:
        bench.missing("unchanged poll (204)", ops_jobs, "poll",
                      'no data-version on id="ops-jobs" in the partial')  # fmt: skip
    else:
        poll_url = f"{ops_jobs}?{urlencode({'v': version.group(1)})}"
        bench.time_url("unchanged poll (204)", poll_url, "poll", expect=204)

    print("  admin")
    admin_jobs = "/admin/jobs/job/"
    bench.time_url("Job admin first page", admin_jobs, "admin")
    bench.time_url("Job admin status=failed", f"{admin_jobs}?status__exact=failed", "admin")
    by_id = urlencode({"q": facts.sample_job_id})
    bench.time_url("Job admin search: job id", f"{admin_jobs}?{by_id}", "admin")
    for text in (NAME_PREFIXES[0], NAME_PREFIXES[1]):
        matches = facts.name_prefixes[text]
        name = f"Job admin search: name prefix {text} ({matches:,} matches)"
        bench.time_url(name, f"{admin_jobs}?{urlencode({'q': text})}", "admin")

    print("  failure groups")
    failures_page = url("dashboard:ops_failures", "/ops/failures/")
    groups = facts.failure_groups
    bench.time_url(f"/ops/failures/ 24 h ({groups} groups)", failures_page, "console")
    bench.time_url(f"/ops/failures/ 7 d by count ({groups} groups)",
                   f"{failures_page}?range=7d&order=count", "console")  # fmt: skip
    for label, signature in (("biggest", facts.big_group), ("a rare", facts.rare_group)):
        query = urlencode({"status": "failed", "group": signature})
        bench.time_url(f"/ops/ filtered by {label} failure group", f"{ops}?{query}", "console")

    print("  baselines")
    offset = facts.jobs // 2
    bench.time_call(f"OFFSET page [{offset:,}:{offset + 50:,}]",
                    f"list(Job.objects.all()[{offset}:{offset + 50}])", "baseline",
                    lambda: list(Job.objects.all()[offset : offset + 50]))  # fmt: skip
    # The same 50 rows by keyset on (created_at, id), as the console pages them: what OFFSET
    # is compared with. The leading created_at <= bound makes it an index range on both.
    created, pk = Job.objects.values_list("created_at", "id")[offset - 1]
    keyset = Q(created_at__lte=created) & (Q(created_at__lt=created) | Q(id__lt=pk))
    bench.time_call("keyset page, same rows", "Job.objects.filter(<(created_at, id) before>)[:50]",
                    "info", lambda: list(Job.objects.filter(keyset)[:50]))  # fmt: skip
    stock = f"/{STOCK_ADMIN_PREFIX}django_celery_results/taskresult/"
    bench.time_url("stock TaskResult admin first page", stock, "baseline")
    bench.time_url("stock TaskResult admin search: task id",
                   f"{stock}?{urlencode({'q': facts.sample_task_id})}", "baseline")  # fmt: skip
    return bench.results


# --- retention (mutates the data: runs last) -----------------------------------------------------


class StatementLog(QueryLog):
    """Every statement the default connection runs meanwhile, executemany included."""

    def __call__(self, execute, sql, params, many, context):
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            shown = [] if many else list(params or ())
            self.queries.append((time.perf_counter() - start, sql, shown))


def _statement_kinds(queries: list[tuple[float, str, list]]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for _, sql, _ in queries:
        kind = sql.lstrip().split(None, 1)[0].upper()
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def _uses_index(plan: str, index: str) -> bool:
    """The plan reads through the named index and scans no table whole."""
    whole_scan = re.search(r"\bSeq Scan\b|^\s*SCAN \w+\s*$", plan, re.MULTILINE)
    return index in plan and not whole_scan


def measure_retention(*, repeat: int, warmup: int) -> dict:
    """Time jobs.housekeeping.purge_expired_jobs on the loaded data: one run that expires exactly
    one batch, the idle run that expires nothing, Python's peak memory for one batch and for
    several, and baselines of the same run (reading a batch by primary key, scanning the jobs)."""
    import tracemalloc

    from django.core.files.storage import default_storage
    from django.db.models import Q
    from django_celery_results.models import TaskResult

    from jobs.housekeeping import BATCH_SIZE, purge_expired_jobs
    from jobs.models import Job, job_file_path

    finished = Job.objects.filter(finished_at__isnull=False).order_by("finished_at", "id")
    out: dict = {"batch_size": BATCH_SIZE}

    def expire(jobs: int) -> dict:
        """The cutoff that expires exactly the `jobs` oldest finished jobs, and what goes."""
        cutoff = finished.values_list("finished_at", flat=True)[jobs]
        expired = list(Job.objects.filter(finished_at__lt=cutoff).values_list("pk", "task_id"))
        assert len(expired) == jobs, f"{len(expired)} jobs finished before the cutoff, not {jobs}"
        task_ids = [task_id for _, task_id in expired if task_id]
        own = TaskResult.objects.filter(task_id__in=task_ids).count()
        old = TaskResult.objects.filter(Q(task_id__in=task_ids) | Q(date_done__lt=cutoff)).count()
        folders = sum(
            default_storage.exists(job_file_path(Job(pk=pk), "").rstrip("/")) for pk, _ in expired
        )
        return {"cutoff": cutoff, "jobs": jobs, "own_results": own, "orphan_results": old - own,
                "folders": folders}  # fmt: skip

    def run(expected: dict, *, memory: bool) -> dict:
        log = StatementLog()
        if memory:
            tracemalloc.start()
        with log:
            start = time.perf_counter()
            counts = purge_expired_jobs(finished_before=expected["cutoff"])
            seconds = time.perf_counter() - start
        peak = None
        if memory:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        wanted = {
            "jobs": expected["jobs"],
            "task_results": expected["own_results"] + expected["orphan_results"],
        }
        return {
            **{k: v for k, v in expected.items() if k != "cutoff"},
            "cutoff": expected["cutoff"].isoformat(),
            "deleted": counts,
            "exact": counts == wanted,
            "seconds": seconds,
            "peak_bytes": peak,
            "statements": len(log.queries),
            "kinds": _statement_kinds(log.queries),
            "db_seconds": sum(q[0] for q in log.queries),
            "slowest": [
                f"{q[0] * 1000:.1f} ms: {_interpolate(q[1], q[2])[:140]}…"
                for q in sorted(log.queries, key=lambda q: q[0], reverse=True)[:3]
            ],
        }

    def samples(call: Callable[[], object]) -> list[float]:
        for _ in range(warmup):
            call()
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        return times

    # One batch, timed, on data no page has read (the oldest jobs): what the hourly run meets.
    one = expire(BATCH_SIZE)
    out["batch"] = run(one, memory=False)
    print(f"    one batch: {out['batch']['deleted']} in {out['batch']['seconds'] * 1000:.0f} ms")

    # The hourly run that finds nothing: the same cutoff again, everything before it is gone.
    cutoff = one["cutoff"]
    with StatementLog() as idle_log:
        idle_counts = purge_expired_jobs(finished_before=cutoff)
    idle = samples(lambda: purge_expired_jobs(finished_before=cutoff))
    out["idle"] = {
        "deleted": idle_counts,
        "samples": idle,
        "p50": statistics.median(idle),
        "p95": statistics.quantiles(idle, n=20, method="inclusive")[18],
        "statements": len(idle_log.queries),
        "kinds": _statement_kinds(idle_log.queries),
    }
    # Its plans: the batch query on jobs and the one for task results no job names.
    plans, indexed = [], True
    selects = [q for q in idle_log.queries if q[1].lstrip().upper().startswith("SELECT")]
    indexes = ("job_finished_idx", "django_cele_date_do_f59aad_idx")  # jobs, task results
    for (_, sql, params), index in zip(selects, indexes, strict=False):
        try:
            plan = explain(sql, params)
        except Exception as exc:  # a plan is a diagnosis; never fail the run for it
            plan = f"(EXPLAIN failed: {exc})"
        indexed = indexed and _uses_index(plan, index)
        plans.append(f"{_interpolate(sql, params)}\n{plan}")
    out["idle"]["plans"], out["idle"]["indexed"] = plans, indexed and len(selects) >= 2
    print(f"    idle run: p50 {out['idle']['p50'] * 1000:.1f} ms")

    # Python's peak memory: one batch, then several in one call (bounded: about the same).
    out["memory"] = run(expire(BATCH_SIZE), memory=True)
    out["many"] = run(expire(BATCH_SIZE * RETENTION_MANY_BATCHES), memory=True)
    print(f"    peak Python memory: {out['memory']['peak_bytes'] / 1e6:.1f} MB for one batch, "
          f"{out['many']['peak_bytes'] / 1e6:.1f} MB for {RETENTION_MANY_BATCHES}")  # fmt: skip

    # Baselines: reading the next batch the purge would delete (its jobs by primary key, full
    # rows as Django's delete collector reads them, and their task results), and the idle run's
    # question without an index: the jobs queued before the cutoff (queued_at has no index
    # for finished jobs, so the table is scanned; count(*) alone is an index count on both).
    rows = list(finished.values_list("pk", "task_id")[:BATCH_SIZE])
    pks, task_ids = [pk for pk, _ in rows], [task_id for _, task_id in rows]

    def read_batch() -> None:
        list(Job.objects.filter(pk__in=pks))
        list(TaskResult.objects.filter(task_id__in=task_ids))

    read = samples(read_batch)
    scan = samples(lambda: Job.objects.filter(queued_at__lt=cutoff).count())
    out["read_batch_p50"], out["scan_p50"] = statistics.median(read), statistics.median(scan)
    out["jobs_left"] = Job.objects.count()
    return out


# --- one database, in its own process ------------------------------------------------------------


def run_measure(args) -> int:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    # The bench URLconf adds the stock TaskResult admin; the test client's host is allowed; static
    # URLs without collectstatic's manifest (as in the tests).
    settings.ROOT_URLCONF = "bench.dashboard_urls"
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    assert not settings.DEBUG, "DEBUG must be off while measuring"

    timer = Timer()
    start = time.perf_counter()
    call_command("migrate", verbosity=0)
    timer.add("migrate", start)
    facts = load(args.jobs, args.seed, timer)
    checks = check_data(facts)
    start = time.perf_counter()
    checks += compact_as_the_chore_does(facts)
    timer.add("rollups (compact)", start)
    for text, ok in checks:
        print(f"  {'ok' if ok else 'WRONG'}  {text}")
    sizes = {}
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_database_size(current_database())")
            sizes["database"] = cursor.fetchone()[0]
            cursor.execute("SHOW server_version")
            version = cursor.fetchone()[0]
        else:
            sizes["database"] = Path(settings.DATABASES["default"]["NAME"]).stat().st_size
            cursor.execute("SELECT sqlite_version()")
            version = cursor.fetchone()[0]
    results = measure(facts, repeat=args.repeat, warmup=args.warmup, budget=args.budget,
                      depth=args.depth)  # fmt: skip
    load_audit(args.audit_entries or args.jobs, args.seed, timer, facts)
    results += measure_audit(facts, repeat=args.repeat, warmup=args.warmup, budget=args.budget)
    explain_missed(results, connection.vendor)
    # Last: it deletes jobs.
    print("  retention (deletes the oldest jobs, so it runs last)")
    try:
        retention = measure_retention(repeat=args.repeat, warmup=args.warmup)
    except Exception as exc:  # reported as a failure, the measurements above are kept
        traceback.print_exc()
        retention = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    facts_out = {k: v for k, v in facts.__dict__.items() if k != "samples"}
    Path(args.result).write_text(
        json.dumps(
            {
                "version": version,
                "load": timer.seconds,
                "facts": facts_out,
                "size": sizes["database"],
                "checks": checks,
                "results": [_summary(m) for m in results],
                "retention": retention,
            }
        )
    )
    return 0


def _summary(m: Measurement) -> dict:
    return {
        "name": m.name,
        "url": m.url,
        "group": m.group,
        "samples": m.samples,
        "status": m.status,
        "bytes": m.bytes,
        "note": m.note,
        "p50": m.p50,
        "p95": m.p95,
        "queries": len(m.queries),
        "db_seconds": sum(q[0] for q in m.queries),
        "profiled_seconds": m.profiled_seconds,
        "plans": m.plans,
    }


# --- the whole run -------------------------------------------------------------------------------


def target_ms(group: str, database: str) -> float | None:
    base = {"console": CONSOLE_TARGET_MS, "poll": POLL_TARGET_MS, "admin": ADMIN_TARGET_MS}
    if group not in base:
        return None
    return base[group] * (SQLITE_FACTOR if database == "sqlite" else 1.0)


def machine_facts() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024**2:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores ({model or platform.processor()}){memory}"


def child_env(database_url: str, redis_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "parroter.settings",
        "DATABASE_URL": database_url,
        "DATABASE_CONN_MAX_AGE": "60",
        "REDIS_URL": redis_url,
        "DEBUG": "false",
        "PARROTER_VAR_DIR": str(DATA_DIR / "var"),
        "LOG_LEVEL": "WARNING",
    }


def run_child(args, database: str, database_url: str, redis_url: str) -> dict | None:
    result = DATA_DIR / f"result-{database}.json"
    result.unlink(missing_ok=True)
    command = [
        sys.executable, __file__, "--measure", database, "--jobs", str(args.jobs),
        "--audit-entries", str(args.audit_entries),
        "--seed", str(args.seed), "--repeat", str(args.repeat), "--warmup", str(args.warmup),
        "--budget", str(args.budget), "--depth", str(args.depth), "--result", str(result),
    ]  # fmt: skip
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    done = subprocess.run(command, env=child_env(database_url, redis_url), check=False)
    print(f"  ({database}: {time.perf_counter() - started:.0f} s in all; load average "
          f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after)")  # fmt: skip
    if done.returncode != 0 or not result.exists():
        print(f"FAIL  {database}: the measuring process exited with code {done.returncode}")
        return None
    return json.loads(result.read_text())


def fmt_ms(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    ms = seconds * 1000
    return f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def _mb(size: int | None) -> str:
    return "—" if size is None else f"{size / 1e6:.1f} MB"


def _kinds(kinds: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in kinds.items())


def report_retention(outcomes: dict[str, dict | None]) -> list[tuple[str, bool]]:
    """The retention chore's lines and checks, per database."""
    checks: list[tuple[str, bool]] = []
    measured = {d: o.get("retention") for d, o in outcomes.items() if o}
    if not measured:
        return checks
    print("\nretention: jobs.housekeeping.purge_expired_jobs on the same data, after the pages "
          "(it deletes the oldest jobs)")  # fmt: skip
    for database, r in measured.items():
        label = "PostgreSQL" if database == "postgresql" else "SQLite"
        if not r or "error" in r:
            error = (r or {}).get("error", "not measured")
            print(f"  {database:10} {error}")
            checks.append((f"{label} retention: measured ({error})", False))
            continue
        batch, idle, memory, many = r["batch"], r["idle"], r["memory"], r["many"]
        size = r["batch_size"]
        results = batch["own_results"] + batch["orphan_results"]
        print(f"  {database:10} one batch: cutoff {batch['cutoff']} (exactly {size} finished "
              f"jobs before it): {batch['deleted']['jobs']:,} jobs and "
              f"{batch['deleted']['task_results']:,} task results deleted (expected {size:,} "
              f"and {results:,}: {batch['own_results']:,} of those jobs, "
              f"{batch['orphan_results']:,} earlier attempts) in {fmt_ms(batch['seconds'])} ms; "
              f"{batch['statements']} statements ({_kinds(batch['kinds'])}), "
              f"{fmt_ms(batch['db_seconds'])} ms in the database; {batch['folders']} of the "
              "jobs had a folder on disk")  # fmt: skip
        print(f"  {'':10} slowest statements: {'; '.join(batch['slowest'])}")
        print(f"  {database:10} peak Python memory (tracemalloc, its own runs): one batch "
              f"{_mb(memory['peak_bytes'])} ({fmt_ms(memory['seconds'])} ms), "
              f"{many['jobs'] // size} batches ({many['jobs']:,} jobs, one call) "
              f"{_mb(many['peak_bytes'])} ({fmt_ms(many['seconds'])} ms, "
              f"{many['statements']} statements)")  # fmt: skip
        print(f"  {database:10} idle run (nothing expired): p50 / p95 {fmt_ms(idle['p50'])} / "
              f"{fmt_ms(idle['p95'])} ms, {idle['statements']} statements "
              f"({_kinds(idle['kinds'])})")  # fmt: skip
        print(f"  {database:10} baselines: reading the next batch ({size} jobs by primary key "
              f"and their task results) {fmt_ms(r['read_batch_p50'])} ms, so deleting a batch "
              f"costs {batch['seconds'] / r['read_batch_p50']:.1f}x reading it; a scan of the "
              f"{r['jobs_left']:,} jobs left (queued_at before the cutoff, no index) "
              f"{fmt_ms(r['scan_p50'])} ms vs the idle run "
              f"{fmt_ms(idle['p50'])} ms: {r['scan_p50'] / idle['p50']:.1f}x")  # fmt: skip
        for plan in idle["plans"]:
            print("  " + plan.replace("\n", "\n    "))

        prefix = f"{label} retention:"
        exact = batch["exact"] and memory["exact"] and many["exact"]
        checks.append((f"{prefix} each run deleted exactly the expired jobs ({size:,}, {size:,} "
                       f"and {many['jobs']:,}) and their task results", exact))  # fmt: skip
        checks.append((f"{prefix} one batch of {size} jobs in {fmt_ms(batch['seconds'])} ms "
                       f"(target ≤ {RETENTION_BATCH_TARGET_S * 1000:g} ms)",
                       batch["seconds"] <= RETENTION_BATCH_TARGET_S))  # fmt: skip
        peak = max(memory["peak_bytes"], many["peak_bytes"])
        checks.append((f"{prefix} peak Python memory {_mb(memory['peak_bytes'])} for one batch, "
                       f"{_mb(many['peak_bytes'])} for {many['jobs'] // size} (target ≤ "
                       f"{RETENTION_MEMORY_TARGET_MB:g} MB)",
                       peak <= RETENTION_MEMORY_TARGET_MB * 1e6))  # fmt: skip
        checks.append((f"{prefix} idle run p95 {fmt_ms(idle['p95'])} ms (target ≤ "
                       f"{RETENTION_IDLE_TARGET_MS:g} ms)",
                       idle["p95"] * 1000 <= RETENTION_IDLE_TARGET_MS))  # fmt: skip
        checks.append((f"{prefix} the idle run's queries read by index (job_finished_idx, "
                       "date_done), no table scan", idle["indexed"]))  # fmt: skip
    return checks


def report(args, outcomes: dict[str, dict | None], facts_line: str) -> int:
    checks: list[tuple[str, bool]] = []
    print(f"\nmachine: {facts_line}")
    for database, outcome in outcomes.items():
        if outcome is None:
            checks.append((f"{database}: measured (its process failed, see above)", False))
            continue
        label = "PostgreSQL" if database == "postgresql" else "SQLite"
        load = outcome["load"]
        total = sum(load.values())
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in load.items())
        print(f"{label} {outcome['version']}: loaded {outcome['facts']['jobs']:,} jobs and "
              f"{outcome['facts']['task_results']:,} task results in {total:.0f} s ({parts}); "
              f"{outcome['size'] / 1e9:.2f} GB")  # fmt: skip
        for text, ok in outcome["checks"]:
            checks.append((f"{label} data: {text}", ok))
    if "postgresql" in outcomes:
        settings = ", ".join(f"{k}={v}" for k, v in POSTGRES_SETTINGS.items())
        print(f"PostgreSQL settings: {settings}, fsync/synchronous_commit/full_page_writes off")

    # The table: one row per measurement, p50 / p95 per database.
    names: list[tuple[str, str]] = []
    by_db: dict[str, dict[str, dict]] = {}
    for database, outcome in outcomes.items():
        if outcome is None:
            continue
        by_db[database] = {}
        for r in outcome["results"]:
            if (r["name"], r["group"]) not in names:
                names.append((r["name"], r["group"]))
            by_db[database][r["name"]] = r
    some = next((o for o in outcomes.values() if o), None)
    facts = some["facts"] if some else {}
    print(f"\n{facts.get('jobs', 0):,} jobs; busy owner {facts.get('busy_owner')} has "
          f"{facts.get('busy_owner_jobs', 0):,} jobs ({facts.get('busy_owner_failed', 0):,} "
          f"failed); name prefixes searched: {facts.get('name_prefixes', {})}; "
          f"{facts.get('audit_entries', 0):,} audit log entries; "
          f"p50 / p95 in ms over {args.repeat} requests after {args.warmup} warm-up "
          "(slow baselines fewer)")  # fmt: skip
    header = f"| {'':44} |"
    rule = f"|{'-' * 46}|"
    for database in by_db:
        label = "PostgreSQL" if database == "postgresql" else "SQLite"
        header += f" {label + ' p50 / p95':>22} | {'target':>7} |"
        rule += f"{'-' * 24}|{'-' * 9}|"
    print(header)
    print(rule)
    for name, group in names:
        line = f"| {name:44} |"
        for database, rows in by_db.items():
            r = rows.get(name)
            target = target_ms(group, database)
            target_text = f"≤ {target:g}" if target else ""
            if r is None:
                cell = "—"
            elif r["p95"] is None:
                cell = r["note"].split(" (")[0][:22]
            else:
                cell = f"{fmt_ms(r['p50'])} / {fmt_ms(r['p95'])}"
                if target:
                    cell += " ✔" if r["p95"] * 1000 <= target else " ✘"
            line += f" {cell:>22} | {target_text:>7} |"
        print(line)

    ratios = [
        ("OFFSET page", lambda n: n.startswith("OFFSET page"),
         lambda n: n == "keyset page, same rows"),
        ("OFFSET page", lambda n: n.startswith("OFFSET page"),
         lambda n: n.startswith("/ops/ page") and n.endswith("(next links)")),
        ("stock TaskResult admin first page", lambda n: n == "stock TaskResult admin first page",
         lambda n: n == "Job admin first page"),
        ("stock TaskResult admin task-id search",
         lambda n: n == "stock TaskResult admin search: task id",
         lambda n: n == "/ops/ search: task id"),
    ]  # fmt: skip
    print("\nbaselines (ratio = baseline p50 / project p50)")
    for label, is_base, is_ours in ratios:
        for database, rows in by_db.items():
            base = next((r for n, r in rows.items() if is_base(n)), None)
            ours = next((r for n, r in rows.items() if is_ours(n)), None)
            if not base or not ours or base["p50"] is None or ours["p50"] is None:
                print(f"  {database:10} {label}: not measured")
                continue
            print(f"  {database:10} {label}: {fmt_ms(base['p50'])} ms vs {ours['name']} "
                  f"{fmt_ms(ours['p50'])} ms: {base['p50'] / ours['p50']:.1f}x")  # fmt: skip

    print("\nwhere the time goes (one more request each): queries, time in the database / total ms")
    for name, _group in names:
        line = f"  {name:44}"
        for database, rows in by_db.items():
            r = rows.get(name)
            if r and r["profiled_seconds"] is not None:
                cell = (f"{r['queries']} q, {r['db_seconds'] * 1000:.1f} / "
                        f"{r['profiled_seconds'] * 1000:.1f}")  # fmt: skip
            else:
                cell = "—"
            line += f"  {database[:6]} {cell:>22}"
        print(line)

    for database, rows in by_db.items():
        for name, r in rows.items():
            for plan in r["plans"]:
                print(f"\nplan, {database}, {name} (target missed):\n{plan}")

    for database, rows in by_db.items():
        label = "PostgreSQL" if database == "postgresql" else "SQLite"
        for name, r in rows.items():
            target = target_ms(r["group"], database)
            if target is None:
                continue
            if r["p95"] is None:
                checks.append((f"{label} {name}: {r['note']} (target p95 ≤ {target:g} ms)", False))
            else:
                p95 = r["p95"] * 1000
                checks.append(
                    (f"{label} {name}: p95 {p95:.1f} ms (target ≤ {target:g} ms)", p95 <= target)
                )
    for database, rows in by_db.items():
        label = "PostgreSQL" if database == "postgresql" else "SQLite"
        first = rows.get("/ops/ first page")
        size = first.get("bytes") if first else None
        print(f"  {database:10} page sizes: " + ", ".join(
            f"{name} {r['bytes'] / 1000:.1f} KB" for name, r in rows.items()
            if r.get("bytes") and (name.startswith("/ops/ first") or "stats" in name)
        ))  # fmt: skip
        checks.append(
            (f"{label} /ops/ first page: {'—' if size is None else f'{size / 1000:.1f}'} KB of "
             f"HTML (target ≤ {PAGE_TARGET_KB:g} KB)",
             size is not None and size <= PAGE_TARGET_KB * 1000)
        )  # fmt: skip
    checks += report_retention(outcomes)
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    return 0 if checks and all(ok for _, ok in checks) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs to load (default 1M)")
    parser.add_argument("--audit-entries", type=int, default=0,
                        help="audit log entries to load (default: as many as jobs)")  # fmt: skip
    parser.add_argument("--databases", default=",".join(DATABASES),
                        help="comma-separated: sqlite,postgresql (default both)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=30, help="timed requests per URL")
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests first")
    parser.add_argument(
        "--budget", type=float, default=20.0, help="seconds per URL: slow ones get fewer requests"
    )
    parser.add_argument("--depth", type=int, default=PAGE_DEPTH, help="pages deep to follow")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--keep", action="store_true", help="keep the SQLite file in bench/data/")
    parser.add_argument("--measure", choices=DATABASES, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return run_measure(args)

    from parroter.local_postgres import LocalPostgres
    from parroter.local_redis import LocalRedis

    databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    unknown = set(databases) - set(DATABASES)
    if unknown:
        parser.error(f"unknown database(s): {', '.join(sorted(unknown))}")
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    print(f"{args.jobs:,} jobs over {DAYS} days, {OWNERS:,} owners; databases: "
          f"{', '.join(databases)}; data in {DATA_DIR.relative_to(ROOT)}/")  # fmt: skip
    outcomes: dict[str, dict | None] = {}
    with LocalRedis(directory=DATA_DIR / "redis") as redis_server:
        for database in databases:
            print(f"\n{database}")
            if database == "sqlite":
                path = DATA_DIR / "dashboard.sqlite3"
                for stale in DATA_DIR.glob("dashboard.sqlite3*"):
                    stale.unlink()
                outcomes[database] = run_child(
                    args, database, f"sqlite:///{path}", redis_server.url
                )
                if not args.keep:
                    for stale in DATA_DIR.glob("dashboard.sqlite3*"):
                        stale.unlink()
            else:
                with LocalPostgres(directory=DATA_DIR, settings=POSTGRES_SETTINGS) as postgres:
                    outcomes[database] = run_child(args, database, postgres.url, redis_server.url)
    facts_line = (
        f"{machine_facts()}; Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )
    if outcomes.get("postgresql"):
        facts_line += f", PostgreSQL {outcomes['postgresql']['version']}"
    status = report(args, outcomes, facts_line)
    shutil.rmtree(DATA_DIR / "redis", ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
