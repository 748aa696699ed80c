"""Celery tasks of the danmaku app: thin, JSON arguments (ids), idempotent.

Start them through ``infra.taskqueue.enqueue`` / ``enqueue_on_commit``.
"""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

# The task and the one service it calls import each other (danmaku.profiles
# starts this task), as modules so either may load first; the import
# contracts allow this pair and no other circle.
from danmaku import profiles


# Only a database that is briefly away is worth another try; a bad avatar is
# handled (default avatar, a warning) inside the service.
@shared_task(
    name="danmaku.fetch_avatar",
    autoretry_for=(OperationalError,),
    max_retries=3,
    retry_backoff=2,
    retry_jitter=True,
)
def fetch_avatar_task(profile_id: int) -> None:
    profiles.profile_avatar_fetch(profile_id=profile_id)
