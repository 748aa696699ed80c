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

Database connections are kept as Django keeps a request's: one past
CONN_MAX_AGE or left unusable by an error is closed before the send uses
it (``close_old_connections``, what Django's ``request_started`` runs; its
other receivers, and ``request_finished``'s, concern views, URLconfs and
caches a send does not touch, and dispatching them was a fifth of a
refused send's CPU). Sends are counted as ``danmaku_site.ops`` counts them.

On a send node (``loop_answers_sends``) the pull worker asks ``answer_send``
on its event loop for a send it has read whole (danmaku_site.sendrequest),
instead of handing it to a pool thread: the thread hand-off and its
wake-ups cost a gunicorn worker more than the send itself (the flood's
refusals and the accepted sends both about halved in web CPU). The loop
then waits for the send's Redis round trips and its INSERT (a millisecond
or two), one send at a time per worker, which is what a send node's loop
is for. Every such wait is bounded (REDIS_TIMEOUT_MS and its breaker,
DATABASE_QUERY_TIMEOUT_MS); after a database error sends go to pool
threads for ``LOOP_PAUSE_AFTER_DATABASE_ERROR_SECONDS``, so a database
that hangs holds one thread per send, not the loop.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from pydantic import ValidationError

from danmaku.errors import DB_DOWN_RETRY_MS, DanmakuError, Unavailable
from danmaku.models import ApiToken
from danmaku.pull.fastpath import host_allowed
from danmaku.pull.response import HttpAnswer
from danmaku.rows import thread_db
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
# After a database error, a send node's loop leaves sends to pool threads
# for this long: a database that hangs (rather than refuses) would hold the
# loop, and every connection on it, for a query timeout per send; a pool
# thread holds only itself.
LOOP_PAUSE_AFTER_DATABASE_ERROR_SECONDS = 5.0
# When a busy send node tells a send to come back (``busy_answer``).
BUSY_RETRY_MS = 1000
_clock = time.monotonic
REASONS = {201: "Created", 202: "Accepted", 400: "Bad Request", 403: "Forbidden", 404: "Not Found"}
REASONS.update({429: "Too Many Requests", 503: "Service Unavailable"})

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict, StartResponse], Iterable[bytes]]


def close_old_connections() -> None:
    """Django's ``close_old_connections`` for the one database a send uses
    (walking every alias through ``connections.all()`` was a twentieth of a
    refused send's CPU on the loop), its wrapper looked up once per thread."""
    thread_db().close_if_unusable_or_obsolete()


class SendFastPath:
    """WSGI callable: bearer-token sends here, everything else to ``app``."""

    def __init__(self, app: WSGIApp, *, served_by: bool, loop_answers_sends: bool = False) -> None:
        self.app = app
        self._served_by = served_by
        # Read by the pull worker: answer sends on its event loop.
        self.loop_answers_sends = loop_answers_sends
        self._loop_paused_until = 0.0
        self._forwarded_host = settings.USE_X_FORWARDED_HOST
        self._hosts: dict[str, bool] = {}
        # The pull worker asks the application for the pull fast path's answer.
        inner_answer = getattr(app, "answer", None)
        if inner_answer is not None:
            self.answer = inner_answer

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        length = self._length(environ)
        if length is None:
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(length)
        answer = self._answer(environ, body)
        if answer is None:
            # Django reads the body again, as the client sent it.
            environ["wsgi.input"] = io.BytesIO(body)
            return self.app(environ, start_response)
        start_response(answer.status_line, answer.headers)
        return answer.chunks

    def answer_send(self, environ: dict, body: bytes) -> HttpAnswer | None:
        """The answer to a send whose head is ``environ`` (its body apart), or
        ``None`` where ``__call__`` would hand it to Django. For a server
        that has read the request itself (the pull worker's loop, on a send node)."""
        if _clock() < self._loop_paused_until or self._length(environ) != len(body):
            return None
        return self._answer(environ, body)

    def busy_answer(self) -> HttpAnswer:
        """A send node too busy to take this send now: 503 with Retry-After,
        nothing charged or written (the client sends it again, its
        ``client_id`` the same)."""
        count_send(503)
        busy = Unavailable("too many sends right now; retry shortly", retry_after_ms=BUSY_RETRY_MS)
        return self._http(*error_answer(busy))

    def _length(self, environ: dict) -> int | None:
        """The body's length, when the request is a bearer send this layer takes."""
        path = environ.get("PATH_INFO", "")
        if (
            environ["REQUEST_METHOD"] != "POST"
            or not path.startswith(PREFIX)
            or not path.endswith(SUFFIX)
            or environ.get("QUERY_STRING")
            or not environ.get("HTTP_AUTHORIZATION", "").startswith(BEARER)
            # Another site's page: Django answers, with its CORS headers (danmaku_site.cors).
            or "HTTP_ORIGIN" in environ
            or not host_allowed(environ, forwarded_host=self._forwarded_host, remembered=self._hosts)
        ):
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            return None
        if not 0 < length <= MAX_BODY_BYTES or not environ.get("CONTENT_TYPE", "").startswith("application/json"):
            return None
        return length

    def _answer(self, environ: dict, body: bytes) -> HttpAnswer | None:
        path = environ["PATH_INFO"]
        close_old_connections()
        answered = self._send(environ, path[len(PREFIX) : -len(SUFFIX)], body)
        if answered is None:
            return None
        count_send(answered[0])
        return self._http(*answered)

    def _http(self, status: int, payload: dict, extra: list[tuple[str, str]]) -> HttpAnswer:
        data = json.dumps(payload).encode()
        headers = [*HEADERS, ("Content-Length", str(len(data))), *extra]
        if self._served_by:
            headers.append(servedby.header())
        return HttpAnswer(
            status=status, status_line=f"{status} {REASONS[status]}", headers=headers, body=data, chunks=[data]
        )

    def _send(self, environ: dict, slug: str, body: bytes):
        token = environ["HTTP_AUTHORIZATION"][len("Bearer ") :]
        try:
            payload = DanmakuIn.model_validate_json(body)
            sender, grant = sender_by_token(token) if len(token) <= 200 else (None, None)
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
                grant=grant,
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
        self._loop_paused_until = _clock() + LOOP_PAUSE_AFTER_DATABASE_ERROR_SECONDS
        unavailable = Unavailable("the comment store is unavailable; retry shortly", retry_after_ms=DB_DOWN_RETRY_MS)
        return error_answer(unavailable)
