import uuid

from django.conf import settings
from django.db import models
from django.db.models import QuerySet
from django.utils import timezone
from django_celery_results.managers import TaskResultManager
from django_celery_results.models import TaskResult

# Upper bounds (seconds) of the duration histograms kept per rollup row; the last is +inf.
# The same bounds serve run time and queue wait, from a 10 ms thumbnail to an hour's backlog.
DURATION_BOUNDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
DURATION_BUCKETS = len(DURATION_BOUNDS) + 1


def default_max_attempts() -> int:
    return settings.PARROTER_MAX_ATTEMPTS


def name_key(name: str) -> str:
    """A file name as search compares it: case-folded ("DSC_0001.JPG" -> "dsc_0001.jpg")."""
    return name.casefold()[:255]


class JobQuerySet(models.QuerySet):
    def bulk_create(self, objs, *args, **kwargs):
        """As Job.save does: each job's search_name follows its name."""
        jobs = list(objs)
        for job in jobs:
            job.search_name = name_key(job.source_name)
        return super().bulk_create(jobs, *args, **kwargs)


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

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    class FailureKind(models.TextChoices):
        BAD_INPUT = "bad_input", "Bad input"
        OVER_LIMIT = "over_limit", "Over a limit"
        TIME_LIMIT = "time_limit", "Time limit"
        INTERRUPTED = "interrupted", "Interrupted"
        INTERNAL = "internal", "Internal error"

    # Input that cannot succeed on a retry: no Retry for it, only a forced one by an operator.
    PERMANENT_FAILURES = (FailureKind.BAD_INPUT, FailureKind.OVER_LIMIT)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs"
    )
    kind = models.CharField(max_length=32, choices=Kind.choices, default=Kind.THUMBNAILS)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent done, 0-100.")
    params = models.JSONField(default=dict, blank=True)
    source = models.FileField(upload_to=job_file_path, max_length=255)
    source_name = models.CharField(max_length=255, help_text="The uploaded file's name.")
    # name_key(source_name), set on save: case-insensitive prefix search (job_search_idx).
    search_name = models.CharField(max_length=255, default="", editable=False)
    archive = models.FileField(upload_to=job_file_path, max_length=255, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    task_id = models.CharField(max_length=255, blank=True, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(
        default=default_max_attempts,
        help_text="Deliveries allowed before the job is given up; a retry by an operator "
        "extends it.",
    )
    worker = models.CharField(max_length=255, blank=True, help_text="Who ran the last attempt.")
    created_at = models.DateTimeField(default=timezone.now)
    # When the job last entered the queue (submit or retry): queue wait is started_at - this.
    # Set from created_at when a job is first saved (see save()).
    queued_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    # When the broker accepted the message for task_id, and which Redis instance (its run_id,
    # new at every restart) took it: the dispatcher re-sends only what is provably not in the
    # broker: never published, or published to a Redis that has restarted since.
    published_at = models.DateTimeField(null=True, blank=True)
    broker_run_id = models.CharField(max_length=64, blank=True)
    # A failure's kind and its group (jobs.failures.signature), set when it is recorded.
    failure_kind = models.CharField(max_length=16, choices=FailureKind.choices, blank=True)
    failure_signature = models.CharField(max_length=48, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        # The console's permissions (jobs.roles): held through the viewer, operator and admin
        # groups.
        permissions = [
            ("view_console", "Can see the operator console, every job, Flower and metrics"),
            ("operate_jobs", "Can retry and cancel anyone's jobs"),
        ]
        indexes = [
            # Keyset pages of "all jobs", "my jobs" and "jobs in a state", newest first.
            models.Index(fields=["-created_at", "-id"], name="job_recent_idx"),
            # Name prefixes, with each match's time and id: a page of matches is sorted from
            # the index alone (jobs.selectors._name_prefix, _page_rows); the operator class lets
            # PostgreSQL use it for LIKE 'x%' (other databases ignore it).
            models.Index(
                fields=["search_name", "created_at", "id"],
                opclasses=["varchar_pattern_ops", "timestamptz_ops", "uuid_ops"],
                name="job_search_idx",
            ),
            models.Index(fields=["owner", "-created_at", "-id"], name="job_owner_recent_idx"),
            models.Index(fields=["status", "-created_at", "-id"], name="job_status_recent_idx"),
            # "Has anything changed since version T?" is one probe of this index.
            models.Index(fields=["-updated_at"], name="job_updated_idx"),
            # A person's jobs waiting or running: fair dispatch's and the queued quota's counts
            # (jobs.services), without walking the jobs of theirs that finished.
            models.Index(
                fields=["owner", "status"],
                condition=models.Q(status__in=["queued", "running"]),
                name="job_owner_active_idx",
            ),
            # The oldest waiting job, without walking the jobs that finished.
            models.Index(
                fields=["queued_at"],
                condition=models.Q(status="queued"),
                name="job_waiting_idx",
            ),
            # Failure groups: counted over a range from the index alone, and a group's jobs
            # paged newest first (jobs.failure_groups, the console's group filter).
            # Signature first: a group's trend is one range per signature, and the groups of a
            # range are read by skipping from signature to signature (about forty of them),
            # where a range of finish times first made SQLite walk every failure instead.
            models.Index(
                fields=["failure_signature", "finished_at", "owner"],
                condition=models.Q(status="failed"),
                name="job_failures_idx",
            ),
            # (Its condition is status, not a non-empty signature: SQLite cannot tell that
            # "signature = x" implies the latter, and walked the newest jobs instead.)
            models.Index(
                fields=["failure_signature", "-created_at", "-id"],
                condition=models.Q(status="failed"),
                name="job_failure_group_idx",
            ),
            # Retention walks the jobs that finished longest ago.
            models.Index(
                fields=["finished_at"],
                condition=models.Q(finished_at__isnull=False),
                name="job_finished_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.source_name} ({self.status})"

    def save(self, *args, **kwargs) -> None:
        if self.queued_at is None:  # a new job enters the queue as it is created
            self.queued_at = self.created_at
        self.search_name = name_key(self.source_name)
        if (fields := kwargs.get("update_fields")) is not None and "source_name" in fields:
            kwargs["update_fields"] = {*fields, "search_name"}
        super().save(*args, **kwargs)

    @property
    def rerun_of(self) -> "Job | None":
        """The job this one re-ran (None if it was not a re-run, or that job is deleted)."""
        return Job.objects.filter(rerun_links__rerun=self).first()

    @property
    def reruns(self) -> QuerySet["Job"]:
        """The jobs that re-ran this one, newest first."""
        return Job.objects.filter(rerun_link__original=self).order_by("-created_at", "-id")

    @property
    def images(self) -> list[dict]:
        """Each source image as {"name", "file"}, in upload order (one, for older jobs)."""
        return self.params.get("images") or [{"name": self.source_name, "file": self.source.name}]

    @property
    def title(self) -> str:
        """The job as people name it: its image, or its first image and how many more."""
        count = len(self.params.get("images") or ()) or 1
        return self.source_name if count == 1 else f"{self.source_name} and {count - 1} more"

    @property
    def preview(self) -> dict | None:
        """A succeeded job's first image's smallest thumbnail, to show it in lists."""
        if self.status != self.Status.SUCCEEDED:
            return None
        first = [thumb for thumb in self.result.get("thumbnails", []) if not thumb.get("image")]
        return min(first, key=lambda thumb: thumb["width"] * thumb["height"], default=None)

    @property
    def images_sent(self) -> int:
        """How many files were uploaded for the job, those refused at upload included."""
        return len(self.images) + len(self.params.get("refused") or ())

    @property
    def images_done(self) -> int:
        """How many images the current attempt has finished with."""
        if self.status == self.Status.SUCCEEDED:
            return len(self.images)
        return self.result.get("images_done", 0) if self.status == self.Status.RUNNING else 0

    @property
    def images_made(self) -> int:
        """How many of a succeeded job's images got thumbnails (the others could not be read)."""
        unreadable = sum(1 for item in self.result.get("images", []) if item.get("error"))
        return len(self.images) - unreadable

    @property
    def image_problems(self) -> list[dict]:
        """{"name", "error"} of each image left out: refused at upload, or unreadable."""
        refused = self.params.get("refused") or []
        unreadable = [item for item in self.result.get("images", []) if item.get("error")]
        return [{"name": item["name"], "error": item["error"]} for item in refused + unreadable]

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def failed_for_good(self) -> bool:
        """Failed on input a retry cannot fix (the owner needs a different file)."""
        return self.status == self.Status.FAILED and self.failure_kind in self.PERMANENT_FAILURES

    @property
    def queue_wait_seconds(self) -> float | None:
        """Time in the queue before the current attempt started (so far, while queued)."""
        if self.started_at:
            return max((self.started_at - self.queued_at).total_seconds(), 0.0)
        if self.status == self.Status.QUEUED:
            return max((timezone.now() - self.queued_at).total_seconds(), 0.0)
        return None

    @property
    def run_seconds(self) -> float | None:
        """Run time of the current attempt (so far, while running)."""
        if self.started_at and self.finished_at:
            return max((self.finished_at - self.started_at).total_seconds(), 0.0)
        if self.started_at and self.status == self.Status.RUNNING:
            return max((timezone.now() - self.started_at).total_seconds(), 0.0)
        return None


class Rerun(models.Model):
    """A job made again as another, with new settings, on copies of its stored images. A table
    of its own, not a column of every job: deleting jobs (retention) then clears links in this
    small table, where a nullable column of a million rows, all NULL but a few, had SQLite
    scan the jobs for each batch (its statistics take one value for every row), and an index
    of the few re-runs alone left SQLite's PRAGMA optimize re-analyzing the jobs table each
    time while it held none."""

    original = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="rerun_links")
    rerun = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="rerun_link")

    def __str__(self) -> str:
        return f"{self.rerun_id} re-ran {self.original_id}"


class JobRollup(models.Model):
    """Finished attempts per minute, kind and status (spread over a few shards), with duration
    sums and histograms, and the retries made from that status in that minute.

    Each attempt's finish reaches it through a PendingFinish (jobs.rollups.add_pending), each
    retry directly in its own transaction, and it is only ever added to: history is what
    happened, so a later retry, cancel or delete never takes an attempt out of the minute it
    finished in. The console's counters and charts read them (jobs.rollups.rows) instead of
    scanning jobs. Older rows are merged into hours and days (jobs.housekeeping.compact_rollups):
    totals stay exact, only the minute within the hour or day is forgotten.
    """

    minute = models.IntegerField(help_text="Minutes since the Unix epoch (UTC) of finished_at.")
    kind = models.CharField(max_length=32, choices=Job.Kind.choices)
    status = models.CharField(max_length=16, choices=Job.Status.choices)
    jobs = models.IntegerField(db_default=0)
    # Jobs of this kind that left this outcome for the queue again in this minute (a person's
    # retry): history keeps the failure and shows the retry beside it, never instead of it.
    retried = models.IntegerField(db_default=0)
    run_seconds = models.FloatField(db_default=0)
    wait_seconds = models.FloatField(db_default=0)
    # Which of the minute's rows for this kind and outcome (jobs.rollups.shard): concurrent
    # writers add to different rows instead of waiting on one row's lock. Readers sum them.
    shard = models.PositiveSmallIntegerField(db_default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["minute", "kind", "status", "shard"], name="rollup_key")
        ]

    def __str__(self) -> str:
        return f"{self.minute} {self.kind} {self.status} #{self.shard}: {self.jobs}"


class PendingFinish(models.Model):
    """A finished attempt not yet added to its JobRollup row: written by the transition that
    finished it, in its transaction (an INSERT, which concurrent finishes make side by side,
    where adding to a minute's row would queue them on its lock), and moved into the rollups
    in batches by jobs.rollups.add_pending (the monitor every round, and every reader first).
    It holds what the rollups need of the attempt, so a later retry or delete of the job
    changes nothing here."""

    minute = models.IntegerField(help_text="Minutes since the Unix epoch (UTC) of finished_at.")
    kind = models.CharField(max_length=32, choices=Job.Kind.choices)
    status = models.CharField(max_length=16, choices=Job.Status.choices)
    run_seconds = models.FloatField(null=True)  # None: cancelled before it started
    wait_seconds = models.FloatField(null=True)

    def __str__(self) -> str:
        return f"{self.minute} {self.kind} {self.status}"


# run_0 .. run_15 and wait_0 .. wait_15: how many jobs fell in each DURATION_BOUNDS bucket.
# Plain columns (not JSON) so the database sums them over a time range in one query.
RUN_BUCKET_FIELDS = [f"run_{index}" for index in range(DURATION_BUCKETS)]
WAIT_BUCKET_FIELDS = [f"wait_{index}" for index in range(DURATION_BUCKETS)]
for _name in RUN_BUCKET_FIELDS + WAIT_BUCKET_FIELDS:
    models.IntegerField(db_default=0).contribute_to_class(JobRollup, _name)


class ClusterReport(models.Model):
    """What the monitor (`manage.py monitor`, jobs.monitoring) last saw of the broker, its
    queues and the workers: one row, rewritten every couple of seconds. Pages, probes and
    /metrics read it, so no request ever waits on the broker; its age tells whether the
    monitor itself is alive."""

    name = models.CharField(max_length=32, primary_key=True)
    reported_at = models.DateTimeField()
    facts = models.JSONField(default=dict)

    def __str__(self) -> str:
        return f"{self.name} at {self.reported_at:%Y-%m-%d %H:%M:%S}"


class Chore(models.Model):
    """One housekeeping task that beat runs (retention, orphan sweep, dispatcher, reaper): what
    its last run did, for the console, and a lease so that two beats never run it twice at once.
    """

    name = models.CharField(max_length=64, primary_key=True)
    leased_until = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.JSONField(default=dict, blank=True, help_text="What the last run did.")
    error = models.TextField(blank=True, help_text="Why the last run failed, if it did.")
    runs = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return self.name

    @property
    def is_running(self) -> bool:
        return self.leased_until is not None and self.leased_until > timezone.now()

    @property
    def took_seconds(self) -> float | None:
        """How long the last finished run took (unknown while the next one runs)."""
        if self.started_at and self.finished_at and self.finished_at >= self.started_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class ApiToken(models.Model):
    """A user's token for scripts (Authorization: Bearer <token>), made by jobs.tokens.

    Only a SHA-256 digest of the token is kept: the token is shown once, when it is made. The
    prefix (its first characters) is not secret; it tells a person which token is which.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. a script.")
    prefix = models.CharField(max_length=16, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="To the minute."
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… {self.name}"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class Preferences(models.Model):
    """What a person chose for how Parroter shows things to them."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="preferences",
    )
    time_zone = models.CharField(
        max_length=64, blank=True, help_text="An IANA zone; blank: the browser's."
    )
    # The settings of their last job (jobs.forms.CHOICE_FIELDS), which the upload page starts from.
    last_choices = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name_plural = "preferences"

    def __str__(self) -> str:
        return f"{self.user}'s preferences"


class Preset(models.Model):
    """A person's named settings for a job ("Web gallery"), chosen on the upload page or sent
    as `preset` to the API: jobs.forms.CHOICE_FIELDS as the form takes them."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="presets"
    )
    name = models.CharField(max_length=60)
    choices = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="preset_name_per_owner")
        ]

    def __str__(self) -> str:
        return self.name


class AuditEntry(models.Model):
    """One action a person took: on jobs (retry, cancel, delete, one or a whole filter's set),
    on API tokens, or in admin. Append-only: rows are never changed or deleted here or in
    admin."""

    class Action(models.TextChoices):
        RETRY = "retry", "Retry"
        CANCEL = "cancel", "Cancel"
        DELETE = "delete", "Delete"
        TOKEN_CREATE = "token_create", "API token made"
        TOKEN_REVOKE = "token_revoke", "API token revoked"
        PAUSE = "pause", "Queue paused"
        RESUME = "resume", "Queue resumed"
        ACKNOWLEDGE = "acknowledge", "Failures acknowledged"
        ADMIN = "admin", "Admin change"

    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField(default=timezone.now)
    # The name is kept as it was: the account may be renamed or deleted later.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150)
    action = models.CharField(max_length=16, choices=Action.choices)
    summary = models.CharField(max_length=500, help_text="What was done, as people read it.")
    details = models.JSONField(default=dict, blank=True)
    address = models.GenericIPAddressField(null=True, blank=True, help_text="Where from.")
    reason = models.CharField(max_length=500, blank=True, help_text="Why, as the person typed it.")
    jobs = models.PositiveIntegerField(default=0, help_text="How many jobs it changed.")

    class Meta:
        # Newest first by id, which grows with time: the primary key pages the whole log.
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["action", "-id"], name="audit_action_idx"),
            models.Index(fields=["actor_name", "-id"], name="audit_actor_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_name}: {self.summary}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise ValueError("The audit log is append-only: an entry is never changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("The audit log is append-only: an entry is never deleted.")


class QueuePause(models.Model):
    """A queue operators paused: every worker stops taking its messages within
    PARROTER_QUEUE_PAUSE_CHECK_SECONDS, and one that starts meanwhile does not take them; its
    jobs wait as queued until it is resumed (the row deleted)."""

    queue = models.CharField(max_length=100, primary_key=True)
    paused_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    paused_by_name = models.CharField(max_length=150)
    paused_at = models.DateTimeField(default=timezone.now)
    reason = models.CharField(max_length=500, blank=True)

    def __str__(self) -> str:
        return f"{self.queue} paused by {self.paused_by_name}"


class AuditedJob(models.Model):
    """A job an audit entry changed: a job's page lists its entries through this (a job id,
    not a foreign key, so that the record outlives a deleted job)."""

    entry = models.ForeignKey(AuditEntry, on_delete=models.CASCADE, related_name="+")
    job_id = models.UUIDField()

    class Meta:
        indexes = [models.Index(fields=["job_id", "-entry"], name="audited_job_idx")]

    def __str__(self) -> str:
        return f"{self.job_id} in entry {self.entry_id}"


class AlertRule(models.Model):
    """A condition beat checks every minute (jobs.alerts): it fires once when it starts to hold,
    sends a resolved notice when it stops, and sends no second firing within its cooldown. Its
    state lives here, so a restart neither forgets nor repeats an alert."""

    class Condition(models.TextChoices):
        FAILURE_RATE = "failure_rate", "Jobs failing: over threshold % in the window"
        OLDEST_QUEUED = "oldest_queued", "Oldest waiting job older than threshold minutes"
        NO_CONSUMER = "no_consumer", "No worker consuming the queue for threshold seconds"
        QUEUE_DEPTH = "queue_depth", "Messages waiting in the queue over threshold"
        CHORE_LATE = "chore_late", "A housekeeping chore failed, or is 2x its interval late"
        NEW_FAILURE_GROUP = "new_failure_group", "A failure group first seen in the window"

    name = models.CharField(max_length=100, unique=True)
    condition = models.CharField(max_length=32, choices=Condition.choices)
    threshold = models.FloatField(help_text="Percent, minutes, seconds or messages.")
    window_minutes = models.PositiveIntegerField(
        default=10, help_text="Failure rate: the minutes it is counted over."
    )
    min_count = models.PositiveIntegerField(
        default=0, help_text="Failure rate: fire only when at least this many jobs failed."
    )
    queue = models.CharField(
        max_length=100, blank=True, default="celery", help_text="Consumers and depth: which."
    )
    cooldown_minutes = models.PositiveIntegerField(
        default=30, help_text="No second firing notice within this long of the last one."
    )
    enabled = models.BooleanField(default=True)
    # State, written by jobs.alerts only.
    pending_since = models.DateTimeField(null=True, blank=True, editable=False)
    firing_since = models.DateTimeField(null=True, blank=True, editable=False)
    last_notified_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_evaluated_at = models.DateTimeField(null=True, blank=True, editable=False)
    summary = models.CharField(max_length=500, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AlertReceiver(models.Model):
    """Where every alert's notices go: an e-mail address (Django's mail settings) or a webhook
    (JSON with a Slack-compatible `text`, signed with HMAC-SHA256 of the body when a secret is
    set)."""

    class Kind(models.TextChoices):
        EMAIL = "email", "E-mail"
        WEBHOOK = "webhook", "Webhook"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    target = models.CharField(max_length=500, help_text="An e-mail address, or an http(s) URL.")
    secret = models.CharField(
        max_length=200,
        blank=True,
        help_text="Webhooks: signs each body (X-Parroter-Signature: sha256=<hex HMAC>).",
    )
    enabled = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.name


class AlertEvent(models.Model):
    """A rule started or stopped firing: the alert history, with who was told."""

    class State(models.TextChoices):
        FIRING = "firing", "Firing"
        RESOLVED = "resolved", "Resolved"

    id = models.BigAutoField(primary_key=True)
    rule = models.ForeignKey(AlertRule, null=True, on_delete=models.SET_NULL, related_name="+")
    rule_name = models.CharField(max_length=100)
    state = models.CharField(max_length=16, choices=State.choices)
    at = models.DateTimeField(default=timezone.now)
    summary = models.CharField(max_length=500)
    notified = models.BooleanField(
        default=True, help_text="False: a firing within the rule's cooldown, not sent."
    )

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.rule_name} {self.state} at {self.at:%Y-%m-%d %H:%M}"


class AlertDelivery(models.Model):
    """One notice to one receiver, sent by the housekeeping worker with retries."""

    class Status(models.TextChoices):
        PENDING = "pending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Gave up"

    event = models.ForeignKey(AlertEvent, on_delete=models.CASCADE, related_name="deliveries")
    receiver_name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=AlertReceiver.Kind.choices)
    target = models.CharField(max_length=500)
    secret = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.event} to {self.receiver_name}: {self.status}"


class FailureGroup(models.Model):
    """Failures with one signature (kind + message with ids, numbers, sizes and names taken
    out): made when the first is recorded; acknowledged by an operator until it happens
    again."""

    signature = models.CharField(max_length=48, primary_key=True)
    kind = models.CharField(max_length=16, choices=Job.FailureKind.choices)
    pattern = models.CharField(max_length=500, help_text="The message with its details out.")
    example = models.TextField(help_text="The first failure's message, in full.")
    first_seen = models.DateTimeField(default=timezone.now)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by_name = models.CharField(max_length=150, blank=True)

    def __str__(self) -> str:
        return self.pattern[:80]

    @property
    def permanent(self) -> bool:
        return self.kind in Job.PERMANENT_FAILURES


class TaskResultStore(TaskResultManager):
    """django-celery-results' manager, storing a task's result in one statement."""

    def store_result(self, content_type, content_encoding, task_id, result, status, **rest):
        # Its get_or_create reads the row, then inserts it in a savepoint: three round trips
        # for a row that, every delivery having a task id of its own, is new. An upsert is one.
        # A STARTED state's date (a database expression) goes the library's way.
        if "date_started" in rest:
            return super().store_result(
                content_type, content_encoding, task_id, result, status, **rest
            )
        fields = dict(rest, result=result, status=status)
        fields.update(content_type=content_type, content_encoding=content_encoding)
        using = fields.pop("using", None)
        row = self.model(task_id=task_id, **fields)
        self.using(using).bulk_create(
            [row],
            update_conflicts=True,
            unique_fields=["task_id"],
            update_fields=[*fields, "date_done"],
        )
        return row


class StoredTaskResult(TaskResult):
    """TaskResult as the result backend (jobs.results.ResultBackend) writes it."""

    objects = TaskResultStore()

    class Meta:
        proxy = True
