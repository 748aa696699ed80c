"""The sweep for comments whose full check never ran.

A comment's id waits in its process's review buffer for up to ~0.5 s
(``moderation.hooks``); a process killed or recycled uncleanly in that time
loses the ids it held, and a full buffer refuses some. Their rows keep
``checked`` False, and this sweep, a background job of every process that
accepts sends (roles ``send`` and ``all``, every ``SWEEP_INTERVAL_SECONDS``,
registered by ``ModerationConfig.ready``), hands them to the batch task
again: those whose timestamp is more than ``GRACE_MS`` and at most
``HORIZON_MS`` old, at most ``SWEEP_LIMIT`` a run, oldest first.

No fallback: with the broker down the send-time filter already ran on these
comments (and the flush's fallback ran it again), so they simply wait for
the next run. Processes sweeping at once hand over the same comments; the
task skips those checked by then, and deciding one twice changes it once
(conditional updates, one audit row per change).
"""

from __future__ import annotations

import logging

from django.db import DatabaseError

from infra import clock, jobs
from infra.ratelimitlog import RateLimitedLog
from infra.taskqueue import enqueue
from moderation import reviews
from moderation.tasks import MODERATE_BATCH_SIZE, moderate_batch_task

logger = logging.getLogger(__name__)
postponed_log = RateLimitedLog(logger, every_seconds=60)

# Each process looks this often; the sweep is for the rare lost comment,
# and a minute of grace comes first anyway.
SWEEP_INTERVAL_SECONDS = 10.0
# A comment is swept only this long after its timestamp. A working queue
# checks a batch within a second of the send; a minute covers a backlog of
# that long, and the batch task's first retries after a database failover
# (2 s, 4 s, 8 s, 16 s, ...), so a batch on its way is rarely handed over
# again (and costs one query if it is). A `pre` comment lost that way has
# had its room's deadline fallback long before (pre_deadline_ms, 5 s by
# default); the sweep then gives it the full check it never had.
GRACE_MS = 60_000
# Older than this, the sweep gives up on a comment: a live comment has long
# scrolled past (the ring holds 60 s), and an outage's backlog must not be
# replayed forever. It stays unchecked, for an operator to see.
HORIZON_MS = 3_600_000
# Comments one run hands over (as batches of SWEEP_BATCH_SIZE): half a full
# review buffer (moderation.hooks.REVIEW_MAX_PENDING is 2,000), so a killed
# process's comments are all handed over within two runs, while a late queue
# gets at most 100 repeats a second per process (each a cheap skip).
SWEEP_LIMIT = 1_000
SWEEP_BATCH_SIZE = MODERATE_BATCH_SIZE


def review_sweep(*, now_ms: int | None = None) -> int:
    """Hand the overdue unchecked comments to the batch task; returns how many were handed over."""
    now_ms = clock.now_ms() if now_ms is None else now_ms
    due = reviews.unchecked_due(now_ms=now_ms, grace_ms=GRACE_MS, horizon_ms=HORIZON_MS, limit=SWEEP_LIMIT)
    handed = 0
    for start in range(0, len(due), SWEEP_BATCH_SIZE):
        batch = due[start : start + SWEEP_BATCH_SIZE]
        if not enqueue(moderate_batch_task, batch):
            break  # the broker is down: the next run tries again
        handed += len(batch)
    if handed:
        logger.warning("%d comments whose full check never ran handed to the workers", handed)
    return handed


def run_review_sweep() -> None:
    """The background job: the sweep, postponed while the database is down."""
    try:
        review_sweep()
    except DatabaseError as exc:
        postponed_log.warning("sweep for unchecked comments postponed: %s", exc)


def register() -> None:
    jobs.register(
        "moderation.review_sweep",
        every_seconds=SWEEP_INTERVAL_SECONDS,
        run=run_review_sweep,
        roles=("send", "all"),
    )
