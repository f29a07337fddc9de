"""Reads of jobs: what a user may see, and the shapes pages and the API show.

History over time and all-time totals, read from the rollups, are jobs.history."""

import sys
import uuid
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import (
    Count,
    Q,
    QuerySet,
)
from django.db.models.functions import Substr
from django.db.models.lookups import Exact
from django.urls import reverse
from django.utils import timezone

from jobs import housekeeping, roles, storage
from jobs.kinds import thumbnails
from jobs.models import (
    AlertEvent,
    AlertRule,
    AuditedJob,
    AuditEntry,
    Chore,
    Job,
    Preferences,
    Preset,
    QueuePause,
    Rerun,
    name_key,
)
from jobs.schemas import JobDetails, JobStatus


def visible_jobs(*, user: AbstractBaseUser) -> QuerySet[Job]:
    """The console's roles see every job (jobs.roles); everyone else only their own."""
    jobs = Job.objects.all()
    return jobs if roles.can_view(user) else jobs.filter(owner=user)


def recent_jobs(*, user: AbstractBaseUser, limit: int = 10) -> list[Job]:
    return list(Job.objects.filter(owner=user).order_by("-created_at", "-id")[:limit])


def starting_choices(*, user: AbstractBaseUser, preset: str | None = None) -> dict:
    """The settings the upload page starts from: the named preset's, else those of the
    person's last job, else none (the form's defaults)."""
    if preset and (chosen := Preset.objects.filter(owner=user, name=preset).first()):
        return chosen.choices
    return (
        Preferences.objects.filter(user=user).values_list("last_choices", flat=True).first() or {}
    )


def job_choices(*, job: Job) -> dict:
    """The settings a job was submitted with, as the upload form takes them: what its re-run
    starts from."""
    labels = [str(w) if w == h else f"{w}x{h}" for w, h in job.params.get("sizes", [])]
    offered = settings.PARROTER_DEFAULT_SIZES
    output = job.params.get("output") or {}  # jobs from before output choices: the defaults
    default = thumbnails.DEFAULT_OUTPUT
    return {
        "sizes": [label for label in labels if label in offered],
        "custom_sizes": ", ".join(label for label in labels if label not in offered),
        "fit": output.get("fit", default.fit),
        "format": output.get("format") or "",
        "quality": output.get("quality", default.quality),
        "background": output.get("background", "#ffffff"),
        "opaque": not output.get("transparent", default.transparent),
    }


def rerun_images(*, job: Job) -> list[dict]:
    """A finished job's stored images for its re-run, in upload order: each with its stored
    file, its focus, whether it failed (the job's error covers them all when no image got an
    outcome of its own) and, if it made thumbnails, its preview tile (see job_gallery)."""
    outcomes = job_gallery(job=job) if job.result.get("images") else []
    every_one_failed = job.status == Job.Status.FAILED and not outcomes
    images = []
    for index, image in enumerate(job.images):
        outcome = outcomes[index] if index < len(outcomes) else {"thumbnails": []}
        images.append(
            {
                **outcome,
                **image,
                "index": index,
                "failed": every_one_failed or bool(outcome.get("error")),
                "error": outcome.get("error") or (job.error if every_one_failed else ""),
            }
        )
    return images


def job_status(*, job: Job) -> JobStatus:
    """The status document of /jobs/<id>/status.json and of the API."""
    return JobStatus(**_status_fields(job))


