"""A thin WSGI layer that answers the replay reads a node has ready:
segments by version, already built, and a broadcast's own answer of the
last second (``danmaku.replaycache``). Everything else, and those it does
not have yet, goes on to the app (Django builds them, once, shared).

When a big stream ends, its viewers open the replay together; through
Django each of these answers cost a pool thread ~5 ms, and a storm of
2,000 viewers on one 2-worker node waited seconds. Here an answer is a
dictionary look-up and a header test, and the pull worker gives it on its
event loop (``answer``), as it does pulls.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings

from danmaku.pull.fastpath import host_allowed
from danmaku.pull.response import HttpAnswer, respond
from danmaku.replaycache import replay_cache

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict, StartResponse], Iterable[bytes]]

PREFIX = "/api/v1/broadcasts/"
PATH = re.compile(r"/api/v1/broadcasts/([1-9][0-9]{0,17})(/danmaku)?")
# The versioned URL, spelt as our own clients write it.
SEGMENT_QUERY = re.compile(r"segment=(0|[1-9][0-9]{0,5})&v=(0|[1-9][0-9]{0,17})")


class ReplayFastPath:
    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self._inner_answer = getattr(app, "answer", None)
        self._forwarded_host = settings.USE_X_FORWARDED_HOST
        self._hosts: dict[str, bool] = {}

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        http = self._replay(environ)
        if http is None:
            return self.app(environ, start_response)
        start_response(http.status_line, http.headers)
        return http.chunks

    def answer(self, environ: dict, *, on_event_loop: bool = False) -> HttpAnswer | None:
        """A ready replay answer, else the pull fast path's (if any), else None."""
        http = self._replay(environ)
        if http is not None:
            return http
        return None if self._inner_answer is None else self._inner_answer(environ, on_event_loop=on_event_loop)

    def _replay(self, environ: dict) -> HttpAnswer | None:
        path = environ.get("PATH_INFO", "")
        # On an all-role node every pull passes here first: a prefix test, not the regex.
        if not path.startswith(PREFIX) or environ["REQUEST_METHOD"] != "GET":
            return None
        match = PATH.fullmatch(path)
        if match is None or not host_allowed(environ, forwarded_host=self._forwarded_host, remembered=self._hosts):
            return None
        broadcast_id = int(match[1])
        query = environ.get("QUERY_STRING", "")
        if match[2] is None:
            answer = None if query else replay_cache.cached_detail(broadcast_id)
        else:
            wanted = SEGMENT_QUERY.fullmatch(query)
            answer = None if wanted is None else replay_cache.built(broadcast_id, int(wanted[1]), int(wanted[2]))
        if answer is None:
            return None
        return respond(
            answer,
            accept_encoding=environ.get("HTTP_ACCEPT_ENCODING", ""),
            if_none_match=environ.get("HTTP_IF_NONE_MATCH"),
        )
