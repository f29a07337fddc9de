"""Beat's housekeeping schedule, created once in django-celery-beat's tables (editable in admin)."""

from django.db import migrations

from jobs.housekeeping import seed_from_migration


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0003_housekeeping"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(seed_from_migration, migrations.RunPython.noop)]
