"""The Celery app. Without CELERY_BROKER_URL tasks run inline (eager)."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "danmaku_site.settings")

app = Celery("danmaku")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _database_connections_as_django_keeps_them(sender=None, **kwargs) -> None:
    """Around each task, a worker's database connection is kept or dropped
    by Django's own rules (CONN_MAX_AGE; unusable after an error), as a web
    thread's is around each request. Celery's Django fixup would close it
    every time (settings.CELERY_DB_REUSE_MAX). Not for a task run inline:
    its caller's connection, maybe inside a transaction, is not the task's."""
    if sender is not None and not getattr(sender.request, "is_eager", False):
        close_old_connections()
