"""The pull worker's event loop, driven in-process over real sockets.

A ``PullWorker`` is built as gunicorn builds it, with a pool that only
records what it is given (the test runs those jobs itself), and a client
connection it accepted from a listener the test owns. What the loop writes
is compared byte for byte with what gunicorn's regular path (the pool job,
gunicorn's parser and response) writes for the same request. Deadlines are
shortened and checked by calling the loop's expiry (``murder_pending``), as
its own loop does every turn.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass

import pytest
from django.core.handlers.wsgi import WSGIHandler
from gunicorn.config import Config
from gunicorn.glogging import Logger
from gunicorn.workers.gthread import TConn

from danmaku import runtime
from danmaku.models import Danmaku
from danmaku.pull.fastpath import PullFastPath
from danmaku_site import pullworker
from danmaku_site.pullworker import LINGER_SECONDS, PARK_SECONDS, REQUEST_TIMEOUT_ANSWER, PullWorker
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
def long_comments(room, user):
    """Enough that the answer cannot slip into what is left of a full buffer."""
    now_ms = int(time.time() * 1000)
    return [
        Danmaku.objects.create(room=room, user=user, ts_ms=now_ms - 2500 + n, text=f"comment {n} " + "y" * 400)
        for n in range(30)
    ]


@contextlib.contextmanager
def running(wsgi) -> Iterator[PullWorker]:
    """A worker serving ``wsgi``, built as gunicorn builds it, its pool recording."""
    cfg = Config()
    worker = PullWorker(0, 1, [], App(wsgi), 30, cfg, Logger(cfg))
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
def worker(django_app, room):
    with running(PullFastPath(django_app, runtime.PROCESS)) as worker:
        yield worker


@pytest.fixture
def listener():
    with socket.create_server(("127.0.0.1", 0)) as sock:
        sock.setblocking(False)
        yield sock


def connect(worker, listener) -> Client:
    """A new client connection, accepted by the worker (on its poller, read
    on the loop). Its receive buffer is small, so a client that stops
    reading fills it soon."""
    client_end = socket.socket()
    client_end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client_end.settimeout(5)
    client_end.connect(listener.getsockname())
    worker.accept(listener)
    [conn] = [
        key.data.args[0]
        for key in worker.poller.get_map().values()
        if key.data.args[0].client == client_end.getsockname()
    ]
    return Client(client_end, conn, AnswerReader(client_end))


@pytest.fixture
def client(worker, listener):
    """The client end of a connection the worker accepted."""
    connected = connect(worker, listener)
    with contextlib.closing(connected.sock), contextlib.closing(connected.conn.sock):
        yield connected


def request(query: str = "", *headers: str) -> bytes:
    target = PATH + (f"?{query}" if query else "")
    return "\r\n".join([f"GET {target} HTTP/1.1", "Host: testserver", *headers, "", ""]).encode()


def dispatch(worker, timeout: float = 1) -> None:
    worker.wait_for_and_dispatch_events(timeout=timeout)


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
    # finish_request: what the thread could not write, then back on the poller.
    return read_while_the_loop_writes(worker, client)


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
        request("after=%31"),
        b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: testserver\r\nContent-Length: 2\r\n\r\n{}",
        b"GET /api/v1/rooms/elsewhere/danmaku HTTP/1.1\r\nHost: testserver\r\n\r\n",  # not active here
        b"GET /admin/ HTTP/1.1\r\nHost: testserver\r\n\r\n",
    ],
    ids=["close", "pipelined", "escaped", "post", "inactive-room", "other-route"],
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


def test_a_stopping_worker_answers_a_kept_alive_poll_with_connection_close_on_the_loop(worker, client, comments):
    activate(worker, client)
    conns = worker.nr_conns
    worker.alive = False  # recycling, or SIGTERM: draining
    client.sock.sendall(request())
    dispatch(worker)
    assert worker.tpool.jobs == []
    answer = read_answer(client)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nConnection: close\r\n" in answer
    assert b'"comment 4"' in answer
    assert client.sock.recv(10) == b""  # closed after the answer, never before
    assert client.conn not in worker.keepalived_conns
    assert worker.nr_conns == conns - 1


def test_a_keep_alive_answer_begun_before_a_drain_keeps_the_whole_keep_alive_timeout(worker, client):
    worker.cfg.set("keepalive", 5)  # as shipped: longer than a poll interval, and than gthread's 2 s stop linger
    client.sock.sendall(request("", "X_Hand_Over: 1"))
    dispatch(worker)
    worker.tpool.run()  # the answer says keep-alive
    worker.alive = False  # the drain begins before the loop takes the connection back
    read_while_the_loop_writes(worker, client)
    assert client.conn in worker.keepalived_conns
    assert client.conn.timeout > time.monotonic() + 4


def test_a_fault_in_the_fast_path_hands_the_request_over(worker, client, monkeypatch, caplog):
    activate(worker, client)

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(worker, "_answer", broken)
    client.sock.sendall(request())
    dispatch(worker)  # must not raise: that would end the worker
    assert len(worker.tpool.jobs) == 1


def fill_send_buffer(client) -> int:
    """Fill the worker's send buffer to the client, as a client that stopped
    reading would leave it; the bytes written."""
    sock = client.conn.sock
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    filler = 0
    # Twice: the kernel may make room in the client's buffer once it is full.
    for _ in range(2):
        with contextlib.suppress(BlockingIOError):
            while True:
                filler += sock.send(b"x" * 4096)
        time.sleep(0.05)
    return filler


def read_filler(client, filler: int) -> None:
    received = b""
    while len(received) < filler:
        received += client.sock.recv(filler - len(received))
    assert received == b"x" * filler


def events(worker, client) -> int:
    return worker.poller.get_key(client.conn.sock).events


def read_while_the_loop_writes(worker, client, filler: int = 0) -> bytes:
    """The client reads (``filler`` bytes, then its answer) while the loop
    runs, as gunicorn's would; the answer."""
    answers = []

    def read() -> None:
        read_filler(client, filler)
        answers.append(read_answer(client))

    reader = threading.Thread(target=read)
    reader.start()
    deadline = time.monotonic() + 10
    while reader.is_alive() and time.monotonic() < deadline:
        worker.method_queue.run_callbacks(None)
        dispatch(worker, timeout=0.05)
    reader.join(timeout=5)
    worker.method_queue.run_callbacks(None)
    [answer] = answers
    return answer


