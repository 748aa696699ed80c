"""When the bytes read from a connection hold a request a pool thread can run.

The pull worker reads every request on its event loop and hands it to a
pool thread only once gunicorn's parser can take it without waiting on the
client (danmaku_site.pullworker): a client that sends half a request and
goes quiet then holds a connection, never a thread. ``Arrival`` says when
that is: the head is complete and, when it announces a small body by
``Content-Length``, the body is there too. It is not a parser: everything
gunicorn checks stays gunicorn's, and bytes gunicorn refuses without
reading further (a bare LF, a request line past its limit, an empty request
line) count as ready, so the refusal comes at once. A head past gunicorn's
limit is ready too, marked ``too_large``: gunicorn would wait for one more
read before refusing it. Pure: no Django, no sockets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# gunicorn's own ceilings (gunicorn.http.message), for settings of 0 or
# less, which mean "gunicorn's maximum".
_MAX_REQUEST_LINE = 8190
_UNLIMITED_REQUEST_LINE = 1024 * 1024
_MAX_HEADERS = 32768
_DEFAULT_FIELD_SIZE = 8190

# Headers after which the body is not worth waiting for on the loop: a
# chunked body is read by gunicorn as it comes, and a client asking
# "Expect: 100-continue" sends nothing until gunicorn answers it.
_BODY_ON_THE_POOL = re.compile(rb"\r\n(?:transfer-encoding|expect)[ \t]*:", re.IGNORECASE)
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*([^\r]*?)[ \t]*(?=\r\n)", re.IGNORECASE)


@dataclass(frozen=True)
class Framing:
    # Longest request line gunicorn reads before refusing it.
    max_line: int
    # Most bytes a head may take before gunicorn refuses it (request line,
    # headers, the empty line RFC 9112 lets come first).
    max_head: int
    # Largest body read on the loop; a bigger one is read by the pool
    # thread, each read bounded by the socket's timeout.
    max_body: int

    @classmethod
    def from_config(cls, cfg, *, max_body: int) -> Framing:
        """gunicorn's limits as its parser applies them (gunicorn.http.message)."""
        line = cfg.limit_request_line
        if line < 0 or line >= _MAX_REQUEST_LINE:
            line = _MAX_REQUEST_LINE
        elif line == 0:
            line = _UNLIMITED_REQUEST_LINE
        fields = cfg.limit_request_fields
        if fields <= 0 or fields > _MAX_HEADERS:
            fields = _MAX_HEADERS
        field_size = cfg.limit_request_field_size
        if field_size <= 0:
            field_size = _DEFAULT_FIELD_SIZE
        return cls(max_line=line, max_head=2 + line + 2 + fields * (field_size + 2) + 4, max_body=max_body)


class Arrival:
    """A request arriving in pieces: ``add`` each, until it says the request
    is whole. Each byte is searched once, however many pieces there are."""

    def __init__(self, framing: Framing) -> None:
        self.framing = framing
        self.data = bytearray()
        self._scanned = 0  # bytes searched for the end of the head, not found
        self._body_from = -1  # where the body starts, once the head is whole
        self._body_length = 0
        # Whole means refused: a head past gunicorn's limits (431).
        self.too_large = False

    def add(self, piece: bytes) -> bool:
        data = self.data
        data += piece
        if self._body_from < 0 and not self._head(data):
            return False
        return self._body_from < 0 or len(data) >= self._body_from + self._body_length

    def _head(self, data: bytearray) -> bool:
        """Whether the head is done with: whole (the body, if any, to wait
        for is then set), or refused by gunicorn without further reading."""
        scanned, self._scanned = self._scanned, len(data)
        # RFC 9112 section 2.2: gunicorn ignores one empty line before the request.
        start = 2 if data[:2] == b"\r\n" else 0
        if data[start : start + 2] == b"\r\n":
            return True  # an empty request line: refused
        # The head's end may straddle the previous piece's last 3 bytes.
        end = data.find(b"\r\n\r\n", max(start, scanned - 3))
        if end < 0:
            if data.count(b"\n", scanned) != data.count(b"\r\n", max(0, scanned - 1)):
                return True  # a bare LF: refused
            if data.find(b"\r\n", start) < 0 and len(data) - start > self.framing.max_line:
                return True  # the request line is already too long: refused
            # Past gunicorn's limit with no end in sight: gunicorn would read
            # once more before refusing it, so the caller refuses it instead.
            self.too_large = len(data) > self.framing.max_head
            return self.too_large
        length = _body_to_wait_for(data[start : end + 2], self.framing.max_body)
        if length:
            self._body_from, self._body_length = end + 4, length
        return True


def _body_to_wait_for(head: bytes | bytearray, max_body: int) -> int:
    """The length of the body the loop waits for after ``head``: one
    announced by a plain ``Content-Length`` up to ``max_body``; else 0."""
    if _BODY_ON_THE_POOL.search(head):
        return 0
    lengths = _CONTENT_LENGTH.findall(head)
    # Repeated, malformed or too long to wait for: gunicorn decides (or
    # refuses) those itself. (A length with more digits than max_body is not
    # parsed: int() refuses strings of thousands of digits.)
    if len(lengths) != 1 or not lengths[0].isdigit() or len(lengths[0]) > len(str(max_body)):
        return 0
    length = int(lengths[0])
    return length if length <= max_body else 0
