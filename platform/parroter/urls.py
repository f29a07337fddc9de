from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path

from dashboard.views import account, flower
from jobs import api
from parroter import health, metrics

urlpatterns = [
    path("healthz", health.liveness, name="healthz"),
    path("readyz", health.readiness, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    # Django's auth views less password reset: it is open to anyone and sends mail, and this
    # site sends none (admins set passwords: `manage.py changepassword`, or the admin).
    path("accounts/login/", account.SignInView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # In the app's look (admin's registration/ templates would win by app order).
    path(
        "accounts/password_change/",
        auth_views.PasswordChangeView.as_view(template_name="dashboard/password_change_form.html"),
        name="password_change",
    ),
    path(
        "accounts/password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(
            template_name="dashboard/password_change_done.html"
        ),
        name="password_change_done",
    ),
    path("admin/", admin.site.urls),
    # The JSON API: its own authentication (token or session) and JSON errors (jobs/api.py).
    path("api/", api.urls()),
    # Flower, staff only: proxied here, or by nginx after asking flower-auth (deploy/README.md).
    re_path(r"^flower/(?P<path>.*)$", flower.FlowerProxyView.as_view(), name="flower"),
    path("flower-auth", flower.auth_request, name="flower_auth"),
    path("", include("dashboard.urls")),
]
