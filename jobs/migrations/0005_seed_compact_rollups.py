"""The history-compaction chore joins beat's schedule (seeding skips chores already there)."""

from django.db import migrations

from jobs.housekeeping import seed_from_migration


class Migration(migrations.Migration):
    dependencies = [("jobs", "0004_seed_periodic_tasks")]

    operations = [migrations.RunPython(seed_from_migration, migrations.RunPython.noop)]
