"""Beat's housekeeping, one service function at a time: the dispatcher tells a lost message
from a long queue, the reaper and a restarted worker recover interrupted jobs, retention and
the orphan sweep leave nothing behind, and every chore records what it did under a lease."""

import os
import time
import uuid
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler
from django_celery_results.models import TaskResult

from dashboard.forms import HISTORY_RANGES
from jobs import audit, broker, history, housekeeping, rollups, services, tasks, tempfiles
from jobs.kinds import thumbnails
from jobs.models import AuditedJob, AuditEntry, Chore, Job, JobRollup
from parroter.celery_app import app as celery_app
from parroter.local_redis import LocalRedis, free_port
from tests.conftest import (
    celery_process,
    image_bytes,
    stop_process,
    wait_for_job,
    wait_until_answering,
    worker_arguments,
)

pytestmark = pytest.mark.django_db(transaction=True)
HOUR_AGO = timedelta(hours=1)


def stored_job(owner, **fields) -> Job:
    """A job written straight to the database, as if its message had been lost."""
    return Job.objects.create(
        owner=owner,
        source=SimpleUploadedFile("source.jpg", image_bytes((400, 300))),
        source_name="lost.jpg",
        params={"sizes": [[128, 128]]},
        task_id=str(uuid.uuid4()),
        **fields,
    )


def age(job: Job, **fields: timedelta) -> None:
    now = timezone.now()
    Job.objects.filter(pk=job.pk).update(**{name: now - ago for name, ago in fields.items()})


def current_run_id() -> str:
    return broker.run_id()


# --- the dispatcher ------------------------------------------------------------------------


@pytest.mark.integration
def test_a_job_whose_publish_never_succeeded_is_sent_again(user, celery_worker):
    unpublished = stored_job(user)
    just_submitted = stored_job(user)  # its publish may still be on its way
    age(unpublished, updated_at=HOUR_AGO)
    old_task_id = unpublished.task_id

    assert services.dispatch_waiting_jobs(unpublished_for=timedelta(minutes=1)) == 1
    unpublished = wait_for_job(unpublished)
    assert unpublished.status == Job.Status.SUCCEEDED
    assert unpublished.task_id != old_task_id  # any late copy of the old message is ignored
    assert unpublished.published_at is not None and unpublished.broker_run_id == current_run_id()
    just_submitted.refresh_from_db()
    assert (just_submitted.status, just_submitted.published_at) == (Job.Status.QUEUED, None)


def test_a_long_queue_is_not_sent_again_but_a_restarted_brokers_jobs_are(user):
    run_id = current_run_id()
    waiting = [stored_job(user, published_at=timezone.now(), broker_run_id=run_id) for _ in "ab"]
    lost = stored_job(user, published_at=timezone.now(), broker_run_id="a-redis-that-restarted")
    for job in [*waiting, lost]:
        age(job, queued_at=timedelta(days=2), updated_at=timedelta(days=2))

    assert services.dispatch_waiting_jobs(unpublished_for=timedelta(minutes=1)) == 1
    for job in waiting:
        before = job.task_id
        job.refresh_from_db()
        assert (job.task_id, job.status) == (before, Job.Status.QUEUED)  # keeps its place
    lost.refresh_from_db()
    assert lost.broker_run_id == run_id and lost.published_at is not None


def test_a_broker_restart_is_told_by_its_run_id(user, tmp_path, switch_broker):
    # A Redis of its own (no worker consumes it), restarted on the same port, as the private
    # Redis of `make run` is: it keeps nothing, so the job's message is gone.
    broker = LocalRedis(directory=tmp_path / "redis").start()
    try:
        switch_broker(broker.url)
        job = services.submit_job(
            owner=user,
            uploads=[
                services.Upload(ContentFile(image_bytes((64, 64)), name="a.jpg"), "a.jpg", "jpg")
            ],
            boxes=[thumbnails.Box(32, 32)],
        )
        job.refresh_from_db()
        assert job.published_at is not None and job.broker_run_id
        assert services.dispatch_waiting_jobs(unpublished_for=timedelta(0)) == 0  # still there

        broker.stop()
        broker.start()
        switch_broker(broker.url)
        assert services.dispatch_waiting_jobs(unpublished_for=timedelta(0)) == 1
        job.refresh_from_db()
        assert job.broker_run_id == current_run_id()
        assert services.dispatch_waiting_jobs(unpublished_for=timedelta(0)) == 0
    finally:
        broker.stop()


