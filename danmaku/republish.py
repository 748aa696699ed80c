"""Publishing to Redis what the database holds and Redis does not.

Sends and moderation actions always write the database first; a comment
(or a retraction) whose publish to Redis failed stays ``in_stream=False``
(``retraction_in_stream=False``). Room settings are published when staff
save a room, and that publish can fail too. Two background jobs catch up
(``danmaku.sweeps``, every few seconds while Redis answers):

- ``held_back``: comments and retractions, with their original timestamps,
  and the restores of the last two minutes (idempotent, so without a flag);
- ``RoomSettingsSweep``: room settings saved since its previous run, those a
  reader found missing from Redis, and a rolling slice of the active rooms.

Publishing is idempotent in Redis itself (the store remembers published ids
and stores a settings blob only when it differs), so a publish whose reply
was lost, or two processes sweeping at once, still add each comment once.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime

from django.db import DatabaseError
from django.db.models import Q
from django.utils import timezone

from danmaku.identity import display_identity
from danmaku.models import Danmaku, Room
from danmaku.publishing import mark_published
from danmaku.store import ROOM_FIELDS, SETTINGS_SAVE_SKEW, RedisStore, StoreUnavailable
from infra.metrics import REPUBLISHED

logger = logging.getLogger(__name__)

# Rows accepted longer ago than this are not pushed to the live streams any
# more: nobody is watching that moment (they stay in the durable record).
HORIZON_MS = 60 * 60 * 1000
# Leave fresh rows to the send that is publishing them right now, and most
# to its process's marks (publishing.STREAM_MARKS_SECONDS); a row the sweep
# reaches first it finds on its stream and only marks.
GRACE_MS = 2000
BATCH = 500
# Restores are published again for this long (two pull windows): after it
# the comment has left every screen's window anyway.
RESTORE_REPUBLISH_MS = 2 * 60 * 1000
# Every active room's settings are compared with Redis's once per this many
# runs (a slice each time), not all of them every run: with 10,000 active
# rooms that alone cost a core-third.
ROLLING_REPUBLISH_SWEEPS = 30


def held_back(store: RedisStore, *, now_ms: int | None = None) -> int:
    """Publish held-back comments and retractions; returns comments published."""
    now_ms = store.now_ms() if now_ms is None else now_ms
    published = comments(store, now_ms=now_ms)
    retractions(store, now_ms=now_ms)
    restores(store, now_ms=now_ms)
    return published


def rooms(store: RedisStore, *, room_ids: Collection[int], updated_since: datetime | None) -> int:
    """Publish these rooms' settings; returns how many changed in Redis."""
    wanted = Q(id__in=list(room_ids)) if room_ids else Q(pk__in=[])
    if updated_since is not None:
        wanted |= Q(updated_at__gte=updated_since)
    rows = list(Room.objects.filter(wanted).values(*ROOM_FIELDS))
    return store.publish_rooms(rows) if rows else 0


def comments(store: RedisStore, *, now_ms: int) -> int:
    """Publish the comments Redis lacks and mark those it has; returns how many it published.

    A send publishes its comment and marks the row a moment later
    (``publishing.stream_marks``); a row found here already on its stream
    was published by a send that did not get to mark it (a killed process),
    and is only marked.
    """
    rows = list(
        Danmaku.objects.filter(
            in_stream=False,
            status=Danmaku.Status.PUBLISHED,
            ts_ms__gte=now_ms - HORIZON_MS,
            ts_ms__lte=now_ms - GRACE_MS,
        )
        .select_related("user", "user__viewer_profile")
        .order_by("ts_ms", "id")[:BATCH]
    )
    if not rows:
        return 0
    on_stream = store.published_ids([(danmaku.room_id, danmaku.id) for danmaku in rows])
    marks = list(on_stream)
    published = 0
    for danmaku in rows:
        if danmaku.id in on_stream:
            continue
        nick, avatar = display_identity(danmaku.user)
        store.publish(danmaku, nick=nick, avatar=avatar, original_ts=True)
        marks.append(danmaku.id)
        published += 1
    mark_published(marks)
    if published:
        REPUBLISHED.inc(published)
        logger.info("published %d comments held back while the store was unavailable", published)
    return published


def retractions(store: RedisStore, *, now_ms: int) -> int:
    rows = list(
        Danmaku.objects.filter(
            retraction_in_stream=False,
            retracted_at_ms__isnull=False,
            retracted_at_ms__gte=now_ms - HORIZON_MS,
            retracted_at_ms__lte=now_ms - GRACE_MS,
        ).values_list("id", "room_id")[:BATCH]
    )
    for danmaku_id, room_id in rows:
        store.publish_retraction(room_id=room_id, danmaku_id=danmaku_id)
    if rows:
        Danmaku.objects.filter(id__in=[danmaku_id for danmaku_id, _ in rows]).update(retraction_in_stream=True)
    return len(rows)


def restores(store: RedisStore, *, now_ms: int) -> int:
    """Publish again every restore of the last ``RESTORE_REPUBLISH_MS``.

    A restore matters only while its comment is inside the pull window, so
    there is no flag to keep: each is published again until it is that old,
    and the store adds each restore once (its id and time are the key).
    """
    rows = list(
        Danmaku.objects.select_related("user__viewer_profile")
        .filter(
            restored_at_ms__gte=now_ms - RESTORE_REPUBLISH_MS,
            restored_at_ms__lte=now_ms - GRACE_MS,
            status=Danmaku.Status.PUBLISHED,
            broadcast__isnull=True,
        )
        .order_by("restored_at_ms")[:BATCH]
    )
    for danmaku in rows:
        nick, avatar = display_identity(danmaku.user)
        store.publish_restore(danmaku, nick=nick, avatar=avatar)
    return len(rows)


class RoomSettingsSweep:
    """Keeps Redis's copy of room settings in step with the database.

    Each ``run`` publishes the rooms saved since the previous successful run
    (``updated_at``, with a margin for the savers' clocks), the rooms it was
    asked for, and a slice of the active rooms: a change Redis missed any
    other way (a queryset update that did not touch ``updated_at``) lands
    within ``ROLLING_REPUBLISH_SWEEPS`` runs; all active rooms on the first.
    Only settings that differ from Redis's are written.
    """

    def __init__(self) -> None:
        # Wall time the last successful run started; None: none yet.
        self._swept_at: datetime | None = None
        # Where the rolling slice of the active rooms is.
        self._rolling_at = 0
        # Rooms a failed run did not publish: the next run tries them again.
        self._retry: set[int] = set()

    def run(self, store: RedisStore, *, asked: Collection[int] = (), active: list[int] = ()) -> int:
        """Publish; returns how many rooms changed in Redis. Raises what the
        store or the database raised; the next run covers what this one missed."""
        started = timezone.now()
        room_ids = set(asked) | self._retry | self._slice(active)
        updated_since = None if self._swept_at is None else self._swept_at - SETTINGS_SAVE_SKEW
        try:
            changed = rooms(store, room_ids=room_ids, updated_since=updated_since)
        except (StoreUnavailable, DatabaseError):
            self._retry = room_ids
            raise
        self._retry = set()
        self._swept_at = started
        return changed

    def _slice(self, active: list[int]) -> set[int]:
        if self._swept_at is None:
            return set(active)
        share = -(-len(active) // ROLLING_REPUBLISH_SWEEPS)
        start = self._rolling_at % max(len(active), 1)
        self._rolling_at = start + share
        return set(active[start : start + share])
