"""The default alert rules, the alert chore in beat's schedule, and the roles' permissions on
alerts (viewers read them, admins edit rules and receivers)."""

from django.db import migrations

from jobs import alerts, housekeeping, roles


def seed(apps, schema_editor) -> None:
    alerts.seed_rules(apps, schema_editor)
    housekeeping.seed_periodic_tasks(apps)
    roles.sync_roles(apps)


class Migration(migrations.Migration):
    dependencies = [("jobs", "0017_alerts")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