def submit_tiny(owner) -> Job:
    upload = services.Upload(ContentFile(image_bytes((64, 64)), name="a.jpg"), "a.jpg", "jpg")
    job = services.submit_job(owner=owner, uploads=[upload], boxes=[thumbnails.Box(32, 32)])
    job.refresh_from_db()
    return job


def test_a_publish_just_after_a_restart_records_the_old_run_id_and_is_sent_again(
    user, tmp_path, switch_broker, monkeypatch
):
    # A publish records the run id its process heard up to RUN_ID_MAX_AGE ago (stretched here,
    # so that a slow restart cannot outlast it): one made just after a restart records the old
    # id. The dispatcher asks the broker itself, so its next round sends that job again too.
    monkeypatch.setattr(broker, "RUN_ID_MAX_AGE", 60)
    redis = LocalRedis(directory=tmp_path / "redis").start()
    try:
        switch_broker(redis.url)
        lost = submit_tiny(user)
        old_run_id = lost.broker_run_id
        redis.stop()
        redis.start()
        switch_broker(redis.url)
        just_after = submit_tiny(user)  # its message is in the new Redis
        assert just_after.broker_run_id == old_run_id != broker.client().info()["run_id"]

        assert services.dispatch_waiting_jobs(unpublished_for=timedelta(0)) == 2
        new_run_id = broker.client().info()["run_id"]
        for job in (lost, just_after):
            job.refresh_from_db()
            assert job.broker_run_id == new_run_id  # the dispatcher's own answer, remembered
        assert services.dispatch_waiting_jobs(unpublished_for=timedelta(0)) == 0
    finally:
        redis.stop()


def test_a_remembered_run_id_is_asked_again_once_older_than_its_max_age(
    tmp_path, switch_broker, monkeypatch
):
    redis = LocalRedis(directory=tmp_path / "redis").start()
    try:
        switch_broker(redis.url)
        monkeypatch.setattr(broker, "RUN_ID_MAX_AGE", 60)
        old_run_id = broker.recent_run_id()
        redis.stop()
        redis.start()
        switch_broker(redis.url)
        assert broker.recent_run_id() == old_run_id  # remembered, not asked
        monkeypatch.setattr(broker, "RUN_ID_MAX_AGE", 0.2)
        time.sleep(0.2)
        assert broker.recent_run_id() == broker.client().info()["run_id"] != old_run_id
    finally:
        redis.stop()


# --- interrupted jobs ----------------------------------------------------------------------


@pytest.mark.integration
def test_a_job_whose_worker_died_runs_again_until_it_is_given_up(user, celery_worker):
    interrupted = stored_job(user, status=Job.Status.RUNNING, attempts=1)
    hopeless = stored_job(user, status=Job.Status.RUNNING, attempts=3)
    age(interrupted, started_at=HOUR_AGO)
    age(hopeless, started_at=HOUR_AGO)

    outcome = services.reap_stuck_jobs(running_longer_than=timedelta(minutes=10))
    assert outcome == {"requeued": 1, "failed": 1}
    interrupted = wait_for_job(interrupted)
    assert (interrupted.status, interrupted.attempts) == (Job.Status.SUCCEEDED, 2)
    hopeless.refresh_from_db()
    assert hopeless.status == Job.Status.FAILED
    assert "interrupted 3 times" in hopeless.error


