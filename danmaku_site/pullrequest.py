"""The one kind of HTTP request the pull worker answers without gunicorn's parser.

A viewer's poll is a short ``GET`` with a handful of headers, arriving
whole in one read. ``parse`` recognises exactly that, strictly, and gives
back the WSGI environ keys the pull fast path reads, with the values
gunicorn's own parser would have put there. Anything else (another method or
version, a body, a request split across reads or followed by the next one,
a percent-escape, a header that frames a body, changes the connection or
that gunicorn refuses when repeated, a repeated header the fast path reads,
any byte outside plain ASCII, anything past gunicorn's limits) is ``None``:
the caller hands the bytes to gunicorn unchanged, so every error, limit and
corner case stays gunicorn's. A property test holds ``parse`` to gunicorn's
parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Origin-form target made of characters no URL decoding changes (no "%",
# "+", ";" or "#"), so PATH_INFO and QUERY_STRING are the bytes as sent.
_REQUEST_LINE = re.compile(rb"GET (/[A-Za-z0-9._~/-]*)(?:\?([A-Za-z0-9._~=&-]*))? HTTP/1\.1")
# An RFC 9110 token without "_" (gunicorn drops or refuses such names) and
# a value of visible ASCII with inner spaces and tabs; nothing before the
# name (obsolete line folding) or between it and the colon.
_HEADER_LINE = re.compile(rb"([!#$%&'*+.^`|~0-9A-Za-z-]+):[ \t]*((?:[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?)[ \t]*")

# Headers read into the environ; a request repeating one goes to gunicorn
# (which joins the copies with commas, or refuses a second Host).
READ_HEADERS = {
    b"host": "HTTP_HOST",
    b"accept-encoding": "HTTP_ACCEPT_ENCODING",
    b"if-none-match": "HTTP_IF_NONE_MATCH",
    b"x-forwarded-host": "HTTP_X_FORWARDED_HOST",
}
# Headers that frame a body, ask for an interim answer, change protocol, or
# that gunicorn refuses when repeated: such a request is not a plain poll.
_NOT_A_POLL = frozenset(
    (b"content-length", b"transfer-encoding", b"content-type", b"expect", b"upgrade", b"http2-settings", b"te")
)


@dataclass(frozen=True)
class Limits:
    """gunicorn's request limits, as positive numbers (see ``from_config``)."""

    line: int
    fields: int
    field_size: int
    # Lower-cased names of gunicorn's ``secure_scheme_headers``: with more
    # than one in a request, gunicorn may refuse it as conflicting.
    scheme_headers: frozenset[bytes] = frozenset()

    @classmethod
    def from_config(cls, cfg, read_bytes: int) -> Limits:
        def bound(value: int) -> int:
            # 0 or less means gunicorn's own maximum, which is above what one
            # read can hold.
            return value if value > 0 else read_bytes

        return cls(
            line=bound(cfg.limit_request_line),
            fields=bound(cfg.limit_request_fields),
            field_size=bound(cfg.limit_request_field_size),
            scheme_headers=frozenset(name.lower().encode("latin-1") for name in cfg.secure_scheme_headers),
        )


def parse(data: bytes, limits: Limits) -> dict[str, str] | None:
    """The environ of the one plain GET ``data`` holds exactly, or ``None``."""
    if not data.endswith(b"\r\n\r\n"):
        return None
    split = split_head(data[:-4], _REQUEST_LINE, limits)
    if split is None:
        return None
    request_line, fields = split
    path, query = request_line.groups()
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path.decode("ascii"),
        "QUERY_STRING": query.decode("ascii") if query is not None else "",
    }
    return environ if read_fields(fields, limits, environ, read=READ_HEADERS, refused=_NOT_A_POLL) else None


def split_head(head: bytes, request_line: re.Pattern, limits: Limits) -> tuple[re.Match, list[bytes]] | None:
    """``head`` (without its blank line) as its request line's match and its
    header lines; ``None`` past gunicorn's limits or when the request line
    is not ``request_line`` exactly."""
    lines = head.split(b"\r\n")
    # gunicorn refuses a request whose header count reaches its limit.
    if len(lines[0]) > limits.line or len(lines) - 1 >= limits.fields:
        return None
    match = request_line.fullmatch(lines[0])
    return None if match is None else (match, lines[1:])


def read_fields(
    lines: list[bytes], limits: Limits, environ: dict[str, str], *, read: dict[bytes, str], refused: frozenset[bytes]
) -> bool:
    """Put the ``read`` headers of ``lines`` into ``environ``; False when a
    line is not one gunicorn reads plainly, a header is ``refused``, a read
    one repeats, or the connection is not kept alive."""
    scheme_headers = 0
    for line in lines:
        if len(line) + 2 > limits.field_size:
            return False
        header = _HEADER_LINE.fullmatch(line)
        if header is None:
            return False
        name = header[1].lower()
        if name in refused:
            return False
        value = header[2]
        if name == b"connection":
            # Keep-alive is HTTP/1.1's default; "close" or "upgrade" changes
            # what the answer must say.
            if value.lower() != b"keep-alive":
                return False
            continue
        if name in limits.scheme_headers:
            scheme_headers += 1
            if scheme_headers > 1:
                return False
            continue
        key = read.get(name)
        if key is not None:
            if key in environ:
                return False
            environ[key] = value.decode("ascii")
    return True
