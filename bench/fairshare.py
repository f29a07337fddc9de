"""Fair share: how long a person with 5 small jobs waits behind someone's 100 heavy ones, with
fair dispatch (the default) and first in, first out (the baseline), in one run.

Run:  .venv/bin/python -m bench.fairshare        (make bench-fairshare, about 2 minutes)

Set: a private Redis (parroter.local_redis), a fresh SQLite database, and the Procfile's job
worker (concurrency 2, this machine's cores). In each arm, alice submits 100 heavy jobs (four
3000x2000 photos to 4 sizes up to 1600 px: about 0.6 s each) while the worker already runs,
then bob submits 5 small ones (a 64x48 image to 64 px); the jobs go in through
jobs.services.submit_job, as the upload page's form does once its checks pass, so what is
measured is dispatch, not uploads. The arm ends when every job has finished; the database is
emptied before the next. --heavy and --small change the counts.

Measured from the database: bob's wait (his last job's finish minus his first job's submit)
and the heavy jobs' drain (alice's last finish minus her first submit), per arm, and a heavy
job's median run time in the fair arm.

Targets: with fair dispatch, bob's last job finishes within 4 heavy jobs' median run time plus
2 s of his first submit (a slot has to free up, and alice's first jobs were sent at the top
priorities too: README, fair share); the heavy drain is no more than 1.1x first in, first out's
(fairness does not cost throughput). PASS/FAIL per target; exit status 1 on any FAIL.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from bench import harness

HEAVY_SIZES = (256, 512, 1024, 1600)
WAIT_TARGET_RUNS = 4  # heavy jobs' median run time ...
WAIT_TARGET_SLACK = 2.0  # ... times this many, plus these seconds
DRAIN_TARGET = 1.1
TIMEOUT = 600


def heavy_photo() -> bytes:
    """A 3000x2000 JPEG with detail everywhere (noise over a gradient), as a camera's is."""
    gradient = Image.linear_gradient("L").resize((3000, 2000))
    noise = Image.effect_noise((3000, 2000), 60)
    img = Image.merge("RGB", (gradient, noise, Image.blend(gradient, noise, 0.5)))
    data = io.BytesIO()
    img.save(data, "JPEG", quality=90)
    return data.getvalue()


def small_photo() -> bytes:
    data = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 80, 40)).save(data, "JPEG")
    return data.getvalue()


def submit(owner, data: bytes, *, images: int, sizes: tuple[int, ...]):
    from django.core.files.base import ContentFile

    from jobs import services
    from jobs.kinds import thumbnails

    return services.submit_job(
        owner=owner,
        uploads=[
            services.Upload(ContentFile(data, name=f"photo-{number}.jpg"), "photo.jpg", "jpg")
            for number in range(images)
        ],
        boxes=[thumbnails.Box(size, size) for size in sizes],
    )


def run_arm(*, fair: bool, heavy: int, small: int, photos: tuple[bytes, bytes]) -> dict:
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from jobs.models import Job

    settings.PARROTER_FAIR_DISPATCH = fair  # read where jobs are sent: this process
    Job.objects.all().delete()
    users = get_user_model().objects
    alice = users.get_or_create(username="alice")[0]
    bob = users.get_or_create(username="bob")[0]
    heavy_ids = [submit(alice, photos[0], images=4, sizes=HEAVY_SIZES).pk for _ in range(heavy)]
    small_ids = [submit(bob, photos[1], images=1, sizes=(64,)).pk for _ in range(small)]
    deadline = time.monotonic() + TIMEOUT
    while Job.objects.exclude(status__in=Job.FINISHED).exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"jobs still unfinished after {TIMEOUT} s")
        time.sleep(0.2)
    failed = Job.objects.exclude(status=Job.Status.SUCCEEDED).count()
    if failed:
        raise RuntimeError(f"{failed} jobs did not succeed")

    def span(ids: list) -> float:
        jobs = Job.objects.filter(pk__in=ids)
        first = min(job.created_at for job in jobs)
        return (max(job.finished_at for job in jobs) - first).total_seconds()

    runs = [
        (job.finished_at - job.started_at).total_seconds()
        for job in Job.objects.filter(pk__in=heavy_ids)
    ]
    return {"wait": span(small_ids), "drain": span(heavy_ids), "run": statistics.median(runs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heavy", type=int, default=100)
    parser.add_argument("--small", type=int, default=5)
    args = parser.parse_args()

    from parroter.local_redis import LocalRedis

    work = Path(tempfile.mkdtemp(prefix="bench-fairshare-"))
    with LocalRedis(directory=work / "redis") as redis_server:
        env = harness.service_env(
            var_dir=work / "var",
            static_root=work / "static",
            database_url=f"sqlite:///{work / 'db.sqlite3'}",
            redis_url=redis_server.url,
            web_bind="127.0.0.1:0",
            web_workers=1,
            worker_concurrency=2,
        )
        os.environ.update(env)
        harness.run_step([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], env,
                         work / "prepare.log")  # fmt: skip
        harness.django_setup()
        services = harness.Services(env, work, skip=set(harness.procfile_services()) - {"worker"})
        services.start()
        try:
            from parroter.celery_app import app

            deadline = time.monotonic() + 60
            while not app.control.ping(timeout=0.5):
                if services.dead() or time.monotonic() > deadline:
                    raise RuntimeError(f"the worker did not start; see {work}/worker.log")
            photos = (heavy_photo(), small_photo())
            fifo = run_arm(fair=False, heavy=args.heavy, small=args.small, photos=photos)
            fair = run_arm(fair=True, heavy=args.heavy, small=args.small, photos=photos)
        finally:
            services.stop()
    return report(args, fair=fair, fifo=fifo)


def report(args, *, fair: dict, fifo: dict) -> int:
    bound = WAIT_TARGET_RUNS * fair["run"] + WAIT_TARGET_SLACK
    drain = fair["drain"] / fifo["drain"]
    print(f"{args.small} small jobs submitted after {args.heavy} heavy ones, worker concurrency 2")
    print(f"  heavy job's median run time: {fair['run']:.2f} s (fair arm), {fifo['run']:.2f} s")
    print(
        f"  small jobs' wait: {fair['wait']:.1f} s fair, {fifo['wait']:.1f} s first in first out"
        f" ({fair['wait'] / fifo['wait']:.2f}x)"
    )
    print(f"  heavy jobs' drain: {fair['drain']:.1f} s fair, {fifo['drain']:.1f} s ({drain:.2f}x)")
    outcomes = [
        (fair["wait"] <= bound, f"small jobs' wait {fair['wait']:.1f} s <= {bound:.1f} s "
         f"({WAIT_TARGET_RUNS} heavy runs + {WAIT_TARGET_SLACK:g} s)"),
        (drain <= DRAIN_TARGET, f"heavy drain {drain:.2f}x first in first out's <= "
         f"{DRAIN_TARGET}x"),
    ]  # fmt: skip
    for passed, line in outcomes:
        print(f"{'PASS' if passed else 'FAIL'}: {line}")
    return 0 if all(passed for passed, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