@pytest.mark.timeout(20)
def test_a_slow_reader_gets_the_rest_of_its_answer_from_the_loop(worker, client, long_comments):
    activate(worker, client)
    filler = fill_send_buffer(client)
    client.sock.sendall(request())
    dispatch(worker)
    assert worker.tpool.jobs == []  # no thread waits for the client
    assert events(worker, client) == selectors.EVENT_WRITE
    assert client.conn not in worker.keepalived_conns
    # The client reads again; the loop writes the rest as it drains.
    answer = read_while_the_loop_writes(worker, client, filler)
    assert worker.tpool.jobs == []
    assert events(worker, client) == selectors.EVENT_READ  # kept alive
    assert client.conn in worker.keepalived_conns
    assert b'"comment 29 yyy' in answer
    same_but_date(answer, through_gunicorn(worker, client, request("", "X_Hand_Over: 1")))


@pytest.mark.timeout(20)
def test_a_pool_threads_answer_a_client_does_not_take_is_written_by_the_loop(worker, client, long_comments):
    activate(worker, client)
    filler = fill_send_buffer(client)
    client.sock.sendall(request("", "X_Hand_Over: 1"))
    dispatch(worker)
    worker.tpool.run()  # returns: the thread does not wait for the client
    worker.method_queue.run_callbacks(None)  # finish_request: the loop writes the rest
    assert events(worker, client) == selectors.EVENT_WRITE
    assert b'"comment 29 yyy' in read_while_the_loop_writes(worker, client, filler)
    assert events(worker, client) == selectors.EVENT_READ
    assert client.conn in worker.keepalived_conns


def test_a_reader_that_never_reads_is_reset_after_the_write_timeout(worker, client, long_comments):
    worker.set_timeouts(read_seconds=worker.read_timeout, write_seconds=0.05)
    activate(worker, client)
    filler = fill_send_buffer(client)
    conns = worker.nr_conns
    client.sock.sendall(request())
    dispatch(worker)
    worker.murder_pending()
    assert client.conn.sock.fileno() != -1  # not yet
    time.sleep(0.1)
    worker.murder_pending()
    assert client.conn.sock.fileno() == -1
    assert worker.nr_conns == conns - 1
    assert worker.tpool.jobs == []
    with pytest.raises(ConnectionResetError):
        read_filler(client, filler + 1)  # the reset comes first


# Requests the loop does not answer itself (a header it does not read, a
# POST), in two pieces.
_GET = b"GET /api/v1/rooms/live/danmaku HTTP/1.1\r\nHost: testserver\r\nX_Hand_Over: 1\r\n\r\n"
_POST = b'POST /api/v1/rooms/live/danmaku HTTP/1.1\r\nHost: testserver\r\nContent-Length: 18\r\n\r\n{"text": "in two"}'
PIECES = [(_GET[:30], _GET[30:]), (_GET[:-2], _GET[-2:]), (_POST[:-8], _POST[-8:])]


