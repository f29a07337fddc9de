"""Django admin for jobs and their Celery task results, built to stay fast at millions of rows.

Every list page asks the database only for what an index answers: no date hierarchy, no facet
or full counts (see CappedPaginator), filters with fixed choices, search through the console's
indexed lookups (selectors.find_jobs), and the newest-first order of the (created_at, id) index.
"""

import re
from functools import cached_property

from celery import states
from django.contrib import admin
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.template.defaultfilters import pluralize
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django_celery_results.admin import TaskResultAdmin as CeleryTaskResultAdmin
from django_celery_results.models import TaskResult

from jobs import selectors, services, tokens
from jobs.audit import Actor
from jobs.models import (
    AlertDelivery,
    AlertEvent,
    AlertReceiver,
    AlertRule,
    ApiToken,
    AuditEntry,
    Job,
)
from jobs.units import byte_size


class AtLeast(int):
    """A count that stopped at its cap: an int to ChangeList's arithmetic, shown as "10,000+"
    in every place admin prints it (result count, "Select all", "All ... selected"). Templates
    print an int through str() as long as USE_THOUSAND_SEPARATOR is off (Django's default)."""

    def __str__(self) -> str:
        return f"{int(self):,}+"


class CappedPaginator(Paginator):
    """Counts at most `cap` rows, with a LIMITed subquery, so a list of millions costs an index
    range rather than COUNT(*) over the table. ChangeList asks paginator.count on every page,
    even with show_full_result_count = False; pages past the cap are simply not offered."""

    cap = 10_000

    @cached_property
    def count(self) -> int:
        # No ORDER BY inside the count: SQLite would sort every match before the LIMIT.
        counted = self.object_list.order_by()[: self.cap + 1].count()
        return AtLeast(self.cap) if counted > self.cap else counted


