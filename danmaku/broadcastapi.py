"""Broadcasts and their replay: listings, segments, and comments sent on a
recording. Served by send and all nodes (they have the database; pull
nodes read none). See docs/replay.md."""

from __future__ import annotations

import orjson
from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Schema
from pydantic import Field

from danmaku.api import SEND_OPERATION, send_answer, serve_shared
from danmaku.broadcasts import BroadcastRow, broadcast_row, room_broadcasts
from danmaku.playerformats import bilibili_xml
from danmaku.replaycache import CURRENT, replay_cache
from danmaku.schemas import DanmakuIn, ErrorOut, PullItems
from danmaku.segments import MAX_PROGRESS_MS, SEGMENT_MS, BroadcastState
from danmaku.send import danmaku_send_on_recording


class BroadcastOut(Schema):
    id: int
    started_at_ms: int
    # None while the broadcast is live.
    ended_at_ms: int | None
    recording_url: str
    offset_ms: int
    comment_count: int = Field(description="Published comments sent while it was live.")
    segment_ms: int = Field(SEGMENT_MS, description="Playback time each replay segment covers.")
    segments: list[int] = Field(
        description="The version of each replay segment, by number: ask for segment N with `v=segments[N]`."
    )


class BroadcastDetailOut(BroadcastOut):
    room: str = Field(description="The room's slug.")


class SegmentQuery(Schema):
    segment: int = Field(ge=0, le=MAX_PROGRESS_MS // SEGMENT_MS, description="The segment's number.")
    v: int | None = Field(
        None, ge=0, description="The segment's version from the listing: the answer is then immutable."
    )


class SegmentItems(PullItems):
    progress_ms: list[int] = Field(description="Playback time from the recording's start.")


class SegmentOut(Schema):
    broadcast: int
    segment: int
    version: int
    segment_ms: int
    items: SegmentItems


class RecordingDanmakuIn(DanmakuIn):
    progress_ms: int = Field(ge=0, le=MAX_PROGRESS_MS, description="Where in the recording it plays, in ms.")


XML_CONTENT_TYPE = "application/xml; charset=utf-8"

router = Router(tags=["broadcasts"])


def _out(row: BroadcastRow, cls=BroadcastOut, **extra):
    b = row.broadcast
    return cls(
        id=b.pk,
        started_at_ms=b.started_at_ms,
        ended_at_ms=b.ended_at_ms,
        recording_url=b.recording_url,
        offset_ms=b.offset_ms,
        comment_count=row.comment_count,
        segments=list(row.state.versions),
        **extra,
    )


@router.get(
    "/rooms/{room}/broadcasts",
    response={200: list[BroadcastOut], 404: ErrorOut},
    operation_id="list_broadcasts",
    summary="A room's broadcasts, newest first (at most 100), with their segments' versions",
)
def list_broadcasts(request: HttpRequest, response: HttpResponse, room: str):
    response["Cache-Control"] = CURRENT
    return [_out(row) for row in room_broadcasts(slug=room)]


@router.get(
    "/broadcasts/{broadcast_id}",
    response={200: BroadcastDetailOut, 404: ErrorOut},
    operation_id="get_broadcast",
    summary="One broadcast, with its segments' versions",
)
def get_broadcast(request: HttpRequest, broadcast_id: int):
    # What every viewer of a replay asks first: one build a second, shared.
    return serve_shared(request, replay_cache.detail(broadcast_id, _detail_body))


def _detail_body(broadcast_id: int) -> bytes:
    row = broadcast_row(broadcast_id)
    return orjson.dumps(_out(row, BroadcastDetailOut, room=row.broadcast.room.slug).model_dump())


@router.get(
    "/broadcasts/{broadcast_id}/danmaku",
    response={200: SegmentOut, 304: None, 404: ErrorOut},
    operation_id="get_replay_segment",
    summary="One replay segment's comments",
    description=(
        "The published comments playing in segment N (`segment_ms` of playback each), as columns, ordered "
        "by `progress_ms`. With `v` the current version the answer is immutable and cacheable for a year; "
        "without it, or with an older one, it is the current version, cacheable for 2 s."
    ),
)
def get_segment(request: HttpRequest, broadcast_id: int, query: Query[SegmentQuery]):
    return serve_shared(request, replay_cache.segment(broadcast_id, query.segment, query.v))


@router.get(
    "/broadcasts/{broadcast_id}/danmaku.xml",
    response={200: None, 304: None, 404: ErrorOut},
    operation_id="get_broadcast_xml",
    summary="Every published comment of a broadcast as Bilibili XML",
    description=(
        "Bilibili's format, as ArtPlayer's danmuku plugin and other players load it: `<d p=\"time,mode,size,"
        'color,ts,pool,uid,id">text</d>`, time in seconds of playback, mode 1 scroll, 5 top, 4 bottom. '
        "Cacheable for 2 s; rebuilt only when a segment's version changes."
    ),
)
def get_broadcast_xml(request: HttpRequest, broadcast_id: int):
    return serve_shared(request, replay_cache.composed(broadcast_id, ("xml",), _xml, XML_CONTENT_TYPE))


def _xml(state: BroadcastState, items: list[dict]) -> bytes:
    return bilibili_xml(items, broadcast_id=state.id, started_at_ms=state.started_at_ms, offset_ms=state.offset_ms)


@router.post(
    "/broadcasts/{broadcast_id}/danmaku",
    **{
        **SEND_OPERATION,
        "response": {**SEND_OPERATION["response"], 409: ErrorOut},
        "operation_id": "send_on_recording",
        "summary": "Send a comment on a recording",
        "description": (
            "As a live send, at `progress_ms` of an ended broadcast's playback. It joins the replay "
            "(a new version of its segment) and never the room's live stream. 409 while the broadcast is live."
        ),
    },
)
def send_on_recording(request: HttpRequest, broadcast_id: int, payload: RecordingDanmakuIn):
    outcome = danmaku_send_on_recording(
        broadcast_id=broadcast_id,
        progress_ms=payload.progress_ms,
        user=request.auth,
        grant=getattr(request.auth, "token_grant", None),
        text=payload.text,
        color=payload.color,
        mode=payload.mode,
        client_id=payload.client_id,
    )
    return send_answer(outcome)
