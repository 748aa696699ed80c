"""The one place a pull answer becomes HTTP: status, headers and body bytes.

The ninja endpoint (``danmaku.api.pull``, the documented contract) and the
WSGI fast path (``danmaku.pull.fastpath``) both answer through ``respond``,
so they cannot drift apart; a test holds them to the same bytes.

Each form an answer can take (identity, gzip, 304 for either) is built
once, the first time it is asked for, and kept on the shared
``PullAnswer``: per request, serving is two header tests and a list read.
Nothing here touches a database or a store.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from http import HTTPStatus

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from danmaku.pull.cache import PullAnswer
from infra import servedby

# The longest ``after`` the API accepts (the ninja query schema says so in
# OpenAPI; the fast path hands anything longer to it, so the 400 is ninja's).
AFTER_MAX_LENGTH = 64
# Seconds a client waits after a 503 (a room that could not be activated).
RETRY_AFTER_SECONDS = 1
CONTENT_TYPE = "application/json"
# What the server adds to an answer's head (Server, Date, Connection: about
# this much under gunicorn), so that the bytes counted for the egress budget
# are those that leave the node, not only the app's part.
SERVER_HEAD_BYTES = 80


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """One finished HTTP answer. Shared by every request that gets it:
    callers must not mutate ``headers`` (WSGI servers copy what they send)."""

    status: int
    # "200 OK": what WSGI's start_response takes.
    status_line: str
    headers: list[tuple[str, str]]
    body: bytes
    # The WSGI response iterable: [body], or [] for a 304. A list, not a
    # tuple: granian sends a list's bytes in one call, but walks any other
    # iterable chunk by chunk across the GIL (several times the cost of the
    # whole pull). Shared like ``headers``: never to be mutated.
    chunks: list[bytes]
    # Bytes on the wire: status line, headers (the server's own included,
    # about SERVER_HEAD_BYTES) and body; what the egress budget counts.
    size: int = 0


# Where each form of an answer is kept in ``PullAnswer.http``.
_IDENTITY, _GZIP, _IDENTITY_304, _GZIP_304 = range(4)


def respond(answer: PullAnswer, *, accept_encoding: str, if_none_match: str | None) -> HttpAnswer:
    """The HTTP answer for one request, from its two request headers that matter."""
    forms = answer.http
    if forms is None:
        forms = answer.http = [None, None, None, None]
    form = _GZIP if answer.gzipped is not None and accept_encoding and accepts_gzip(accept_encoding) else _IDENTITY
    if if_none_match and answer.etag and etag_matches(if_none_match, answer.etag):
        form += _IDENTITY_304
    built = forms[form]
    if built is None:
        # Built on first use: most answers are only ever asked for in one
        # form, and every answer of every room is rebuilt each second.
        # Two threads racing here build equal forms; either may stay.
        built = forms[form] = _build(answer, form)
    return built


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding value admits gzip (RFC 9110 12.5.3)."""
    if "gzip" not in accept_encoding:
        return False
    if ";" not in accept_encoding:
        # The common case ("gzip, deflate, br"): no weights to read.
        return True
    for part in accept_encoding.split(","):
        coding, _, params = part.partition(";")
        if coding.strip().lower() != "gzip":
            continue
        weight = params.strip().lower()
        if weight.startswith("q="):
            try:
                return float(weight[2:]) > 0
            except ValueError:
                return False
        return True
    return False


def etag_matches(if_none_match: str, etag: str) -> bool:
    """If-None-Match uses the weak comparison: ``W/`` prefixes are ignored,
    the header may list several tags, and ``*`` matches (RFC 9110 13.1.2)."""
    if if_none_match == etag:
        return True
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*":
            return True
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == etag:
            return True
    return False


def _build(answer: PullAnswer, form: int) -> HttpAnswer:
    gzipped = form in (_GZIP, _GZIP_304)
    not_modified = form in (_IDENTITY_304, _GZIP_304)
    body = answer.gzipped if gzipped else answer.body
    headers = [] if not_modified else [("Content-Type", answer.content_type)]
    # A 304 may carry the length of the answer it stands for (RFC 9110
    # 8.6); it keeps Django from adding a wrong "0".
    headers.append(("Content-Length", str(len(body))))
    if gzipped and not not_modified:
        headers.append(("Content-Encoding", "gzip"))
    headers.append(("Cache-Control", answer.cache_control))
    if answer.etag:
        headers.append(("ETag", answer.etag))
    # Even an answer too small to gzip says so: a proxy must not hand a
    # gzip-capable client's entry to one that cannot read it, or the reverse.
    headers.append(("Vary", "Accept-Encoding"))
    # Public reads, shared by every reader: any site's player may read them,
    # never with credentials, and the bytes stay the same for every origin.
    headers.append(("Access-Control-Allow-Origin", "*"))
    if answer.status == HTTPStatus.SERVICE_UNAVAILABLE:
        headers.append(("Retry-After", str(RETRY_AFTER_SECONDS)))
    headers += deployment_headers()
    status = HTTPStatus.NOT_MODIFIED if not_modified else answer.status
    status_line = _status_line(status)
    body = b"" if not_modified else body
    # "HTTP/1.1 " + status line, "name: value\r\n" each, the blank line.
    head = 9 + len(status_line) + 2 + sum(len(name) + len(value) + 4 for name, value in headers) + 2
    return HttpAnswer(
        status=status,
        status_line=status_line,
        headers=headers,
        body=body,
        chunks=[] if not_modified else [body],
        size=head + SERVER_HEAD_BYTES + len(body),
    )


def count(answer: PullAnswer, http: HttpAnswer) -> None:
    """Count a pull served (its room's meter: polls, bytes, viewers)."""
    meter = answer.meter
    if meter is not None:
        meter.count(http.size, answer.next_ms)


@functools.cache
def _status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"


# By process id: X-Served-By names the process, and a forked child must not
# inherit its parent's.
_deployment: dict[int, tuple[tuple[str, str], ...]] = {}


def deployment_headers() -> tuple[tuple[str, str], ...]:
    """Headers every API answer of this deployment carries, as Django's
    middleware would add them (so the fast path's answers match the ninja
    endpoint's whichever middleware the role runs). Worked out once per
    process: reading settings cost a quarter of building an answer."""
    pid = os.getpid()
    headers = _deployment.get(pid)
    if headers is None:
        headers = _deployment[pid] = tuple(_read_deployment_headers())
    return headers


@receiver(setting_changed)
def _forget_deployment_headers(**_) -> None:
    _deployment.clear()


def _read_deployment_headers() -> list[tuple[str, str]]:
    middleware = set(settings.MIDDLEWARE)
    headers = []
    if "django.middleware.security.SecurityMiddleware" in middleware:
        if settings.SECURE_CONTENT_TYPE_NOSNIFF:
            headers.append(("X-Content-Type-Options", "nosniff"))
        policy = settings.SECURE_REFERRER_POLICY
        if policy:
            parts = [v.strip() for v in policy.split(",")] if isinstance(policy, str) else list(policy)
            headers.append(("Referrer-Policy", ",".join(parts)))
        if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
            headers.append(("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY))
    if "django.middleware.clickjacking.XFrameOptionsMiddleware" in middleware:
        headers.append(("X-Frame-Options", getattr(settings, "X_FRAME_OPTIONS", "DENY").upper()))
    if servedby.enabled():
        headers.append(servedby.header())
    return headers
