"""The moderation API (moderators only): parse, check the role, call one action, return.

Mounted under /api/v1/moderation/ on "send" and "all" nodes. Every write
takes a ``reason`` and leaves one audit row (see ``moderation.actions``).
"""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Query, Router, Status

from danmaku.audience import room_viewers
from danmaku.auth import user_auth
from danmaku.errors import Forbidden
from danmaku.models import Danmaku
from danmaku.schemas import ErrorOut
from infra import clock
from moderation import actions, selectors
from moderation.models import Sanction
from moderation.schemas import (
    BanIn,
    CommentOut,
    ListQuery,
    PurgeIn,
    PurgeOut,
    ReasonIn,
    RoomSummaryOut,
    SanctionOut,
    TimeoutIn,
)

router = Router(tags=["moderation"], auth=user_auth)
# Every operation names its operation_id (part of the contract, see
# danmaku.api): ninja would derive it from this module's path.

ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 503: ErrorOut}
# Writes can also find their target in the wrong state (already hidden, not held).
WRITE_ERRORS = {**ERRORS, 409: ErrorOut}


def _moderator(request: HttpRequest):
    user = request.auth
    if not selectors.user_is_moderator(user=user):
        raise Forbidden("moderators only")
    return user


def _comment(danmaku: Danmaku) -> dict:
    return {
        "id": danmaku.id,
        "room": danmaku.room.slug,
        "user_id": danmaku.user_id,
        "username": danmaku.user.get_username(),
        "text": danmaku.text,
        "status": danmaku.status,
        "ts_ms": danmaku.ts_ms,
        "retracted_at_ms": danmaku.retracted_at_ms,
    }


def _sanction(sanction: Sanction) -> dict:
    return {
        "id": sanction.id,
        "user_id": sanction.user_id,
        "room": sanction.room.slug if sanction.room_id else None,
        "kind": sanction.kind,
        "until": sanction.until,
        "reason": sanction.reason,
        "created_at": sanction.created_at,
        "lifted_at": sanction.lifted_at,
    }


def _summary(summary: selectors.RoomSummary) -> dict:
    room = summary.room
    return {
        "room": room.slug,
        "title": room.title,
        "now_ms": summary.now_ms,
        "recent_window_seconds": selectors.SUMMARY_RECENT_SECONDS,
        "recent": summary.recent,
        "held": summary.held,
        "hidden_window_seconds": selectors.SUMMARY_HIDDEN_SECONDS,
        "hidden": summary.hidden,
        "throttle": {
            "poll_interval_ms": room.poll_interval_ms,
            "poll_multiplier": room.poll_multiplier,
            "quiet_interval_ms": room.quiet_interval_ms,
            "user_send_interval_ms": room.user_send_interval_ms,
            "room_send_cap_per_second": room.room_send_cap_per_second,
            "display_cap_per_second": room.display_cap_per_second,
            "moderation_policy": room.moderation_policy,
            "is_open": room.is_open,
            "emergency": summary.emergency,
        },
        "viewers": room_viewers(room_id=room.id, slug=room.slug),
    }


def _room_id(slug: str | None) -> int | None:
    return None if slug is None else selectors.room_by_slug(slug=slug).id


# -- comments -----------------------------------------------------------------------


@router.get(
    "/rooms/{room}/held",
    response={200: list[CommentOut], **ERRORS},
    summary="Held comments of a room",
    operation_id="moderation_api_held_list",
)
def held_list(request: HttpRequest, room: str, query: Query[ListQuery]):
    _moderator(request)
    found = selectors.room_by_slug(slug=room)
    return Status(200, [_comment(d) for d in selectors.held_queue(room=found, limit=query.limit)])


@router.get(
    "/rooms/{room}/recent",
    response={200: list[CommentOut], **ERRORS},
    summary="Recent comments of a room",
    operation_id="moderation_api_recent_list",
)
def recent_list(request: HttpRequest, room: str, query: Query[ListQuery]):
    _moderator(request)
    found = selectors.room_by_slug(slug=room)
    return Status(200, [_comment(d) for d in selectors.recent_comments(room=found, limit=query.limit)])