def job_details(*, job: Job) -> JobDetails:
    """A job as the API shows it; its owner is read, so select_related("owner") for many."""
    return JobDetails(
        **_status_fields(job),
        kind=job.kind,
        owner=job.owner.get_username(),
        source_name=job.source_name,
        # What was asked, without where the files are stored (names only).
        params={
            **job.params,
            "images": [
                {key: image[key] for key in ("name", "focus") if key in image}
                for image in job.images
            ],
        },
        rerun_of=_original_id(job),
        attempts=job.attempts,
        created_at=job.created_at,
        queued_at=job.queued_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def _original_id(job: Job) -> uuid.UUID | None:
    """The id of the job this one re-ran: a query, unless prefetched (prefetch_related_objects
    with "rerun_link", as a list does for its page)."""
    try:
        return job.rerun_link.original_id
    except Rerun.DoesNotExist:
        return None


def _status_fields(job: Job) -> dict:
    result = None
    if job.status == Job.Status.SUCCEEDED:
        result = {
            # The API's download: it takes a token as well as a session, so a script can
            # follow it.
            "archive_url": reverse("api:job_archive", args=[job.pk]),
            "thumbnails": job.result.get("thumbnails", []),
        }
    return {
        "id": job.pk,
        "status": job.status,
        "progress": job.progress,
        "error": job.error or None,
        "images": len(job.images),
        "images_done": job.images_done,
        "problems": job.image_problems,
        "result": result,
    }


# The square a preview tile shows its image in, in CSS pixels (style.css: .thumbs .frame),
# on a wide screen and on a phone.
TILE_EDGE = (150, 110)


def job_gallery(*, job: Job) -> list[dict]:
    """A finished job's images in upload order, each with its thumbnails smallest first, its
    note (an animation shown still) or why it could not be read; and for its preview tile the
    smallest thumbnail that fills the tile (`tile`), the `largest`, and the CSS width it is
    shown at on a wide screen and on a phone (`shown`), for the browser to choose among the
    sizes by pixel density."""
    images = job.result.get("images") or [{"name": job.source_name, "error": "", "note": ""}]
    gallery = [{**image, "thumbnails": []} for image in images]
    for thumb in job.result.get("thumbnails", []):
        gallery[thumb.get("image", 0)]["thumbnails"].append(thumb)
    for image in gallery:
        thumbs = sorted(image["thumbnails"], key=lambda thumb: thumb["width"] * thumb["height"])
        image["thumbnails"] = thumbs
        if not thumbs:
            continue
        image["largest"] = largest = thumbs[-1]
        image["tile"] = next(
            (thumb for thumb in thumbs if max(thumb["width"], thumb["height"]) >= TILE_EDGE[0]),
            largest,
        )
        fraction = min(1.0, largest["width"] / largest["height"])
        image["shown"] = [max(1, round(edge * fraction)) for edge in TILE_EDGE]
    return gallery


def thumbnail_content(*, job: Job, name: str) -> bytes | None:
    """One thumbnail read out of the job's archive, or None if the job has no such entry."""
    names = {item["name"] for item in job.result.get("thumbnails", [])}
    if job.status != Job.Status.SUCCEEDED or name not in names:
        return None
    with storage.open_for_random_access(job.archive) as archive, zipfile.ZipFile(archive) as zf:
        return zf.read(name)


# --- The operator console -------------------------------------------------------------------

PAGE_SIZE = 50
# A name prefix matching at least this many jobs is "common" (see _name_prefix).
COMMON_PREFIX = 10_000
HEX_DIGITS = frozenset("0123456789abcdef")
SURROGATES = range(0xD800, 0xE000)


@dataclass(frozen=True)
class Cursor:
    """A position in the newest-first order of jobs: (created_at, id) of a row."""

    created_at: datetime
    id: uuid.UUID

    def __str__(self) -> str:
        micros = int(self.created_at.timestamp() * 1_000_000)
        return f"{micros}_{self.id.hex}"

    @classmethod
    def parse(cls, text: str) -> "Cursor | None":
        micros, _, hex_id = text.partition("_")
        try:
            moment = datetime.fromtimestamp(int(micros) / 1_000_000, tz=UTC)
            return cls(moment, uuid.UUID(hex=hex_id))
        except (ValueError, OverflowError, OSError):
            return None

    @classmethod
    def of(cls, job: Job) -> "Cursor":
        return cls(job.created_at, job.pk)


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    newer: Cursor | None  # show the page before this row, if any
    older: Cursor | None  # show the page after this row, if any


def find_jobs(
    *,
    status: str = "",
    kind: str = "",
    owner: str = "",
    created_after: datetime | None = None,
    search: str = "",
    group: str = "",
) -> QuerySet[Job]:
    """Jobs matching the console's filters. Every condition is an indexed lookup: status,
    owner and time ride the keyset indexes; search is an id or id-prefix range on the
    primary key, an exact task id, or a source-name prefix."""
    jobs = Job.objects.select_related("owner")
    if status:
        jobs = jobs.filter(status=status)
    if kind:
        jobs = jobs.filter(kind=kind)
    if owner:
        # The ids first, so jobs are matched on owner_id by their own index; through a join
        # PostgreSQL misjudged a busy owner's share and sorted 170k rows. Usernames differ by
        # case ("Maria", "maria"): the filter, like the search, ignores it.
        people = get_user_model().objects.filter(username__iexact=owner)
        jobs = jobs.filter(owner_id__in=list(people.values_list("pk", flat=True)[:10]))
    if created_after:
        jobs = jobs.filter(created_at__gte=created_after)
    if group:  # a group's jobs are failed ones (a retry takes a job out of its group)
        jobs = jobs.filter(failure_signature=group, status=Job.Status.FAILED)
    if search := search.strip():
        jobs = jobs.filter(_search_condition(search))
    return jobs


def _search_condition(text: str) -> Q:
    condition = _name_prefix(text)
    compact = text.lower().replace("-", "")
    if len(compact) >= 4 and set(compact) <= HEX_DIGITS:
        if len(compact) == 32:
            full = uuid.UUID(hex=compact)
            condition |= Q(pk=full) | Q(task_id=str(full))
        elif len(compact) < 32:
            low, high = compact.ljust(32, "0"), compact.ljust(32, "f")
            condition |= Q(pk__gte=uuid.UUID(hex=low), pk__lte=uuid.UUID(hex=high))
    return condition


def _name_prefix(prefix: str) -> Q:
    """The file name starts with prefix, ignoring case, planned well on either database.

    Names are compared case-folded, on the index job_search_idx (search_name, created_at, id).
    Which way is fast depends on the matches, which the planners misjudge, so this counts them
    first, in that index alone. Up to COMMON_PREFIX are best found through it and sorted;
    both planners would rather walk the newest-first index checking names, which is long when
    the newest matches are spread over weeks (a day's camera names, img_20261110...: 500,000
    rows at a million jobs). Past COMMON_PREFIX matches, walking from the newest job finds a
    page soon enough.
    """
    key = name_key(prefix)
    # A range on the name: SQLite's LIKE cannot use an index (and would fold ASCII case).
    in_range = Q(search_name__gte=key)
    if (upper := _after_prefix(key)) is not None:
        in_range &= Q(search_name__lt=upper)
    sqlite = connection.vendor == "sqlite"
    starts = in_range if sqlite else Q(search_name__startswith=key)
    probe = Job.objects.filter(starts).order_by().values("search_name")[:COMMON_PREFIX]
    if probe.count() < COMMON_PREFIX:
        # SQLite takes the name index for a range. PostgreSQL is given the range beside its
        # LIKE, which it reads as a second, independent condition: matches then look too few
        # to find by walking.
        return in_range if sqlite else starts & in_range
    if sqlite:  # an expression no index answers: SQLite walks the page's order checking names
        return Q(Exact(Substr("search_name", 1, len(key)), key))
    return starts


def _after_prefix(prefix: str) -> str | None:
    """The bound that makes prefix <= name < bound exactly name.startswith(prefix) in code point
    order (SQLite's order of UTF-8 text), for any code point: None when no text lies past those
    (a prefix all of U+10FFFF). The next code point skips the surrogates, which no database can
    store: after U+D7FF comes U+E000."""
    stem = prefix.rstrip(chr(sys.maxunicode))
    if not stem:
        return None
    following = ord(stem[-1]) + 1
    if following in SURROGATES:
        following = SURROGATES.stop
    return stem[:-1] + chr(following)


def job_page(
    *, jobs: QuerySet[Job], after: Cursor | None = None, before: Cursor | None = None
) -> JobPage:
    """One page of jobs, newest first, by keyset on (created_at, id): as fast a thousand pages
    deep as on the first, and stable while new jobs arrive."""
    if before is not None:
        rows = _page_rows(jobs.filter(_newer_than(before)), ("created_at", "id"))
        more_newer = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE][::-1]
        return JobPage(
            jobs=rows,
            newer=Cursor.of(rows[0]) if rows and more_newer else None,
            older=Cursor.of(rows[-1]) if rows else None,
        )
    if after is not None:
        jobs = jobs.filter(_older_than(after))
    rows = _page_rows(jobs, ("-created_at", "-id"))
    more_older = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return JobPage(
        jobs=rows,
        newer=Cursor.of(rows[0]) if rows and after is not None else None,
        older=Cursor.of(rows[-1]) if more_older else None,
    )


