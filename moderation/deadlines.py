"""Pre-moderation deadlines: a comment whose verdict is late gets its room's fallback.

In a ``pre`` room a comment waits, shown to its sender only, for the full
check's verdict. When none arrives within the room's ``pre_deadline_ms`` (a
slow or stopped Celery worker, a broker outage that lost the task), the
room's fallback decides: ``allow`` publishes it, ``deny`` hides it; either
is logged and audited. The sweep runs as a background job in every process
that accepts sends (roles ``send`` and ``all``, every second, registered by
``ModerationConfig.ready``), so it works with every Celery worker down and
on a node nobody sends to. Releasing and denying act only on comments still
waiting, so processes sweeping at once decide each comment once.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError, transaction

from danmaku.models import Danmaku, Room
from danmaku.publishing import danmaku_deny, danmaku_release
from infra import clock, jobs
from infra.ratelimitlog import RateLimitedLog
from moderation.audit import audit_record

logger = logging.getLogger(__name__)
postponed_log = RateLimitedLog(logger, every_seconds=10)

# Comments one run looks at.
PRE_SWEEP_BATCH = 500
# A comment's fallback comes at most this much after its deadline.
SWEEP_INTERVAL_SECONDS = 1.0


def pre_deadline_sweep(*, now_ms: int | None = None) -> int:
    """Apply each pre-moderated room's fallback to comments whose verdict is late; returns how many."""
    now_ms = clock.now_ms() if now_ms is None else now_ms
    waiting = Danmaku.objects.filter(status=Danmaku.Status.SENDER_ONLY).values_list(
        "id", "ts_ms", "room__pre_deadline_ms", "room__pre_fallback"
    )[:PRE_SWEEP_BATCH]
    applied = 0
    for danmaku_id, ts_ms, deadline_ms, fallback in waiting:
        if ts_ms + deadline_ms > now_ms:
            continue
        reason = f"no moderation verdict within {deadline_ms} ms: fallback {fallback}"
        # The effect and its audit row in one transaction: if the row cannot
        # be written nothing changed (a release publishes only on commit),
        # and the next run decides the comment again.
        with transaction.atomic():
            if fallback == Room.Fallback.ALLOW:
                done = danmaku_release(danmaku_id=danmaku_id, reason=reason)
            else:
                done = danmaku_deny(danmaku_id=danmaku_id, reason=reason)
            if done:
                audit_record(
                    actor=None,
                    action=f"pre.fallback_{fallback}",
                    target_type="danmaku",
                    target_id=danmaku_id,
                    reason=reason,
                )
        if done:
            applied += 1
            logger.warning("danmaku %s: %s", danmaku_id, reason)
    return applied


def apply_pre_deadlines() -> None:
    """The background job: the sweep, postponed while the database is down."""
    try:
        pre_deadline_sweep()
    except DatabaseError as exc:
        postponed_log.warning("pre-moderation deadlines postponed: %s", exc)


def register() -> None:
    jobs.register(
        "moderation.pre_deadlines",
        every_seconds=SWEEP_INTERVAL_SECONDS,
        run=apply_pre_deadlines,
        roles=("send", "all"),
    )