# What the audit log says of an action taken from admin's job list.
ADMIN_ACTION = {"filter": "selected in admin"}


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "short_id",
        "source_name",
        "owner",
        "kind",
        "status",
        "progress",
        "attempts",
        "created_at",
    ]
    list_filter = ["status", "kind", "created_at"]  # fixed choices only: no query per filter
    list_select_related = ["owner"]
    ordering = ["-created_at", "-id"]  # the job_recent_idx order
    sortable_by = []  # sorting by another column would sort the whole table
    paginator = CappedPaginator
    list_per_page = 50  # as the console's pages; rendering rows is most of a page's time
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # facet counts are a COUNT per choice
    # Only shows the search box: get_search_results does the searching.
    search_fields = ["=id"]
    search_help_text = (
        "A full job or task id, the start of a job id (4+ hex digits), the start of a file "
        "name (case-sensitive), or an owner's exact username."
    )
    actions = ["retry_selected", "cancel_selected", "delete_selected"]
    fieldsets = [
        (None, {"fields": ["id", "status", "progress", "kind", "owner_link", "pages"]}),
        ("Files", {"fields": ["source_file", "archive_file"]}),
        ("Task", {"fields": ["task", "attempts", "max_attempts", "worker"]}),
        ("Timeline", {"fields": ["created_at", "queued_at", "started_at", "finished_at"]}),
        ("Details", {"fields": ["params", "result", "error", "updated_at"]}),
    ]
    readonly_fields = [name for _, options in fieldsets for name in options["fields"]]

    def has_add_permission(self, request) -> bool:
        return False  # jobs are created by uploading, where input is validated

    def has_change_permission(self, request, obj=None) -> bool:
        # A job changes only through its lifecycle and the actions (which ask with obj=None),
        # so its own page is view-only: no Save buttons, and a POST to it is refused.
        return obj is None and super().has_change_permission(request)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        matches = selectors.find_jobs(search=term)
        # The owner by a unique-index lookup first, so the jobs are matched on owner_id (an
        # index of the jobs table) rather than through a join.
        owner = get_user_model().objects.filter(username=term).values_list("pk", flat=True)
        if owner_id := owner.first():
            matches = matches | Job.objects.filter(owner_id=owner_id)
        return queryset & matches, False

    # --- the list ------------------------------------------------------------------------

    @admin.display(description="ID")
    def short_id(self, job: Job):
        # Eight hex digits on one line; the full id is in the title and on the job's page.
        return format_html(
            '<code style="white-space: nowrap" title="{}">{}</code>', job.pk, job.pk.hex[:8]
        )

    # --- a job's page ----------------------------------------------------------------------

    @admin.display(description="Owner")
    def owner_link(self, job: Job):
        opts = get_user_model()._meta
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[job.owner_id])
        return format_html('<a href="{}">{}</a>', url, job.owner.get_username())

    @admin.display(description="Pages")
    def pages(self, job: Job):
        return format_html_join(
            " · ",
            '<a href="{}">{}</a>',
            [
                (reverse("dashboard:ops_job", args=[job.pk]), "Operator page"),
                (reverse("dashboard:job", args=[job.pk]), "Owner's page"),
            ],
        )

    @admin.display(description="Source")
    def source_file(self, job: Job):
        # Media is not served by URL (only through permission-checked views), so no link here.
        if not job.source:
            return "—"
        if len(job.images) > 1:  # one storage call per image would make the page slow
            return job.title
        return format_html("{} ({})", job.source_name, _size(job.source))

    @admin.display(description="Archive")
    def archive_file(self, job: Job):
        if not job.archive:
            return "—"
        url = reverse("dashboard:download", args=[job.pk])
        return format_html('<a href="{}">Download ZIP</a> ({})', url, _size(job.archive))

    @admin.display(description="Task")
    def task(self, job: Job):
        if not job.task_id:
            return "—"
        result = TaskResult.objects.filter(task_id=job.task_id).values_list("pk", "status").first()
        if result is None:
            return format_html("<code>{}</code> (no result recorded yet)", job.task_id)
        url = reverse("admin:django_celery_results_taskresult_change", args=[result[0]])
        return format_html('<a href="{}"><code>{}</code></a> ({})', url, job.task_id, result[1])

    # --- actions, through the same services as the operator console ----------------------

    @admin.action(description="Retry selected failed or cancelled jobs", permissions=["change"])
    def retry_selected(self, request, queryset):
        changed = services.retry_jobs(jobs=queryset, actor=Actor.of(request), details=ADMIN_ACTION)
        self._report(
            request,
            changed,
            "queued again",
            "only failed or cancelled jobs are retried, and not those that failed on their input",
        )

    @admin.action(description="Cancel selected queued or running jobs", permissions=["change"])
    def cancel_selected(self, request, queryset):
        changed = services.cancel_jobs(jobs=queryset, actor=Actor.of(request), details=ADMIN_ACTION)
        self._report(request, changed, "cancelled", "only queued or running jobs are cancelled")

    @admin.action(description="Delete selected jobs and their files", permissions=["delete"])
    def delete_selected(self, request, queryset):
        # Django's own action (confirmation page included), under the name its confirmation
        # form posts back; jobs.signals removes each deleted job's files once it commits.
        return django_delete_selected(self, request, queryset)

    def _report(self, request, changed: int, done: str, rule: str) -> None:
        if changed:
            self.message_user(request, f"{changed} job{pluralize(changed)} {done}.")
        else:
            self.message_user(request, f"No job changed: {rule}.", level="warning")


