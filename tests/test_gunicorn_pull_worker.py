"""gunicorn as shipped (danmaku_site.pullworker) against stock gthread, over
raw sockets the way a client's kept-alive connection uses them.

Two real gunicorn instances over the same database: the same requests get
the same bytes from both (Date aside) whichever way the pull worker takes
them, and what only a client on a real network does (a request in two
packets, two requests in one, a send between polls, a client that stops
reading) still gets every answer, whole and in order.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from typing import NamedTuple

import pytest
import requests

from harness import local
from harness.rawhttp import AnswerReader

pytestmark = pytest.mark.slow

ROOM = "loop"
PATH = f"/api/v1/rooms/{ROOM}/danmaku"
DATE = re.compile(rb"\r\nDate: [^\r]*\r\n")
ETAG = re.compile(rb"\r\nETag: ([^\r]*)")
TIMEOUT_SECONDS = 5
# Comments whose answer makes a slow reader's buffers fill within a bounded
# number of polls.
COMMENTS = 30
COMMENT_TEXT = "\u5f39" * 95
SLOW_READER_MAX_POLLS = 3000
SLOW_READER_MAX_SECONDS = 20
# Comments are sealed into the window about a second after they are sent.
DELIVERY_SECONDS = 5


class Connection:
    """One kept-alive client connection."""

    def __init__(self, host_port: str, *, receive_buffer: int | None = None) -> None:
        host, port = host_port.rsplit(":", 1)
        self.sock = socket.socket()
        if receive_buffer is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(TIMEOUT_SECONDS)
        self.sock.connect((host, int(port)))
        self.host = host_port
        self.reader = AnswerReader(self.sock)

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def ask(self, data: bytes) -> bytes:
        self.send(data)
        return self.answer()

    def answer(self) -> bytes:
        return self.reader.answer()


def pull(host: str, query: str = "", *headers: str) -> bytes:
    target = PATH + (f"?{query}" if query else "")
    return "\r\n".join([f"GET {target} HTTP/1.1", f"Host: {host}", *headers, "", ""]).encode()


def cursor_of(answer: bytes) -> str:
    return re.search(rb'"cursor":"([^"]+)"', answer)[1].decode()


def etag_of(answer: bytes) -> str:
    return ETAG.search(answer)[1].decode()


def without_date(answer: bytes) -> bytes:
    return DATE.sub(b"\r\nDate: -\r\n", answer)


class Servers(NamedTuple):
    shipped: local.LocalServer  # gunicorn as shipped (the pull worker)
    stock: str  # host:port of stock gthread
    before_comments: str  # a cursor from before the fixture's comments


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[Servers]:
    """(gunicorn as shipped, stock gthread), one worker each, one database."""
    var_dir = tmp_path_factory.mktemp("pullworker")
    extra = {"DANMAKU_SERVED_BY_HEADER": "0", "GUNICORN_LOG_LEVEL": "debug"}
    fields = {"user_send_interval_ms": 0, "room_send_cap_per_second": 1000}
    try:
        with local.gunicorn(room=ROOM, var_dir=var_dir, workers=1, room_fields=fields, extra_env=extra) as shipped:
            # A cursor from before the comments: pulls after it carry all of
            # them for as long as they stay in the window (a minute).
            joined = requests.get(shipped.danmaku_url(ROOM), timeout=TIMEOUT_SECONDS)
            before_comments = joined.json()["cursor"]
            for n in range(COMMENTS):
                sent = requests.post(
                    shipped.danmaku_url(ROOM),
                    json={"text": f"{n} {COMMENT_TEXT}"},
                    headers={"Authorization": f"Bearer {shipped.tokens[0]}"},
                    timeout=TIMEOUT_SECONDS,
                )
                assert sent.status_code == 201, sent.text
            stock_env = shipped.env | {
                "DANMAKU_BIND": f"127.0.0.1:{local.free_port()}",
                "GUNICORN_WORKER_CLASS": "gthread",
            }
            with local.gunicorn_over(stock_env, var_dir / "gthread.log") as stock:
                yield Servers(shipped, stock.base_url.removeprefix("http://"), before_comments)
                print(shipped.log_tail())
    except local.LocalServerError as exc:
        pytest.fail(str(exc))


def ask_both(ours: Connection, theirs: Connection, question: bytes) -> tuple[bytes, bytes]:
    """The same request to both, until they answer from the same second."""
    for _ in range(20):
        ours.send(question)
        theirs.send(question.replace(ours.host.encode(), theirs.host.encode()))
        mine, other = ours.answer(), theirs.answer()
        if ETAG.findall(mine) == ETAG.findall(other):
            return mine, other
        time.sleep(0.1)  # one of them sealed a second more: ask again
    pytest.fail(f"the servers never answered from the same second: {mine[-200:]!r} {other[-200:]!r}")


def test_the_same_requests_get_the_same_bytes_as_from_stock_gthread(servers):
    shipped, stock, _ = servers
    ours = Connection(shipped.base_url.removeprefix("http://"))
    theirs = Connection(stock)
    try:
        # The first pull in each process activates the room (Django); from
        # then on the shipped worker answers polls on its loop.
        joined, _ = ask_both(ours, theirs, pull(ours.host))
        cursor, etag = cursor_of(joined), etag_of(joined)
        questions = [
            pull(ours.host),
            pull(ours.host, f"after={cursor}"),
            pull(ours.host, f"after={cursor}", "Accept-Encoding: gzip, deflate, br"),
            pull(ours.host, "", f"If-None-Match: {etag}", "Connection: keep-alive"),
            pull(ours.host, "after=x"),  # a cursor that does not parse: 400
        ]
        for question in questions:
            mine, other = ask_both(ours, theirs, question)
            assert without_date(mine) == without_date(other), question
    finally:
        ours.close()
        theirs.close()


def test_split_pipelined_and_mixed_requests_are_all_answered_in_order(servers):
    shipped = servers.shipped
    conn = Connection(shipped.base_url.removeprefix("http://"))
    try:
        request = pull(conn.host)
        conn.send(request[:25])
        time.sleep(0.05)
        conn.send(request[25:])
        assert conn.answer().startswith(b"HTTP/1.1 200 OK\r\n")
        conn.send(request + pull(conn.host, "after=x") + request)
        statuses = [conn.answer().split(b" ", 2)[1] for _ in range(3)]
        assert statuses == [b"200", b"400", b"200"]
        # A send between two polls, on the same connection.
        body = b'{"text": "between polls"}'
        conn.send(
            b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: " + conn.host.encode()
            + b"\r\nAuthorization: Bearer " + shipped.tokens[0].encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\n\r\n" + body
        )  # fmt: skip
        assert conn.answer().startswith(b"HTTP/1.1 201 Created\r\n")
        conn.send(request)
        assert conn.answer().startswith(b"HTTP/1.1 200 OK\r\n")
        # A room this process never served: Django answers, 404.
        conn.send(request.replace(ROOM.encode(), b"nowhere"))
        assert conn.answer().startswith(b"HTTP/1.1 404 Not Found\r\n")
    finally:
        conn.close()


FIXTURE_TEXTS = {f"{n} {COMMENT_TEXT}" for n in range(COMMENTS)}


def fixture_texts(answer: bytes) -> set[str]:
    """The fixture's comments in an answer (other tests may have sent more)."""
    return FIXTURE_TEXTS & set(json.loads(answer.partition(b"\r\n\r\n")[2])["items"]["text"])


