"""The pull worker's event loop, driven in-process over a real socket pair.

A ``PullWorker`` is built as gunicorn builds it, with a pool that only
records what it is given (the test runs those jobs itself), and a kept-alive
connection registered on its poller as gthread leaves one. What the loop
writes is compared byte for byte with what gunicorn's regular path (the
pool job, gunicorn's parser and response) writes for the same request.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import socket
import time
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial

import pytest
from django.core.handlers.wsgi import WSGIHandler
from gunicorn.config import Config
from gunicorn.glogging import Logger
from gunicorn.workers.gthread import TConn

from danmaku import runtime
from danmaku.models import Danmaku
from danmaku.pull.fastpath import PullFastPath
from danmaku_site.pullworker import PullWorker
from harness.rawhttp import AnswerReader
from harness.wsgi import connections_kept_open

PATH = "/api/v1/rooms/live/danmaku"
DATE = re.compile(rb"\r\nDate: [^\r]*\r\n")


class RecordingPool:
    """Stands in for the worker's thread pool: keeps each job for the test."""

    def __init__(self) -> None:
        self.jobs: list[tuple] = []

    def submit(self, fn, *args):
        future = Future()
        self.jobs.append((fn, args, future))
        return future

    def run(self) -> None:
        """Run the jobs as pool threads would (each completes its future)."""
        jobs, self.jobs = self.jobs, []
        for fn, args, future in jobs:
            try:
                future.set_result(fn(*args))
            except Exception as exc:
                future.set_exception(exc)


@dataclass
class Client:
    sock: socket.socket
    conn: TConn  # the worker's side
    reader: AnswerReader


class App:
    def __init__(self, wsgi) -> None:
        self._wsgi = wsgi

    def wsgi(self):
        return self._wsgi


@pytest.fixture
def django_app(settings):
    with connections_kept_open():
        yield WSGIHandler()


@pytest.fixture
def comments(room, user):
    now_ms = int(time.time() * 1000)
    return [
        Danmaku.objects.create(room=room, user=user, ts_ms=now_ms - 2500 + n, text=f"comment {n}") for n in range(5)
    ]


@pytest.fixture
def worker(django_app, room):
    cfg = Config()
    worker = PullWorker(0, 1, [], App(PullFastPath(django_app, runtime.PROCESS)), 30, cfg, Logger(cfg))
    worker.load_wsgi()
    worker.poller = selectors.DefaultSelector()
    worker.method_queue.init()
    worker.tpool = RecordingPool()
    try:
        yield worker
    finally:
        worker.poller.close()
        worker.method_queue.close()
        worker.tmp.close()


@pytest.fixture
def client(worker):
    """The client end of a kept-alive connection on the worker's poller."""
    server_end, client_end = socket.socketpair()
    conn = TConn(worker.cfg, server_end, ("127.0.0.1", 40000), ("127.0.0.1", 8000))
    conn.init()
    # What gthread's finish_request does after a kept-alive answer.
    conn.sock.setblocking(False)
    conn.set_timeout()
    worker.nr_conns += 1
    worker.keepalived_conns.append(conn)
    worker.poller.register(conn.sock, selectors.EVENT_READ, partial(worker.on_client_socket_readable, conn))
    client_end.settimeout(5)
    with contextlib.closing(client_end), contextlib.closing(server_end):
        yield Client(client_end, conn, AnswerReader(client_end))


def request(query: str = "", *headers: str) -> bytes:
    target = PATH + (f"?{query}" if query else "")
    return "\r\n".join([f"GET {target} HTTP/1.1", "Host: testserver", *headers, "", ""]).encode()


def dispatch(worker) -> None:
    worker.wait_for_and_dispatch_events(timeout=1)


def read_answer(client) -> bytes:
    return client.reader.answer()


def through_gunicorn(worker, client, data: bytes) -> bytes:
    """The same request the regular way: a pool job with gunicorn's parser and
    response (the loop hands it over when a header it does not read has a
    name gunicorn drops, which changes nothing else)."""
    assert b"X_Hand_Over" in data
    client.sock.sendall(data)
    dispatch(worker)
    assert len(worker.tpool.jobs) == 1
    worker.tpool.run()
    answer = read_answer(client)
    worker.method_queue.run_callbacks(None)  # finish_request: back on the poller
    return answer


