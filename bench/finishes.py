"""Finishes per second on PostgreSQL with 1, 4, 16 and 64 concurrent finishers: a job's finish
with its history (the pending finish it writes, and the mover that adds those to the rollups),
against the same transaction without it, in one run.

Run:  .venv/bin/python -m bench.finishes        (make bench-finishes, about 2 minutes)

A private PostgreSQL (parroter.local_postgres) with production's durability (fsync,
synchronous_commit and full_page_writes on), migrated, holding --jobs running jobs
(bulk-inserted). 64 finisher processes (multiprocessing, so no GIL between them), each with its
own database connection kept between measurements as a Celery worker keeps its own. A
measurement lets the first N of them run jobs.running._finish (the running job's UPDATE to
succeeded and the INSERT of its pending finish, one statement on PostgreSQL:
rollups.record_if_updated) on their own share of the jobs for --seconds, and counts the
finishes committed in that time. The arms:
- baseline: the same _finish with the history left out (the same UPDATE alone);
- history: the finish as it is, while one more process adds the pending finishes to the
  rollups every monitoring.REPORT_EVERY (rollups.add_pending, as the monitor does). Once every
  finisher has stopped, what is left is added, and that time counts too: the arm's rate is its
  finishes over --seconds plus that catch-up, so no work is left outside the measurement.
Between measurements the jobs go back to running, the rollups are emptied and the tables
vacuumed, so every arm starts alike. The arms take turns within each round (their order
rotates from round to round) for each number of finishers, --rounds times; the best of each
arm's rounds is reported with the worst beside it.

Check: after every measurement with history, the rollups count exactly the finishes the
finishers made, and no pending finish is left.
Target: at 64 finishers the history arm makes >= 0.8x the baseline's finishes per second.
PASS/FAIL; exit status 1 on a FAIL or a failed check.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import sys
import tempfile
import time
import traceback
import uuid
from datetime import timedelta
from multiprocessing.connection import Connection
from unittest import mock

from bench.harness import django_setup

FINISHERS = (1, 4, 16, 64)
ARMS = ("baseline", "history")
TARGET = 0.8  # history / baseline at the most finishers
PRODUCTION_DURABILITY = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
# The jobs a finisher works through, read once before the finishers are forked (they inherit
# it): (pk, task_id, queued_at, started_at).
POOL: list[tuple] = []


def load_jobs(count: int) -> None:
    """One owner's `count` running jobs, in bulk, into POOL too."""
    from django.contrib.auth.models import User
    from django.utils import timezone

    from jobs.models import Job

    owner = User.objects.create_user(username="finisher")
    now = timezone.now()
    Job.objects.bulk_create(
        (
            Job(owner=owner, source_name="photo.jpg", params={"sizes": [[128, 128]]},
                task_id=str(uuid.uuid4()), status=Job.Status.RUNNING, attempts=1,
                worker="celery@bench", created_at=now - timedelta(seconds=3),
                queued_at=now - timedelta(seconds=3), started_at=now - timedelta(seconds=1))
            for _ in range(count)
        ),
        batch_size=2_000,
    )  # fmt: skip
    POOL.extend(Job.objects.values_list("pk", "task_id", "queued_at", "started_at"))


