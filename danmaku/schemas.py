from __future__ import annotations

import re
from typing import Literal

from ninja import Schema
from pydantic import BaseModel, ConfigDict, Field, field_validator

from danmaku.textrules import ABSOLUTE_MAX_CODE_POINTS, MAX_MARKS_PER_CHARACTER, text_problem

COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class DanmakuIn(BaseModel):
    # A plain pydantic model, not a ninja Schema: a body needs none of its
    # ORM reading, and its wrapping validator ran every field validator
    # twice (50 µs a send against 13).
    model_config = ConfigDict(extra="forbid")

    text: str = Field(
        description=(
            "The comment, one line, trimmed. At most the room's `max_text_length` code points "
            f"(never more than {ABSOLUTE_MAX_CODE_POINTS}) and 3 UTF-8 bytes per allowed code point. "
            "Refused: empty or only whitespace/invisible characters, NUL and other control characters, "
            "lone surrogates, bidirectional embedding/override/isolate characters, line separators, "
            f"more than {MAX_MARKS_PER_CHARACTER} combining marks stacked on one character."
        ),
        min_length=1,
        max_length=ABSOLUTE_MAX_CODE_POINTS,
    )
    # Patterns go into the schema only (json_schema_extra), so the validators
    # below still give the readable reason in the 400.
    color: str = Field(
        "#ffffff", description="`#rrggbb`.", json_schema_extra={"pattern": COLOR_RE.pattern}, examples=["#ffffff"]
    )
    mode: Literal["scroll", "top", "bottom"] = "scroll"
    client_id: str | None = Field(
        None,
        description="Idempotency key chosen by the client. "
        "Sending it again returns the first answer instead of a second comment.",
        json_schema_extra={"pattern": CLIENT_ID_RE.pattern, "minLength": 1, "maxLength": 64},
    )

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        problem = text_problem(value)
        if problem:
            raise ValueError(problem)
        return value.strip()

    @field_validator("color")
    @classmethod
    def _color(cls, value: str) -> str:
        if not COLOR_RE.fullmatch(value):
            raise ValueError("must be a colour like #rrggbb")
        return value.lower()

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, value: str | None) -> str | None:
        if value is not None and not CLIENT_ID_RE.fullmatch(value):
            raise ValueError("must be 1-64 characters of A-Z a-z 0-9 . _ : -")
        return value


class SendOut(Schema):
    id: int
    status: Literal["published", "held", "sender_only", "hidden"] = Field(
        description="The comment's state now: a retry with the same `client_id` reports `hidden` "
        "if a moderator removed the comment since it was sent."
    )


class NotBroadcastOut(Schema):
    broadcast: Literal[False] = False
    reason: Literal["room_busy"]


class FieldError(Schema):
    field: str
    reason: str


class ErrorOut(Schema):
    detail: str
    errors: list[FieldError] = Field(default_factory=list)


class RateLimitedOut(Schema):
    detail: str
    retry_after_ms: int


class PullItems(Schema):
    id: list[int]
    offset_ms: list[int] = Field(description="ms from the start of the first second this answer covers.")
    color: list[int] = Field(description="0xRRGGBB as an integer.")
    mode: list[int] = Field(description="0 scroll, 1 top, 2 bottom.")
    user: list[int]
    nick: list[str]
    avatar: list[str]
    text: list[str]
    count: list[int] = Field(
        description=(
            "How many comments the item stands for: 1, or N when N comments with the same normalized text "
            'within 5 s were merged into it (rooms with merge_duplicates on); show it once, as "text xN".'
        )
    )


class PinnedOut(Schema):
    id: int | None = Field(description="The pinned comment's id; null for a notice a moderator wrote.")
    text: str
    nick: str = Field(description="The comment's sender; empty for a notice.")
    expires_in_ms: int = Field(description="Show it for this long from when the answer arrived, at most.")


class PullOut(Schema):
    cursor: str = Field(description="Opaque; pass it back as `after` on the next pull.")
    next_ms: int = Field(description="Poll again after this many ms.")
    reason: Literal["normal", "quiet", "busy", "degraded"]
    gap: bool = Field(
        description="True when the cursor was too old (or from another epoch): some comments were skipped."
    )
    missed: int = Field(description="Comments not shown because the room's display cap was hit.")
    items: PullItems
    deleted: list[int] = Field(description="Ids retracted since the cursor; remove them from the screen.")
    counts: dict[str, int] = Field(
        description=(
            "New totals of merged items delivered earlier, by id: set the item's count (it grows as duplicates "
            "arrive and shrinks as they are hidden). An id you do not hold is ignored."
        )
    )
    restored: list[int] = Field(
        description=(
            "Ids a moderator unhid since the cursor; their items are in `items` again. Forget that you removed them."
        )
    )
    pinned: PinnedOut | None = Field(
        description="The room's pinned notice, shown as a fixed line above the stream; null when none."
    )
    viewers: int = Field(
        description=(
            "An estimate of the room's viewers across the service (from the intervals the servers handed out), "
            "rounded to two significant digits from 100 on and refreshed every few seconds; 0 until counted."
        )
    )
