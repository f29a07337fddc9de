"""Beat's housekeeping schedule, created once in django-celery-beat's tables (editable in admin)."""

from django.db import migrations


def seed(apps, schema_editor):
    from jobs.housekeeping import seed_periodic_tasks

    seed_periodic_tasks(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0003_housekeeping"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