def activate(worker, client) -> None:
    """A room's first pull in a process goes to Django (it reads the database)."""
    through_gunicorn(worker, client, request("", "X_Hand_Over: 1"))


def same_but_date(loop: bytes, regular: bytes) -> None:
    assert DATE.sub(b"\r\nDate: -\r\n", loop) == DATE.sub(b"\r\nDate: -\r\n", regular)


@pytest.mark.parametrize(
    "headers",
    [(), ("Accept-Encoding: gzip, br",), ("Accept-Encoding: identity", "Connection: keep-alive")],
    ids=["identity", "gzip", "keep-alive"],
)
def test_the_loop_answers_a_poll_itself_with_gunicorns_bytes(worker, client, headers, comments):
    activate(worker, client)
    nr = worker.nr
    client.sock.sendall(request("", *headers))
    dispatch(worker)
    assert worker.tpool.jobs == []  # no pool thread
    loop = read_answer(client)
    assert worker.nr == nr + 1
    assert loop.startswith(b"HTTP/1.1 200 OK\r\nServer: gunicorn\r\nDate: ")
    assert b"\r\nConnection: keep-alive\r\n" in loop
    # Still on the poller, and kept alive from now on.
    assert worker.poller.get_key(client.conn.sock)
    assert client.conn in worker.keepalived_conns
    assert client.conn.timeout > time.monotonic() + worker.cfg.keepalive - 1
    same_but_date(loop, through_gunicorn(worker, client, request("", *headers, "X_Hand_Over: 1")))


def test_a_matching_etag_gets_gunicorns_304(worker, client, comments):
    activate(worker, client)
    client.sock.sendall(request())
    dispatch(worker)
    first = read_answer(client)
    etag = re.search(rb"\r\nETag: ([^\r]*)", first)[1].decode()
    client.sock.sendall(request("", f"If-None-Match: {etag}"))
    dispatch(worker)
    loop = read_answer(client)
    assert loop.startswith(b"HTTP/1.1 304 Not Modified\r\n")
    same_but_date(loop, through_gunicorn(worker, client, request("", f"If-None-Match: {etag}", "X_Hand_Over: 1")))


def test_answers_stay_right_across_many_polls_on_one_connection(worker, client, comments):
    activate(worker, client)
    client.sock.sendall(request())
    dispatch(worker)
    cursor = re.search(rb'"cursor":"([^"]+)"', read_answer(client))[1].decode()
    for _ in range(50):
        client.sock.sendall(request(f"after={cursor}"))
        dispatch(worker)
        assert read_answer(client).startswith(b"HTTP/1.1 200 OK\r\n")
    assert worker.tpool.jobs == []


@pytest.mark.parametrize(
    "data",
    [
        request("", "Connection: close"),
        request("") + request(""),  # pipelined
        request("")[:20],  # the rest comes later
        request("after=%31"),
        b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: testserver\r\nContent-Length: 2\r\n\r\n{}",
        b"GET /api/v1/rooms/elsewhere/danmaku HTTP/1.1\r\nHost: testserver\r\n\r\n",  # not active here
        b"GET /admin/ HTTP/1.1\r\nHost: testserver\r\n\r\n",
    ],
    ids=["close", "pipelined", "partial", "escaped", "post", "inactive-room", "other-route"],
)
def test_anything_else_goes_to_a_pool_thread_with_the_bytes_already_read(worker, client, data):
    activate(worker, client)
    client.sock.sendall(data)
    dispatch(worker)
    [(fn, args, _)] = worker.tpool.jobs
    assert fn == worker.handle
    assert args == (client.conn,)
    # gunicorn's parser reads them first, and the loop no longer watches it.
    assert client.conn.parser.unreader.buf.getvalue() == data
    with pytest.raises(KeyError):
        worker.poller.get_key(client.conn.sock)
    assert client.conn not in worker.keepalived_conns


