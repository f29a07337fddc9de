from django.urls import path

from dashboard.views import account, ops, owner

app_name = "dashboard"
urlpatterns = [
    path("", owner.upload, name="upload"),
    path("jobs/", owner.jobs_list, name="jobs"),
    path("jobs/<uuid:job_id>/", owner.job_page, name="job"),
    path("jobs/<uuid:job_id>/panel", owner.job_panel, name="job_panel"),
    path("jobs/<uuid:job_id>/status.json", owner.job_status, name="job_status"),
    path("jobs/<uuid:job_id>/download", owner.download, name="download"),
    path("jobs/<uuid:job_id>/retry", owner.retry, name="retry"),
    path("jobs/<uuid:job_id>/cancel", owner.cancel, name="cancel"),
    path("jobs/<uuid:job_id>/delete", owner.delete, name="delete"),
    path("jobs/<uuid:job_id>/rerun", owner.rerun, name="rerun"),
    path("jobs/<uuid:job_id>/thumbnails/<path:name>", owner.thumbnail, name="thumbnail"),
    path("accounts/settings/", account.preferences, name="preferences"),
    path("accounts/presets/<int:preset_id>/delete", account.delete_preset, name="delete_preset"),
    path("accounts/tokens/", account.api_tokens, name="tokens"),
    path("accounts/tokens/<int:token_id>/revoke", account.revoke_api_token, name="revoke_token"),
    # The operator console (staff only).
    path("ops/", ops.index, name="ops"),
    path("ops/jobs", ops.jobs_table, name="ops_jobs"),
    path("ops/stats", ops.stats, name="ops_stats"),
    path("ops/workers", ops.workers, name="ops_workers"),
    path("ops/jobs/<uuid:job_id>/", ops.job_detail, name="ops_job"),
    path("ops/jobs/<uuid:job_id>/retry", ops.retry, name="ops_retry"),
    path("ops/jobs/<uuid:job_id>/cancel", ops.cancel, name="ops_cancel"),
    path("ops/bulk/<str:action>", ops.bulk, name="ops_bulk"),
    path("ops/audit/", ops.audit, name="ops_audit"),
    path("ops/alerts/", ops.alerts, name="ops_alerts"),
    path("ops/failures/", ops.failures, name="ops_failures"),
    path("ops/failures/<str:signature>/acknowledge", ops.acknowledge, name="ops_acknowledge"),
    path("ops/queues/<str:queue>/<str:action>", ops.queue_pause, name="ops_queue"),
]