@pytest.mark.parametrize("pieces", PIECES, ids=["half-request-line", "head-without-end", "half-body"])
@pytest.mark.parametrize("kept_alive", [False, True], ids=["new", "kept-alive"])
def test_a_request_arriving_in_pieces_waits_on_the_loop_not_in_a_thread(worker, client, pieces, kept_alive):
    if kept_alive:
        activate(worker, client)
    first, rest = pieces
    client.sock.sendall(first)
    dispatch(worker)
    assert worker.tpool.jobs == []
    assert events(worker, client) == selectors.EVENT_READ
    assert client.conn not in worker.keepalived_conns
    client.sock.sendall(rest)
    dispatch(worker)
    [(fn, args, _)] = worker.tpool.jobs
    assert (fn, args) == (worker.handle, (client.conn,))
    assert client.conn.parser.unreader.buf.getvalue() == first + rest


def test_the_rest_of_a_pipelined_request_is_waited_for_on_the_loop(worker, client):
    client.sock.sendall(_GET + _GET[:30])
    dispatch(worker)
    worker.tpool.run()
    read_answer(client)
    worker.method_queue.run_callbacks(None)  # the start of the next one is read already
    assert worker.tpool.jobs == []
    client.sock.sendall(_GET[30:])
    dispatch(worker)
    [(fn, _, _)] = worker.tpool.jobs
    assert fn == worker.handle
    assert client.conn.parser.unreader.buf.getvalue() == _GET


@pytest.mark.parametrize("sent", [b"GET /api/v1/rooms/live/danmaku HT", b""], ids=["half-request", "nothing"])
def test_a_request_not_whole_within_the_read_timeout_is_closed(worker, listener, sent):
    worker.set_timeouts(read_seconds=0.05, write_seconds=worker.write_timeout)
    client = connect(worker, listener)
    with contextlib.closing(client.sock):
        conns = worker.nr_conns
        client.sock.sendall(sent)
        dispatch(worker)
        time.sleep(0.1)
        worker.murder_pending()
        assert worker.nr_conns == conns - 1
        assert worker.tpool.jobs == []
        # A request begun gets a 408; a connection that sent nothing, nothing.
        closing = b""
        for _ in range(10):
            chunk = client.sock.recv(1024)
            if not chunk:
                break
            closing += chunk
        assert closing == (REQUEST_TIMEOUT_ANSWER if sent else b"")


def test_a_new_viewers_first_poll_is_answered_on_the_loop(worker, listener, client, comments):
    activate(worker, client)  # the room is active in the process
    viewer = connect(worker, listener)
    with contextlib.closing(viewer.sock):
        viewer.sock.sendall(request())
        dispatch(worker)
        assert worker.tpool.jobs == []
        assert b'"comment 4"' in read_answer(viewer)
        assert viewer.conn in worker.keepalived_conns
        assert events(worker, viewer) == selectors.EVENT_READ


@pytest.mark.timeout(20)
def test_closing_lingers_on_the_loop_instead_of_blocking_it(worker, client):
    client.sock.sendall(request("", "X_Hand_Over: 1", "Connection: close"))
    dispatch(worker)
    worker.tpool.run()
    started = time.monotonic()
    worker.method_queue.run_callbacks(None)  # gthread waited here for the client to close
    assert time.monotonic() - started < LINGER_SECONDS / 2
    assert read_answer(client).startswith(b"HTTP/1.1 200 OK\r\n")
    assert client.sock.recv(10) == b""  # the worker's side is shut
    assert events(worker, client) == selectors.EVENT_READ
    client.sock.close()
    dispatch(worker)
    assert client.conn.sock.fileno() == -1


def test_a_client_that_closed_is_closed_on_the_loop(worker, client):
    conns = worker.nr_conns
    client.sock.shutdown(socket.SHUT_WR)
    dispatch(worker)
    assert worker.nr_conns == conns - 1
    assert client.conn not in worker.keepalived_conns
    assert worker.tpool.jobs == []
    assert client.sock.recv(10) == b""


def test_without_a_fast_path_nothing_is_answered_on_the_loop(django_app, settings):
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


def connect_waiting(listener, count: int) -> list[socket.socket]:
    """``count`` clients in the listener's queue, each with a poll sent."""
    clients = []
    for _ in range(count):
        sock = socket.create_connection(listener.getsockname(), timeout=5)
        sock.sendall(request())
        clients.append(sock)
    return clients


