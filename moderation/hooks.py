"""What moderation hands down to the danmaku app's send path and pages.

``install`` is called once, by ``ModerationConfig.ready``: the only place
the danmaku app learns what moderation does (see ``danmaku.hooks``).

``review(danmaku_id)`` starts the full check of a stored comment:

- No broker (the embedded default, and the tests: Celery eager): the
  check runs here and now, in the request, as it always did.
- A broker configured (``CELERY_BROKER_URL``): the id waits in this
  process's review buffer (``moderation.reviewbuffer``) and goes to the
  workers with up to ``REVIEW_BATCH_SIZE - 1`` others in one
  ``moderation.moderate_batch`` task, within ``REVIEW_INTERVAL_S``. When the
  broker does not take a batch, the fast filter runs for each of its
  comments on the flusher thread (``moderate_fallback``), as it ran in the
  request before. A full buffer leaves the comment to the sweep
  (``moderation.reviewsweep``).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import close_old_connections

from danmaku import hooks
from infra.metrics import FALLBACKS
from infra.ratelimitlog import RateLimitedLog
from infra.taskqueue import enqueue
from moderation.normalize import duplicate_key
from moderation.reviewbuffer import PerProcess, ReviewBuffer
from moderation.selectors import sender_block_reason, user_is_moderator
from moderation.services import filter_fast
from moderation.tasks import MODERATE_BATCH_SIZE, moderate_batch_task, moderate_fallback_each

logger = logging.getLogger(__name__)
overflow_log = RateLimitedLog(logger, every_seconds=10)

# A comment waits at most this long for its batch. Most of a batch's cost
# is per batch, not per comment: the task's own handling in Celery, and the
# queries that read the room's last 1,000 rows whatever the batch's size.
# At 0.25 s and 50 a batch, two send processes at 500 sends/s each
# published 20 batches a second and the worker spent 0.32-0.34 ms a
# comment; at 0.5 s and 250, 4 batches and 0.18-0.23 ms (bench/send.py,
# alternated in one sitting; docs/measurements.md).
REVIEW_INTERVAL_S = 0.5
# A comment nobody sees before its verdict (a `pre` room's) waits at most
# this long: its batch goes early, the others in it with it.
REVIEW_URGENT_INTERVAL_S = 0.1
# Comments per task, at most (why 250: moderation.tasks.MODERATE_BATCH_SIZE).
REVIEW_BATCH_SIZE = MODERATE_BATCH_SIZE
# Comments one process keeps waiting, at most (~1 s of a busy process's
# sends; 40 batches). More only pile up when flushes fail slowly (a frozen
# broker costs each flush DANMAKU_PUBLISH_DEADLINE_MS plus the fallback for
# each comment); the rest get the sweep instead.
REVIEW_MAX_PENDING = 2_000


def review(danmaku_id: int, *, awaiting_verdict: bool = False) -> None:
    """Start the full rule set on a stored comment; never raises to the send.
    ``awaiting_verdict``: nobody sees it before the verdict (a `pre` room's)."""
    if moderate_batch_task.app.conf.task_always_eager or not settings.CELERY_BROKER_URL:
        # Inline without a broker; with one the settings do not name (tests
        # pointing the app at their own), one publish per comment.
        publish_review([danmaku_id])
        return
    if not review_buffer.get().add(danmaku_id, urgent=awaiting_verdict):
        # Its row stays unchecked: the sweep hands it over once the broker
        # keeps up again. The send-time filter already ran on it.
        FALLBACKS.labels(dependency="broker", where="moderation.review_buffer").inc()
        overflow_log.warning("review buffer full (%d comments waiting): comments left to the sweep", REVIEW_MAX_PENDING)


def publish_review(danmaku_ids: list[int]) -> None:
    """One batch task for ``danmaku_ids``; the broker down: the fast filter for each, here."""
    enqueue(moderate_batch_task, danmaku_ids, fallback=lambda: moderate_fallback_each(danmaku_ids))


def _flush_batch(danmaku_ids: list[int]) -> None:
    # On the flusher thread: a fallback used its own database connection.
    try:
        publish_review(danmaku_ids)
    finally:
        close_old_connections()


review_buffer = PerProcess(
    lambda: ReviewBuffer(
        _flush_batch,
        batch_size=REVIEW_BATCH_SIZE,
        interval_s=REVIEW_INTERVAL_S,
        urgent_interval_s=REVIEW_URGENT_INTERVAL_S,
        max_pending=REVIEW_MAX_PENDING,
    )
)


def install() -> None:
    hooks.install(
        hooks.ModerationHooks(
            sender_block_reason=sender_block_reason,
            screen=filter_fast,
            review=review,
            is_moderator=lambda user: user_is_moderator(user=user),
            merge_key=duplicate_key,
        )
    )
