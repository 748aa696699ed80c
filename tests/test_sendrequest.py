"""The send recogniser (a send node's loop) against gunicorn's own parser.

Whatever ``sendrequest.parse`` accepts, gunicorn must read as one whole,
kept-alive POST with the same environ values the send fast path reads and
the same body, and nothing after it. What it refuses goes to gunicorn
unchanged, so refusing is always safe; the examples check it does not
refuse the sends real clients (the viewer page, wrk, nginx) make.
"""

from __future__ import annotations

import json

import pytest
from gunicorn.config import Config
from hypothesis import event, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from danmaku_site.pullrequest import Limits
from danmaku_site.sendrequest import READ_HEADERS, parse
from tests.test_pullrequest import CFG, gunicorn_read

LIMITS = Limits.from_config(CFG, read_bytes=8192)
ENVIRON_KEYS = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", *READ_HEADERS.values())
SEND = "/api/v1/rooms/lobby/danmaku"
BODY = json.dumps({"text": "233333", "client_id": "c0ffee"}).encode()


def request(
    target: str = SEND, *headers: str, body: bytes = BODY, method: str = "POST", version: str = "HTTP/1.1"
) -> bytes:
    head = "\r\n".join([f"{method} {target} {version}", *headers, "", ""]).encode("latin-1")
    return head + body


def plain(*headers: str, body: bytes = BODY) -> bytes:
    return request(SEND, "Host: h", "Authorization: Bearer dm_x", f"Content-Length: {len(body)}", *headers, body=body)


PAGE = request(
    SEND,
    "Host: danmaku.example",
    "Connection: keep-alive",
    f"Content-Length: {len(BODY)}",
    "User-Agent: Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Mobile",
    "Authorization: Bearer dm_abc-DEF_123",
    "Content-Type: application/json",
    "Accept: */*",
    "Origin: https://danmaku.example",
    "Referer: https://danmaku.example/rooms/lobby/",
    "Accept-Encoding: gzip, deflate, br, zstd",
    "Accept-Language: zh-CN,zh;q=0.9",
)
WRK = request(
    SEND,
    "Host: 127.0.0.1:8000",
    "Authorization: Bearer dm_abc",
    "Content-Type: application/json",
    f"Content-Length: {len(BODY)}",
)
NGINX = request(
    SEND,
    "Host: danmaku.example",
    "X-Forwarded-For: 203.0.113.9",
    "X-Forwarded-Proto: https",
    f"Content-Length: {len(BODY)}",
    "Content-Type: application/json; charset=utf-8",
    "Authorization: Bearer dm_abc",
)


@pytest.mark.parametrize("data", [PAGE, WRK, NGINX], ids=["page", "wrk", "nginx"])
def test_the_sends_clients_make_are_recognised_as_gunicorn_reads_them(data):
    parsed = parse(data, LIMITS)
    assert parsed is not None
    environ, body = parsed
    expected_environ, expected_body = gunicorn_read(data)
    assert {key: environ.get(key) for key in ENVIRON_KEYS} == {key: expected_environ.get(key) for key in ENVIRON_KEYS}
    assert body == expected_body == BODY


def test_a_send_gives_the_keys_the_fast_path_reads_and_its_body():
    assert parse(plain("Content-Type: application/json"), LIMITS) == (
        {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": SEND,
            "QUERY_STRING": "",
            "HTTP_HOST": "h",
            "HTTP_AUTHORIZATION": "Bearer dm_x",
            "CONTENT_LENGTH": str(len(BODY)),
            "CONTENT_TYPE": "application/json",
        },
        BODY,
    )


@pytest.mark.parametrize(
    "data",
    [
        plain()[:-1],  # the body not whole yet
        plain() + b"x",  # something after it
        plain() + plain(),  # pipelined
        request(SEND, "Host: h", "Authorization: Bearer dm_x", body=BODY),  # no Content-Length
        request(SEND, "Host: h", f"Content-Length: {len(BODY) + 1}", body=BODY),
        request(SEND, "Host: h", f"Content-Length: +{len(BODY)}", body=BODY),
        request(SEND, "Host: h", f"Content-Length: {len(BODY)}", f"Content-Length: {len(BODY)}", body=BODY),
        request(SEND, "Host: h", "Transfer-Encoding: chunked", body=b"3\r\nabc\r\n0\r\n\r\n"),
        plain("Expect: 100-continue"),
        plain("Connection: close"),
        plain("Authorization: Bearer dm_y"),  # a second one
        plain("Host: i"),
        plain("X_Forwarded_Host: evil"),  # gunicorn drops it
        plain("Content-Type : application/json"),  # space before the colon
        plain(" folded"),
        request(SEND + "?x=1", "Host: h", f"Content-Length: {len(BODY)}"),
        request("/api/v1/rooms/a%62/danmaku", "Host: h", f"Content-Length: {len(BODY)}"),
        request("/api/v1/rooms/lobby/danmaku/", "Host: h", f"Content-Length: {len(BODY)}"),
        request("/api/v1/rooms/lobby/pin", "Host: h", f"Content-Length: {len(BODY)}"),
        request(SEND, "Host: h", f"Content-Length: {len(BODY)}", method="PUT"),
        request(SEND, "Host: h", f"Content-Length: {len(BODY)}", version="HTTP/1.0"),
        request(SEND, "Host: h", f"Content-Length: {len(BODY)}", method="GET"),
        plain().replace(b"\r\n", b"\n"),  # bare LF
    ],
)
def test_anything_but_one_plain_send_goes_to_gunicorn(data):
    assert parse(data, LIMITS) is None


