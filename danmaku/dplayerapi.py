"""DPlayer's danmaku API (v3), so a page embedding DPlayer with
``danmaku: {id: <broadcast id>, api: "<origin>/api/dplayer/"}`` reads a
broadcast's comments and sends on its recording.

- ``GET /api/dplayer/v3/?id=&max=`` (``limit`` is a synonym, as in
  DPlayer's reference server): ``{"code": 0, "data": [[time_s, type,
  color, author, text], ...]}``, the ``max`` most recent in playback order.
  A shared answer, from the built replay segments: no query when warm.
- ``POST /api/dplayer/v3/`` with ``{token, id, author, time, text, color,
  type}``: a comment on the recording at ``time``, sent as the token's user
  (``author`` is the page's say and is ignored). ``{"code": 0, "data":
  {...}}``, or a 4xx with ``{"code": 1, "msg": "field: reason"}``.

Served by send and all nodes, as the replay is.
"""

from __future__ import annotations

import math
from typing import Literal

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from danmaku.api import serve_shared
from danmaku.errors import DanmakuError
from danmaku.playerformats import DPLAYER_TYPES, dplayer_read
from danmaku.pull.wire import MODES
from danmaku.replaycache import replay_cache
from danmaku.schemas import DanmakuIn
from danmaku.segments import MAX_PROGRESS_MS
from danmaku.send import danmaku_send_on_recording
from danmaku.sendcache import sender_by_token

# The most comments one read returns, whatever ``max`` asks.
READ_LIMIT = 10_000
MAX_BODY_BYTES = 4096


class DPlayerSendIn(BaseModel):
    # DPlayer versions add fields of their own (``author``, ``referer``):
    # what we do not read is ignored rather than refused.
    model_config = ConfigDict(extra="ignore")

    token: str = Field(min_length=1, max_length=200)
    id: int | str
    time: float = Field(ge=0, le=MAX_PROGRESS_MS / 1000, allow_inf_nan=False)
    text: str = Field(min_length=1, max_length=1000)
    # DPlayer's box sends an integer (0xRRGGBB); "#rrggbb" is taken too.
    color: int | str = 0xFFFFFF
    # 0 right-to-left, 1 top, 2 bottom; older DPlayers sent the names.
    type: int | Literal["right", "top", "bottom"] = 0

    @field_validator("id")
    @classmethod
    def _id(cls, value: int | str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError("must be a broadcast id") from None
        if not 0 < number < 2**63:
            raise ValueError("must be a broadcast id")
        return number

    @field_validator("color")
    @classmethod
    def _color(cls, value: int | str) -> str:
        if isinstance(value, int):
            if not 0 <= value <= 0xFFFFFF:
                raise ValueError("must be 0 to 16777215 (0xRRGGBB)")
            return f"#{value:06x}"
        return value

    @field_validator("type")
    @classmethod
    def _type(cls, value: int | str) -> int:
        number = DPLAYER_TYPES[value] if isinstance(value, str) else value
        if number not in (0, 1, 2):
            raise ValueError("must be 0 (right to left), 1 (top) or 2 (bottom)")
        return number


def _refusal(status: int, message: str, headers: dict | None = None) -> JsonResponse:
    response = JsonResponse({"code": 1, "msg": message}, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or "body"
    return f"{field}: {error['msg'].removeprefix('Value error, ')}"


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def dplayer_v3(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return _send(request)
    return _read(request)


def _read(request: HttpRequest) -> HttpResponse:
    raw_id = request.GET.get("id", "")
    if not raw_id.isdigit() or not 0 < int(raw_id) < 2**63:
        return _refusal(400, "id: must be a broadcast id")
    raw_limit = request.GET.get("max") or request.GET.get("limit") or ""
    if raw_limit and not raw_limit.isdigit():
        return _refusal(400, "max: must be a whole number")
    limit = min(int(raw_limit), READ_LIMIT) if raw_limit else READ_LIMIT
    try:
        answer = replay_cache.composed(
            int(raw_id), ("dplayer", limit), lambda _, items: dplayer_read(items, limit), "application/json"
        )
    except DanmakuError as exc:
        return _refusal(exc.status, exc.detail)
    return serve_shared(request, answer)


def _send(request: HttpRequest) -> HttpResponse:
    if len(request.body) > MAX_BODY_BYTES:
        return _refusal(413, f"body: at most {MAX_BODY_BYTES} bytes")
    try:
        payload = DPlayerSendIn.model_validate_json(request.body)
        comment = DanmakuIn(text=payload.text, color=payload.color, mode=MODES[payload.type])
    except ValidationError as exc:
        return _refusal(400, _first_error(exc))
    try:
        sender, grant = sender_by_token(payload.token)
    except DatabaseError:
        return _refusal(503, "the comment store is unavailable; retry shortly", {"Retry-After": "2"})
    if sender is None:
        return _refusal(401, "token: not a valid token (expired, revoked or unknown)")
    try:
        outcome = danmaku_send_on_recording(
            broadcast_id=payload.id,
            progress_ms=math.floor(payload.time * 1000),
            user=sender,
            grant=grant,
            text=comment.text,
            color=comment.color,
            mode=comment.mode,
        )
    except DanmakuError as exc:
        retry_after_ms = getattr(exc, "retry_after_ms", None)
        headers = {} if retry_after_ms is None else {"Retry-After": str(max(1, math.ceil(retry_after_ms / 1000)))}
        return _refusal(exc.status, exc.detail, headers)
    if not outcome.broadcast:
        return JsonResponse({"code": 0, "data": {"broadcast": False, "reason": "room_busy"}}, status=202)
    danmaku = outcome.danmaku
    return JsonResponse({"code": 0, "data": {"id": danmaku.id, "status": danmaku.status}}, status=201)
