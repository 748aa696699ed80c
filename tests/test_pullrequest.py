"""The pull worker's request recogniser against gunicorn's own parser.

Whatever ``pullrequest.parse`` accepts, gunicorn must accept as one plain,
kept-alive GET without a body, and give the same environ values the fast
path reads. What it refuses goes to gunicorn unchanged, so refusing is
always safe; the examples check it does not refuse the polls real clients
(browsers, nginx, wrk) send.
"""

from __future__ import annotations

import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from danmaku_site.pullrequest import READ_HEADERS, Limits, parse

CFG = Config()
LIMITS = Limits.from_config(CFG, read_bytes=8192)
ENVIRON_KEYS = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", *READ_HEADERS.values())
POLL = "/api/v1/rooms/lobby/danmaku"


def gunicorn_read(data: bytes, cfg: Config = CFG) -> tuple[dict, bytes] | None:
    """What gunicorn makes of ``data`` if it is one whole kept-alive request
    and nothing after it: its environ and body; ``None`` if anything else."""
    parser = RequestParser(cfg, iter([data]), ("127.0.0.1", 40000))
    try:
        request = next(parser)
        _, environ = wsgi.create(request, None, ("127.0.0.1", 40000), ("127.0.0.1", 8000), cfg)
        body = request.body.read()
        leftover = parser.unreader.read()
    except Exception:
        return None
    if leftover or request.should_close():
        return None
    return environ, body


def gunicorn_environ(data: bytes, cfg: Config = CFG) -> dict | None:
    """``gunicorn_read``'s environ for a request without a body, else ``None``."""
    read = gunicorn_read(data, cfg)
    return read[0] if read is not None and not read[1] else None


def request(target: str = POLL, *headers: str, method: str = "GET", version: str = "HTTP/1.1") -> bytes:
    return "\r\n".join([f"{method} {target} {version}", *headers, "", ""]).encode("latin-1")


BROWSER = request(
    f"{POLL}?after=1-abc",
    "Host: danmaku.example",
    "User-Agent: Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Mobile",
    "Accept: */*",
    "Accept-Encoding: gzip, deflate, br, zstd",
    "Accept-Language: zh-CN,zh;q=0.9",
    'If-None-Match: W/"r1-5-9"',
    "Referer: https://danmaku.example/rooms/lobby/",
    "Sec-Fetch-Mode: cors",
    "Connection: keep-alive",
)
NGINX = request(
    f"{POLL}?after=1-abc",
    "Host: danmaku.example",
    "X-Forwarded-For: 203.0.113.9",
    "X-Forwarded-Proto: https",
    "Accept-Encoding: gzip",
)
WRK = request(POLL, "Host: 127.0.0.1:8000", "Accept-Encoding: gzip")


@pytest.mark.parametrize("data", [BROWSER, NGINX, WRK], ids=["browser", "nginx", "wrk"])
def test_the_polls_clients_send_are_recognised_as_gunicorn_reads_them(data):
    environ = parse(data, LIMITS)
    assert environ is not None
    expected = gunicorn_environ(data)
    assert {key: environ.get(key) for key in ENVIRON_KEYS} == {key: expected.get(key) for key in ENVIRON_KEYS}


def test_a_poll_without_a_query_or_optional_headers_is_recognised():
    assert parse(request(POLL, "Host: h"), LIMITS) == {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": POLL,
        "QUERY_STRING": "",
        "HTTP_HOST": "h",
    }


@pytest.mark.parametrize(
    "data",
    [
        request(POLL, "Host: h")[:-2],  # not finished yet
        request(POLL, "Host: h") + request(POLL, "Host: h"),  # pipelined
        request(POLL, "Host: h") + b"x",  # something after it
        request(POLL, "Host: h", method="HEAD"),
        request(POLL, "Host: h", method="POST"),
        request(POLL, "Host: h", method="get"),
        request(POLL, "Host: h", version="HTTP/1.0"),
        request("http://h" + POLL, "Host: h"),  # absolute form
        request(POLL + "?after=%31", "Host: h"),  # decoded by gunicorn
        request(POLL + "?after=1+2", "Host: h"),
        request(POLL + "#frag", "Host: h"),
        request(POLL, "Host: h", "Host: i"),
        request(POLL, "Host: h", "Accept-Encoding: gzip", "Accept-Encoding: br"),
        request(POLL, "Host: h", "Content-Length: 0"),
        request(POLL, "Host: h", "Transfer-Encoding: chunked"),
        request(POLL, "Host: h", "Content-Type: text/plain"),
        request(POLL, "Host: h", "Expect: 100-continue"),
        request(POLL, "Host: h", "Upgrade: websocket", "Connection: Upgrade"),
        request(POLL, "Host: h", "Connection: close"),
        request(POLL, "Host: h", "X-Forwarded-Proto: https", "X-Forwarded-Ssl: off"),
        request(POLL, "Host: h", "X_Forwarded_Host: evil"),  # gunicorn drops it
        request(POLL, "Host: h", "Accept-Encoding : gzip"),  # space before the colon
        request(POLL, "Host: h", " folded"),  # obsolete line folding
        request(POLL, "Host: h", "Bad\x01: x"),
        request(POLL, "Host: h", "X-Note: caf\xe9"),
        b"GET " + POLL.encode() + b" HTTP/1.1\nHost: h\n\n",  # bare LF
    ],
)
def test_anything_but_one_plain_poll_goes_to_gunicorn(data):
    assert parse(data, LIMITS) is None


