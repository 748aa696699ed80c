"""The send the pull worker answers on its loop, on a send node, without gunicorn's parser.

A client's send is a ``POST`` of a small JSON body to a room's danmaku path
with a bearer token, whole in one read. ``parse`` recognises exactly that,
strictly, as ``danmaku_site.pullrequest`` recognises a poll (the same
header rules and limits): the head's WSGI environ keys the send fast path
reads, with the values gunicorn's parser would have put there, and the
body. Anything else (another target or version, a query, a body that is
not exactly ``Content-Length`` bytes, chunked or ``Expect``, a repeated
header the fast path reads, anything ``pullrequest`` refuses) is ``None``,
and goes to gunicorn unchanged. A property test holds ``parse`` to
gunicorn's parser.
"""

from __future__ import annotations

import re

from danmaku_site.pullrequest import Limits, read_fields, split_head

# A room's send path, made of characters no URL decoding changes.
_REQUEST_LINE = re.compile(rb"POST (/api/v1/rooms/[A-Za-z0-9._~-]+/danmaku) HTTP/1\.1")
READ_HEADERS = {
    b"host": "HTTP_HOST",
    b"authorization": "HTTP_AUTHORIZATION",
    b"content-type": "CONTENT_TYPE",
    b"content-length": "CONTENT_LENGTH",
    b"x-forwarded-host": "HTTP_X_FORWARDED_HOST",
}
# A body in chunks, an interim answer asked for, a protocol change.
_NOT_A_SEND = frozenset((b"transfer-encoding", b"expect", b"upgrade", b"http2-settings", b"te"))
# The longest Content-Length taken (the fast path takes 16 KB at most).
_LENGTH = re.compile(rb"[0-9]{1,6}")


def parse(data: bytes, limits: Limits) -> tuple[dict[str, str], bytes] | None:
    """(the environ, the body) of the one plain send ``data`` holds exactly, or ``None``."""
    head, blank, body = data.partition(b"\r\n\r\n")
    if not blank:
        return None
    split = split_head(head, _REQUEST_LINE, limits)
    if split is None:
        return None
    request_line, fields = split
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": request_line[1].decode("ascii"), "QUERY_STRING": ""}
    if not read_fields(fields, limits, environ, read=READ_HEADERS, refused=_NOT_A_SEND):
        return None
    length = environ.get("CONTENT_LENGTH")
    if length is None or not _LENGTH.fullmatch(length.encode("ascii")) or int(length) != len(body):
        return None
    return environ, body