def test_gunicorns_limits_are_left_to_gunicorn():
    tight = Config()
    tight.set("limit_request_fields", 4)
    tight.set("limit_request_field_size", 40)
    limits = Limits.from_config(tight, read_bytes=8192)
    assert parse(plain(), limits) is not None
    assert parse(plain("A: 1"), limits) is None  # header count (one short of it)
    assert parse(plain("A: " + "x" * 40), limits) is None  # field size
    for data in (plain("A: 1", "B: 2"), plain("A: " + "x" * 40)):
        assert gunicorn_read(data, tight) is None


# -- property: anything parse accepts, gunicorn reads the same way ------------------

NAMES = st.sampled_from(
    ["Host", "Authorization", "Content-Type", "User-Agent", "Accept", "Origin", "X-Forwarded-For"] * 6
    + [
        "Content-Length",
        "host",
        "AUTHORIZATION",
        "content-length",
        "X-Forwarded-Host",
        "X-Forwarded-Proto",
        "X-Forwarded-Ssl",
        "Connection",
        "Transfer-Encoding",
        "Expect",
        "Upgrade",
        "TE",
        "X_Forwarded_Host",
        "Content_Length",
        "X-Note",
        "Bad Name",
        "",
        " Host",
    ]
)
LENGTHS = st.integers(min_value=0, max_value=60).map(str)
VALUE = st.one_of(
    st.sampled_from(["h", "Bearer dm_x", "application/json", "keep-alive", "close", "chunked", "https"]),
    st.sampled_from(["h", "Bearer dm_x", "application/json", "*/*", "keep-alive"]),
    LENGTHS,
    st.sampled_from(["+5", "-1", " 5 ", "5,5", "0x10", "\xb3"]),
    st.text(alphabet=st.sampled_from(list('ab09 \t,;=*"/%+:\x00\x7f\xe9-')), max_size=20),
)
TARGET = st.one_of(
    *[st.just(SEND)] * 6,
    st.sampled_from([SEND + "?a=1", "/api/v1/rooms//danmaku", "/api/v1/rooms/a/b/danmaku", "*", "/"]),
    st.text(alphabet=st.sampled_from(list("/?=&-._~aZ9%+#; :@\xe9")), max_size=40).map(lambda t: SEND[:14] + t),
)


@st.composite
def requests(draw) -> bytes:
    method = draw(st.sampled_from(["POST"] * 12 + ["GET", "PUT", "post", "PO ST"]))
    version = draw(st.sampled_from(["HTTP/1.1"] * 12 + ["HTTP/1.0", "http/1.1", "HTTP/1.1 "]))
    line = f"{method} {draw(TARGET)} {version}"
    separators = st.sampled_from([": "] * 6 + [":", ":\t", " : ", ":  "])
    headers = [
        f"{name}{sep}{value}" for name, sep, value in draw(st.lists(st.tuples(NAMES, separators, VALUE), max_size=5))
    ]
    body = draw(st.binary(max_size=60))
    if draw(st.integers(0, 9)) < 8:
        # Mostly a length that frames the body, somewhere among the headers.
        headers.insert(draw(st.integers(0, len(headers))), f"Content-Length: {len(body)}")
    newline = draw(st.sampled_from(["\r\n"] * 12 + ["\n"]))
    head = newline.join([line, *headers, "", ""]).encode("latin-1")
    return head + body + draw(st.sampled_from([b""] * 12 + [b"x", b"GET / HTTP/1.1\r\n\r\n"]))


@hypothesis_settings(max_examples=800, deadline=None)
@given(st.one_of(requests(), requests(), requests(), st.binary(max_size=200)))
@example(WRK)
@example(plain("Connection: keep-alive", "Connection: keep-alive"))
def test_what_parse_accepts_gunicorn_reads_the_same_way(data):
    parsed = parse(data, LIMITS)
    event("accepted" if parsed is not None else "refused")
    if parsed is None:
        return
    expected = gunicorn_read(data)
    assert expected is not None, data
    environ, body = parsed
    expected_environ, expected_body = expected
    assert {key: environ.get(key) for key in ENVIRON_KEYS} == {key: expected_environ.get(key) for key in ENVIRON_KEYS}
    assert body == expected_body