def _page_rows(jobs: QuerySet[Job], order: tuple[str, str]) -> list[Job]:
    """Up to PAGE_SIZE + 1 jobs in `order`: their ids first, then their rows. The ids of a page
    are read from an index alone where one holds the page's keys (job_search_idx ends with
    created_at and id): the few thousand matches of a rare name prefix, spread over weeks, are
    then sorted without reading each one's row from the table."""
    ids = list(jobs.order_by(*order).values_list("pk", flat=True)[: PAGE_SIZE + 1])
    # By id alone: given the page's conditions again, PostgreSQL walked the name index anew.
    rows = Job.objects.select_related("owner").in_bulk(ids)
    return [rows[pk] for pk in ids if pk in rows]  # one deleted in between is left out


def _older_than(cursor: Cursor) -> Q:
    # The leading created_at <= bound lets every database range-scan the index.
    return Q(created_at__lte=cursor.created_at) & (
        Q(created_at__lt=cursor.created_at) | Q(pk__lt=cursor.id)
    )


def _newer_than(cursor: Cursor) -> Q:
    return Q(created_at__gte=cursor.created_at) & (
        Q(created_at__gt=cursor.created_at) | Q(pk__gt=cursor.id)
    )


def jobs_version() -> str:
    """Changes whenever any job is created or changes: one probe of the updated_at index."""
    newest = Job.objects.order_by("-updated_at").values_list("updated_at", flat=True).first()
    return str(int(newest.timestamp() * 1_000_000)) if newest else "0"


