"""A stored comment's way onto viewers' screens, and off them again.

The low-level writes of a comment's stream state, shared by the send path
and by moderation: ``publish_accepted`` (a new comment), ``danmaku_release``
(a waiting one goes out now), ``danmaku_hold`` (a waiting one waits for a
moderator), ``danmaku_deny`` (a waiting one never will), ``danmaku_retract``
(a shown one comes off every screen). Each records the
change in the database first and tells Redis only once that change has
committed (``transaction.on_commit``: at once outside a transaction), so a
caller that rolls back never changed a screen; when Redis cannot take it,
or the process dies between commit and publish, the row stays marked for
the republish sweep (``danmaku.republish``), which publishes it exactly once
when Redis is back. In the embedded default (no Redis) the table is the
store and the refreshers read it directly.
"""

from __future__ import annotations

import logging
import threading

from django.db import DatabaseError, transaction
from django.db.models import BooleanField, Case, ExpressionWrapper, Q, Value, When

from danmaku import segments
from danmaku.identity import display_identity
from danmaku.models import Danmaku
from danmaku.rooms import room_pin_clear_for
from danmaku.store import RedisStore, StoreUnavailable, redis_store
from infra import clock
from infra.metrics import FALLBACKS
from infra.ratelimitlog import RateLimitedLog

logger = logging.getLogger(__name__)
fallback_log = RateLimitedLog(logger, every_seconds=10)

# How often a process records its sends' publishes in the database.
STREAM_MARKS_SECONDS = 1.0
# Rows one UPDATE marks.
STREAM_MARKS_BATCH = 1000
# Publishes one process holds unmarked, at most: ~60 bytes each. Beyond it
# (the database down for a long time) the republish sweep marks them.
STREAM_MARKS_MAX = 100_000


def publish_accepted(stream: RedisStore, danmaku: Danmaku, user) -> None:
    """Put an accepted comment on its room's stream, or leave it for the sweep.

    The comment is already durable; if Redis cannot take it now it stays
    ``in_stream=False`` and the sweep publishes it when Redis is back.
    Meanwhile the refreshers read it from the database.
    """
    nick, avatar = display_identity(user)
    try:
        ts_ms = stream.publish(danmaku, nick=nick, avatar=avatar)
    except StoreUnavailable as exc:
        FALLBACKS.labels(dependency="redis", where="send").inc()
        fallback_log.warning("comment kept for republishing, store unavailable: %s", exc)
        return
    # Redis time decides the comment's slot; keep the record in step with it.
    Danmaku.objects.filter(pk=danmaku.pk).update(in_stream=True, ts_ms=ts_ms)
    danmaku.in_stream, danmaku.ts_ms = True, ts_ms


def publish_sent(stream: RedisStore, danmaku: Danmaku, *, nick: str, avatar: str, answer=None) -> None:
    """Put a comment the send path just stored on its room's stream, in one
    round trip with its ``answer`` (key, value) for copies of the send.

    The entry carries the row's timestamp, the Redis time the room's cap
    counted it in, so the second a comment shows in is the one it was
    counted against (a late entry shows in the first open second). The row
    says ``in_stream=False`` until ``stream_marks`` records the publish
    (within a second, one UPDATE for all of this process's sends); a
    process killed in between leaves it to the republish sweep, which finds
    it published already (the store remembers ids) and only marks it.
    """
    try:
        stream.publish(danmaku, nick=nick, avatar=avatar, original_ts=True, answer=answer)
    except StoreUnavailable as exc:
        FALLBACKS.labels(dependency="redis", where="send").inc()
        fallback_log.warning("comment kept for republishing, store unavailable: %s", exc)
        return
    stream_marks.add(danmaku.pk)
    danmaku.in_stream = True


