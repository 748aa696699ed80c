"""Publishing what the database accepted while Redis could not take it.

Sends always write the database first; a comment (or a retraction) whose
publish to Redis failed stays marked ``in_stream=False``. The refresher runs
``sweep`` every few seconds while Redis is up. Publishing is idempotent in
Redis itself (the store remembers published ids), so a publish whose reply
was lost, or two processes sweeping at once, still add each comment once.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime

from django.db.models import Q

from danmaku.models import Danmaku, Room
from danmaku.store import ROOM_FIELDS, RedisStore, avatar_url
from danmaku_site.metrics import REPUBLISHED

logger = logging.getLogger(__name__)

# Rows accepted longer ago than this are not pushed to the live streams any
# more: nobody is watching that moment (they stay in the durable record).
HORIZON_MS = 60 * 60 * 1000
# Leave fresh rows to the send that is publishing them right now.
GRACE_MS = 1000
BATCH = 500


def sweep(
    store: RedisStore,
    *,
    room_ids: Collection[int] = (),
    updated_since: datetime | None = None,
    now_ms: int | None = None,
) -> int:
    """Publish held-back comments, retractions and room settings; returns comments published.

    Settings go out for ``room_ids`` and for every room saved since
    ``updated_since``; Redis keeps only the ones that differ from what it holds.
    """
    now_ms = store.now_ms() if now_ms is None else now_ms
    published = comments(store, now_ms=now_ms)
    retractions(store, now_ms=now_ms)
    rooms(store, room_ids=room_ids, updated_since=updated_since)
    return published


def rooms(store: RedisStore, *, room_ids: Collection[int], updated_since: datetime | None) -> int:
    """Publish these rooms' settings; returns how many changed in Redis."""
    wanted = Q(id__in=list(room_ids)) if room_ids else Q(pk__in=[])
    if updated_since is not None:
        wanted |= Q(updated_at__gte=updated_since)
    rows = list(Room.objects.filter(wanted).values(*ROOM_FIELDS))
    return store.publish_rooms(rows) if rows else 0


def comments(store: RedisStore, *, now_ms: int) -> int:
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
    done = []
    for danmaku in rows:
        nick, avatar = display_identity(danmaku.user)
        store.publish(danmaku, nick=nick, avatar=avatar, original_ts=True)
        done.append(danmaku.id)
    if done:
        Danmaku.objects.filter(id__in=done).update(in_stream=True)
        REPUBLISHED.inc(len(done))
        logger.info("published %d comments held back while the store was unavailable", len(done))
    return len(done)


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


def display_identity(user) -> tuple[str, str]:
    """(nickname, avatar URL) as viewers see them."""
    profile = getattr(user, "viewer_profile", None)
    nick = (profile.nickname if profile else "") or user.username
    thumb = getattr(profile, "avatar_thumb", None) if profile else None
    return nick, avatar_url(thumb.name if thumb else None)
