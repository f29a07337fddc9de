from django.urls import path

from dashboard import views

app_name = "dashboard"
urlpatterns = [
    path("", views.upload, name="upload"),
    path("jobs/<uuid:job_id>/", views.job_page, name="job"),
    path("jobs/<uuid:job_id>/panel", views.job_panel, name="job_panel"),
    path("jobs/<uuid:job_id>/status.json", views.job_status, name="job_status"),
    path("jobs/<uuid:job_id>/download", views.download, name="download"),
    path("jobs/<uuid:job_id>/thumbnails/<str:name>", views.thumbnail, name="thumbnail"),
]
