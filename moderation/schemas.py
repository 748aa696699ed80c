"""Request and response bodies of the moderation API."""

from __future__ import annotations

from datetime import datetime

from ninja import Schema
from pydantic import ConfigDict, Field

from moderation.actions import PURGE_MAX_MINUTES
from moderation.models import TIMEOUT_MAX_SECONDS, TIMEOUT_MIN_SECONDS
from moderation.selectors import LIST_LIMIT_MAX, SUMMARY_HIDDEN_SECONDS, SUMMARY_RECENT_SECONDS

Reason = Field(..., min_length=1, max_length=500, pattern=r"\S", description="Why; kept in the audit log.")
RoomSlug = Field(None, min_length=1, max_length=50, description="A room's slug; omitted or null: every room.")


class ReasonIn(Schema):
    model_config = ConfigDict(extra="forbid")
    reason: str = Reason


class TimeoutIn(Schema):
    model_config = ConfigDict(extra="forbid")
    room: str | None = RoomSlug
    seconds: int = Field(..., ge=TIMEOUT_MIN_SECONDS, le=TIMEOUT_MAX_SECONDS)
    reason: str = Reason


class BanIn(Schema):
    model_config = ConfigDict(extra="forbid")
    room: str | None = RoomSlug
    reason: str = Reason


class PurgeIn(Schema):
    model_config = ConfigDict(extra="forbid")
    room: str = Field(..., min_length=1, max_length=50)
    minutes: int = Field(..., ge=1, le=PURGE_MAX_MINUTES)
    reason: str = Reason


class ListQuery(Schema):
    limit: int = Field(50, ge=1, le=LIST_LIMIT_MAX)


class CommentOut(Schema):
    id: int
    room: str
    user_id: int
    username: str
    text: str
    status: str
    ts_ms: int
    retracted_at_ms: int | None


class SanctionOut(Schema):
    id: int
    user_id: int
    room: str | None
    kind: str
    until: datetime | None
    reason: str
    created_at: datetime
    lifted_at: datetime | None


class PurgeOut(Schema):
    hidden: int


class RoomThrottleOut(Schema):
    """A room's current throttle settings, as product staff left them."""

    poll_interval_ms: int
    quiet_interval_ms: int
    user_send_interval_ms: int = Field(..., description="Slow mode: least time between two comments of one user.")
    room_send_cap_per_second: int
    display_cap_per_second: int
    poll_multiplier: float = Field(
        ..., description="Staff's stretch of every poll interval (the emergency preset sets 2); answers say busy."
    )
    moderation_policy: str
    is_open: bool
    emergency: bool = Field(..., description="Whether the emergency preset is on.")


class RoomSummaryOut(Schema):
    room: str
    title: str
    now_ms: int = Field(..., description="Server time the counts were taken at, ms since the epoch.")
    recent_window_seconds: int = Field(SUMMARY_RECENT_SECONDS)
    recent: int = Field(..., description=f"Comments received in the last {SUMMARY_RECENT_SECONDS} s, any status.")
    held: int = Field(..., description="Comments waiting for a moderator now.")
    hidden_window_seconds: int = Field(SUMMARY_HIDDEN_SECONDS)
    hidden: int = Field(..., description=f"Comments of the last {SUMMARY_HIDDEN_SECONDS} s that are hidden now.")
    throttle: RoomThrottleOut
    viewers: int | None = Field(
        ...,
        description=(
            "Estimated viewers now (across the service with Redis, else this node), rounded; "
            "null when no pull process serves the room."
        ),
    )
