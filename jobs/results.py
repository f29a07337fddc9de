"""The Celery result backend (CELERY_RESULT_BACKEND): django-celery-results' database backend,
writing each task's row in one statement (jobs.models.TaskResultStore)."""

from django_celery_results.backends.database import DatabaseBackend

from jobs.models import StoredTaskResult


class ResultBackend(DatabaseBackend):
    TaskModel = StoredTaskResult
