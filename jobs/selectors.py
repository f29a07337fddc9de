"""Reads of jobs: what a user may see, and the shapes pages and the API show."""

import zipfile

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.urls import reverse

from jobs.models import Job


def visible_jobs(*, user: AbstractBaseUser) -> QuerySet[Job]:
    """Staff see every job; everyone else only their own."""
    jobs = Job.objects.all()
    return jobs if user.is_staff else jobs.filter(owner=user)


def recent_jobs(*, user: AbstractBaseUser, limit: int = 10) -> list[Job]:
    return list(Job.objects.filter(owner=user).order_by("-created_at", "-id")[:limit])


def job_status(*, job: Job) -> dict:
    """The status document of /jobs/<id>/status.json."""
    result = None
    if job.status == Job.Status.SUCCEEDED:
        result = {
            "archive_url": reverse("dashboard:download", args=[job.pk]),
            "thumbnails": job.result.get("thumbnails", []),
        }
    return {
        "id": str(job.pk),
        "status": job.status,
        "progress": job.progress,
        "error": job.error or None,
        "result": result,
    }


def thumbnail_content(*, job: Job, name: str) -> bytes | None:
    """One thumbnail read out of the job's archive, or None if the job has no such entry."""
    names = {item["name"] for item in job.result.get("thumbnails", [])}
    if job.status != Job.Status.SUCCEEDED or name not in names:
        return None
    with job.archive.open("rb") as archive, zipfile.ZipFile(archive) as entries:
        return entries.read(name)
