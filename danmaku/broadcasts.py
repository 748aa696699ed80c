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

from danmaku import segments
from danmaku.errors import InvalidInput, NotFound
from danmaku.models import Broadcast, Danmaku, ReplaySegment, Room
from danmaku.segments import BroadcastState
from infra import clock

# The most broadcasts a listing returns, newest first.
LIST_LIMIT = 100


@dataclass(frozen=True)
class BroadcastRow:
    broadcast: Broadcast
    comment_count: int
    # Its replay segments' versions.
    state: BroadcastState


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
    """The room's broadcasts, newest first, each with its published comments'
    count and its segments' versions (four queries however many)."""
    room = Room.objects.filter(slug=slug).first()
    if room is None:
        raise NotFound("no such room", field="room")
    return _rows(room, list(Broadcast.objects.filter(room=room)[:LIST_LIMIT]))


def broadcast_row(broadcast_id: int) -> BroadcastRow:
    broadcast = Broadcast.objects.select_related("room").filter(pk=broadcast_id).first()
    if broadcast is None:
        raise NotFound("no such broadcast", field="broadcast_id")
    return _rows(broadcast.room, [broadcast])[0]


def broadcast_update(*, broadcast: Broadcast, offset_ms: int | None = None, recording_url: str | None = None) -> None:
    """Save a new offset or recording URL; a new offset gives every replay
    segment a new version, in the same transaction."""
    fields = []
    if offset_ms is not None and offset_ms != Broadcast.objects.get(pk=broadcast.pk).offset_ms:
        broadcast.offset_ms = offset_ms
        fields.append("offset_ms")
    if recording_url is not None:
        broadcast.recording_url = recording_url
        fields.append("recording_url")
    try:
        broadcast.full_clean(exclude=("room",))
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise InvalidInput(f"{field}: {messages[0]}", field=field) from None
    with transaction.atomic():
        broadcast.save(update_fields=fields)
        if "offset_ms" in fields:
            segments.offset_changed(broadcast.pk)


def _rows(room: Room, broadcasts: list[Broadcast]) -> list[BroadcastRow]:
    if not broadcasts:
        return []
    now_ms = clock.now_ms()
    spans = {
        str(b.pk): Q(
            ts_ms__gte=b.started_at_ms,
            ts_ms__lte=now_ms if b.ended_at_ms is None else b.ended_at_ms,
            broadcast__isnull=True,
        )
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
    written: dict[int, dict[int, int]] = {b.pk: {} for b in broadcasts}
    for broadcast_id, index, version in ReplaySegment.objects.filter(broadcast__in=broadcasts).values_list(
        "broadcast_id", "index", "version"
    ):
        written[broadcast_id][index] = version
    for b in broadcasts:
        b.room = room
    return [BroadcastRow(b, counts[str(b.pk)], segments.state_of(b, written[b.pk], now_ms=now_ms)) for b in broadcasts]
