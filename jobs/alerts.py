"""Alerts: rules checked by beat every minute (the evaluate_alerts chore, on the housekeeping
queue, under the chores' lease), from the history rollups, the monitor's report and the chores'
records; never by scanning jobs. A rule fires once when its condition starts to hold, sends a
resolved notice when it stops, and sends no second firing within its cooldown. Notices go to
every enabled receiver through the deliver_alert task: a receiver that is down or slow is tried
again with backoff, then given up and recorded, and never holds up the next evaluation."""

import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from jobs import monitoring, rollups, selectors
from jobs.models import (
    AlertDelivery,
    AlertEvent,
    AlertReceiver,
    AlertRule,
    FailureGroup,
    Job,
)

logger = logging.getLogger(__name__)

WEBHOOK_TIMEOUT = 5  # seconds to connect and for the answer
SIGNATURE_HEADER = "X-Parroter-Signature"
Condition = AlertRule.Condition

# Seeded by migration 0018; operators change them in admin.
DEFAULT_RULES = [
    {"name": "Jobs failing", "condition": Condition.FAILURE_RATE, "threshold": 10,
     "window_minutes": 10, "min_count": 5},
    {"name": "Jobs waiting too long", "condition": Condition.OLDEST_QUEUED, "threshold": 15},
    {"name": "No job worker", "condition": Condition.NO_CONSUMER, "threshold": 60,
     "queue": "celery"},
    {"name": "Job queue backed up", "condition": Condition.QUEUE_DEPTH, "threshold": 1000,
     "queue": "celery"},
    {"name": "Housekeeping late or failing", "condition": Condition.CHORE_LATE, "threshold": 2},
    {"name": "New kind of failure", "condition": Condition.NEW_FAILURE_GROUP, "threshold": 0,
     "window_minutes": 60},
]  # fmt: skip


@dataclass(frozen=True)
class Reading:
    """What a rule's condition looks like now: whether it holds, and in words. `seen`: the
    condition is there but has not lasted long enough yet (rule.pending_since counts it)."""

    holds: bool
    summary: str
    seen: bool = False


def seed_rules(apps, schema_editor) -> None:
    """RunPython of migration 0018: the default rules, each unless one of its name exists."""
    rule_model = apps.get_model("jobs", "AlertRule")
    for rule in DEFAULT_RULES:
        rule_model.objects.get_or_create(name=rule["name"], defaults=rule)


def evaluate(*, now: datetime | None = None) -> dict[str, int]:
    """Check every enabled rule once; returns how many fired and resolved."""
    now = now or timezone.now()
    facts = monitoring.cluster_facts()
    counts = {"fired": 0, "resolved": 0}
    for rule in AlertRule.objects.filter(enabled=True):
        reading = read(rule, now=now, facts=facts)
        change = _advance(rule, reading, now=now)
        if change:
            counts[change] += 1
    # A rule switched off while firing is resolved: nobody is left waiting on it.
    for rule in AlertRule.objects.filter(enabled=False, firing_since__isnull=False):
        _advance(rule, Reading(False, "The rule was disabled."), now=now)
        counts["resolved"] += 1
    return counts


def read(rule: AlertRule, *, now: datetime, facts: monitoring.ClusterFacts | None) -> Reading:
    """The rule's condition now. Conditions that must last (no consumer) count from
    rule.pending_since, when it was first seen."""
    match rule.condition:
        case Condition.FAILURE_RATE:
            return _failure_rate(rule, now)
        case Condition.OLDEST_QUEUED:
            return _oldest_queued(rule, now)
        case Condition.NO_CONSUMER:
            return _no_consumer(rule, now, facts)
        case Condition.QUEUE_DEPTH:
            return _queue_depth(rule, facts)
        case Condition.CHORE_LATE:
            return _chore_late(rule, now)
        case Condition.NEW_FAILURE_GROUP:
            return _new_failure_group(rule, now)
    return Reading(False, f"Unknown condition {rule.condition!r}.")


