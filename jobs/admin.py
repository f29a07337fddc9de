from django.contrib import admin

from jobs.models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "source_name",
        "owner",
        "kind",
        "status",
        "progress",
        "attempts",
        "created_at",
    ]
    list_filter = ["status", "kind", "created_at"]
    search_fields = ["=id", "source_name", "owner__username", "=task_id", "error"]
    list_select_related = ["owner"]
    date_hierarchy = "created_at"
    show_full_result_count = False  # COUNT(*) over millions of rows on every page is slow
    readonly_fields = [
        "id",
        "owner",
        "kind",
        "status",
        "progress",
        "params",
        "source",
        "source_name",
        "archive",
        "result",
        "error",
        "task_id",
        "attempts",
        "created_at",
        "started_at",
        "finished_at",
        "updated_at",
    ]

    def has_add_permission(self, request):
        return False  # jobs are created by uploading, where input is validated
