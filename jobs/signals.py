from django.db.models.signals import post_delete
from django.dispatch import receiver

from jobs import services
from jobs.models import Job


@receiver(post_delete, sender=Job)
def remove_files_of_deleted_job(sender, instance: Job, **kwargs) -> None:
    # Every way a job is deleted (admin, bulk, a deleted owner's cascade) passes here; the
    # files go only once the deletion is committed, so a rolled-back delete keeps them.
    services.after_commit(services.delete_job_files, job_id=instance.pk)