def test_a_worker_starting_again_under_its_name_requeues_what_its_last_life_was_running(
    user, switch_broker
):
    # No broker: the session's worker must not pick the requeued job up before it is checked.
    switch_broker(f"redis://127.0.0.1:{free_port()}/0")
    mine = stored_job(user, status=Job.Status.RUNNING, attempts=1, worker="w1@host")
    others = stored_job(user, status=Job.Status.RUNNING, attempts=1, worker="w2@host")
    old_task_id = mine.task_id

    recovered = services.recover_jobs_of_lost_worker(worker="w1@host", on_its_host=True)
    assert recovered == {"requeued": 1, "failed": 0}
    mine.refresh_from_db()
    others.refresh_from_db()
    assert (mine.status, others.status) == (Job.Status.QUEUED, Job.Status.RUNNING)
    assert mine.task_id != old_task_id  # any copy of the old message is ignored


# --- retention ---------------------------------------------------------------------------


def finished_job(owner, *, days_ago: float, status=Job.Status.SUCCEEDED) -> Job:
    job = stored_job(owner, status=status)
    job.archive.save(f"thumbnails-{job.task_id}.zip", ContentFile(b"PK"), save=False)
    finished = timezone.now() - timedelta(days=days_ago)
    Job.objects.filter(pk=job.pk).update(
        archive=job.archive.name, started_at=finished, finished_at=finished
    )
    job.refresh_from_db()
    rollups.record([job])
    TaskResult.objects.create(task_id=job.task_id, status="SUCCESS", task_name="jobs.run_job")
    return job


def test_retention_deletes_old_finished_jobs_with_their_files_and_task_results(user, media_root):
    old = [
        finished_job(user, days_ago=40 + n, status=status) for n, status in enumerate(Job.FINISHED)
    ]
    recent = finished_job(user, days_ago=2)
    waiting = stored_job(user)
    old_attempt = TaskResult.objects.create(task_id="an-earlier-attempt", status="FAILURE")
    TaskResult.objects.filter(pk=old_attempt.pk).update(
        date_done=timezone.now() - timedelta(days=45)
    )
    history = list(JobRollup.objects.values_list("minute", "status", "jobs"))

    counts = housekeeping.purge_expired_jobs(
        finished_before=timezone.now() - timedelta(days=30), batch_size=2
    )
    assert counts == {"jobs": 3, "task_results": 4}
    assert set(Job.objects.values_list("pk", flat=True)) == {recent.pk, waiting.pk}
    kept = set(TaskResult.objects.values_list("task_id", flat=True))
    assert recent.task_id in kept
    assert kept.isdisjoint([job.task_id for job in old] + [old_attempt.task_id])
    for job in old:
        assert not (media_root / "jobs" / str(job.pk)).exists()
    assert (media_root / recent.archive.name).exists()
    # History still counts what retention removed.
    assert list(JobRollup.objects.values_list("minute", "status", "jobs")) == history


def test_audit_retention_deletes_only_entries_older_than_its_own_cutoff(user):
    now = timezone.now()
    ages = [500, 450, 401, 399, 30, 0]  # days
    for days in ages:
        entry = audit.record(
            actor=audit.Actor(user), action=AuditEntry.Action.RETRY, summary=f"{days} days",
            job_ids=[uuid.uuid4(), uuid.uuid4()],
        )  # fmt: skip
        AuditEntry.objects.filter(pk=entry.pk).update(at=now - timedelta(days=days))
    cutoff = now - timedelta(days=400)

    assert housekeeping.purge_expired_audit(before=cutoff, batch_size=2) == 3
    left = list(AuditEntry.objects.order_by("pk").values_list("summary", flat=True))
    assert left == ["399 days", "30 days", "0 days"]
    assert AuditedJob.objects.count() == 6  # the deleted entries' jobs went with them
    assert housekeeping.purge_expired_audit(before=cutoff) == 0


