"""Viewers' reports over HTTP: parse, call one function in ``moderation.reports``, return.

Two routers, mounted on "send" and "all" nodes (danmaku_site.api): ``router``
for viewers (file a report, learn the outcomes) and ``moderator_router``
under /api/v1/moderation/ (the queue, resolving it).
"""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Query, Router, Status

from danmaku.auth import user_auth
from danmaku.errors import Forbidden
from danmaku.schemas import ErrorOut, RateLimitedOut
from moderation import reports, selectors
from moderation.reportschemas import (
    REPORT_DESCRIPTION,
    OutcomeOut,
    QueueEntryOut,
    QueueQuery,
    ReportIn,
    ReportOut,
    ResolveIn,
    ResolveOut,
)

# Viewers: a full-scope token or the session with CSRF, as the moderation
# API (a player token sits in a third party's page and may not report).
router = Router(tags=["reports"], auth=user_auth)
moderator_router = Router(tags=["moderation"], auth=user_auth)

ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 503: ErrorOut}


def _report(report) -> dict:
    return {
        "id": report.id,
        "danmaku_id": report.danmaku_id,
        "reason": report.reason,
        "text": report.text,
        "created_at": report.created_at,
    }


@router.post(
    "/rooms/{room}/danmaku/{danmaku_id}/report",
    response={201: ReportOut, **ERRORS, 409: ErrorOut, 429: RateLimitedOut},
    summary="Report a comment to the moderators",
    description=REPORT_DESCRIPTION,
    operation_id="reports_api_report",
)
def report(request: HttpRequest, room: str, danmaku_id: int, payload: ReportIn):
    filed = reports.report_file(
        room_slug=room, danmaku_id=danmaku_id, user=request.auth, reason=payload.reason, text=payload.text
    )
    # A repeat answers exactly as the first did.
    return Status(201, _report(filed.report))


@router.get(
    "/reports/mine",
    response={200: list[OutcomeOut], 401: ErrorOut, 503: ErrorOut},
    summary="What came of my reports (each told once)",
    description="Outcomes of your resolved reports you have not been told yet, oldest first; "
    "once answered they are marked seen.",
    operation_id="reports_api_mine",
)
def mine(request: HttpRequest):
    return Status(
        200,
        [
            {
                "id": found.id,
                "danmaku_id": found.danmaku_id,
                "comment": found.danmaku.text,
                "reason": found.reason,
                "outcome": found.state,
                "resolved_at": found.resolved_at,
            }
            for found in reports.report_outcomes_take(user=request.auth)
        ],
    )


def _moderator(request: HttpRequest):
    user = request.auth
    if not selectors.user_is_moderator(user=user):
        raise Forbidden("moderators only")
    return user


@moderator_router.get(
    "/rooms/{room}/reports",
    response={200: list[QueueEntryOut], **ERRORS},
    summary="Reported comments of a room with open reports, heaviest first",
    operation_id="moderation_api_reports",
)
def queue(request: HttpRequest, room: str, query: Query[QueueQuery]):
    _moderator(request)
    found = selectors.room_by_slug(slug=room)
    return Status(
        200,
        [
            {
                "danmaku_id": entry.danmaku.id,
                "text": entry.danmaku.text,
                "user_id": entry.danmaku.user_id,
                "username": entry.danmaku.user.get_username(),
                "status": entry.danmaku.status,
                "ts_ms": entry.danmaku.ts_ms,
                "reporters": entry.reporters,
                "good_standing": entry.good_standing,
                "weight": entry.weight,
                "viewers": entry.viewers,
                "reasons": entry.reasons,
                "notes": entry.notes,
                "first_reported_at": entry.first_reported_at,
                "last_reported_at": entry.last_reported_at,
            }
            for entry in reports.report_queue(room=found, limit=query.limit)
        ],
    )


@moderator_router.post(
    "/reports/{danmaku_id}/resolve",
    response={200: ResolveOut, **ERRORS, 409: ErrorOut},
    summary="Resolve a comment's open reports: hide, dismiss, or sanction the sender",
    operation_id="moderation_api_reports_resolve",
)
def resolve(request: HttpRequest, danmaku_id: int, payload: ResolveIn):
    actor = _moderator(request)
    resolved = reports.report_resolve(
        danmaku_id=danmaku_id,
        action=payload.action,
        actor=actor,
        reason=payload.reason,
        sanction=payload.sanction,
        seconds=payload.seconds,
    )
    return Status(200, {"danmaku_id": danmaku_id, "action": payload.action, "resolved": resolved})