def _failure_rate(rule: AlertRule, now: datetime) -> Reading:
    since = rollups.minute_of(now - timedelta(minutes=rule.window_minutes))
    totals = dict(
        rollups.rows()
        .filter(minute__gte=since)
        .values_list("status")
        .annotate(jobs=Sum("jobs"))
        .values_list("status", "jobs")
    )
    failed = totals.get(Job.Status.FAILED, 0)
    finished = sum(totals.values())
    rate = 100 * failed / finished if finished else 0.0
    holds = rate > rule.threshold and failed >= max(rule.min_count, 1)
    return Reading(
        holds,
        f"{rate:.0f}% of jobs failed in the last {rule.window_minutes} minutes "
        f"({failed:,} of {finished:,}; alert over {rule.threshold:g}%"
        f"{f', at least {rule.min_count}' if rule.min_count else ''}).",
    )


def _oldest_queued(rule: AlertRule, now: datetime) -> Reading:
    oldest = (
        Job.objects.filter(status=Job.Status.QUEUED)
        .order_by("queued_at")
        .values_list("queued_at", flat=True)
        .first()
    )
    if oldest is None:
        return Reading(False, "No job is waiting.")
    minutes = (now - oldest).total_seconds() / 60
    return Reading(
        minutes > rule.threshold,
        f"The oldest waiting job has waited {minutes:.0f} minutes (alert over {rule.threshold:g}).",
    )


def _no_consumer(rule: AlertRule, now: datetime, facts: monitoring.ClusterFacts | None) -> Reading:
    if facts is None or facts.stale:
        missing = "The monitor has not reported lately: nobody can tell whether workers run."
        return _lasting(rule, now, missing)
    queue = facts.queue(rule.queue)
    if queue is not None and queue.consumers:
        return Reading(False, f"{queue.consumers} worker(s) consume {rule.queue}.")
    return _lasting(rule, now, f"No online worker consumes {rule.queue}.")


def _lasting(rule: AlertRule, now: datetime, what: str) -> Reading:
    since = rule.pending_since or now
    seconds = (now - since).total_seconds()
    return Reading(
        seconds >= rule.threshold,
        f"{what} For {seconds:.0f} s (alert at {rule.threshold:g} s).",
        seen=True,
    )


def _queue_depth(rule: AlertRule, facts: monitoring.ClusterFacts | None) -> Reading:
    queue = facts.queue(rule.queue) if facts and not facts.stale else None
    if queue is None or queue.messages is None:
        return Reading(False, f"The depth of {rule.queue} is unknown now.")
    return Reading(
        queue.messages > rule.threshold,
        f"{queue.messages:,} messages wait in {rule.queue} (alert over {rule.threshold:g}).",
    )


def _chore_late(rule: AlertRule, now: datetime) -> Reading:
    problems = []
    for status in selectors.housekeeping_status():
        last, every = status.last, status.every_seconds
        if last is not None and last.error:
            problems.append(f"{status.title} failed: {last.error.splitlines()[0][:120]}")
        elif (
            every
            and last is not None
            and (now - last.finished_at).total_seconds() > (rule.threshold * every)
        ):
            problems.append(f"{status.title} last ran {last.finished_at:%Y-%m-%d %H:%M} UTC")
    if not problems:
        return Reading(False, "Every chore ran on time.")
    return Reading(True, "; ".join(problems)[:480] + ".")


def _new_failure_group(rule: AlertRule, now: datetime) -> Reading:
    since = now - timedelta(minutes=rule.window_minutes)
    new = list(
        FailureGroup.objects.filter(first_seen__gte=since, acknowledged_at__isnull=True)
        .order_by("-first_seen")
        .values_list("pattern", flat=True)
    )
    if not new:
        return Reading(False, f"No new kind of failure in the last {rule.window_minutes} minutes.")
    return Reading(
        True,
        f"{len(new)} new kind{'s' if len(new) > 1 else ''} of failure in the last "
        f"{rule.window_minutes} minutes, the newest: {new[0]}",
    )