@dataclass(frozen=True)
class NowCounts:
    queued: int
    running: int
    oldest_queued_at: datetime | None

    @property
    def oldest_wait_seconds(self) -> float | None:
        if self.oldest_queued_at is None:
            return None
        return max((timezone.now() - self.oldest_queued_at).total_seconds(), 0.0)


def now_counts() -> NowCounts:
    """From the status index and the partial index of waiting jobs: small sets, not a scan."""
    by_status = dict(
        Job.objects.filter(status__in=[Job.Status.QUEUED, Job.Status.RUNNING])
        .values_list("status")
        .annotate(count=Count("pk"))
        .order_by()
    )
    oldest = (
        Job.objects.filter(status=Job.Status.QUEUED)
        .order_by("queued_at")
        .values_list("queued_at", flat=True)
        .first()
    )
    return NowCounts(
        queued=by_status.get(Job.Status.QUEUED, 0),
        running=by_status.get(Job.Status.RUNNING, 0),
        oldest_queued_at=oldest,
    )


def running_jobs_by_worker() -> dict[str, int]:
    """How many jobs each worker (its node name) runs now: the status index's small set."""
    return dict(
        Job.objects.filter(status=Job.Status.RUNNING)
        .values_list("worker")
        .annotate(count=Count("pk"))
        .order_by()
    )


@dataclass(frozen=True)
class ChoreStatus:
    title: str
    schedule: str  # "every 1 minute", "disabled", or "not scheduled"
    admin_url: str  # where to change the schedule
    last: Chore | None
    summary: str  # what the last run did, in words
    every_seconds: int | None  # its interval, when beat runs it on one