def test_a_client_that_stops_reading_still_gets_every_answer_whole(servers):
    shipped = servers.shipped
    log_path = shipped.log_path
    handed_over = b"bytes written, the rest when the client reads"
    before = log_path.read_bytes().count(handed_over)
    conn = Connection(shipped.base_url.removeprefix("http://"), receive_buffer=4096)
    try:
        request = pull(conn.host, f"after={servers.before_comments}", "Accept-Encoding: identity")
        deadline = time.monotonic() + DELIVERY_SECONDS
        while fixture_texts(conn.ask(request)) != FIXTURE_TEXTS:  # until their second is sealed
            assert time.monotonic() < deadline, "the comments never arrived"
            time.sleep(0.1)

        def filled() -> bool:
            return log_path.read_bytes().count(handed_over) > before

        sent = 0
        deadline = time.monotonic() + SLOW_READER_MAX_SECONDS
        # Poll without reading until the server's writes stop fitting. On a
        # busy machine the server lags the polls sent, so the last of them
        # are given until the deadline to reach it.
        while sent < SLOW_READER_MAX_POLLS and time.monotonic() < deadline:
            conn.send(request)
            sent += 1
            time.sleep(0.001)
            if sent % 50 == 0 and filled():
                break
        while not filled() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert filled(), f"the buffers never filled in {sent} polls"
        for _ in range(sent):
            answer = conn.answer()
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
            assert fixture_texts(answer) == FIXTURE_TEXTS
        # Still kept alive, and answering.
        conn.send(request)
        assert conn.answer().startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        conn.close()
