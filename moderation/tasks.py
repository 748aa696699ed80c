"""The moderation tasks and their inline fallback. Thin: load by id, call a service.

- ``moderate_batch_task`` ("moderation.moderate_batch"): the full check of
  many comments, the review buffer's flush (``moderation.hooks``) or the
  sweep's (``moderation.reviewsweep``); marks the ids it decided checked.
- ``moderate_task`` ("moderation.moderate"): one comment; kept for messages
  queued by processes from before the batch task.
- ``moderate_fallback`` / ``moderate_fallback_each``: the send-time filter
  again, inline, when a task could not be queued (broker down).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError, OperationalError

from danmaku.models import Danmaku
from danmaku.store import StoreUnavailable, redis_store
from moderation import reviews, services

logger = logging.getLogger(__name__)

# The full check takes milliseconds; the soft limit leaves room for a slow
# database, and past it the fast filter still gets applied. A batch has the
# same limits, so it holds few enough comments to fit them many times over.
MODERATE_SOFT_LIMIT_SECONDS = 10
MODERATE_HARD_LIMIT_SECONDS = 15
# The most comments one batch task is given. A batch is decided one comment
# after another on one worker, each comment waiting for those before it.
# Its earlier comments are read once for the whole batch (moderation.recent),
# so with a room taking 1,000 comments a second, batches of up to 250 took
# p50 60 ms, p99 141-283 ms, max 375 ms on this 2-core machine under the
# send benchmark (bench/send.py): far inside the soft limit and a `pre`
# room's deadline (5 s). Waiting (`pre`) comments go first in a batch.
MODERATE_BATCH_SIZE = 250


# Both moderation tasks' options.
TASK_OPTIONS = dict(
    acks_late=True,
    # A worker killed mid-task puts the message back for another worker.
    # Safe: deciding twice is harmless (every effect is a conditional
    # update, its audit row written only when it changed).
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


@shared_task(name="moderation.moderate", **TASK_OPTIONS)
def moderate_task(danmaku_id: int) -> None:
    try:
        services.moderate_full(danmaku_id=danmaku_id)
    except SoftTimeLimitExceeded:
        logger.warning("moderation of danmaku %s ran out of time; applying the fast filter only", danmaku_id)
        services.moderate_fast(danmaku_id=danmaku_id)
        return
    reviews.mark_checked(danmaku_ids=[danmaku_id])


@shared_task(name="moderation.moderate_batch", **TASK_OPTIONS)
def moderate_batch_task(danmaku_ids: list[int]) -> None:
    """The full check of each comment not checked yet, then one UPDATE marking them checked.

    Comments already checked are skipped, so a batch handed over twice (by
    the sweep, by a redelivery) costs one query the second time. The
    database going away fails the whole batch, retried with backoff; any
    other error on one comment is logged and the others go on.
    """
    pending = reviews.unchecked(danmaku_ids=danmaku_ids)
    decided, left = _decide(pending)
    reviews.mark_checked(danmaku_ids=decided, on_stream=_on_stream(decided, {d.pk: d for d in pending}))
    if left:
        # Out of time: the fast filter for the rest, as for one comment.
        # They stay unchecked, so the sweep brings them back for the full check.
        logger.warning("moderation batch ran out of time; %d comments get the fast filter only", len(left))
        for danmaku_id in left:
            services.moderate_fast(danmaku_id=danmaku_id)


def _on_stream(danmaku_ids: list[int], loaded: dict[int, Danmaku]) -> set[int]:
    """Of these, the comments whose row does not say yet that they are on
    their room's stream, though they are (one round trip): their mark goes
    in the batch's one UPDATE, and the send process's own mark a moment
    later (``danmaku.publishing.stream_marks``) then finds nothing to
    change. Each UPDATE of a row writes it again with every index entry."""
    store = redis_store()
    unmarked = [(loaded[pk].room_id, pk) for pk in danmaku_ids if pk in loaded and not loaded[pk].in_stream]
    if store is None or not unmarked:
        return set()
    try:
        return store.published_ids(unmarked)
    except StoreUnavailable:
        return set()  # the send process, or the sweep, marks them


def _decide(pending: Sequence[Danmaku]) -> tuple[list[int], list[int]]:
    """The full check of each comment; returns (ids decided, ids left when
    time ran out).

    The earlier comments their repeat and flood rules count are read once
    for the batch (``services.recent_comments``)."""
    decided: list[int] = []
    try:
        recent = services.recent_comments(pending)
    except SoftTimeLimitExceeded:
        return decided, [danmaku.pk for danmaku in pending]
    for position, danmaku in enumerate(pending):
        try:
            services.moderate_full(danmaku_id=danmaku.pk, danmaku=danmaku, recent=recent)
        except SoftTimeLimitExceeded:
            return decided, [left.pk for left in pending[position:]]
        except OperationalError:
            raise
        except DatabaseError as exc:
            # Its effect and audit row rolled back together: left unchecked
            # for the sweep to bring back.
            logger.warning("moderation of danmaku %s not applied, database error: %s", danmaku.pk, exc)
            continue
        except Exception:
            # A fault in the check itself would fail the same way again:
            # marked checked like the rest, so no sweep repeats it.
            logger.exception("moderation of danmaku %s failed; the send-time filter's verdict stands", danmaku.pk)
        decided.append(danmaku.pk)
    return decided, []


def moderate_fallback(danmaku_id: int) -> None:
    """What runs inline when ``moderate_task`` cannot be queued (broker down):
    the send-time filter again, since the terms may have changed.

    Never raises for a database error: the comment was already accepted.
    """
    try:
        services.moderate_fast(danmaku_id=danmaku_id)
    except DatabaseError as exc:
        logger.warning("fallback moderation of danmaku %s skipped, database unavailable: %s", danmaku_id, exc)


def moderate_fallback_each(danmaku_ids: Sequence[int]) -> None:
    """``moderate_fallback`` for each of a batch the broker did not take."""
    for danmaku_id in danmaku_ids:
        moderate_fallback(danmaku_id)