def housekeeping_status() -> list[ChoreStatus]:
    """Each housekeeping chore: its schedule in beat's tables and what its last run did."""
    from django_celery_beat.models import PeriodicTask

    names = [housekeeping.task_name(schedule.chore) for schedule in housekeeping.SCHEDULES]
    scheduled = PeriodicTask.objects.filter(task__in=names).select_related("interval", "crontab")
    tasks = {task.task: task for task in scheduled}
    chores = Chore.objects.in_bulk([schedule.chore for schedule in housekeeping.SCHEDULES])
    rows = []
    for schedule in housekeeping.SCHEDULES:
        task = tasks.get(housekeeping.task_name(schedule.chore))
        chore = chores.get(schedule.chore)
        rows.append(
            ChoreStatus(
                title=task.name if task else schedule.title,
                schedule=_schedule_words(task),
                admin_url=(
                    reverse("admin:django_celery_beat_periodictask_change", args=[task.pk])
                    if task
                    else reverse("admin:django_celery_beat_periodictask_add")
                ),
                last=chore if chore and chore.finished_at else None,
                summary=_outcome_words(chore.outcome) if chore else "",
                every_seconds=_interval_seconds(task),
            )
        )
    return rows


def _interval_seconds(task) -> int | None:
    if task is None or not task.enabled or task.interval is None:
        return None
    return int(task.interval.schedule.run_every.total_seconds())


def _schedule_words(task) -> str:
    if task is None:
        return "not scheduled"
    if not task.enabled:
        return "disabled"
    return str(task.scheduler)  # e.g. "every 2 minutes", or a crontab line


def _outcome_words(outcome: dict[str, int]) -> str:
    done = [
        f"{count:,} {housekeeping.OUTCOME_WORDS.get(key, key)}"
        for key, count in outcome.items()
        if count
    ]
    return " · ".join(done) or "nothing to do"


def firing_alerts() -> list[AlertRule]:
    """The alert rules firing now, longest first: the console's banner and /metrics."""
    return list(AlertRule.objects.filter(firing_since__isnull=False).order_by("firing_since"))


def alert_rules() -> list[AlertRule]:
    return list(AlertRule.objects.all())


ALERT_PAGE_SIZE = 50


@dataclass(frozen=True)
class AlertHistoryPage:
    events: list[AlertEvent]
    older: str | None  # the `after` of the next page, None on the last


def alert_history(*, after: str = "") -> AlertHistoryPage:
    """Alerts fired and resolved, newest first, with their deliveries, by keyset on the id."""
    events = AlertEvent.objects.prefetch_related("deliveries").order_by("-pk")
    if after.isdigit():
        events = events.filter(pk__lt=int(after))
    rows = list(events[: ALERT_PAGE_SIZE + 1])
    older = str(rows[ALERT_PAGE_SIZE - 1].pk) if len(rows) > ALERT_PAGE_SIZE else None
    return AlertHistoryPage(events=rows[:ALERT_PAGE_SIZE], older=older)


# --- The audit log ------------------------------------------------------------------------------

AUDIT_PAGE_SIZE = 50


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    older: str | None  # `after` for the next (older) page, if any


def audit_page(
    *, action: str = "", actor: str = "", job: uuid.UUID | None = None, after: str = ""
) -> AuditPage:
    """The audit log newest first, filtered by action, by who (a username) and by a job it
    changed, a keyset page at a time (`after`: an entry's id; ids grow with time)."""
    entries = AuditEntry.objects.all()
    if action:
        entries = entries.filter(action=action)
    if actor:
        entries = entries.filter(actor_name=actor)
    if job is not None:
        entries = entries.filter(pk__in=AuditedJob.objects.filter(job_id=job).values("entry"))
    if after.isdigit():
        entries = entries.filter(pk__lt=int(after))
    rows = list(entries.order_by("-pk")[: AUDIT_PAGE_SIZE + 1])
    older = str(rows[AUDIT_PAGE_SIZE - 1].pk) if len(rows) > AUDIT_PAGE_SIZE else None
    return AuditPage(entries=rows[:AUDIT_PAGE_SIZE], older=older)


def queue_pauses() -> dict[str, QueuePause]:
    """The paused queues, by name (one small table: workers read it every few seconds)."""
    return {pause.queue: pause for pause in QueuePause.objects.all()}