class StreamMarks:
    """Publishes whose rows still say ``in_stream=False``, written in batches.

    ``flush`` runs as a background job every ``STREAM_MARKS_SECONDS``; the
    republish sweep leaves rows younger than its grace to it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: set[int] = set()

    def add(self, danmaku_id: int) -> None:
        with self._lock:
            if len(self._pending) < STREAM_MARKS_MAX:
                self._pending.add(danmaku_id)
            # Past the bound the sweep marks the rest: nothing is lost.

    def flush(self) -> int:
        """Mark every pending publish; returns how many. Kept for the next
        run when the database fails."""
        with self._lock:
            pending, self._pending = sorted(self._pending), set()
        try:
            for start in range(0, len(pending), STREAM_MARKS_BATCH):
                mark_published(pending[start : start + STREAM_MARKS_BATCH])
        except DatabaseError:
            with self._lock:
                self._pending.update(pending[start:])
            raise
        return len(pending)

    def discard(self) -> None:
        """Forget every pending mark, as a process that dies does (tests)."""
        with self._lock:
            self._pending = set()

    def __len__(self) -> int:
        return len(self._pending)


def mark_published(danmaku_ids: list[int]) -> int:
    """Record in one UPDATE that these comments are on their streams;
    returns how many rows changed (those the moderation batch marked
    already are not written again)."""
    if not danmaku_ids:
        return 0
    return Danmaku.objects.filter(pk__in=danmaku_ids, in_stream=False).update(in_stream=True)


stream_marks = StreamMarks()


def danmaku_release(*, danmaku_id: int, reason: str, actor=None) -> bool:
    """Publish a comment that was waiting (pre-moderation or held) now.

    It takes the current time as its timestamp, so viewers see it arrive now.
    False if it was not waiting (already published, hidden, or missing).
    """
    stream = redis_store()
    changed = Danmaku.objects.filter(
        pk=danmaku_id, status__in=(Danmaku.Status.SENDER_ONLY, Danmaku.Status.HELD)
    ).update(
        status=Danmaku.Status.PUBLISHED,
        ts_ms=clock.now_ms(),
        # A comment on a recording owes the stream nothing.
        in_stream=Case(When(broadcast__isnull=False, then=True), default=Value(stream is None)),
    )
    if not changed:
        return False
    logger.info("danmaku %s released by %s: %s", danmaku_id, actor or "system", reason)
    segments.comments_changed([danmaku_id])
    if stream is not None:
        # After commit (at once outside a transaction): a caller that rolls
        # back, e.g. when its audit row fails, must not have published it.
        transaction.on_commit(lambda: _publish_stored(stream, danmaku_id))
    return True


def _publish_stored(stream: RedisStore, danmaku_id: int) -> None:
    danmaku = Danmaku.objects.select_related("user").get(pk=danmaku_id)
    if danmaku.broadcast_id is None:
        publish_accepted(stream, danmaku, danmaku.user)


def danmaku_hold(*, danmaku_id: int, reason: str, actor=None) -> bool:
    """Put a comment waiting for its verdict in the held queue, for a
    moderator to approve or reject. False if it was not waiting."""
    changed = Danmaku.objects.filter(pk=danmaku_id, status=Danmaku.Status.SENDER_ONLY).update(
        status=Danmaku.Status.HELD
    )
    if changed:
        logger.info("danmaku %s held by %s: %s", danmaku_id, actor or "system", reason)
    return bool(changed)


def danmaku_deny(*, danmaku_id: int, reason: str, actor=None) -> bool:
    """Keep a waiting comment from ever being shown. False if it was not waiting."""
    changed = Danmaku.objects.filter(
        pk=danmaku_id, status__in=(Danmaku.Status.SENDER_ONLY, Danmaku.Status.HELD)
    ).update(status=Danmaku.Status.HIDDEN)
    if changed:
        logger.info("danmaku %s denied by %s: %s", danmaku_id, actor or "system", reason)
    return bool(changed)


def danmaku_retract(*, danmaku_id: int, reason: str, actor=None) -> bool:
    """Withdraw a comment from every viewer's screen; False if it already was.

    The database records it first; the retraction reaches the stream once
    that commits, or through the sweep once Redis is back. Either way the
    next pulls carry the id in ``deleted``.
    """
    changed = Danmaku.objects.filter(pk=danmaku_id, retracted_at_ms__isnull=True).update(
        status=Danmaku.Status.HIDDEN,
        retracted_at_ms=clock.now_ms(),
        # A comment on a recording was never on the live stream.
        retraction_in_stream=ExpressionWrapper(Q(broadcast__isnull=False), output_field=BooleanField()),
    )
    if not changed:
        return False
    logger.info("danmaku %s retracted by %s: %s", danmaku_id, actor or "system", reason)
    segments.comments_changed([danmaku_id])
    # A hidden comment stays pinned nowhere (moderation.pins); the hide's own
    # audit row covers it.
    room_pin_clear_for(danmaku_id=danmaku_id)
    stream = redis_store()
    if stream is not None:
        # After commit, as for a release: a hide whose audit row fails, or a
        # purge cut short, rolls back, and screens must keep what the
        # database still shows.
        transaction.on_commit(lambda: _publish_retraction(stream, danmaku_id))
    return True


def _publish_retraction(stream: RedisStore, danmaku_id: int) -> None:
    row = Danmaku.objects.filter(pk=danmaku_id).values_list("room_id", "broadcast_id").first()
    if row is None or row[1] is not None:
        return  # deleted since, or never on the stream: nothing to withdraw
    room_id = row[0]
    try:
        stream.publish_retraction(room_id=room_id, danmaku_id=danmaku_id)
    except StoreUnavailable as exc:
        FALLBACKS.labels(dependency="redis", where="retract").inc()
        fallback_log.warning("retraction kept for republishing, store unavailable: %s", exc)
        return
    Danmaku.objects.filter(pk=danmaku_id).update(retraction_in_stream=True)


def danmaku_restore(*, danmaku_id: int, actor=None) -> bool:
    """Publish a hidden comment again; False if it was not hidden.

    Screens that removed it get it back while it is in the window: the
    refreshers read ``restored_at_ms`` from the database, and in Redis mode
    the restore is published to the stream once this commits.
    """
    changed = Danmaku.objects.filter(pk=danmaku_id, status=Danmaku.Status.HIDDEN).update(
        status=Danmaku.Status.PUBLISHED,
        retracted_at_ms=None,
        # A later hide must reach the stream again (or be swept there).
        retraction_in_stream=False,
        restored_at_ms=clock.now_ms(),
    )
    if not changed:
        return False
    logger.info("danmaku %s restored by %s", danmaku_id, actor or "system")
    segments.comments_changed([danmaku_id])
    stream = redis_store()
    if stream is not None:
        transaction.on_commit(lambda: _publish_restore(stream, danmaku_id))
    return True


def _publish_restore(stream: RedisStore, danmaku_id: int) -> None:
    danmaku = (
        Danmaku.objects.select_related("user__viewer_profile")
        .filter(pk=danmaku_id, status=Danmaku.Status.PUBLISHED, broadcast__isnull=True)
        .first()
    )
    if danmaku is None:
        return  # hidden again or deleted since, or never on the stream
    nick, avatar = display_identity(danmaku.user)
    try:
        stream.publish_restore(danmaku, nick=nick, avatar=avatar)
    except StoreUnavailable as exc:
        # The refreshers read the database while Redis is out and for a
        # while after it is back, which covers most of this window.
        FALLBACKS.labels(dependency="redis", where="restore").inc()
        fallback_log.warning("restore not published, store unavailable: %s", exc)