def _size(file) -> str:
    try:
        return byte_size(file.size)
    except OSError:
        return "file missing"


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are made here (the secret is shown once, on the page after Save) and revoked by
    the action; nothing else about a token changes."""

    list_display = ["prefix", "name", "user", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    list_select_related = ["user"]
    autocomplete_fields = ["user"]  # a search: a select of every user would not scale
    search_fields = ["=prefix", "=user__username"]
    actions = ["revoke_selected"]
    readonly_fields = ["user", "name", "prefix", "created_at", "last_used_at", "revoked_at"]

    def get_fields(self, request, obj=None):
        if obj is not None:
            return self.readonly_fields
        # A token acts as its user: only a superuser makes one for somebody else.
        return ["user", "name"] if request.user.is_superuser else ["name"]

    def get_queryset(self, request):
        tokens_shown = super().get_queryset(request)
        return tokens_shown if request.user.is_superuser else tokens_shown.filter(user=request.user)

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None and super().has_change_permission(request)  # the action only

    def save_model(self, request, obj, form, change) -> None:
        if not request.user.is_superuser:
            obj.user = request.user
        # Kept on this instance only for response_add, which shows it once; never stored.
        obj.plain_token = tokens.issue_api_token(token=obj)

    def response_add(self, request, obj, post_url_continue=None):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "API token created",
            "token": obj,
            "plain": obj.plain_token,
        }
        # Admin's views are never_cache: "no-store" keeps the secret out of any cache.
        return TemplateResponse(request, "admin/jobs/apitoken/created.html", context)

    @admin.action(description="Revoke selected API tokens", permissions=["change"])
    def revoke_selected(self, request, queryset):
        revoked = tokens.revoke_api_tokens(tokens=queryset, actor=Actor.of(request))
        self.message_user(request, f"{revoked} token{pluralize(revoked)} revoked.")


# --- django-celery-results ------------------------------------------------------------------

JOB_ID_IN_ARGS = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

admin.site.unregister(TaskResult)


class TaskStateFilter(admin.SimpleListFilter):
    """Celery's task states as fixed choices: TaskResult.status has no choices, so a plain
    "status" filter would list SELECT DISTINCT status, a scan of every result."""

    title = "task state"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [(state, state) for state in sorted(states.ALL_STATES)]

    def queryset(self, request, queryset):
        return queryset.filter(status=self.value()) if self.value() else queryset


@admin.register(TaskResult)
class TaskResultAdmin(CeleryTaskResultAdmin):
    """Task results are a record of what Celery did: operators read them, nobody edits them.

    The stock admin's date hierarchy, filters listing every task name and worker, and icontains
    search over every column each scan the table; here the list is newest first on the
    date_done index, counted up to a cap, and searched by exact task id (a unique index)."""

    date_hierarchy = None
    list_display = ["task_id", "task_name", "task_args", "status", "worker", "date_done"]
    list_filter = [TaskStateFilter, "date_done"]
    sortable_by = []
    paginator = CappedPaginator
    list_per_page = 50
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    search_fields = ["=task_id"]
    search_help_text = "An exact task id."
    fieldsets = [
        (
            None,
            {"fields": ["task_id", "job", "task_name", "periodic_task_name", "status", "worker"]},
        ),
        ("Parameters", {"fields": ["task_args", "task_kwargs"]}),
        ("Result", {"fields": ["result", "date_created", "date_started", "date_done"]}),
        ("Traceback", {"fields": ["traceback", "meta"]}),
    ]
    readonly_fields = [name for _, options in fieldsets for name in options["fields"]]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # Results expire by themselves (CELERY_RESULT_EXPIRES); removing one early is rare.
        return request.user.is_superuser

    def get_search_results(self, request, queryset, search_term):
        # The stock "=task_id" is iexact: UPPER() or LIKE, which no index answers.
        term = search_term.strip()
        return (queryset.filter(task_id=term) if term else queryset), False

    @admin.display(description="Job")
    def job(self, result: TaskResult):
        job = Job.objects.filter(task_id=result.task_id).values_list("pk", "source_name").first()
        note = ""
        if job is None and result.task_name == "jobs.run_job":
            # A job retried since runs under a new task id; this one's argument is its id.
            found = JOB_ID_IN_ARGS.search(result.task_args or "")
            if found:
                job = Job.objects.filter(pk=found[0]).values_list("pk", "source_name").first()
                note = " (an earlier attempt)"
        if job is None:
            return "—"
        url = reverse("admin:jobs_job_change", args=[job[0]])
        return format_html(
            '<a href="{}"><code>{}</code> {}</a>{}', url, job[0].hex[:8], job[1], note
        )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records only the code writes: nobody adds, changes or deletes one, superusers included."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """The audit log."""

    list_display = ["at", "actor_name", "action", "summary", "jobs", "reason", "address"]
    list_filter = ["action"]
    search_fields = ["=actor_name"]
    show_full_result_count = False


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    """Rules an admin edits; their state is jobs.alerts' to write (changes are audited)."""

    list_display = ["name", "condition", "threshold", "enabled", "firing_since", "summary"]
    list_filter = ["enabled", "condition"]
    readonly_fields = ["firing_since", "pending_since", "last_notified_at", "last_evaluated_at",
                       "summary"]  # fmt: skip


@admin.register(AlertReceiver)
class AlertReceiverAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "target", "enabled"]


class AlertDeliveryInline(admin.TabularInline):
    model = AlertDelivery
    fields = ["receiver_name", "kind", "target", "status", "attempts", "error", "sent_at"]
    readonly_fields = fields
    can_delete = False
    extra = 0

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AlertEvent)
class AlertEventAdmin(ReadOnlyAdmin):
    """The alert history, read-only."""

    list_display = ["at", "rule_name", "state", "summary", "notified"]
    list_filter = ["state"]
    inlines = [AlertDeliveryInline]
    show_full_result_count = False
