from django.contrib.auth.signals import user_logged_in
from django.db.models.signals import post_delete
from django.dispatch import receiver

from jobs import services
from jobs.models import Job, Preferences
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
