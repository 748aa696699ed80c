"""A thin WSGI layer in front of Django that answers bearer-token sends.

``POST /api/v1/rooms/<slug>/danmaku`` with ``Authorization: Bearer`` and a
JSON body is answered here, by the same ``danmaku_send`` the ninja endpoint
calls, with the same bodies and headers, without building a request
object, running middleware or resolving a URL: on a send those were about
half of the web CPU, and nearly all of a refused send's (a room at its cap
refuses most of a flood).

Anything else goes to Django unchanged, with the body it sent: a session
(cookie) send, a token the caches do not know as an active sender's (401
and its logging stay Django's), a body the schema refuses (400 with
ninja's field list), a query string, a Host Django would refuse, a body
over ``MAX_BODY_BYTES``. ``DANMAKU_SEND_FAST_PATH=0`` turns the layer off.

Database connections are handled as Django handles a request's
(``request_started`` / ``request_finished``: old or broken connections
closed), and sends are counted as ``danmaku_site.ops`` counts them.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core import signals
from django.db import DatabaseError
from pydantic import ValidationError

from danmaku.errors import DB_DOWN_RETRY_MS, DanmakuError, Unavailable
from danmaku.models import ApiToken
from danmaku.pull.fastpath import host_allowed
from danmaku.schemas import DanmakuIn
from danmaku.send import danmaku_send
from danmaku.sendcache import sender_by_token
from danmaku_site.api import error_answer
from danmaku_site.ops import count_send
from infra import servedby
from infra.ratelimitlog import RateLimitedLog

logger = logging.getLogger(__name__)
database_log = RateLimitedLog(logger, every_seconds=10)

PREFIX = "/api/v1/rooms/"
SUFFIX = "/danmaku"
BEARER = "Bearer " + ApiToken.PREFIX
# A comment's body is well under 2 KB (500 code points of 3 bytes, escaped);
# anything larger is Django's to refuse.
MAX_BODY_BYTES = 16 * 1024
# What SecurityMiddleware and XFrameOptionsMiddleware add to an API answer.
HEADERS = [
    ("Content-Type", "application/json; charset=utf-8"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
]
REASONS = {201: "Created", 202: "Accepted", 400: "Bad Request", 403: "Forbidden", 404: "Not Found"}
REASONS.update({429: "Too Many Requests", 503: "Service Unavailable"})

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict, StartResponse], Iterable[bytes]]


class SendFastPath:
    """WSGI callable: bearer-token sends here, everything else to ``app``."""

    def __init__(self, app: WSGIApp, *, served_by: bool) -> None:
        self.app = app
        self._served_by = served_by
        self._forwarded_host = settings.USE_X_FORWARDED_HOST
        self._hosts: dict[str, bool] = {}
        # The pull worker asks the application for the pull fast path's answer.
        inner_answer = getattr(app, "answer", None)
        if inner_answer is not None:
            self.answer = inner_answer

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if (
            environ["REQUEST_METHOD"] != "POST"
            or not path.startswith(PREFIX)
            or not path.endswith(SUFFIX)
            or environ.get("QUERY_STRING")
            or not environ.get("HTTP_AUTHORIZATION", "").startswith(BEARER)
            or not host_allowed(environ, forwarded_host=self._forwarded_host, remembered=self._hosts)
        ):
            return self.app(environ, start_response)
        slug = path[len(PREFIX) : -len(SUFFIX)]
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            length = -1
        if not 0 < length <= MAX_BODY_BYTES or not environ.get("CONTENT_TYPE", "").startswith("application/json"):
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(length)
        answered = self._answer(environ, slug, body)
        if answered is None:
            # Django reads the body again, as the client sent it.
            environ["wsgi.input"] = io.BytesIO(body)
            return self.app(environ, start_response)
        status, payload, extra = answered
        count_send(status)
        data = json.dumps(payload).encode()
        headers = [*HEADERS, ("Content-Length", str(len(data))), *extra]
        if self._served_by:
            headers.append(servedby.header())
        start_response(f"{status} {REASONS[status]}", headers)
        return [data]

    def _answer(self, environ: dict, slug: str, body: bytes):
        signals.request_started.send(sender=self.__class__, environ=environ)
        try:
            return self._send(environ, slug, body)
        finally:
            signals.request_finished.send(sender=self.__class__)

    def _send(self, environ: dict, slug: str, body: bytes):
        token = environ["HTTP_AUTHORIZATION"][len("Bearer ") :]
        try:
            payload = DanmakuIn.model_validate_json(body)
            sender = sender_by_token(token) if len(token) <= 200 else None
        except ValidationError:
            return None
        except DatabaseError as exc:
            return self._unavailable(exc)
        if sender is None:
            return None
        try:
            outcome = danmaku_send(
                room_slug=slug,
                # What sending reads of a user (id, pk), without building one.
                user=sender,
                text=payload.text,
                color=payload.color,
                mode=payload.mode,
                client_id=payload.client_id,
            )
        except DanmakuError as exc:
            return error_answer(exc)
        except DatabaseError as exc:
            return self._unavailable(exc)
        if not outcome.broadcast:
            return 202, {"broadcast": False, "reason": "room_busy"}, []
        return 201, {"id": outcome.danmaku.id, "status": outcome.danmaku.status}, []

    def _unavailable(self, exc: DatabaseError):
        database_log.warning("answered 503, database unavailable: %s", exc)
        unavailable = Unavailable("the comment store is unavailable; retry shortly", retry_after_ms=DB_DOWN_RETRY_MS)
        return error_answer(unavailable)
