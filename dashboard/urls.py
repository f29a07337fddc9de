from django.urls import path

from dashboard.views import owner

app_name = "dashboard"
urlpatterns = [
    path("", owner.upload, name="upload"),
    path("jobs/<uuid:job_id>/", owner.job_page, name="job"),
    path("jobs/<uuid:job_id>/panel", owner.job_panel, name="job_panel"),
    path("jobs/<uuid:job_id>/status.json", owner.job_status, name="job_status"),
    path("jobs/<uuid:job_id>/download", owner.download, name="download"),
    path("jobs/<uuid:job_id>/thumbnails/<str:name>", owner.thumbnail, name="thumbnail"),
]
