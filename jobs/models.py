import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


def job_file_path(job: "Job", filename: str) -> str:
    """Everything a job stores lives under jobs/<id>/; the name is chosen by us, not the client."""
    return f"jobs/{job.pk}/{filename}"


class Job(models.Model):
    class Kind(models.TextChoices):
        THUMBNAILS = "thumbnails", "Thumbnails"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs"
    )
    kind = models.CharField(max_length=32, choices=Kind.choices, default=Kind.THUMBNAILS)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent done, 0-100.")
    params = models.JSONField(default=dict, blank=True)
    source = models.FileField(upload_to=job_file_path, max_length=255)
    source_name = models.CharField(
        max_length=255, help_text="The uploaded file's name, shown only."
    )
    archive = models.FileField(upload_to=job_file_path, max_length=255, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    task_id = models.CharField(max_length=255, blank=True, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # Keyset pages of "all jobs", "my jobs" and "jobs in a state", newest first.
            models.Index(fields=["-created_at", "-id"], name="job_recent_idx"),
            models.Index(fields=["owner", "-created_at", "-id"], name="job_owner_recent_idx"),
            models.Index(fields=["status", "-created_at", "-id"], name="job_status_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.source_name} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def runtime_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None