def test_one_readiness_of_the_listener_accepts_every_waiting_connection_up_to_a_batch(
    worker, listener, comments, monkeypatch
):
    # The shipped batch (hundreds) would need more connections than a test
    # process may open, and than the test listener queues.
    batch = 16
    monkeypatch.setattr(pullworker, "ACCEPT_BATCH", batch)
    activate(worker, connect(worker, listener))  # the room is active; one connection
    clients = connect_waiting(listener, batch + 10)
    try:
        worker.accept(listener)
        assert worker.nr_conns == 1 + batch
        # Each one's first poll answered on the loop as it was accepted.
        assert worker.tpool.jobs == []
        for sock in clients[:batch]:
            assert b'"comment 4"' in AnswerReader(sock).answer()
        worker.accept(listener)  # the next readiness: the rest
        assert worker.nr_conns == 1 + batch + 10
    finally:
        for sock in clients:
            sock.close()


def test_accepting_stops_at_the_workers_connection_cap(worker, listener):
    worker.worker_connections = 5
    clients = connect_waiting(listener, 8)
    try:
        worker.accept(listener)
        assert worker.nr_conns == 5
    finally:
        for sock in clients:
            sock.close()


def test_polls_of_a_room_not_active_yet_wait_on_the_loop_for_the_one_a_thread_answers(worker, listener, comments):
    first, second, third = (connect(worker, listener) for _ in range(3))
    try:
        for viewer in (first, second, third):
            viewer.sock.sendall(request())
            dispatch(worker)
        # The room's first poll in the process goes to a thread (Django
        # activates the room); the others wait for it, not for threads.
        assert len(worker.tpool.jobs) == 1
        worker.tpool.run()
        read_while_the_loop_writes(worker, first)
        assert worker.tpool.jobs == []  # the loop answered the two waiting
        for viewer in (second, third):
            assert b'"comment 4"' in read_answer(viewer)
            assert viewer.conn in worker.keepalived_conns
    finally:
        for viewer in (first, second, third):
            viewer.sock.close()


def test_a_poll_parked_longer_than_its_bound_goes_to_a_thread(worker, listener, monkeypatch):
    first, second = (connect(worker, listener) for _ in range(2))
    try:
        for viewer in (first, second):
            viewer.sock.sendall(request())
            dispatch(worker)
        assert len(worker.tpool.jobs) == 1
        later = time.monotonic() + PARK_SECONDS + 0.1
        monkeypatch.setattr(time, "monotonic", lambda: later)
        worker.murder_pending()
        assert len(worker.tpool.jobs) == 2
    finally:
        for viewer in (first, second):
            viewer.sock.close()


def test_a_poll_that_came_with_the_handshake_is_answered_without_gunicorns_parser(worker, listener, comments):
    activate(worker, connect(worker, listener))  # the room is active
    [viewer] = connect_waiting(listener, 1)
    try:
        worker.accept(listener)
        assert b'"comment 4"' in AnswerReader(viewer).answer()
        assert worker.tpool.jobs == []
        [conn] = [conn for conn in worker.keepalived_conns if conn.client == viewer.getsockname()]
        # Registered once, for its next poll; no parser made for a request
        # no pool thread ran.
        assert worker.poller.get_key(conn.sock).events == selectors.EVENT_READ
        assert conn.parser is None
        # Its next poll is answered on the loop too; a request that is not
        # a poll still goes to a pool thread, which parses it as gunicorn does.
        viewer.sendall(request())
        dispatch(worker)
        assert b'"comment 4"' in AnswerReader(viewer).answer()
        viewer.sendall(request("", "X_Hand_Over: 1"))
        dispatch(worker)
        assert len(worker.tpool.jobs) == 1
        worker.tpool.run()
        worker.method_queue.run_callbacks(None)
        assert b'"comment 4"' in AnswerReader(viewer).answer()
    finally:
        viewer.close()


def test_the_heartbeat_to_the_master_is_written_at_most_once_a_second(worker, monkeypatch):
    written = []
    monkeypatch.setattr(worker.tmp, "notify", lambda: written.append(time.monotonic()))
    for _ in range(100):
        worker.notify()  # every turn of the loop
    assert len(written) == 1


def test_a_new_connections_head_past_gunicorns_limits_gets_its_431_from_the_loop(worker, listener):
    worker.cfg.set("limit_request_fields", 3)
    worker.cfg.set("limit_request_field_size", 100)
    worker.load_wsgi()
    sock = socket.create_connection(listener.getsockname(), timeout=5)
    try:
        # Headers without an end, past what gunicorn reads before refusing.
        sock.sendall(b"GET / HTTP/1.1\r\n" + b"X-Filler: " + b"x" * 9000)
        worker.accept(listener)  # the first read, with the handshake
        dispatch(worker)  # the rest
        assert worker.tpool.jobs == []
        assert sock.recv(100).startswith(b"HTTP/1.1 431 ")
        assert worker.nr_conns == 0
    finally:
        sock.close()
