# Importing the Celery app here makes `celery -A parroter` and @shared_task find it.
from parroter.celery_app import app as celery_app

__all__ = ["celery_app"]
