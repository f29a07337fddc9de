"""The console's permissions and the roles that hold them: the groups viewer, operator and
admin (jobs.roles)."""

from django.db import migrations

from jobs import roles


def make_roles(apps, schema_editor) -> None:
    roles.sync_roles(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0013_audit_log"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
        ("django_celery_results", "0014_alter_taskresult_status"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="job",
            options={
                "ordering": ["-created_at", "-id"],
                "permissions": [
                    ("view_console", "Can see the operator console, every job, Flower and metrics"),
                    ("operate_jobs", "Can retry and cancel anyone's jobs"),
                ],
            },
        ),
        migrations.RunPython(make_roles, migrations.RunPython.noop),
    ]