def _advance(rule: AlertRule, reading: Reading, *, now: datetime) -> str:
    """Move the rule's state on by this reading: "fired", "resolved" or ""."""
    change = ""
    with transaction.atomic():
        rule = AlertRule.objects.select_for_update().get(pk=rule.pk)
        seen = reading.holds or reading.seen
        rule.pending_since = (rule.pending_since or now) if seen else None
        if reading.holds and rule.firing_since is None:
            rule.firing_since = now
            cooled = rule.last_notified_at is None or now - rule.last_notified_at >= timedelta(
                minutes=rule.cooldown_minutes
            )
            if cooled:
                rule.last_notified_at = now
            _record(rule, AlertEvent.State.FIRING, reading.summary, now=now, notify=cooled)
            change = "fired"
        elif not reading.holds and rule.firing_since is not None:
            rule.firing_since = None
            _record(rule, AlertEvent.State.RESOLVED, reading.summary, now=now, notify=True)
            change = "resolved"
        rule.summary = reading.summary[:500]
        rule.last_evaluated_at = now
        rule.save(
            update_fields=[
                "pending_since", "firing_since", "last_notified_at", "summary",
                "last_evaluated_at",
            ]
        )  # fmt: skip
    return change


def _record(
    rule: AlertRule, state: str, summary: str, *, now: datetime, notify: bool
) -> AlertEvent:
    event = AlertEvent.objects.create(
        rule=rule, rule_name=rule.name, state=state, at=now, summary=summary[:500],
        notified=notify,
    )  # fmt: skip
    if not notify:
        return event
    AlertDelivery.objects.bulk_create(
        AlertDelivery(
            event=event,
            receiver_name=receiver.name,
            kind=receiver.kind,
            target=receiver.target,
            secret=receiver.secret,
        )  # fmt: skip
        for receiver in AlertReceiver.objects.filter(enabled=True)
    )
    ids = list(AlertDelivery.objects.filter(event=event).values_list("pk", flat=True))
    if ids:
        transaction.on_commit(lambda: _send_later(ids), robust=True)
    return event


def _send_later(delivery_ids: list[int]) -> None:
    from jobs.tasks import deliver_alert  # tasks import this module

    for delivery_id in delivery_ids:
        deliver_alert.delay(delivery_id)


def payload(event: AlertEvent) -> dict:
    """The webhook's JSON (`text` is what Slack and its look-alikes show)."""
    word = "FIRING" if event.state == AlertEvent.State.FIRING else "RESOLVED"
    return {
        "text": f"[Parroter] {word}: {event.rule_name}. {event.summary}",
        "state": event.state,
        "rule": event.rule_name,
        "condition": event.rule.condition if event.rule else "",
        "summary": event.summary,
        "at": event.at.isoformat(),
        "event": event.pk,
    }


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(*, delivery_id: int) -> bool:
    """Send one notice; True once sent (again: no second send). Raises DeliveryError when the
    receiver failed, with the attempt recorded, for the task to try again later."""
    delivery = AlertDelivery.objects.select_related("event", "event__rule").get(pk=delivery_id)
    if delivery.status == AlertDelivery.Status.SENT:
        return True
    message = payload(delivery.event)
    try:
        if delivery.kind == AlertReceiver.Kind.EMAIL:
            send_mail(
                subject=message["text"][:200],
                message=f"{message['text']}\n\nAt {message['at']}.",
                from_email=None,
                recipient_list=[delivery.target],
            )
        else:
            _post(delivery.target, message, secret=delivery.secret)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        AlertDelivery.objects.filter(pk=delivery.pk).update(
            attempts=delivery.attempts + 1, error=(str(exc) or type(exc).__name__)[:500]
        )
        raise DeliveryError(str(exc)) from exc
    AlertDelivery.objects.filter(pk=delivery.pk).update(
        status=AlertDelivery.Status.SENT, attempts=delivery.attempts + 1, error="",
        sent_at=timezone.now(),
    )  # fmt: skip
    return True


def give_up(*, delivery_id: int) -> None:
    AlertDelivery.objects.filter(pk=delivery_id, status=AlertDelivery.Status.PENDING).update(
        status=AlertDelivery.Status.FAILED
    )
    logger.warning("alert delivery %s given up", delivery_id)


class DeliveryError(Exception):
    """A receiver did not take a notice (down, slow, refused)."""


def _post(url: str, message: dict, *, secret: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{url!r} is not an http(s) URL")
    body = json.dumps(message).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "Parroter alerts"}
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, body)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as answer:  # noqa: S310
        if not 200 <= answer.status < 300:
            raise ValueError(f"the receiver answered {answer.status}")
