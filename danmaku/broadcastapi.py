"""``GET /api/v1/rooms/{room}/broadcasts``: a room's broadcasts, served by
send and all nodes (they have the database; pull nodes read none)."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Schema

from danmaku.broadcasts import room_broadcasts
from danmaku.schemas import ErrorOut


class BroadcastOut(Schema):
    id: int
    started_at_ms: int
    # None while the broadcast is live.
    ended_at_ms: int | None
    recording_url: str
    offset_ms: int
    comment_count: int


router = Router(tags=["broadcasts"])


@router.get(
    "/rooms/{room}/broadcasts",
    response={200: list[BroadcastOut], 404: ErrorOut},
    operation_id="list_broadcasts",
    summary="A room's broadcasts, newest first (at most 100), with their published comments' count",
)
def list_broadcasts(request: HttpRequest, room: str):
    return [
        BroadcastOut(
            id=row.broadcast.pk,
            started_at_ms=row.broadcast.started_at_ms,
            ended_at_ms=row.broadcast.ended_at_ms,
            recording_url=row.broadcast.recording_url,
            offset_ms=row.broadcast.offset_ms,
            comment_count=row.comment_count,
        )
        for row in room_broadcasts(slug=room)
    ]