def update_only(job, update: tuple[str, list]) -> bool:
    """rollups.record_if_updated without the history: the finish's UPDATE alone."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(*update)
        return cursor.rowcount == 1


def arm_patch(arm: str):
    """What an arm changes about a finish: nothing, or no history at all."""
    from jobs import rollups

    if arm == "baseline":
        return mock.patch.object(rollups, "record_if_updated", update_only)
    return contextlib.nullcontext()


def finisher(index: int, commands: Connection) -> None:
    """A finisher process: per command (arm, finishers, start, deadline), finish its share of
    POOL from `start` until `deadline`, then answer (in time, all, ran out) or the traceback of
    what went wrong."""
    from django.db import connection

    from jobs import running
    from jobs.models import Job

    while (command := commands.recv()) is not None:
        arm, finishers, start, deadline = command
        try:
            in_time = done = 0
            share = POOL[index::finishers]
            with arm_patch(arm):
                time.sleep(max(start - time.monotonic(), 0))
                for pk, task_id, queued_at, started_at in share:
                    if time.monotonic() >= deadline:
                        break
                    job = Job(pk=pk, task_id=task_id, status=Job.Status.RUNNING,
                              queued_at=queued_at, started_at=started_at)  # fmt: skip
                    finished = running._finish(
                        job, status=Job.Status.SUCCEEDED, archive=f"jobs/{pk}/thumbnails.zip",
                        result={"thumbnails": [f"photo-{size}.jpg" for size in (128, 256)]},
                    )  # fmt: skip
                    done += finished
                    in_time += finished and time.monotonic() <= deadline
            ran_out = time.monotonic() < deadline
            commands.send((in_time, done, ran_out))
        except Exception:  # noqa: BLE001 - reported by the parent, which stops the run
            commands.send(traceback.format_exc())
    connection.close()


def mover(commands: Connection) -> None:
    """The monitor's part: per command (start, deadline), add the pending finishes every
    REPORT_EVERY from `start` until `deadline`; answer None, or the traceback of what went
    wrong."""
    from django.db import connection

    from jobs import rollups
    from jobs.monitoring import REPORT_EVERY

    while (command := commands.recv()) is not None:
        start, deadline = command
        try:
            moment = start
            while (moment := moment + REPORT_EVERY) < deadline:
                time.sleep(max(moment - time.monotonic(), 0))
                rollups.add_pending()
            commands.send(None)
        except Exception:  # noqa: BLE001 - reported by the parent, which stops the run
            commands.send(traceback.format_exc())
    connection.close()


def reset() -> None:
    """Every job running again, no rollups, the tables vacuumed: each arm starts alike."""
    from django.db import connection

    from jobs.models import Job, JobRollup, PendingFinish

    Job.objects.exclude(status=Job.Status.RUNNING).update(
        status=Job.Status.RUNNING, finished_at=None, progress=0, archive="", result={}
    )
    JobRollup.objects.all().delete()
    PendingFinish.objects.all().delete()
    tables = ", ".join(connection.ops.quote_name(model._meta.db_table)
                       for model in (Job, JobRollup, PendingFinish))  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {tables}")


def check_rollups(answers: list[tuple]) -> str | None:
    """What is wrong with the history after a measurement with it, or None."""
    from django.db.models import Sum

    from jobs.models import JobRollup, PendingFinish

    finished = sum(done for _, done, _ in answers)
    counted = JobRollup.objects.aggregate(jobs=Sum("jobs"))["jobs"] or 0
    if counted != finished:
        return f"the rollups count {counted} finishes, the finishers made {finished}"
    if left := PendingFinish.objects.count():
        return f"{left} pending finishes were left after the catch-up"
    return None


def measure(pipes: list[Connection], moving: Connection, arm: str, finishers: int, args):
    """Finishes per second of `finishers` processes in one arm (over --seconds, plus, with
    history, the catch-up: adding what is pending once every finisher has stopped), and their
    answers."""
    from jobs import rollups

    start = time.monotonic() + 0.2  # every finisher has its command and is waiting
    deadline = start + args.seconds
    for pipe in pipes[:finishers]:
        pipe.send((arm, finishers, start, deadline))
    if arm == "history":
        moving.send((start, deadline))
    answers = [pipe.recv() for pipe in pipes[:finishers]]
    if arm == "history":
        answers.append(moving.recv())
    failed = [answer for answer in answers if isinstance(answer, str)]
    if failed:
        raise RuntimeError(f"a finisher or the mover failed ({arm}, {finishers}):\n{failed[0]}")
    answers = answers[:finishers]
    if any(ran_out for *_, ran_out in answers):
        raise RuntimeError(f"a finisher ran out of jobs ({arm}, {finishers}): raise --jobs")
    catching_up = time.monotonic()
    if arm == "history":
        rollups.add_pending()
    catch_up = time.monotonic() - catching_up
    return sum(in_time for in_time, *_ in answers) / (args.seconds + catch_up), answers


def run_rounds(pipes: list[Connection], moving: Connection, levels: list[int], args):
    """Every arm at every number of finishers, --rounds times, the arms taking turns in an
    order that rotates from round to round: finishes per second, and what the checks found
    wrong."""
    results = {n: {arm: [] for arm in ARMS} for n in levels}
    problems = []
    for round_number in range(args.rounds):
        turn = ARMS[round_number % len(ARMS) :] + ARMS[: round_number % len(ARMS)]
        for finishers in levels:
            for arm in turn:
                reset()
                rate, answers = measure(pipes, moving, arm, finishers, args)
                results[finishers][arm].append(rate)
                if arm == "history":
                    problems.append(check_rollups(answers))
            rates = ", ".join(f"{arm} {results[finishers][arm][-1]:,.0f}/s" for arm in ARMS)
            print(f"  round {round_number + 1}, {finishers} finishers: {rates}", flush=True)
    return results, [problem for problem in problems if problem]


def spread_of(values: list[float]) -> str:
    best, worst = max(values), min(values)
    return f"{best:,.0f} (worst {worst:,.0f}, -{(best - worst) / best:.0%})"


def report(results: dict, args, facts: str) -> bool:
    print(f"\nFinishes per second, best of {args.rounds} rounds of {args.seconds:g} s per arm "
          f"(the worst round and how far below the best); {facts}")  # fmt: skip
    header = ["finishers", "baseline (UPDATE only)", "with history", "ratio"]
    rows = []
    for finishers, arms in results.items():
        base = max(arms["baseline"])
        rows.append([
            str(finishers), spread_of(arms["baseline"]),
            spread_of(arms["history"]), f"{max(arms['history']) / base:.2f}x",
        ])  # fmt: skip
    widths = [max(len(row[n]) for row in [header, *rows]) for n in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    most = max(results)
    ratio = max(results[most]["history"]) / max(results[most]["baseline"])
    passed = ratio >= TARGET
    print(
        f"{'PASS' if passed else 'FAIL'}: at {most} finishers a finish with its history "
        f"makes {ratio:.2f}x the baseline's finishes per second (target >= {TARGET}x)"
    )
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--jobs", type=int, default=64 * 400, help="running jobs to finish")
    parser.add_argument("--finishers", default=",".join(map(str, FINISHERS)),
                        help="comma-separated numbers of concurrent finishers")  # fmt: skip
    args = parser.parse_args()
    levels = sorted({int(n) for n in args.finishers.split(",")})

    from parroter.local_postgres import LocalPostgres

    started = time.monotonic()
    load_before = os.getloadavg()[0]
    with (
        tempfile.TemporaryDirectory(prefix="parroter-finishes-") as var_dir,
        LocalPostgres(settings=PRODUCTION_DURABILITY) as postgres,
    ):
        os.environ.update(
            DATABASE_URL=postgres.url, PARROTER_VAR_DIR=var_dir,
            DEBUG="false", SECRET_KEY=uuid.uuid4().hex, LOG_LEVEL="WARNING",
        )  # fmt: skip
        django_setup()
        from django.core.management import call_command
        from django.db import connections

        from jobs import running  # noqa: F401 - imported once, before the finishers fork

        call_command("migrate", verbosity=0)
        load_jobs(args.jobs)
        print(f"PostgreSQL {postgres.server_version()}, {args.jobs:,} running jobs; finishers "
              f"{', '.join(map(str, levels))}; {len(ARMS)} arms x {args.rounds} rounds of "
              f"{args.seconds:g} s")  # fmt: skip
        connections.close_all()  # the finishers open their own
        context = multiprocessing.get_context("fork")
        pipes, processes = [], []
        for index in range(max(levels)):
            ours, theirs = context.Pipe()
            process = context.Process(target=finisher, args=(index, theirs), daemon=True)
            process.start()
            pipes.append(ours)
            processes.append(process)
        moving, theirs = context.Pipe()
        processes.append(context.Process(target=mover, args=(theirs,), daemon=True))
        processes[-1].start()
        try:
            results, problems = run_rounds(pipes, moving, levels, args)
        finally:
            for pipe in [*pipes, moving]:
                with contextlib.suppress(OSError):
                    pipe.send(None)
            for process in processes:
                process.join(timeout=10)
    took = time.monotonic() - started
    facts = (f"{os.cpu_count()} cores, load average {load_before:.1f} before and "
             f"{os.getloadavg()[0]:.1f} after; {took:.0f} s in all")  # fmt: skip
    passed = report(results, args, facts)
    found = f": {'; '.join(problems[:3])}" if problems else ""
    print(f"{'FAIL' if problems else 'PASS'}: the rollups equal the finishes after every "
          f"measurement with history{found}")  # fmt: skip
    return 0 if passed and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
