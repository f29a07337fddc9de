"""History compaction runs hourly (minute rows for the last day, hour rows for the last week,
day rows before that: jobs.housekeeping.compact_rollups), where it was seeded to run daily.

Only a schedule still as migration 0005 seeded it is changed: an operator's edits in admin (an
interval, a name) are theirs and stay. New installations are seeded hourly from the start.
"""

from django.db import migrations
from django.utils import timezone

TASK = "jobs.compact_rollups"
SEEDED = {"name": "Merge old history into one row per day", "every": 1, "period": "days"}
NOW = {"name": "Merge older history into hours, then days", "every": 1, "period": "hours"}


def _reschedule(apps, was: dict, becomes: dict) -> None:
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    task = task_model.objects.filter(task=TASK).select_related("interval").first()
    if task is None or task.interval is None:
        return  # not scheduled, or on a crontab an operator chose
    if (task.interval.every, task.interval.period) != (was["every"], was["period"]):
        return
    task.interval, _ = interval_model.objects.get_or_create(
        every=becomes["every"], period=becomes["period"]
    )
    fields = ["interval", "date_changed"]
    if task.name == was["name"] and not task_model.objects.filter(name=becomes["name"]).exists():
        task.name = becomes["name"]
        fields.append("name")
    task.save(update_fields=fields)
    # Beat notices changed tasks through this table (django_celery_beat's own save() does it).
    changed = apps.get_model("django_celery_beat", "PeriodicTasks")
    changed.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def forwards(apps, schema_editor) -> None:
    _reschedule(apps, SEEDED, NOW)


def backwards(apps, schema_editor) -> None:
    _reschedule(apps, NOW, SEEDED)


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0007_monitoring"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
