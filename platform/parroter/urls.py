from django.contrib import admin
from django.urls import include, path, re_path

from dashboard.views import flower
from parroter import health

urlpatterns = [
    path("healthz", health.liveness, name="healthz"),
    path("readyz", health.readiness, name="readyz"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    # Flower, staff only: proxied here, or by nginx after asking flower-auth (deploy/README.md).
    re_path(r"^flower/(?P<path>.*)$", flower.FlowerProxyView.as_view(), name="flower"),
    path("flower-auth", flower.auth_request, name="flower_auth"),
    path("", include("dashboard.urls")),
]
