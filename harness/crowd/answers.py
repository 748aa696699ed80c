"""What a viewer reads off the wire: a response head and a pull answer body.

Pure (no Django, no I/O) so the tests can drive it with any bytes. A crowd
gets the same answer bytes many times a second (every viewer of the room
with the same cursor in the same second), so ``AnswerCache`` parses each
distinct body once: a poll then costs a dict lookup, not a gunzip and a
JSON parse.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass

import orjson

# The most distinct bodies kept parsed. A room's answers change every second
# and differ by cursor; a few hundred cover every cursor a crowd holds.
ANSWER_CACHE_ENTRIES = 512
# A head longer than this is not one our server sends: a broken response.
MAX_HEAD_BYTES = 16 * 1024
# A pull answer's reasons; an answer records its reason as its index here (a
# byte in the crowd's arrays, not a string per poll).
REASONS = ("normal", "quiet", "busy", "degraded")
REASON_CODES = {name: code for code, name in enumerate(REASONS)}


class ResponseError(ValueError):
    """Bytes that are not an HTTP/1.1 response (or answer) this client reads."""


@dataclass(frozen=True, slots=True)
class Head:
    status: int
    content_length: int
    gzipped: bool
    # The server said it closes the connection after this answer.
    close: bool
    # Retry-After in seconds (0 when absent or not a number of seconds).
    retry_after: int


@dataclass(frozen=True, slots=True)
class Answer:
    cursor: str
    next_ms: int
    gap: bool
    ids: tuple[int, ...]
    reason: int  # index in REASONS
    # Comments of the seconds this answer covers that the room's display cap left out.
    missed: int
    # The server's (rounded) estimate of the room's viewers; 0 when it sent none.
    viewers: int


def parse_head(head: bytes) -> Head:
    """The status line and headers (without the blank line) of one response."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise ResponseError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    length = None
    gzipped = close = False
    retry_after = 0
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise ResponseError(f"not a header line: {line[:80]!r}")
        name = name.strip().lower()
        value = value.strip()
        if name == b"content-length":
            if not value.isdigit():
                raise ResponseError(f"bad Content-Length: {value[:40]!r}")
            length = int(value)
        elif name == b"content-encoding":
            gzipped = value.lower() == b"gzip"
        elif name == b"connection":
            close = b"close" in value.lower()
        elif name == b"transfer-encoding":
            # Our server always sends a length; a chunked answer is a change
            # this client should be taught about, not guessed through.
            raise ResponseError("chunked answers are not read by this client")
        elif name == b"retry-after" and value.isdigit():
            retry_after = int(value)
    if length is None:
        raise ResponseError("no Content-Length")
    return Head(int(parts[1]), length, gzipped, close, retry_after)


def parse_answer(body: bytes, *, gzipped: bool) -> Answer:
    """A pull answer (``danmaku.pull.wire.encode_pull``'s JSON, maybe gzipped)."""
    try:
        raw = gzip.decompress(body) if gzipped else body
        data = orjson.loads(raw)
        answer = Answer(
            data["cursor"],
            data["next_ms"],
            data["gap"],
            tuple(data["items"]["id"]),
            REASON_CODES[data["reason"]],
            data["missed"],
            data.get("viewers", 0),
        )
    except (OSError, EOFError, zlib.error, orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ResponseError(f"not a pull answer: {type(exc).__name__}: {exc}") from None
    if (
        not isinstance(answer.cursor, str)
        or type(answer.next_ms) is not int
        or answer.next_ms <= 0
        or type(answer.gap) is not bool
        or not all(type(item_id) is int for item_id in answer.ids)
        or type(answer.missed) is not int
        or answer.missed < 0
        or type(answer.viewers) is not int
        or answer.viewers < 0
    ):
        raise ResponseError(f"not a pull answer: {raw[:120]!r}")
    return answer


class AnswerCache:
    """``parse_answer`` memoized by the body's bytes (and encoding), and
    ``parse_head`` by the head's (a head changes with its Date, once a second)."""

    def __init__(self, entries: int = ANSWER_CACHE_ENTRIES) -> None:
        self._entries = entries
        self._parsed: dict[tuple[bytes, bool], Answer] = {}
        self._heads: dict[bytes, Head] = {}
        self.hits = 0
        self.misses = 0

    def head(self, head: bytes) -> Head:
        parsed = self._heads.get(head)
        if parsed is None:
            parsed = parse_head(head)
            if len(self._heads) >= self._entries:
                self._heads.clear()
            self._heads[head] = parsed
        return parsed

    def parse(self, body: bytes, *, gzipped: bool) -> Answer:
        key = (body, gzipped)
        answer = self._parsed.get(key)
        if answer is not None:
            self.hits += 1
            return answer
        self.misses += 1
        answer = parse_answer(body, gzipped=gzipped)
        if len(self._parsed) >= self._entries:
            # Old answers are not asked for again (cursors only move on).
            self._parsed.clear()
        self._parsed[key] = answer
        return answer