@router.get(
    "/rooms/{room}/summary",
    response={200: RoomSummaryOut, **ERRORS},
    summary="A room's counts (last minute, held, hidden) and throttle settings",
    operation_id="moderation_api_room_summary",
)
def room_summary(request: HttpRequest, room: str):
    _moderator(request)
    found = selectors.room_by_slug(slug=room)
    # The clock comment timestamps come from in the embedded store; in Redis
    # mode they carry Redis time, which stays within the window's tolerance.
    return Status(200, _summary(selectors.room_summary(room=found, now_ms=clock.now_ms())))


@router.post(
    "/danmaku/{danmaku_id}/hide",
    response={200: CommentOut, **WRITE_ERRORS},
    summary="Hide a comment",
    operation_id="moderation_api_hide",
)
def hide(request: HttpRequest, danmaku_id: int, payload: ReasonIn):
    actor = _moderator(request)
    return Status(200, _comment(actions.danmaku_hide(danmaku_id=danmaku_id, actor=actor, reason=payload.reason)))


@router.post(
    "/danmaku/{danmaku_id}/unhide",
    response={200: CommentOut, **WRITE_ERRORS},
    summary="Unhide a comment",
    operation_id="moderation_api_unhide",
)
def unhide(request: HttpRequest, danmaku_id: int, payload: ReasonIn):
    actor = _moderator(request)
    return Status(200, _comment(actions.danmaku_unhide(danmaku_id=danmaku_id, actor=actor, reason=payload.reason)))


@router.post(
    "/held/{danmaku_id}/approve",
    response={200: CommentOut, **WRITE_ERRORS},
    summary="Publish a held comment",
    operation_id="moderation_api_approve",
)
def approve(request: HttpRequest, danmaku_id: int, payload: ReasonIn):
    actor = _moderator(request)
    return Status(200, _comment(actions.held_approve(danmaku_id=danmaku_id, actor=actor, reason=payload.reason)))


@router.post(
    "/held/{danmaku_id}/reject",
    response={200: CommentOut, **WRITE_ERRORS},
    summary="Reject a held comment",
    operation_id="moderation_api_reject",
)
def reject(request: HttpRequest, danmaku_id: int, payload: ReasonIn):
    actor = _moderator(request)
    return Status(200, _comment(actions.held_reject(danmaku_id=danmaku_id, actor=actor, reason=payload.reason)))


# -- users --------------------------------------------------------------------------


@router.post(
    "/users/{user_id}/timeout",
    response={201: SanctionOut, **WRITE_ERRORS},
    summary="Time a user out",
    operation_id="moderation_api_timeout",
)
def timeout(request: HttpRequest, user_id: int, payload: TimeoutIn):
    actor = _moderator(request)
    sanction = actions.user_timeout(
        user_id=user_id, room_id=_room_id(payload.room), seconds=payload.seconds, actor=actor, reason=payload.reason
    )
    return Status(201, _sanction(sanction))


@router.post(
    "/users/{user_id}/ban",
    response={201: SanctionOut, **WRITE_ERRORS},
    summary="Ban a user",
    operation_id="moderation_api_ban",
)
def ban(request: HttpRequest, user_id: int, payload: BanIn):
    actor = _moderator(request)
    sanction = actions.user_ban(user_id=user_id, room_id=_room_id(payload.room), actor=actor, reason=payload.reason)
    return Status(201, _sanction(sanction))


@router.post(
    "/sanctions/{sanction_id}/lift",
    response={200: SanctionOut, **WRITE_ERRORS},
    summary="Lift a sanction",
    operation_id="moderation_api_lift",
)
def lift(request: HttpRequest, sanction_id: int, payload: ReasonIn):
    actor = _moderator(request)
    return Status(200, _sanction(actions.sanction_lift(sanction_id=sanction_id, actor=actor, reason=payload.reason)))


@router.post(
    "/users/{user_id}/purge",
    response={200: PurgeOut, **WRITE_ERRORS},
    summary="Hide a user's comments of the last N minutes in a room",
    operation_id="moderation_api_purge",
)
def purge(request: HttpRequest, user_id: int, payload: PurgeIn):
    actor = _moderator(request)
    hidden = actions.user_purge(
        user_id=user_id,
        room_id=selectors.room_by_slug(slug=payload.room).id,
        minutes=payload.minutes,
        actor=actor,
        reason=payload.reason,
    )
    return Status(200, {"hidden": hidden})
