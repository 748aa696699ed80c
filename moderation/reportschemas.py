"""Request and response bodies of viewers' reports and the moderators' report queue."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from ninja import Schema
from pydantic import ConfigDict, Field, field_validator

from danmaku.textrules import text_problem
from moderation.models import REPORT_TEXT_MAX_CHARS, TIMEOUT_MAX_SECONDS, TIMEOUT_MIN_SECONDS, Report, Sanction
from moderation.reportlimit import REPORTS_PER_MINUTE
from moderation.reports import QUEUE_LIMIT_MAX, RESOLVE_ACTIONS, SANCTION_DEFAULT_SECONDS
from moderation.schemas import Reason

ReportReason = Literal[tuple(Report.Reason.values)]  # type: ignore[valid-type]


class ReportIn(Schema):
    model_config = ConfigDict(extra="forbid")
    reason: ReportReason = Field(
        ...,
        description="; ".join(f"`{value}`: {label}" for value, label in Report.Reason.choices),
    )
    text: str = Field(
        "",
        max_length=REPORT_TEXT_MAX_CHARS,
        description=f'What is wrong, for the moderators; required when `reason` is "other". '
        f"At most {REPORT_TEXT_MAX_CHARS} characters, one line.",
    )

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        if value.strip():
            problem = text_problem(value)
            if problem:
                raise ValueError(problem)
        return value.strip()


class ReportOut(Schema):
    id: int
    danmaku_id: int
    reason: str
    text: str
    created_at: datetime


REPORT_DESCRIPTION = (
    "Logged-in users only (the session cookie with a CSRF token, or a full-scope `Authorization: Bearer` token). "
    "One report per user and comment: reporting again answers with the first report and writes nothing. "
    "Not on your own comment (403). "
    f"At most {REPORTS_PER_MINUTE} reports per user in any 60 s; beyond that 429 with `Retry-After` and nothing "
    "is written. Reports from accounts in good standing can hide the comment at the room's threshold."
)


class OutcomeOut(Schema):
    id: int = Field(..., description="The report.")
    danmaku_id: int
    comment: str = Field(..., description="The reported comment's text.")
    reason: str
    outcome: Literal["hidden", "dismissed", "sanctioned"] = Field(
        ...,
        description="`hidden`: the comment was taken down; `dismissed`: a moderator found nothing wrong; "
        "`sanctioned`: taken down and its sender sanctioned.",
    )
    resolved_at: datetime | None


class QueueQuery(Schema):
    limit: int = Field(50, ge=1, le=QUEUE_LIMIT_MAX)


class QueueEntryOut(Schema):
    danmaku_id: int
    text: str
    user_id: int
    username: str
    status: str
    ts_ms: int
    reporters: int = Field(..., description="Distinct reporters with an open report.")
    good_standing: int = Field(..., description="Of them, those in good standing when they reported.")
    weight: float = Field(..., description="The queue's order: sum of reporter weights * (1 + log10(1 + viewers)).")
    viewers: int = Field(..., description="The room's largest viewer estimate when these reports came in; 0: unknown.")
    reasons: dict[str, int]
    notes: list[str] = Field(..., description="The reporters' free texts, the first few.")
    first_reported_at: datetime
    last_reported_at: datetime


class ResolveIn(Schema):
    model_config = ConfigDict(extra="forbid")
    action: Literal[RESOLVE_ACTIONS] = Field(  # type: ignore[valid-type]
        ...,
        description="`hide` the comment; `dismiss` the reports; `sanction`: hide, and time out or ban the "
        "sender in this room.",
    )
    reason: str = Reason
    sanction: Literal["timeout", "ban"] = Field(Sanction.Kind.TIMEOUT, description="For `sanction` only.")
    seconds: int = Field(
        SANCTION_DEFAULT_SECONDS,
        ge=TIMEOUT_MIN_SECONDS,
        le=TIMEOUT_MAX_SECONDS,
        description="A timeout's length, for `sanction` only.",
    )


class ResolveOut(Schema):
    danmaku_id: int
    action: str
    resolved: int = Field(..., description="Open reports resolved.")
