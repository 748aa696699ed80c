"""When a request read on the pull worker's loop may go to a pool thread,
against gunicorn's own parser.

The safety property: whenever ``Arrival`` says a request is whole, gunicorn
parses it (or refuses it), and reads a body the loop waited for, without
asking the client for another byte; so a pool thread never waits on a
client for the head. The examples check that the loop does wait while a
real request is still arriving.
"""

from __future__ import annotations

import pytest
from gunicorn.config import Config
from gunicorn.http.parser import RequestParser
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from danmaku_site.requestframe import Arrival, Framing

CFG = Config()
MAX_BODY = 64
FRAMING = Framing.from_config(CFG, max_body=MAX_BODY)


class NeededMore(Exception):
    pass


def _bytes_then_stop(data: bytes):
    yield data
    raise NeededMore


def gunicorn_needs_more(data: bytes) -> bool:
    """Whether gunicorn's parser, given ``data``, asks for more before it
    has the first request (and the body the loop waits for) or refuses it."""
    parser = RequestParser(CFG, _bytes_then_stop(data), ("127.0.0.1", 40000))
    try:
        request = next(parser)
        headers = {name: value for name, value in request.headers}
        length = headers.get("CONTENT-LENGTH", "")
        waited = length.isdigit() and int(length) <= MAX_BODY and not {"TRANSFER-ENCODING", "EXPECT"} & headers.keys()
        if waited:
            request.body.read()
    except NeededMore:
        return True
    except Exception:
        return False  # refused: gunicorn answers it at once
    return False


def arrives_whole_after(pieces: list[bytes]) -> int | None:
    """The number of pieces after which the loop hands the request over."""
    arrival = Arrival(FRAMING)
    for n, piece in enumerate(pieces, 1):
        if arrival.add(piece):
            return n
    return None


def request(*lines: str, body: bytes = b"") -> bytes:
    return "\r\n".join([*lines, "", ""]).encode("latin-1") + body


GET = request("GET /api/v1/rooms/live/danmaku?after=1-abc HTTP/1.1", "Host: example", "Accept-Encoding: gzip")
POST = request(
    "POST /api/v1/rooms/live/danmaku HTTP/1.1",
    "Host: example",
    "content-length:  16 ",
    "Content-Type: application/json",
    body=b'{"text": "hi\nx"}',
)


@pytest.mark.parametrize("data", [GET, POST, b"\r\n" + GET], ids=["get", "post-with-body", "leading-empty-line"])
def test_a_request_is_whole_at_its_last_byte_and_not_before(data):
    # One byte at a time: the end of the head is found across pieces.
    assert arrives_whole_after([data[n : n + 1] for n in range(len(data))]) == len(data)
    for cut in range(1, len(data)):
        assert arrives_whole_after([data[:cut], data[cut:]]) == 2, cut
        assert gunicorn_needs_more(data[:cut]), cut
    assert not gunicorn_needs_more(data)


@pytest.mark.parametrize(
    "head",
    [
        request("POST / HTTP/1.1", "Host: x", "Transfer-Encoding: chunked"),
        request("POST / HTTP/1.1", "Host: x", "Expect: 100-continue", "Content-Length: 10"),
        request("POST / HTTP/1.1", "Host: x", f"Content-Length: {MAX_BODY + 1}"),
        request("POST / HTTP/1.1", "Host: x", "Content-Length: 1", "Content-Length: 1"),
        request("POST / HTTP/1.1", "Host: x", "Content-Length: " + "9" * 5000),
    ],
    ids=["chunked", "expect-100-continue", "large-body", "repeated-length", "huge-length"],
)
def test_a_body_the_loop_does_not_wait_for_goes_with_the_head(head):
    assert arrives_whole_after([head]) == 1


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\nHost: x",  # bare LF
        b"GET /" + b"a" * 9000,  # request line past gunicorn's limit
        b"\r\n\r\n",  # an empty request line
    ],
    ids=["bare-lf", "long-request-line", "empty-request-line"],
)
def test_bytes_gunicorn_refuses_at_once_go_at_once(data):
    arrival = Arrival(FRAMING)
    assert arrival.add(data)
    assert not arrival.too_large
    assert not gunicorn_needs_more(data)


def test_a_head_past_gunicorns_limit_is_marked_for_the_loop_to_refuse():
    """gunicorn would read once more before refusing it (a pool thread
    waiting on the client), so the loop answers it."""
    data = b"GET / HTTP/1.1\r\n" + b"X-Big: a\r\n" * (FRAMING.max_head // 10 + 1)
    assert gunicorn_needs_more(data)
    arrival = Arrival(FRAMING)
    assert not arrival.add(data[: FRAMING.max_head])
    assert arrival.add(data[FRAMING.max_head :])
    assert arrival.too_large


TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=8)
HEADER = st.one_of(
    st.tuples(TOKEN, st.text(alphabet="abc xyz09:;", max_size=12)).map(lambda nv: f"{nv[0]}: {nv[1]}"),
    st.tuples(
        st.sampled_from(["Content-Length: ", "content-length:\t", "CONTENT-LENGTH:", "Content-Length : "]),
        st.integers(0, MAX_BODY * 2),
    ).map(lambda nv: f"{nv[0]}{nv[1]}"),
    st.sampled_from(["Transfer-Encoding: chunked", "Expect: 100-continue", "Content-Length: x", "Host: a"]),
)


@st.composite
def arriving_requests(draw) -> list[bytes]:
    """A request (well formed or not), its body (of any length) and what
    follows, cut into pieces."""
    method = draw(st.sampled_from(["GET", "POST", "PUT", "G@T"]))
    line = f"{method} /{draw(TOKEN)} {draw(st.sampled_from(['HTTP/1.1', 'HTTP/1.0', 'HTTP/9']))}"
    head = "\r\n".join([line, *draw(st.lists(HEADER, max_size=5)), "", ""]).encode("latin-1")
    if draw(st.booleans()):
        head = head.replace(b"\r\n", b"\n", 1)
    data = head + draw(st.binary(max_size=MAX_BODY * 2))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


@hypothesis_settings(max_examples=1000, deadline=None)
@given(arriving_requests())
def test_a_request_handed_over_never_makes_gunicorn_wait_for_the_client(pieces):
    arrival = Arrival(FRAMING)
    for piece in pieces:
        if arrival.add(piece):
            assert not arrival.too_large
            assert not gunicorn_needs_more(bytes(arrival.data)), bytes(arrival.data)
            return