def test_retention_stops_at_its_time_budget_and_goes_on_next_time(user):
    for days in (40, 41, 42):
        finished_job(user, days_ago=days)
    cutoff = timezone.now() - timedelta(days=30)
    assert housekeeping.purge_expired_jobs(finished_before=cutoff, time_budget=timedelta(0)) == {
        "jobs": 0,
        "task_results": 0,
    }
    assert housekeeping.purge_expired_jobs(finished_before=cutoff, batch_size=1)["jobs"] == 3


# --- the orphan sweep ----------------------------------------------------------------------


def make_old(path, days: float = 2) -> None:
    stamp = time.time() - days * 86400
    os.utime(path, (stamp, stamp))


def test_the_sweep_removes_stale_orphan_folders_only(user, tmp_path, settings, monkeypatch):
    media_root = settings.MEDIA_ROOT = tmp_path  # only what this test made
    owned = stored_job(user)
    make_old(media_root / owned.source.name)
    orphan = default_storage.save(f"jobs/{uuid.uuid4()}/thumbnails.zip", ContentFile(b"PK"))
    default_storage.save(orphan.replace("thumbnails.zip", "source.jpg"), ContentFile(b"x"))
    fresh_orphan = default_storage.save(f"jobs/{uuid.uuid4()}/source.jpg", ContentFile(b"x"))
    for name in default_storage.listdir(orphan.rsplit("/", 1)[0])[1]:
        make_old(media_root / orphan.rsplit("/", 1)[0] / name)
    (media_root / "jobs" / "not-a-job.txt").write_bytes(b"x")  # a file is no job's folder
    # The folders are read as a stream, never as one listing of every job's folder.
    listdir = FileSystemStorage.listdir

    def listdir_but_jobs(storage, name):
        assert name != "jobs", "the whole listing of jobs/ was read"
        return listdir(storage, name)

    monkeypatch.setattr(FileSystemStorage, "listdir", listdir_but_jobs)

    counts = housekeeping.sweep_orphan_files(older_than=timedelta(days=1))
    assert counts == {"folders": 1, "files": 2}
    assert not default_storage.exists(orphan.rsplit("/", 1)[0])
    assert default_storage.exists(fresh_orphan)  # may be a job being submitted right now
    assert default_storage.exists(owned.source.name)


