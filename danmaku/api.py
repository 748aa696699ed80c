"""Send and pull: parse, call one function, return. No logic lives here."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Schema, Status
from pydantic import Field

from danmaku import runtime
from danmaku.auth import send_auth
from danmaku.pull.cache import PullAnswer
from danmaku.pull.response import AFTER_MAX_LENGTH, HttpAnswer, count, respond
from danmaku.schemas import DanmakuIn, ErrorOut, NotBroadcastOut, PullOut, RateLimitedOut, SendOut
from danmaku.send import SendOutcome, danmaku_send

PATH = "/rooms/{room}/danmaku"


class PullQuery(Schema):
    after: str | None = Field(
        None,
        max_length=AFTER_MAX_LENGTH,
        description="The `cursor` from your previous pull. Omit it to join: you get the last few seconds.",
    )


def pull(request: HttpRequest, room: str, query: Query[PullQuery]):
    # The WSGI fast path (danmaku.pull.fastpath) answers most pulls before
    # Django sees them, through the same respond(): keep them equal.
    runtime.ensure_refresher()
    answer = runtime.pull_cache().pull(room, query.after)
    meta = request.META
    http = respond(
        answer, accept_encoding=meta.get("HTTP_ACCEPT_ENCODING", ""), if_none_match=meta.get("HTTP_IF_NONE_MATCH")
    )
    count(answer, http)
    return as_django(http)


def serve_shared(request: HttpRequest, answer: PullAnswer) -> HttpResponse:
    """A shared answer (a replay segment, another player's format) for this request's encoding and ETag."""
    meta = request.META
    return as_django(
        respond(
            answer, accept_encoding=meta.get("HTTP_ACCEPT_ENCODING", ""), if_none_match=meta.get("HTTP_IF_NONE_MATCH")
        )
    )


def as_django(http: HttpAnswer) -> HttpResponse:
    response = HttpResponse(http.body, status=http.status)
    for name, value in http.headers:
        response[name] = value
    if http.status == 304:
        # HttpResponse always starts with a Content-Type; a 304 has none.
        del response["Content-Type"]
    return response


def send(request: HttpRequest, room: str, payload: DanmakuIn):
    outcome = danmaku_send(
        room_slug=room,
        user=request.auth,
        grant=getattr(request.auth, "token_grant", None),
        text=payload.text,
        color=payload.color,
        mode=payload.mode,
        client_id=payload.client_id,
    )
    return send_answer(outcome)


def send_answer(outcome: SendOutcome) -> Status:
    """201 with the comment, or 202 when the room's cap discarded it."""
    if not outcome.broadcast:
        return Status(202, {"broadcast": False, "reason": "room_busy"})
    return Status(201, {"id": outcome.danmaku.id, "status": outcome.danmaku.status})


# operation_ids are part of the published contract (client generators name
# their methods after them); pinned here so that moving a view to another
# module, which is what ninja derives them from, cannot change them.
PULL_OPERATION = dict(
    operation_id="danmaku_api_pull",
    response={200: PullOut, 304: None, 400: ErrorOut, 404: ErrorOut, 503: ErrorOut},
    summary="Pull new danmaku",
    description=(
        "Comments since `after`, as columns. Poll again after `next_ms`. The body is shared by every "
        "client asking the same question, gzip-compressed when accepted, and cacheable for a second "
        "(`Cache-Control`, `ETag`; `If-None-Match` gets 304)."
    ),
)
SEND_OPERATION = dict(
    operation_id="danmaku_api_send",
    auth=send_auth,
    response={
        201: SendOut,
        202: NotBroadcastOut,
        400: ErrorOut,
        401: ErrorOut,
        403: ErrorOut,
        404: ErrorOut,
        429: RateLimitedOut,
        503: ErrorOut,
    },
    summary="Send a danmaku",
    description=(
        "Logged-in users only: `Authorization: Bearer <token>`, or the session cookie with a CSRF token. "
        "202 means the room's cap for this second was full and the comment was not broadcast "
        "(the client may still show its own copy)."
    ),
)


def build_router(*, pull_path: bool = True, send_path: bool = True) -> Router:
    """The danmaku operations a deployment serves (see DANMAKU_ROLE).

    GET and POST share one path, and ninja only merges methods registered on
    the same router, so the router is built for the role rather than split.
    """
    router = Router(tags=["danmaku"])
    if pull_path:
        router.get(PATH, **PULL_OPERATION)(pull)
    if send_path:
        router.post(PATH, **SEND_OPERATION)(send)
    return router


router = build_router()
# For single-role deployments; a ninja router can be mounted on one API only.
pull_router = build_router(send_path=False)
send_router = build_router(pull_path=False)
