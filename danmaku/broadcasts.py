"""Broadcasts: a room's live sessions, started and stopped by staff.

A broadcast owns no comments of its own: its comments are the room's
published ones whose timestamp (server clock) falls between its start and
its end, so starting one changes nothing on the send path.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, Q

from danmaku.errors import InvalidInput, NotFound
from danmaku.models import Broadcast, Danmaku, Room
from infra import clock

# The most broadcasts a listing returns, newest first.
LIST_LIMIT = 100


@dataclass(frozen=True)
class BroadcastRow:
    broadcast: Broadcast
    comment_count: int


def broadcast_start(*, room: Room) -> Broadcast:
    """Start the room's broadcast now; InvalidInput if one is live already."""
    try:
        with transaction.atomic():
            return Broadcast.objects.create(room=room, started_at_ms=clock.now_ms())
    except IntegrityError:
        raise InvalidInput(f"room {room.slug} is already broadcasting", field="room") from None


def broadcast_stop(*, room: Room, recording_url: str | None = None) -> Broadcast:
    """End the room's live broadcast now, with its recording's URL if given."""
    broadcast = Broadcast.objects.filter(room=room, ended_at_ms__isnull=True).first()
    if broadcast is None:
        raise InvalidInput(f"room {room.slug} is not broadcasting", field="room")
    broadcast.ended_at_ms = max(clock.now_ms(), broadcast.started_at_ms)
    if recording_url is not None:
        broadcast.recording_url = recording_url
    try:
        broadcast.full_clean(exclude=("room",))
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise InvalidInput(f"{field}: {messages[0]}", field=field) from None
    broadcast.save(update_fields=("ended_at_ms", "recording_url"))
    return broadcast


def room_broadcasts(*, slug: str) -> list[BroadcastRow]:
    """The room's broadcasts, newest first, each with its published comments' count."""
    room = Room.objects.filter(slug=slug).first()
    if room is None:
        raise NotFound("no such room", field="room")
    broadcasts = list(Broadcast.objects.filter(room=room)[:LIST_LIMIT])
    if not broadcasts:
        return []
    now_ms = clock.now_ms()
    spans = {
        str(b.pk): Q(ts_ms__gte=b.started_at_ms, ts_ms__lte=now_ms if b.ended_at_ms is None else b.ended_at_ms)
        for b in broadcasts
    }
    # One query reading only the broadcasts' stretches of the (room, ts)
    # index, each counted on its own (broadcasts do not overlap, but a
    # count must not depend on it).
    counts = (
        Danmaku.objects.filter(room=room, status=Danmaku.Status.PUBLISHED)
        .filter(functools.reduce(operator.or_, spans.values()))
        .aggregate(**{key: Count("pk", filter=span) for key, span in spans.items()})
    )
    return [BroadcastRow(b, counts[str(b.pk)]) for b in broadcasts]