def test_a_worker_due_to_recycle_answers_the_regular_way(worker, client):
    activate(worker, client)
    worker.max_requests = worker.nr + 1
    client.sock.sendall(request())
    dispatch(worker)
    assert len(worker.tpool.jobs) == 1  # gunicorn answers with Connection: close


def test_a_fault_in_the_fast_path_hands_the_request_over(worker, client, monkeypatch, caplog):
    activate(worker, client)

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(worker, "_answer", broken)
    client.sock.sendall(request())
    dispatch(worker)  # must not raise: that would end the worker
    assert len(worker.tpool.jobs) == 1


def test_a_slow_reader_gets_the_rest_of_its_answer_from_a_pool_thread(worker, client, comments):
    activate(worker, client)
    # Fill the connection's send buffer, as a client that stopped reading would.
    sock = client.conn.sock
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    filler = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            filler += sock.send(b"x" * 4096)
    client.sock.sendall(request())
    dispatch(worker)
    [(fn, args, _)] = worker.tpool.jobs
    assert fn.__name__ == "_send_rest"
    assert args[0] is client.conn
    with pytest.raises(KeyError):
        worker.poller.get_key(sock)
    # The client reads again; the pool thread finishes the answer.
    received = b""
    while len(received) < filler:
        received += client.sock.recv(filler - len(received))
    assert received == b"x" * filler
    worker.tpool.run()
    answer = read_answer(client)
    worker.method_queue.run_callbacks(None)
    assert worker.poller.get_key(sock)  # kept alive
    assert b'"comment 4"' in answer
    same_but_date(answer, through_gunicorn(worker, client, request("", "X_Hand_Over: 1")))


def test_a_client_that_closed_is_closed_on_the_loop(worker, client):
    conns = worker.nr_conns
    client.sock.shutdown(socket.SHUT_WR)
    dispatch(worker)
    assert worker.nr_conns == conns - 1
    assert client.conn not in worker.keepalived_conns
    assert worker.tpool.jobs == []
    assert client.sock.recv(10) == b""


def test_without_a_fast_path_the_worker_is_gthread(django_app, settings):
    settings.DANMAKU_ROLE = "send"
    cfg = Config()
    worker = PullWorker(0, 1, [], App(runtime.wrap_fast_path(django_app)), 30, cfg, Logger(cfg))
    worker.load_wsgi()
    try:
        assert worker._answer is None
    finally:
        worker.tmp.close()


@pytest.mark.parametrize(
    ("name", "value"),
    [("accesslog", "-"), ("is_ssl", None), ("pre_request", lambda worker, req: None)],
)
def test_settings_the_loop_would_skip_turn_it_off(django_app, name, value):
    cfg = Config()
    if name == "is_ssl":
        cfg.set("certfile", __file__)
        cfg.set("keyfile", __file__)
    else:
        cfg.set(name, value)
    worker = PullWorker(0, 1, [], App(PullFastPath(django_app, runtime.PROCESS)), 30, cfg, Logger(cfg))
    worker.load_wsgi()
    try:
        assert worker._answer is None
    finally:
        worker.tmp.close()


class Conn:
    def __init__(self, name: str, timeout: float) -> None:
        self.name, self.timeout, self.sock = name, timeout, None
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_keep_alive_deadlines_moved_by_the_loop_are_kept_and_the_rest_expire_on_time(worker):
    """A loop answer moves a connection's deadline without looking for it in
    the queue; expiry must still close every idle connection that is due,
    and none whose deadline moved."""
    now = time.monotonic()
    a, b, c, d = Conn("a", now - 2), Conn("b", now - 1), Conn("c", now - 0.5), Conn("d", now + 3)
    worker.keepalived_conns.extend([a, b, c, d])
    worker.nr_conns += 4
    b.timeout, b.extended = now + 5, True  # answered on the loop since it was queued
    worker.murder_keepalived()
    assert [conn.name for conn in worker.keepalived_conns] == ["d", "b"]
    assert (a.closed, b.closed, c.closed, d.closed) == (True, False, True, False)
    assert not b.extended
    # Forced (shutdown): everything goes, moved or not.
    b.extended = True
    worker.murder_keepalived(force=True)
    assert not worker.keepalived_conns
    assert b.closed
    assert d.closed
