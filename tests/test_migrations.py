from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from jobs import rollups
from jobs.models import Job, JobRollup


@pytest.mark.django_db
def test_models_and_migrations_agree():
    # Exits non-zero (SystemExit) when a model change has no migration yet.
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db(transaction=True)
def test_the_console_migration_counts_jobs_finished_before_it(django_user_model):
    before = [("jobs", "0001_initial")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old_job = executor.loader.project_state(before).apps.get_model("jobs", "Job")
        owner_id = django_user_model.objects.create_user(username="early").pk
        old_job.objects.create(
            owner_id=owner_id, status="succeeded", source_name="old.jpg", task_id="t",
            created_at=datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC),
            started_at=datetime(2026, 11, 1, 12, 0, 1, tzinfo=UTC),
            finished_at=datetime(2026, 11, 1, 12, 0, 1, 500_000, tzinfo=UTC),
        )  # fmt: skip
    finally:
        # Forward again in any case: the rest of the suite needs the latest schema.
        MigrationExecutor(connection).migrate(executor.loader.graph.leaf_nodes())

    job = Job.objects.get(source_name="old.jpg")
    assert job.queued_at == job.created_at
    rollup = JobRollup.objects.get()
    assert (rollup.status, rollup.jobs, rollup.run_seconds, rollup.wait_seconds) == (
        "succeeded", 1, 0.5, 1.0,
    )  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_the_search_name_migration_case_folds_every_existing_name(django_user_model):
    before = [("jobs", "0008_compact_rollups_hourly")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    names = ["DSC_0001.JPG", "Ünïcode Straße.PNG", "plain.jpg", "MIXED_Case-1.webp"]
    try:
        old_job = executor.loader.project_state(before).apps.get_model("jobs", "Job")
        owner_id = django_user_model.objects.create_user(username="early").pk
        for name in names:
            old_job.objects.create(
                owner_id=owner_id, source_name=name, task_id=name,
                created_at=datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC),
                queued_at=datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC),
            )  # fmt: skip
    finally:
        MigrationExecutor(connection).migrate(executor.loader.graph.leaf_nodes())

    stored = dict(Job.objects.values_list("source_name", "search_name"))
    assert stored == {name: name.casefold() for name in names}
    assert stored["Ünïcode Straße.PNG"] == "ünïcode strasse.png"


@pytest.mark.django_db(transaction=True)
def test_the_shards_migration_keeps_earlier_history_in_shard_0(monkeypatch):
    before = [("jobs", "0020_failures_index_by_signature")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old_rollup = executor.loader.project_state(before).apps.get_model("jobs", "JobRollup")
        old_rollup.objects.create(minute=29_000_000, kind="thumbnails", status="failed", jobs=3)
    finally:
        MigrationExecutor(connection).migrate(executor.loader.graph.leaf_nodes())

    assert list(JobRollup.objects.values_list("minute", "shard", "jobs")) == [(29_000_000, 0, 3)]
    # The same minute, kind and outcome in another shard is a row of its own.
    monkeypatch.setattr(rollups, "shard", lambda: 7)
    at = datetime.fromtimestamp(29_000_000 * 60, tz=UTC)
    job = Job(kind="thumbnails", status="failed", queued_at=at, started_at=at, finished_at=at)
    rollups.record([job])
    assert sorted(rollups.rows().values_list("shard", "jobs")) == [(0, 3), (7, 1)]
