"""The moderation task and its inline fallback. Thin: load by id, call a service."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError, OperationalError

from moderation import services

logger = logging.getLogger(__name__)

# The full check takes milliseconds; the soft limit leaves room for a slow
# database, and past it the fast filter still gets applied.
MODERATE_SOFT_LIMIT_SECONDS = 10
MODERATE_HARD_LIMIT_SECONDS = 15


@shared_task(
    name="moderation.moderate",
    acks_late=True,
    # A worker killed mid-task puts the message back for another worker.
    # Safe: deciding twice is harmless and retracting is idempotent.
    reject_on_worker_lost=True,
    ignore_result=True,
    soft_time_limit=MODERATE_SOFT_LIMIT_SECONDS,
    time_limit=MODERATE_HARD_LIMIT_SECONDS,
    # The database restarting or failing over; nothing else is retried.
    autoretry_for=(OperationalError,),
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=5,
)
def moderate_task(danmaku_id: int) -> None:
    try:
        services.moderate_full(danmaku_id=danmaku_id)
    except SoftTimeLimitExceeded:
        logger.warning("moderation of danmaku %s ran out of time; applying the fast filter only", danmaku_id)
        services.moderate_fast(danmaku_id=danmaku_id)


def moderate_fallback(danmaku_id: int) -> None:
    """What runs inline when ``moderate_task`` cannot be queued (broker down):
    the send-time filter again, since the terms may have changed.

    Never raises for a database error: the comment was already accepted.
    """
    try:
        services.moderate_fast(danmaku_id=danmaku_id)
    except DatabaseError as exc:
        logger.warning("fallback moderation of danmaku %s skipped, database unavailable: %s", danmaku_id, exc)
