"""The audit log's writes: who acted, from where, why, and on which jobs. The services record
each action once, however many jobs it changed (jobs.models.AuditEntry)."""

from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest

from jobs.models import AuditedJob, AuditEntry

MAX_REASON = 500


@dataclass(frozen=True)
class Actor:
    """Who does something, from which address (the client's, after the trusted proxies), and
    the reason they typed, if any."""

    user: AbstractBaseUser
    address: str | None = None
    reason: str = ""

    @classmethod
    def of(cls, request: HttpRequest, reason: str = "") -> "Actor":
        return cls(request.user, request.META.get("REMOTE_ADDR") or None, reason.strip())

    @property
    def name(self) -> str:
        return self.user.get_username()


def record(
    *,
    actor: Actor,
    action: AuditEntry.Action,
    summary: str,
    job_ids: Sequence = (),
    details: dict | None = None,
) -> AuditEntry:
    entry = AuditEntry.objects.create(
        actor=actor.user,
        actor_name=actor.name,
        action=action,
        summary=summary[:500],
        details=details or {},
        address=actor.address,
        reason=actor.reason[:MAX_REASON],
        jobs=len(job_ids),
    )
    AuditedJob.objects.bulk_create(
        [AuditedJob(entry=entry, job_id=pk) for pk in job_ids], batch_size=2000
    )
    return entry