def test_the_sweep_reads_job_folders_in_batches_of_its_own(user, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path
    kept = [stored_job(user) for _ in range(5)]
    orphans = [uuid.uuid4() for _ in range(7)]
    for orphan in orphans:
        default_storage.save(f"jobs/{orphan}/source.jpg", ContentFile(b"x"))

    folders = housekeeping.job_folders(default_storage)
    assert not isinstance(folders, list | tuple)  # lazy: nothing listed before it is read
    assert sorted(folders) == sorted(str(pk) for pk in [*(job.pk for job in kept), *orphans])
    counts = housekeeping.sweep_orphan_files(older_than=timedelta(0), batch_size=3)
    assert counts == {"folders": 7, "files": 7}
    assert sorted(housekeeping.job_folders(default_storage)) == sorted(str(j.pk) for j in kept)


def test_no_jobs_folder_yet_is_nothing_to_sweep(tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path
    assert housekeeping.sweep_orphan_files(older_than=timedelta(0)) == {"folders": 0, "files": 0}


def stale_and_fresh_temporary_files(folder) -> tuple:
    """An upload cut off a day ago, a killed job's pending archive, and an upload in progress."""
    stale_upload, fresh_upload = folder / "abc.upload.jpg", folder / "def.upload.jpg"
    stale_archive = folder / f"{uuid.uuid4()}-{uuid.uuid4()}.zip.part"
    for path in (stale_upload, fresh_upload, stale_archive):
        path.write_bytes(b"partial")
    make_old(stale_upload)
    make_old(stale_archive)
    return [stale_upload, stale_archive], fresh_upload


def test_stale_temporary_files_of_this_host_are_removed_and_fresh_ones_kept(tmp_path, settings):
    settings.FILE_UPLOAD_TEMP_DIR = tmp_path
    stale, fresh = stale_and_fresh_temporary_files(tmp_path)
    (tmp_path / "a-folder").mkdir()  # not a file: left as it is
    make_old(tmp_path / "a-folder")

    assert tempfiles.sweep_temporary_files(older_than=timedelta(days=1)) == 2
    assert fresh.exists() and not any(path.exists() for path in stale)
    assert (tmp_path / "a-folder").is_dir()
    assert tempfiles.sweep_temporary_files(older_than=timedelta(days=1)) == 0


def test_the_chore_sweeps_orphans_and_the_temporary_files_of_its_own_host(user, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path
    settings.FILE_UPLOAD_TEMP_DIR = tmp_path / "tmp"
    settings.FILE_UPLOAD_TEMP_DIR.mkdir()
    stale, fresh = stale_and_fresh_temporary_files(settings.FILE_UPLOAD_TEMP_DIR)
    orphan = default_storage.save(f"jobs/{uuid.uuid4()}/source.jpg", ContentFile(b"x"))
    make_old(tmp_path / orphan)

    assert tasks.sweep_orphan_files() == {"folders": 1, "files": 1, "temporary_files": 2}
    assert Chore.objects.get(name="sweep_orphan_files").outcome["temporary_files"] == 2
    assert fresh.exists() and not any(path.exists() for path in stale)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("queues", "pool"),
    [("celery", "prefork"), ("housekeeping", "solo")],
    ids=["jobs", "housekeeping"],
)
def test_every_worker_sweeps_its_hosts_temporary_files_at_start_and_then_periodically(
    queues, pool, own_broker, tmp_path
):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    stale, fresh = stale_and_fresh_temporary_files(temporary)
    name = f"sweep-{uuid.uuid4().hex[:6]}@localhost"
    worker = celery_process(
        worker_arguments(name, queues=queues, pool=pool),
        log=tmp_path / "worker.log",
        REDIS_URL=own_broker.url,
        FILE_UPLOAD_TEMP_DIR=str(temporary),
        PARROTER_TEMP_SWEEP_SECONDS="1",
    )
    try:
        wait_until_answering(worker, name)
        # Swept before the worker consumed anything.
        assert not any(path.exists() for path in stale), worker.output()[-3000:]
        assert fresh.exists()
        assert "removed 2 stale temporary files of this host" in worker.output()
        # And again while it runs: a job killed meanwhile left its archive.
        later = temporary / f"{uuid.uuid4()}-{uuid.uuid4()}.zip.part"
        later.write_bytes(b"partial")
        make_old(later)
        deadline = time.monotonic() + 10
        while later.exists():
            assert time.monotonic() < deadline, worker.output()[-3000:]
            time.sleep(0.1)
        assert fresh.exists()
    finally:
        stop_process(worker)


# --- chores: leases, records, the schedule -------------------------------------------------


def test_a_chore_records_what_it_did_and_a_second_run_meanwhile_is_skipped():
    calls = []

    def work():
        # A second beat fires the same chore while this one runs: it does nothing.
        assert housekeeping.run_chore("purge_expired_jobs", lambda: calls.append("twice")) is None
        calls.append("once")
        return {"jobs": 3}

    assert housekeeping.run_chore("purge_expired_jobs", work) == {"jobs": 3}
    assert calls == ["once"]
    chore = Chore.objects.get(name="purge_expired_jobs")
    assert (chore.outcome, chore.runs, chore.leased_until, chore.error) == (
        {"jobs": 3},
        1,
        None,
        "",
    )

    def broken():
        raise OSError("disk unplugged")

    with pytest.raises(OSError):
        housekeeping.run_chore("purge_expired_jobs", broken)
    chore.refresh_from_db()
    assert chore.error == "disk unplugged" and chore.leased_until is None
    assert chore.runs == 2


def test_a_lease_left_by_a_dead_run_expires():
    Chore.objects.create(name="sweep_orphan_files", leased_until=timezone.now() - timedelta(1))
    assert housekeeping.run_chore("sweep_orphan_files", lambda: {"files": 0}) == {"files": 0}


def test_every_chore_is_seeded_once_and_an_operators_changes_survive_a_restart():
    PeriodicTask.objects.filter(task__startswith="jobs.").delete()
    assert housekeeping.seed_periodic_tasks() == len(housekeeping.SCHEDULES)
    tasks = PeriodicTask.objects.filter(task__startswith="jobs.")
    assert {task.task for task in tasks} == {
        "jobs.dispatch_waiting_jobs",
        "jobs.reap_stuck_jobs",
        "jobs.purge_expired_jobs",
        "jobs.sweep_orphan_files",
        "jobs.compact_rollups",
        "jobs.evaluate_alerts",
    }
    assert {task.queue for task in tasks} == {"housekeeping"}

    # An operator slows the dispatcher down and turns the sweep off in admin.
    slow, _ = IntervalSchedule.objects.get_or_create(every=5, period=IntervalSchedule.MINUTES)
    tasks.filter(task="jobs.dispatch_waiting_jobs").update(interval=slow)
    tasks.filter(task="jobs.sweep_orphan_files").update(enabled=False)

    # Seeding again (a later migrate) and starting beat leave that as it is...
    assert housekeeping.seed_periodic_tasks() == 0
    scheduler = DatabaseScheduler(app=celery_app, lazy=True)
    scheduler.setup_schedule()
    assert tasks.get(task="jobs.dispatch_waiting_jobs").interval == slow
    assert not tasks.get(task="jobs.sweep_orphan_files").enabled
    # ...and beat obeys it: a disabled chore is not in its schedule, the interval is the new one.
    schedule = {entry.task: entry for entry in scheduler.all_as_schedule().values()}
    assert "jobs.sweep_orphan_files" not in schedule
    assert schedule["jobs.dispatch_waiting_jobs"].schedule.run_every == timedelta(minutes=5)
    assert schedule["jobs.purge_expired_jobs"].options["queue"] == "housekeeping"


def test_housekeeping_tasks_are_routed_to_their_own_queue():
    for schedule in housekeeping.SCHEDULES:
        route = celery_app.amqp.router.route({}, housekeeping.task_name(schedule.chore))
        assert route["queue"].name == "housekeeping"
    assert celery_app.amqp.router.route({}, "jobs.deliver_alert")["queue"].name == "housekeeping"
    assert celery_app.amqp.router.route({}, "jobs.run_job")["queue"].name == "celery"


def test_the_console_shows_when_each_chore_last_ran_and_what_it_did(client, staff):
    housekeeping.seed_periodic_tasks()
    PeriodicTask.objects.filter(task="jobs.sweep_orphan_files").update(enabled=False)
    housekeeping.run_chore("purge_expired_jobs", lambda: {"jobs": 1200, "task_results": 0})
    housekeeping.run_chore("dispatch_waiting_jobs", lambda: {"sent": 0})
    client.force_login(staff)
    page = client.get("/ops/").content.decode()
    section = page[page.index('id="housekeeping-title"') :]
    assert "Delete jobs past the retention period" in section
    assert "1,200 jobs deleted" in section and "task results deleted" not in section
    assert "nothing to do" in section  # the dispatcher found no lost message
    assert "disabled" in section  # the sweep, turned off in admin
    assert "every 2 minutes" in section  # the reaper's seeded interval
    # The reaper, the sweep, the compaction and the alerts have not run.
    assert section.count("not yet") == 4


def test_old_history_is_merged_into_hours_then_days_without_changing_what_the_charts_show(user):
    now = timezone.now()
    day_20 = (now - timedelta(days=20)).replace(hour=0, minute=0, second=0, microsecond=0)
    hour_3d = (now - timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    five_5h = now - timedelta(hours=5)
    five_5h = five_5h.replace(minute=five_5h.minute // 5 * 5, second=0, microsecond=0)
    moments = [
        day_20 + timedelta(hours=1), day_20 + timedelta(hours=3),  # one day, two hours
        hour_3d + timedelta(minutes=7), hour_3d + timedelta(minutes=41),  # one hour, two minutes
        hour_3d + timedelta(hours=2, minutes=5),  # another hour of that day
        five_5h + timedelta(minutes=1), five_5h + timedelta(minutes=3),  # one 5-minute slot
        now - timedelta(minutes=30), now - timedelta(minutes=33),  # the last hour: minutes
    ]  # fmt: skip
    for moment in moments:
        days_ago = (now - moment).total_seconds() / 86400
        finished_job(user, days_ago=days_ago)
        finished_job(user, days_ago=days_ago, status=Job.Status.FAILED)
    # Retried in a minute of their own, three days ago: counted with the rest of its hour.
    JobRollup.objects.create(
        minute=rollups.minute_of(hour_3d + timedelta(minutes=50)), kind="thumbnails",
        status="failed", retried=2,
    )  # fmt: skip
    totals = history.rollup_totals(now=now)
    charts = {
        name: history.job_history(window=window, slot=slot, now=now)
        for name, (window, slot) in HISTORY_RANGES.items()
    }
    rows_before = JobRollup.objects.count()

    counts = housekeeping.compact_rollups()
    # Day 20: two hours merge into one day row per outcome (2 rows away). Three days ago: the
    # 7th and 41st minute and the retries' 50th merge into their hour (2 + 1 rows away); the
    # other hour keeps its single row per outcome. Five hours ago: two minutes of one 5-minute
    # slot merge into it (2 rows away). The last hour keeps its minutes.
    assert counts == {"rows": 7}
    assert JobRollup.objects.count() == rows_before - 7
    minutes = set(JobRollup.objects.values_list("minute", flat=True))
    assert rollups.start_of_day(day_20) in minutes
    assert rollups.minute_of(hour_3d) in minutes
    assert rollups.minute_of(five_5h) in minutes
    assert {rollups.minute_of(moment) for moment in moments[-2:]} <= minutes
    cache.delete(rollups.settled_totals_key(rollups.start_of_day(now)))
    assert history.rollup_totals(now=now) == totals
    for name, (window, slot) in HISTORY_RANGES.items():
        assert history.job_history(window=window, slot=slot, now=now) == charts[name], name
    assert housekeeping.compact_rollups() == {"rows": 0}


@pytest.mark.django_db(transaction=True)
def test_the_compaction_runs_hourly_where_a_daily_seed_was_left_as_it_was():
    """Migration 0008 moves the seeded daily compaction to hourly; an operator's own interval
    stays."""
    housekeeping.seed_periodic_tasks()  # a flush by an earlier test may have taken the seed
    executor = MigrationExecutor(connection)
    before, after = [("jobs", "0007_monitoring")], executor.loader.graph.leaf_nodes()
    task = PeriodicTask.objects.filter(task="jobs.compact_rollups")
    try:
        executor.migrate(before)  # 0008 backwards: the schedule as 0005 seeded it
        assert task.get().name == "Merge old history into one row per day"
        assert (task.get().interval.every, task.get().interval.period) == (1, "days")
        MigrationExecutor(connection).migrate(after)
        assert (task.get().interval.every, task.get().interval.period) == (1, "hours")
        assert task.get().name == "Merge older history into hours, then days"

        MigrationExecutor(connection).migrate(before)
        own, _ = IntervalSchedule.objects.get_or_create(every=2, period=IntervalSchedule.DAYS)
        task.update(interval=own, name="Our compaction")
        MigrationExecutor(connection).migrate(after)
        assert (task.get().interval, task.get().name) == (own, "Our compaction")
    finally:
        MigrationExecutor(connection).migrate(after)
