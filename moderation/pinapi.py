"""A room's pinned notice, for moderators: read it, pin one, take it down.

Mounted under /api/v1/moderation/ next to ``moderation.api`` (same auth:
moderators only, full-scope tokens or the session with its CSRF token).
Every write leaves one audit row (see ``moderation.pins``).
"""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Query, Router, Schema, Status
from pydantic import ConfigDict, Field

from danmaku.auth import user_auth
from danmaku.errors import InvalidInput
from danmaku.textrules import ABSOLUTE_MAX_CODE_POINTS
from infra import clock
from moderation import pins, selectors

# The moderation router's own answers and role check, so the two cannot
# drift apart. 409 here: a comment not in a state to pin, or nothing to unpin.
from moderation.api import ERRORS, WRITE_ERRORS
from moderation.api import _moderator as moderator_only

router = Router(tags=["moderation"], auth=user_auth)
# Largest id a database row can have (bigint): a larger one is a 400, not a database error.
MAX_ID = 2**63 - 1


class PinIn(Schema):
    """Exactly one of ``danmaku_id`` and ``text``."""

    model_config = ConfigDict(extra="forbid")
    danmaku_id: int | None = Field(None, ge=1, le=MAX_ID, description="Pin this published comment of the room.")
    text: str | None = Field(
        None,
        max_length=ABSOLUTE_MAX_CODE_POINTS,
        description="Pin this notice; it passes the filters any comment passes and the room's length bound.",
    )
    duration_s: int = Field(..., ge=pins.PIN_MIN_SECONDS, le=pins.PIN_MAX_SECONDS, description="How long it shows.")
    reason: str = Field("", max_length=500, description="Why; kept in the audit log.")


class UnpinQuery(Schema):
    reason: str = Field(..., min_length=1, max_length=500, pattern=r"\S", description="Why; kept in the audit log.")


class PinOut(Schema):
    id: int | None = Field(..., description="The pinned comment's id; null for a notice a moderator wrote.")
    text: str
    nick: str = Field(..., description='The comment sender\'s display nick; "" for a notice.')
    expires_in_ms: int = Field(..., description="Time left, by the server's clock.")
    until_ms: int = Field(..., description="When it expires, server time in ms since the epoch.")


def _pin(pin: pins.Pin | None) -> dict | None:
    if pin is None:
        return None
    return {
        "id": pin.danmaku_id,
        "text": pin.text,
        "nick": pin.nick,
        "expires_in_ms": pin.expires_in_ms(clock.now_ms()),
        "until_ms": pin.until_ms,
    }


@router.get(
    "/rooms/{room}/pin",
    response={200: PinOut | None, **ERRORS},
    summary="A room's pinned notice, or null",
    operation_id="moderation_api_pin_get",
)
def pin_get(request: HttpRequest, room: str):
    moderator_only(request)
    return Status(200, _pin(pins.pin_current(room=selectors.room_by_slug(slug=room))))


@router.put(
    "/rooms/{room}/pin",
    response={200: PinOut, **WRITE_ERRORS},
    summary="Pin a comment or a notice for 1 min to 2 h, replacing the room's pin",
    operation_id="moderation_api_pin_set",
)
def pin_set(request: HttpRequest, room: str, payload: PinIn):
    actor = moderator_only(request)
    found = selectors.room_by_slug(slug=room)
    if (payload.danmaku_id is None) == (payload.text is None):
        field = "text" if payload.text is not None else "danmaku_id"
        raise InvalidInput(f"{field}: give exactly one of danmaku_id and text", field=field)
    if payload.danmaku_id is not None:
        pin = pins.pin_comment(
            room=found,
            danmaku_id=payload.danmaku_id,
            duration_s=payload.duration_s,
            actor=actor,
            reason=payload.reason,
        )
    else:
        pin = pins.pin_notice(
            room=found, text=payload.text, duration_s=payload.duration_s, actor=actor, reason=payload.reason
        )
    return Status(200, _pin(pin))


@router.delete(
    "/rooms/{room}/pin",
    response={204: None, **WRITE_ERRORS},
    summary="Take a room's pinned notice down",
    operation_id="moderation_api_pin_clear",
)
def pin_clear(request: HttpRequest, room: str, query: Query[UnpinQuery]):
    actor = moderator_only(request)
    pins.unpin(room=selectors.room_by_slug(slug=room), actor=actor, reason=query.reason)
    return Status(204, None)
