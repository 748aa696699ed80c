"""A thin WSGI layer in front of Django that answers the viewers' pulls.

``GET /api/v1/rooms/<slug>/danmaku`` with no query string or exactly
``after=<cursor>`` is answered here, from the same shared bytes the ninja
endpoint would send (both go through ``danmaku.pullhttp.respond``), without
building a request object, running middleware or resolving a URL. That is
most of the cost of a pull: the answer itself is a dict lookup.

Anything else goes to Django unchanged, so every error stays Django's and
ninja's: other methods (HEAD, POST), other or repeated query parameters,
anything in the cursor that would need decoding (``%``, ``+``) or is longer
than the API allows, and any room that is not active in this process yet
(its first pull reads the database, which belongs inside Django's request
cycle: connection checks, query timeouts). ``DANMAKU_PULL_FAST_PATH=0``
turns the layer off; a send-role process never installs it, so its pulls
still get Django's 405.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from danmaku import runtime
from danmaku.pullhttp import AFTER_MAX_LENGTH, respond
from danmaku_site.ops import count_pull

PREFIX = "/api/v1/rooms/"
SUFFIX = "/danmaku"
QUERY_KEY = "after="
_AFTER_AT = len(QUERY_KEY)
# Characters a cursor can hold (danmaku.wire) and that no URL decoding
# changes: a value made of them reaches ninja exactly as written, so
# answering it here cannot differ from what ninja would answer.
AFTER_RE = re.compile(rf"[0-9a-z-]{{1,{AFTER_MAX_LENGTH}}}")

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict, StartResponse], Iterable[bytes]]


class PullFastPath:
    """WSGI callable: pulls for active rooms here, everything else to ``app``."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self._prefix_len = len(PREFIX)
        self._suffix_len = len(SUFFIX)

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ["REQUEST_METHOD"] == "GET" and path.startswith(PREFIX) and path.endswith(SUFFIX):
            answer = self._answer(path[self._prefix_len : -self._suffix_len], environ.get("QUERY_STRING", ""))
            if answer is not None:
                http = respond(
                    answer,
                    accept_encoding=environ.get("HTTP_ACCEPT_ENCODING", ""),
                    if_none_match=environ.get("HTTP_IF_NONE_MATCH"),
                )
                count_pull(http.status)
                start_response(http.status_line, http.headers)
                return http.chunks
        return self.app(environ, start_response)

    @staticmethod
    def _answer(slug: str, query: str):
        if not query:
            after = None
        elif query.startswith(QUERY_KEY):
            after = query[_AFTER_AT:]
        else:
            return None
        # After gunicorn forked: the first request of a process starts its
        # refresher, and one that died is started again.
        runtime.ensure_refresher()
        cache = runtime.pull_cache()
        # A cursor spelling seen before in this snapshot is one that parsed:
        # the common case skips the checks below.
        answer = cache.cached(slug, after)
        if answer is not None:
            return answer
        if after is not None and not AFTER_RE.fullmatch(after):
            return None
        return cache.pull_active(slug, after)


def wrap(app: WSGIApp) -> WSGIApp:
    """``app`` behind the fast path when this process serves pulls and the
    switch is on; ``app`` itself otherwise."""
    from django.conf import settings

    if settings.DANMAKU_PULL_FAST_PATH and settings.DANMAKU_ROLE in ("all", "pull"):
        return PullFastPath(app)
    return app
