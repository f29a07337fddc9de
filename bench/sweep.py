"""Peak memory of the orphan sweep (jobs.housekeeping.sweep_orphan_files) as job folders grow:
on the local disk at 100,000 and 1,000,000 folders, on S3 (moto's server, over HTTP) at 10,000
and 100,000, against a baseline measured in the same run: the same sweep with the listing it had
before, the storage's own listdir("jobs"), which holds every folder's name at once.

Run:  make bench-sweep                              (python -m bench.sweep; about 6 minutes)
      python -m bench.sweep --local 100000 --s3 10000   (quicker; each smaller count is a tenth)

Setup, in one temporary folder removed at the end: a SQLite database of `--local` jobs (one
executemany; its secondary indexes dropped, the sweep reads by primary key only); on the local
disk an empty folder per job (os.mkdir), on S3 a key per job (jobs/<id>/source.jpg) put straight
into the in-memory backend of moto's server, which runs in this process (100,000 PUTs over HTTP
would take minutes; the sweep itself reaches the server over HTTP, as a real bucket). Before
every run 1% more folders are made that no job owns, each with a file: orphans the run removes.

Each run is a fresh process (python -m bench.sweep --run ...): Django set up, the database,
the storage's client and the sweep's code paths warmed up on a folder outside jobs/, the peak
RSS reset (/proc/self/clear_refs), then the sweep; it reports its peak RSS (VmHWM) above the RSS
it had before (VmRSS), and what it removed.

PASS when the streamed sweep's growth is at most TARGET at the larger count of each storage,
flat (at most FLAT_MARGIN more than at the smaller count), and every run removed exactly its
orphans. Exit status 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "platform")]  # this checkout's code, not the venv's copy

MB = 1024 * 1024
TARGET = 50 * MB
FLAT_MARGIN = 5 * MB
ORPHAN_SHARE = 100  # one orphan per this many folders
APPROACHES = ("streamed", "listdir")
S3_ENV = {
    "PARROTER_S3_BUCKET": "bench-sweep",
    "PARROTER_S3_REGION": "eu-west-1",
    "PARROTER_S3_ACCESS_KEY_ID": "bench-key",
    "PARROTER_S3_SECRET_ACCESS_KEY": "bench-secret",
}


def memory_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(field)


def run_sweep(approach: str) -> None:
    """In a fresh process: warm up, reset the peak, sweep, print what it cost as JSON."""
    import django

    django.setup()
    from datetime import timedelta

    from django.core.files.storage import default_storage
    from django.utils import timezone
    from storages.backends.s3 import S3Storage

    from jobs import housekeeping
    from jobs.models import Job

    if approach == "listdir":
        # BASELINE: the listing the sweep had before, every folder's name in one list.
        housekeeping.job_folders = lambda storage: iter(storage.listdir("jobs")[0])
    # Warm-up, so the sweep's growth is not the first use of its code: a batch's query, and an
    # orphan's removal (listdir of its folder, its files' times, deletes) outside jobs/.
    list(Job.objects.filter(pk__in=[uuid.uuid4() for _ in range(housekeeping.BATCH_SIZE)]))
    housekeeping._remove_stale_folder("warmup/folder", timezone.now())
    if isinstance(default_storage, S3Storage):  # and the listing's own request
        client = default_storage.bucket.meta.client
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=default_storage.bucket_name, Prefix="warmup/", Delimiter="/"
        )
        list(pages)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = memory_kb("VmRSS")
    started = time.perf_counter()
    counts = housekeeping.sweep_orphan_files(older_than=timedelta(0))
    seconds = time.perf_counter() - started
    growth = (memory_kb("VmHWM") - before) * 1024
    print(json.dumps({"growth": growth, "seconds": seconds, **counts}))


class Bench:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.media = folder / "media"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "parroter.settings",
            "PYTHONPATH": os.pathsep.join(sys.path[:2]),
            "PARROTER_VAR_DIR": str(folder / "var"),
            "MEDIA_ROOT": str(self.media),
            "FILE_UPLOAD_TEMP_DIR": str(folder / "tmp"),
            "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
        }
        self.results: list[dict] = []
        self.removal: subprocess.Popen | None = None

    def load_jobs(self, count: int) -> list[str]:
        """`count` jobs in the database; their ids, as folder names, in sorted order."""
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from django.db import connection, transaction
        from django.utils import timezone

        from jobs.models import Job

        call_command("migrate", verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs_job' "
                "AND sql IS NOT NULL"
            )
            for (name,) in cursor.fetchall():
                cursor.execute(f'DROP INDEX "{name}"')
        owner = User.objects.create_user("bench")
        template = Job(owner=owner, source_name="a.jpg", params={}, queued_at=timezone.now())
        fields = Job._meta.concrete_fields
        values = [field.get_db_prep_save(field.pre_save(template, True), connection)
                  for field in fields]  # fmt: skip
        at = [field.attname for field in fields].index("id")
        ids = sorted(uuid.uuid4() for _ in range(count))
        columns = ", ".join(f'"{field.column}"' for field in fields)
        insert = f"INSERT INTO jobs_job ({columns}) VALUES ({', '.join('?' * len(fields))})"  # noqa: S608
        with transaction.atomic():
            connection.connection.executemany(
                insert, ((*values[:at], pk.hex, *values[at + 1 :]) for pk in ids)
            )
        return [str(pk) for pk in ids]

    def measure(self, storage: str, folders: int, make_orphan, extra_env: dict) -> None:
        """One run of each approach at this many folders, each with fresh orphans."""
        for approach in APPROACHES:
            orphans = folders // ORPHAN_SHARE
            for _ in range(orphans):
                make_orphan(f"jobs/{uuid.uuid4()}/source.jpg")
            make_orphan("warmup/folder/source.jpg")
            done = subprocess.run(
                [sys.executable, "-m", "bench.sweep", "--run", approach],
                env={**self.env, **extra_env}, cwd=ROOT, capture_output=True, text=True,
                check=False,
            )  # fmt: skip
            if done.returncode:
                raise RuntimeError(f"{storage} {approach} run failed:\n{done.stderr[-3000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            run = {"storage": storage, "folders": folders + orphans, "orphans": orphans,
                   "approach": approach, "growth": result["growth"],
                   "seconds": result["seconds"], "removed": result["folders"]}  # fmt: skip
            self.results.append(run)
            print(f"  {storage:10} {run['folders']:>9,} folders  {approach:8} "
                  f"+{run['growth'] / MB:6.1f} MB  {run['seconds']:6.1f} s  "
                  f"removed {run['removed']:,}", flush=True)  # fmt: skip

    def local(self, ids: list[str], counts: tuple[int, int]) -> None:
        def orphan(name: str) -> None:
            path = self.media / name
            path.parent.mkdir(parents=True)
            path.write_bytes(b"x")

        jobs = self.media / "jobs"
        jobs.mkdir(parents=True)
        made = 0
        for count in counts:
            started = time.perf_counter()
            for name in ids[made:count]:
                os.mkdir(jobs / name)
            made = count
            print(f"  {count:,} job folders on disk in {time.perf_counter() - started:.1f} s")
            self.measure("local disk", count, orphan, {})
        # A million rmdirs take minutes on ext4: done by another process meanwhile.
        self.removal = subprocess.Popen(["rm", "-rf", "--", str(jobs)])  # noqa: S607

    def s3(self, ids: list[str], counts: tuple[int, int]) -> None:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends
        from moto.server import ThreadedMotoServer

        from parroter.local_redis import free_port

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            env = {**S3_ENV, "PARROTER_S3_ENDPOINT_URL": f"http://{host}:{port}"}
            backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
            backend.create_bucket(env["PARROTER_S3_BUCKET"], env["PARROTER_S3_REGION"])

            def put(key: str) -> None:
                backend.put_object(env["PARROTER_S3_BUCKET"], key, b"x")

            made = 0
            for count in counts:
                started = time.perf_counter()
                for name in ids[made:count]:
                    put(f"jobs/{name}/source.jpg")
                made = count
                print(f"  {count:,} keys in moto in {time.perf_counter() - started:.1f} s")
                self.measure("S3 (moto)", count, put, env)
        finally:
            server.stop()

    def report(self) -> bool:
        print("\n| storage | job folders (1% orphans) | sweep | peak RSS growth | time | removed |")
        print("|---|---|---|---|---|---|")
        for r in self.results:
            label = "streamed" if r["approach"] == "streamed" else "baseline: listdir('jobs')"
            print(f"| {r['storage']} | {r['folders']:,} | {label} | {r['growth'] / MB:.1f} MB | "
                  f"{r['seconds']:.1f} s | {r['removed']:,} |")  # fmt: skip
        ok = True

        def verdict(passed: bool, text: str) -> None:
            nonlocal ok
            ok &= passed
            print(f"{'PASS' if passed else 'FAIL'} {text}")

        print()
        for storage in dict.fromkeys(r["storage"] for r in self.results):
            runs = [r for r in self.results if r["storage"] == storage]
            streamed = [r for r in runs if r["approach"] == "streamed"]
            small, large = streamed[0], streamed[-1]
            baseline = [r for r in runs if r["approach"] == "listdir"][-1]
            verdict(
                large["growth"] <= TARGET,
                f"{storage}: streamed sweep at {large['folders']:,} folders grows "
                f"{large['growth'] / MB:.1f} MB (target <= {TARGET // MB} MB; baseline "
                f"{baseline['growth'] / MB:.1f} MB)",
            )
            verdict(
                large["growth"] <= small["growth"] + FLAT_MARGIN,
                f"{storage}: flat: {small['growth'] / MB:.1f} MB at {small['folders']:,} -> "
                f"{large['growth'] / MB:.1f} MB at {large['folders']:,} "
                f"(at most +{FLAT_MARGIN // MB} MB)",
            )
        verdict(
            all(r["removed"] == r["orphans"] for r in self.results),
            "every run removed as many folders as it had orphans",
        )
        return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--local", type=int, default=1_000_000, help="job folders on disk")
    parser.add_argument("--s3", type=int, default=100_000, help="job folders (keys) on S3")
    parser.add_argument("--run", choices=APPROACHES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run_sweep(args.run)
        return 0
    folder = Path(tempfile.mkdtemp(prefix="parroter-bench-sweep-"))
    bench = Bench(folder)
    os.environ.update({k: v for k, v in bench.env.items() if k != "PYTHONPATH"})
    try:
        import django

        django.setup()
        started = time.perf_counter()
        ids = bench.load_jobs(max(args.local, args.s3))
        print(f"{len(ids):,} jobs in SQLite in {time.perf_counter() - started:.1f} s")
        bench.local(ids, (args.local // 10, args.local))
        bench.s3(ids, (args.s3 // 10, args.s3))
    finally:
        if bench.removal:
            bench.removal.wait()
        shutil.rmtree(folder)
    return 0 if bench.report() else 1


if __name__ == "__main__":
    sys.exit(main())
