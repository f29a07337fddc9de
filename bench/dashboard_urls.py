"""URLconf for bench/dashboard.py only: the project's URLs plus django-celery-results' stock
TaskResult admin on an AdminSite of its own (the baseline), because the project registers its
own TaskResult admin on the main site."""

from django.contrib import admin
from django.urls import path
from django_celery_results.admin import TaskResultAdmin
from django_celery_results.models import TaskResult

from parroter.urls import urlpatterns as project_urlpatterns

stock_site = admin.AdminSite(name="stock_admin")
stock_site.register(TaskResult, TaskResultAdmin)

STOCK_ADMIN_PREFIX = "bench-stock-admin/"

urlpatterns = [path(STOCK_ADMIN_PREFIX, stock_site.urls), *project_urlpatterns]
