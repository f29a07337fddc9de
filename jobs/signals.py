from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.signals import user_logged_in
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from jobs import audit, services
from jobs.models import AuditEntry, Job, Preferences
from parroter.middleware import CHOSEN_ZONE_SESSION_KEY


@receiver(post_delete, sender=Job)
def remove_files_of_deleted_job(sender, instance: Job, **kwargs) -> None:
    # Every way a job is deleted (admin, bulk, a deleted owner's cascade) passes here; the
    # files go only once the deletion is committed, so a rolled-back delete keeps them.
    services.after_commit(services.delete_job_files, job_id=instance.pk)


@receiver(user_logged_in)
def restore_chosen_time_zone(sender, request, user, **kwargs) -> None:
    # The middleware reads the zone from the session, so that no request needs a query for it.
    if request is not None and hasattr(request, "session"):
        zone = Preferences.objects.filter(user=user).values_list("time_zone", flat=True).first()
        request.session[CHOSEN_ZONE_SESSION_KEY] = zone or ""


ADMIN_VERBS = {ADDITION: "Added", CHANGE: "Changed", DELETION: "Deleted"}


@receiver(post_save, sender=LogEntry)
def audit_admin_change(sender, instance: LogEntry, created: bool, **kwargs) -> None:
    # Every change made in admin (schedules, users and their groups, tokens made for others...)
    # as admin logs it; admin's log is editable by superusers, the audit log is not.
    if not created:
        return
    kind = instance.content_type.name if instance.content_type else "object"
    message = instance.get_change_message()
    audit.record(
        actor=audit.Actor(instance.user),
        action=AuditEntry.Action.ADMIN,
        summary=f"{ADMIN_VERBS.get(instance.action_flag, 'Changed')} {kind} "
        f"“{instance.object_repr}”" + (f": {message}" if message else ""),
        details={"object": f"{instance.content_type_id}:{instance.object_id}"},
    )
