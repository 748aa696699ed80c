"""A thin WSGI layer in front of Django that answers the viewers' pulls.

``GET /api/v1/rooms/<slug>/danmaku`` with no query string or exactly
``after=<cursor>`` is answered here, from the same shared bytes the ninja
endpoint would send (both go through ``danmaku.pull.response.respond``), without
building a request object, running middleware or resolving a URL. That is
most of the cost of a pull: the answer itself is a dict lookup.

Anything else goes to Django unchanged, so every error stays Django's and
ninja's: other methods (HEAD, POST), other or repeated query parameters,
anything in the cursor that would need decoding (``%``, ``+``) or is longer
than the API allows, a Host header Django would refuse, and any room that is not active in this process yet
(its first pull reads the database, which belongs inside Django's request
cycle: connection checks, query timeouts). ``DANMAKU_PULL_FAST_PATH=0``
turns the layer off; a send-role process never installs it, so its pulls
still get Django's 405. ``danmaku.runtime.wrap_fast_path`` installs it,
handing in the process's pull cache and refresher (``Process``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from danmaku.pull.cache import PullCache
from danmaku.pull.response import AFTER_MAX_LENGTH, HttpAnswer, count, respond
from infra.pullcounts import count_pull

PREFIX = "/api/v1/rooms/"
SUFFIX = "/danmaku"
QUERY_KEY = "after="
_AFTER_AT = len(QUERY_KEY)
# Characters a cursor can hold (danmaku.wire) and that no URL decoding
# changes: a value made of them reaches ninja exactly as written, so
# answering it here cannot differ from what ninja would answer.
AFTER_RE = re.compile(rf"[0-9a-z-]{{1,{AFTER_MAX_LENGTH}}}")

# Hosts whose verdict is remembered; beyond this a made-up Host header is
# checked on every request (still cheap) instead of growing the dict.
HOSTS_REMEMBERED = 64
# A process checks its refresher thread on its first pull, on every pull
# that builds an answer (at least once a second per room while the
# refresher publishes), and at least every this many pulls.
REFRESHER_CHECK_EVERY = 1000

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict, StartResponse], Iterable[bytes]]


class Writer(Protocol):
    """The thread that fills a pull cache (``danmaku.refresher.Refresher``)."""

    def running(self) -> bool: ...

    def ensure_started(self) -> None: ...


@dataclass(frozen=True)
class Process:
    """Where the fast path finds this process's pull state; the runtime hands it in."""

    # The pull cache, built on first use (that reads the store: a network call).
    pull_cache: Callable[[], PullCache]
    # The pull cache if it was built, else None; never builds it.
    built_pull_cache: Callable[[], PullCache | None]
    # The cache's writer, built with the cache.
    refresher: Callable[[], Writer]


class PullFastPath:
    """WSGI callable: pulls for active rooms here, everything else to ``app``."""

    def __init__(self, app: WSGIApp, process: Process) -> None:
        from django.conf import settings

        self.app = app
        self._pull_cache = process.pull_cache
        self._built_pull_cache = process.built_pull_cache
        self._refresher = process.refresher
        self._prefix_len = len(PREFIX)
        self._suffix_len = len(SUFFIX)
        self._autostart = settings.DANMAKU_REFRESHER_AUTOSTART
        # Django reads the host from X-Forwarded-Host in that case: let it.
        self._forwarded_host = settings.USE_X_FORWARDED_HOST
        self._hosts: dict[str, bool] = {}
        self._until_refresher_check = 0

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        http = self.answer(environ)
        if http is None:
            return self.app(environ, start_response)
        start_response(http.status_line, http.headers)
        return http.chunks

    def answer(self, environ: dict, *, on_event_loop: bool = False) -> HttpAnswer | None:
        """The answer to a pull this layer serves (counted), else ``None``.

        Never touches the database, the store or the network. With
        ``on_event_loop`` (the pull worker's loop, danmaku_site.pullworker)
        it does not wait on a lock either: a process whose pull cache is not
        built yet or whose refresher must be started answers ``None``, and
        the request goes the regular way, which does both."""
        path = environ.get("PATH_INFO", "")
        if (
            environ["REQUEST_METHOD"] == "GET"
            and path.startswith(PREFIX)
            and path.endswith(SUFFIX)
            and self._host_allowed(environ)
        ):
            answer = self._answer(
                path[self._prefix_len : -self._suffix_len], environ.get("QUERY_STRING", ""), on_event_loop
            )
            if answer is not None:
                http = respond(
                    answer,
                    accept_encoding=environ.get("HTTP_ACCEPT_ENCODING", ""),
                    if_none_match=environ.get("HTTP_IF_NONE_MATCH"),
                )
                count_pull(http.status)
                count(answer, http)
                return http
        return None

    def _host_allowed(self, environ: dict) -> bool:
        return host_allowed(environ, forwarded_host=self._forwarded_host, remembered=self._hosts)

    def _answer(self, slug: str, query: str, on_event_loop: bool):
        if not query:
            after = None
        elif query.startswith(QUERY_KEY):
            after = query[_AFTER_AT:]
        else:
            return None
        cache = self._built_pull_cache() if on_event_loop else self._pull_cache()
        if cache is None:
            return None
        # A cursor spelling seen before in this snapshot is one that parsed:
        # the common case skips the checks below.
        answer = cache.cached(slug, after)
        self._until_refresher_check -= 1
        if answer is not None and self._until_refresher_check > 0:
            return answer
        if self._autostart:
            # After gunicorn forked: the first pull of a process starts its
            # refresher, and one that died is started again.
            refresher = self._refresher()
            if on_event_loop and not refresher.running():
                return None
            refresher.ensure_started()
        self._until_refresher_check = REFRESHER_CHECK_EVERY
        if answer is not None:
            return answer
        if after is not None and not AFTER_RE.fullmatch(after):
            return None
        return cache.pull_active(slug, after)


def host_allowed(environ: dict, *, forwarded_host: bool, remembered: dict[str, bool]) -> bool:
    """Whether Django would accept the request's Host. Django refuses a Host
    outside ALLOWED_HOSTS with a 400 (CommonMiddleware asks for it): a layer
    in front of Django sends such a request on to Django. ``forwarded_host``:
    USE_X_FORWARDED_HOST (Django then reads X-Forwarded-Host: let it);
    ``remembered``: the caller's verdicts by Host, filled up to a bound."""
    host = environ.get("HTTP_HOST")
    if host is None or (forwarded_host and "HTTP_X_FORWARDED_HOST" in environ):
        return False
    allowed = remembered.get(host)
    if allowed is None:
        allowed = _host_valid(host)
        if len(remembered) < HOSTS_REMEMBERED:
            remembered[host] = allowed
    return allowed


def _host_valid(host: str) -> bool:
    from django.conf import settings
    from django.http.request import split_domain_port, validate_host

    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        # What Django allows then (HttpRequest.get_host).
        allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
    domain, _port = split_domain_port(host)
    return bool(domain) and validate_host(domain, allowed_hosts)
