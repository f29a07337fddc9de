"""Roles: Django groups with permissions, made by a migration and assigned in admin.

- viewer: reads the console, every job (pages, ZIPs), the audit log, alerts, Flower (refused its
  unsafe methods) and /metrics;
- operator: also retries and cancels anyone's jobs, in the console, the API and admin;
- admin: also deletes jobs, edits schedules, alert rules and receivers, and makes or revokes
  API tokens for others in admin (which needs is_staff as well: admin's own check).

`is_staff` alone opens admin's door and nothing else: the console, Flower and every job answer
to these permissions (a superuser has them all).
"""

from django.apps import apps as django_apps
from django.contrib.auth.management import create_permissions

VIEW = "jobs.view_console"
OPERATE = "jobs.operate_jobs"

# Each role's permissions as (app label, codename), each holding the one before it's.
VIEWER = [
    ("jobs", "view_console"),
    ("jobs", "view_job"),
    ("jobs", "view_auditentry"),
    ("jobs", "view_alertrule"),
    ("jobs", "view_alertevent"),
    ("django_celery_results", "view_taskresult"),
    ("django_celery_beat", "view_periodictask"),
]
OPERATOR = [*VIEWER, ("jobs", "operate_jobs"), ("jobs", "change_job")]
ADMIN = [
    *OPERATOR,
    ("jobs", "delete_job"),
    *(
        ("jobs", f"{action}_{model}")
        for model in ("apitoken", "alertrule", "alertreceiver")
        for action in ("add", "change", "delete", "view")
    ),
    *(
        ("django_celery_beat", f"{action}_{model}")
        for model in (
            "periodictask",
            "crontabschedule",
            "intervalschedule",
            "solarschedule",
            "clockedschedule",
        )  # fmt: skip
        for action in ("add", "change", "delete", "view")
    ),
]
ROLES = {"viewer": VIEWER, "operator": OPERATOR, "admin": ADMIN}
APPS = ("jobs", "django_celery_beat", "django_celery_results")


def sync_roles(apps=django_apps) -> None:
    """Make the roles' groups hold exactly their permissions (migration 0014_roles, and after a
    test's flush); the permissions are made first, as they are only after migrations."""
    for label in APPS:
        config = apps.get_app_config(label)
        config.models_module = getattr(config, "models_module", None) or True
        create_permissions(config, apps=apps, verbosity=0)
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for name, wanted in ROLES.items():
        group, _ = group_model.objects.get_or_create(name=name)
        # A permission of a model an earlier migration does not have yet is left out: the
        # migration that adds the model syncs the roles again.
        group.permissions.set(
            [
                permission
                for label, codename in wanted
                for permission in permission_model.objects.filter(
                    content_type__app_label=label, codename=codename
                )
            ]
        )


def can_view(user) -> bool:
    return user.has_perm(VIEW)


def can_operate(user) -> bool:
    return user.has_perm(OPERATE)