def test_gunicorns_limits_are_left_to_gunicorn():
    tight = Config()
    tight.set("limit_request_line", 40)
    tight.set("limit_request_fields", 3)
    tight.set("limit_request_field_size", 30)
    limits = Limits.from_config(tight, read_bytes=8192)
    assert parse(request(POLL, "Host: h", "A: 1"), limits) is not None
    assert parse(request(POLL + "?after=" + "1" * 20, "Host: h"), limits) is None  # request line
    assert parse(request(POLL, "Host: h", "A: 1", "B: 2"), limits) is None  # header count (one short of it)
    assert parse(request(POLL, "Host: h", "A: " + "x" * 30), limits) is None  # field size
    # gunicorn refuses past them: parse's bounds are never looser than its.
    for data in (
        request(POLL + "?after=" + "1" * 20, "Host: h"),
        request(POLL, "Host: h", "A: 1", "B: 2", "C: 3"),
        request(POLL, "Host: h", "A: " + "x" * 30),
    ):
        assert gunicorn_environ(data, tight) is None


# -- property: anything parse accepts, gunicorn reads the same way ------------------

NAMES = st.sampled_from(
    ["Host", "Accept-Encoding", "If-None-Match", "X-Forwarded-Host", "X-Forwarded-For", "User-Agent"] * 6
    + [
        "Host",
        "host",
        "HOST",
        "Accept-Encoding",
        "If-None-Match",
        "X-Forwarded-Host",
        "X-Forwarded-Proto",
        "X-Forwarded-Ssl",
        "X-Forwarded-Protocol",
        "Connection",
        "Content-Length",
        "Content-Type",
        "Transfer-Encoding",
        "Expect",
        "Upgrade",
        "TE",
        "X_Forwarded_Host",
        "SCRIPT_NAME",
        "X-Note",
        "Bad Name",
        "",
        " Host",
    ]
)
VALUE = st.one_of(
    st.sampled_from(["gzip", "h", 'W/"r1-5-9"', "keep-alive"]),
    st.sampled_from(["keep-alive", "Keep-Alive", "close", "gzip", "https", "http", "h", " h ", "*"]),
    st.text(alphabet=st.sampled_from(list('ab09 \t,;=*"/W%+:\x00\x7f\xe9-')), max_size=20),
)
TARGET = st.one_of(
    st.sampled_from([POLL, POLL + "?after=1-abc"]),
    st.sampled_from([POLL, POLL + "?after=1-abc", "/", "//x/y", "*", "/a/../b", POLL + "?", POLL + "?a=1&b=2"]),
    st.text(alphabet=st.sampled_from(list("/?=&-._~aZ9%+#; :@\xe9")), max_size=40),
)


@st.composite
def requests(draw) -> bytes:
    method = draw(st.sampled_from(["GET"] * 12 + ["HEAD", "POST", "get", "G ET"]))
    version = draw(st.sampled_from(["HTTP/1.1"] * 12 + ["HTTP/1.0", "HTTP/2.0", "http/1.1", "HTTP/1.1 "]))
    line = f"{method} {draw(TARGET)} {version}"
    separators = st.sampled_from([": "] * 6 + [":", ":\t", " : ", ":  "])
    headers = [
        f"{name}{sep}{value}" for name, sep, value in draw(st.lists(st.tuples(NAMES, separators, VALUE), max_size=6))
    ]
    newline = draw(st.sampled_from(["\r\n"] * 12 + ["\n"]))
    data = newline.join([line, *headers, "", ""]).encode("latin-1")
    return data + draw(st.sampled_from([b""] * 12 + [b"x", b"GET / HTTP/1.1\r\n\r\n"]))


@hypothesis_settings(max_examples=600, deadline=None)
@given(st.one_of(requests(), st.binary(max_size=200)))
@example(WRK)
@example(request(POLL, "Host: h", "Connection: keep-alive", "Connection: keep-alive"))
def test_what_parse_accepts_gunicorn_reads_the_same_way(data):
    environ = parse(data, LIMITS)
    if environ is None:
        return
    expected = gunicorn_environ(data)
    assert expected is not None, data
    assert {key: environ.get(key) for key in ENVIRON_KEYS} == {key: expected.get(key) for key in ENVIRON_KEYS}
