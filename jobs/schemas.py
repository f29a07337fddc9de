"""The shapes of jobs that programs read: the JSON API (jobs/api.py) and the job page's
status.json answer with these, so a shape is defined once."""

import uuid
from datetime import datetime
from typing import Any

from ninja import Field, Schema

from jobs.models import Job


class Thumbnail(Schema):
    name: str = Field(
        description="The file's name inside the archive, with its real size "
        "(photo_512x341.jpg; in a folder per image when the job has several)."
    )
    width: int
    height: int
    bytes: int
    image: int = Field(default=0, description="Which of the job's images it was made from.")


class ImageProblem(Schema):
    name: str = Field(description="The file's name, as sent.")
    error: str = Field(description="Why it was left out.")


class JobResult(Schema):
    archive_url: str = Field(description="Where the ZIP of thumbnails is downloaded.")
    thumbnails: list[Thumbnail]


class JobStatus(Schema):
    """A job's status document: /jobs/<id>/status.json and GET /api/jobs/<id>/status."""

    id: uuid.UUID
    status: Job.Status
    progress: int = Field(ge=0, le=100, description="Percent done.")
    error: str | None = Field(description="Why the job failed or was cancelled.")
    images: int = Field(description="How many images the job makes thumbnails of.")
    images_done: int = Field(description="How many of them the current attempt has finished.")
    problems: list[ImageProblem] = Field(
        description="Files left out: refused at upload, or found unreadable by the worker."
    )
    result: JobResult | None = Field(description="Set once the job has succeeded.")


class JobDetails(JobStatus):
    """A job as the API lists and returns it: its status document and what it was asked."""

    kind: Job.Kind
    owner: str = Field(description="The owner's username.")
    source_name: str = Field(description="The (first) uploaded file's name, as sent.")
    params: dict[str, Any] = Field(description="What the job was asked to make.")
    rerun_of: uuid.UUID | None = Field(description="The job this one re-ran with new settings.")
    attempts: int
    created_at: datetime
    queued_at: datetime = Field(description="When the job last entered the queue.")
    started_at: datetime | None
    finished_at: datetime | None


class QueueState(Schema):
    """Whether workers take a queue's messages: paused by an operator, or running."""

    queue: str
    paused: bool
    paused_by: str | None = Field(description="Who paused it.")
    paused_at: datetime | None
    reason: str = Field(description="Why, as they wrote it (may be empty).")


class JobPage(Schema):
    """Jobs newest first, a page at a time by keyset: follow `next` and `previous`."""

    items: list[JobDetails]
    next: str | None = Field(description="Pass as `after` for the next (older) page.")
    previous: str | None = Field(description="Pass as `before` for the previous (newer) page.")


class Error(Schema):
    """Every error the API answers: what went wrong, and per field what to change."""

    message: str
    errors: dict[str, list[str]] = Field(
        default_factory=dict, description="Field name to messages; empty when no field is at fault."
    )
