"""One simulated viewer: its own TCP connection, polling as the viewer page does.

The schedule mirrors danmaku/static/danmaku/poller.js: wait the answer's
``next_ms``, send the cursor back; a 400 drops the cursor and asks again in
1 s; a 404 waits 30 s; any other failure (refused, reset, the connection
closed before a whole answer, no answer within the read deadline, another
non-2xx) backs off with jitter, 1 s doubling to 30 s, at least Retry-After,
and resumes the cursor. A request on a kept-alive connection that the server
closed before any answer byte arrived is sent again at once on a new
connection, once, as browsers do; it is still counted by kind.

Everything a viewer does is written into its process's ``Recorder``; the
viewer keeps only its own ledger (ids seen, duplicates, gaps, the longest
wait between answers).
"""

from __future__ import annotations

import asyncio
import errno
import random
import socket
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from functools import partial

from harness.crowd.answers import MAX_HEAD_BYTES, Answer, AnswerCache, ResponseError

# poller.js: REQUEST_TIMEOUT_MS, BACKOFF_FIRST_MS, BACKOFF_MAX_MS, GONE_RETRY_MS.
REQUEST_TIMEOUT_SECONDS = 10.0
BACKOFF_FIRST_MS = 1000
BACKOFF_MAX_MS = 30_000
GONE_RETRY_MS = 30_000
# Linux: the source port is chosen at connect() (one lookup for the
# address pair) instead of at bind() (a search of the ports bound on the
# address, for every one of thousands of sockets). Not in the socket module.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
# The reason recorded for an answer that is not a pull answer (an error status).
NO_REASON = 255


def backoff_ms(failures: int, at_least_ms: int, draw: float) -> int:
    """poller.js ``backoff``: ``failures`` counts this one; ``draw`` in [0, 1)."""
    ceiling = min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** (failures - 1))
    return max(at_least_ms, round(ceiling * (0.5 + draw / 2)))


class Recorder:
    """Every poll and error of one process's viewers, in flat arrays (cheap to
    append, cheap to send to the parent)."""

    def __init__(self) -> None:
        # One entry per answer: when it was whole, how long it took (from
        # the request, or from connect() on a new connection), its status
        # and its bytes on the wire (head, blank line and body).
        self.poll_at = array("d")
        self.latency = array("d")
        self.status = array("H")
        self.size = array("I")
        # And what a pull answer said (zeros and NO_REASON for any other
        # answer): next_ms, reason (index in answers.REASONS), missed, how
        # many comments it carried, the server's estimate of the viewers.
        self.next_ms = array("Q")
        self.reason = array("B")
        self.missed = array("Q")
        self.items = array("I")
        self.viewers = array("Q")
        # When each viewer first connected, and its very first answer, timed
        # from that connect().
        self.first_connect_at = array("d")
        self.first_at = array("d")
        self.first_latency = array("d")
        # When each viewer that left the room did so.
        self.left_at = array("d")
        self.errors: list[tuple[float, str]] = []
        self.retried: Counter[str] = Counter()
        self.idle_closes = 0
        self.churned = 0
        self.open_connections = 0

    def poll(self, at: float, latency: float, status: int, size: int, answer: Answer | None = None) -> None:
        self.poll_at.append(at)
        self.latency.append(latency)
        self.status.append(status)
        self.size.append(size)
        if answer is None:
            self.next_ms.append(0)
            self.reason.append(NO_REASON)
            self.missed.append(0)
            self.items.append(0)
            self.viewers.append(0)
        else:
            self.next_ms.append(answer.next_ms)
            self.reason.append(answer.reason)
            self.missed.append(answer.missed)
            self.items.append(len(answer.ids))
            self.viewers.append(answer.viewers)

    def error(self, at: float, kind: str) -> None:
        self.errors.append((at, kind))


@dataclass
class Ledger:
    """What one viewer saw: the comment ids (and how often one came twice)."""

    index: int
    seen: set[int] = field(default_factory=set)
    duplicates: int = 0
    # Ids shown again in a gap answer (the viewer rejoined): not duplicates.
    repeats: int = 0
    gaps: list[float] = field(default_factory=list)
    first_answer_at: float | None = None
    last_answer_at: float | None = None
    # When the viewer left the room (closed its page), if it did.
    left_at: float | None = None
    # Comments its answers said the display cap left out (their ``missed``).
    reported_missed: int = 0
    # The longest wait for an answer, in seconds and in the poll interval
    # the server had asked for (from connect() for the first answer).
    longest_wait: float = 0.0
    longest_wait_intervals: float = 0.0
    next_ms_total: int = 0
    answers: int = 0
    # When each answer came, and (when, wait in ms) for each back-off: how
    # soon the viewer was back after an outage, against the step in force.
    answered_at: array = field(default_factory=lambda: array("d"))
    backoffs: list[tuple[float, int]] = field(default_factory=list)


class _Connection(asyncio.Protocol):
    """One TCP connection of a viewer; hands everything to the viewer."""

    __slots__ = ("abandoned", "pending", "transport", "viewer")

    def __init__(self, viewer: Viewer) -> None:
        self.viewer = viewer
        self.transport: asyncio.Transport | None = None
        # A request written before the loop made the transport (uvloop
        # makes it in a task): sent as soon as it is.
        self.pending: bytes | None = None
        self.abandoned = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.abandoned:
            transport.abort()  # type: ignore[attr-defined]
        elif self.pending is not None:
            transport.write(self.pending)  # type: ignore[attr-defined]
            self.pending = None

    def write(self, data: bytes) -> None:
        if self.transport is None:
            self.pending = data
        else:
            self.transport.write(data)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        else:
            self.abandoned = True

    def data_received(self, data: bytes) -> None:
        self.viewer._data(self, data)

    def eof_received(self) -> bool:
        return False  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.viewer._lost(self, exc)


def adopt(loop: asyncio.AbstractEventLoop, sock: socket.socket, conn: _Connection) -> None:
    """Give ``sock`` (connecting) its transport on ``loop``, ``conn`` its protocol."""
    make = getattr(loop, "_make_socket_transport", None)
    if make is not None:
        # asyncio's own loop: the transport create_connection ends with,
        # made at once, without the task and coroutine around it.
        conn.transport = make(sock, conn)
        return
    # uvloop makes its transport (in C) only in create_connection: a task.
    task = loop.create_task(loop.create_connection(lambda: conn, sock=sock))
    task.add_done_callback(partial(_adopted, sock, conn))


def _adopted(sock: socket.socket, conn: _Connection, task: asyncio.Task) -> None:
    if task.cancelled() or task.exception() is not None:
        sock.close()
        if not conn.abandoned:
            conn.viewer._lost(conn, task.exception() if not task.cancelled() else None)


class Viewer:
    """Polls ``path`` on ``host:port`` from ``start()`` until ``stop()``."""

    def __init__(
        self,
        index: int,
        *,
        host: str,
        port: int,
        path: str,
        recorder: Recorder,
        answers: AnswerCache,
        rng: random.Random,
        loop: asyncio.AbstractEventLoop,
        source: str | None = None,
    ) -> None:
        self.index = index
        self.host = host
        self.port = port
        self.path = path
        self.recorder = recorder
        self.answers = answers
        self.rng = rng
        self.loop = loop
        self.local_addr = (source, 0) if source else None
        self.ledger = Ledger(index)
        self.cursor: str | None = None
        self.failures = 0
        self.conn: _Connection | None = None
        # The request in flight: when it (or its connect()) started, 0 when none.
        self.sent_at = 0.0
        self.first_connect_at = 0.0
        self.buffer = bytearray()
        self.head = None
        self.body_at = 0
        self.reused = False  # the connection in use has answered before
        self.retried = False
        self.timer: asyncio.TimerHandle | None = None
        self.stopped = False
        # Since when this viewer waits for an answer (its last one, or its
        # first connect()), and the interval the server asked for then.
        self.wait_from = 0.0
        self.wait_ms = 0

    # -- the schedule ----------------------------------------------------------------

    def start(self, at: float) -> None:
        self.timer = self.loop.call_at(at, self.poll)

    def stop(self) -> None:
        if self.wait_from and not self.stopped:
            # A viewer starved at the end has its wait counted too.
            self._waited(time.monotonic())
        self.stopped = True
        if self.timer is not None:
            self.timer.cancel()
        if self.conn is not None:
            self.conn.abort()

    def poll(self) -> None:
        self.timer = None
        if self.stopped:
            return
        now = time.monotonic()
        if self.conn is not None:
            self.sent_at = now
            self._send()
        else:
            self._connect(now)

    def _schedule(self, ms: float) -> None:
        if not self.stopped:
            self.timer = self.loop.call_later(ms / 1000, self.poll)

    def _connect(self, now: float) -> None:
        self.sent_at = now
        if not self.first_connect_at:
            self.first_connect_at = self.wait_from = now
            self.recorder.first_connect_at.append(now)
        self.reused = False
        # A connect storm is 20,000 of these within a second on a machine the
        # server shares: asyncio's create_connection (a task, a coroutine, a
        # writability wait, then the transport) costs the generator more than
        # the server's accept. The socket's transport is made at once and the
        # request written into it: the kernel sends nothing before the
        # handshake (the transport waits for the socket to be writable), so
        # on the wire it is connect, then the request, as from a browser.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            if self.local_addr is not None:
                if IP_BIND_ADDRESS_NO_PORT:
                    sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind(self.local_addr)
            code = sock.connect_ex((self.host, self.port))
        except OSError as exc:
            sock.close()
            self._failed(f"connect-{exc.errno}")
            return
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self._failed("refused" if code == errno.ECONNREFUSED else f"connect-{code}")
            return
        conn = _Connection(self)
        self.conn = conn
        self.recorder.open_connections += 1
        adopt(self.loop, sock, conn)
        self._send()

    def _send(self) -> None:
        self.buffer.clear()
        self.head = None
        query = f"?after={self.cursor}" if self.cursor else ""
        self.conn.write(
            f"GET {self.path}{query} HTTP/1.1\r\nHost: {self.host}\r\nAccept-Encoding: gzip\r\n\r\n".encode()
        )

    # -- the answer ------------------------------------------------------------------

    def _data(self, conn: _Connection, data: bytes) -> None:
        if conn is not self.conn:
            return
        if not self.sent_at:
            self._drop("unasked")
            return
        buffer = self.buffer
        buffer += data
        if self.head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    self._drop("bad-response")
                return
            try:
                self.head = self.answers.head(bytes(buffer[:end]))
            except ResponseError:
                self._drop("bad-response")
                return
            self.body_at = end + 4
        head = self.head
        whole = self.body_at + head.content_length
        if len(buffer) < whole:
            return
        if len(buffer) > whole:
            self._drop("bad-response")  # bytes nobody asked for
            return
        self._answered(head, bytes(buffer[self.body_at :]))

    def _answered(self, head, body: bytes) -> None:
        now = time.monotonic()
        latency = now - self.sent_at
        self.sent_at = 0.0
        self.reused = True
        self.retried = False
        recorder = self.recorder
        answer = None
        if head.status == 200:
            try:
                answer = self.answers.parse(body, gzipped=head.gzipped)
            except ResponseError:
                recorder.poll(now, latency, head.status, len(body) + self.body_at)
                self._drop("bad-body")
                return
        recorder.poll(now, latency, head.status, len(body) + self.body_at, answer)
        ledger = self.ledger
        if answer is not None:
            if ledger.first_answer_at is None:
                ledger.first_answer_at = now
                recorder.first_at.append(now)
                recorder.first_latency.append(now - self.first_connect_at)
            self._waited(now)
            ledger.last_answer_at = now
            ledger.answers += 1
            ledger.answered_at.append(now)
            ledger.next_ms_total += answer.next_ms
            ledger.reported_missed += answer.missed
            seen = ledger.seen
            if answer.ids:
                before = len(seen)
                seen.update(answer.ids)
                again = len(answer.ids) - (len(seen) - before)
                if again:
                    if answer.gap:
                        ledger.repeats += again
                    else:
                        ledger.duplicates += again
            if answer.gap and self.cursor is not None:
                ledger.gaps.append(now)
            self.cursor = answer.cursor
            self.failures = 0
            self.wait_from = now
            self.wait_ms = answer.next_ms
            wait = answer.next_ms
        else:
            recorder.error(now, f"http-{head.status}")
            if head.status == 404:
                wait = GONE_RETRY_MS
            elif head.status == 400:
                self.cursor = None
                wait = BACKOFF_FIRST_MS
            else:
                self.failures += 1
                wait = backoff_ms(self.failures, head.retry_after * 1000, self.rng.random())
                ledger.backoffs.append((now, wait))
        if head.close and self.conn is not None:
            self._close_conn()
        self._schedule(wait)

    def _waited(self, now: float) -> None:
        ledger = self.ledger
        waited = now - self.wait_from
        ledger.longest_wait = max(ledger.longest_wait, waited)
        if self.wait_ms:
            ledger.longest_wait_intervals = max(ledger.longest_wait_intervals, waited * 1000 / self.wait_ms)

    # -- failures --------------------------------------------------------------------

    def _lost(self, conn: _Connection, exc: Exception | None) -> None:
        if conn is not self.conn:
            return
        self.conn = None
        self.recorder.open_connections -= 1
        if self.stopped:
            return
        if not self.sent_at:
            self.recorder.idle_closes += 1
            return
        if exc is None:
            kind = "eof"
        elif isinstance(exc, ConnectionRefusedError):
            kind = "refused"  # the connect failed: its transport was made before it was known
        else:
            kind = "reset"
        now = time.monotonic()
        if self.reused and not self.buffer and not self.retried:
            # Closed by the server while our request was on its way: a
            # browser sends it again at once on a new connection.
            self.recorder.error(now, kind)
            self.recorder.retried[kind] += 1
            self.retried = True
            self._connect(now)
            return
        self._failed(kind)

    def _failed(self, kind: str) -> None:
        now = time.monotonic()
        self.sent_at = 0.0
        self.retried = False
        self.recorder.error(now, kind)
        if self.stopped:
            return
        self.failures += 1
        wait = backoff_ms(self.failures, 0, self.rng.random())
        self.ledger.backoffs.append((now, wait))
        self._schedule(wait)

    def _drop(self, kind: str) -> None:
        """A broken exchange: close the connection, count it, back off."""
        self._close_conn()
        self._failed(kind)

    def _close_conn(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            self.recorder.open_connections -= 1
            conn.abort()

    def check_deadline(self, now: float) -> None:
        """Called about once a second: a request (connect included) older than
        the read deadline is abandoned, as the page's AbortController does."""
        if self.sent_at and now - self.sent_at > REQUEST_TIMEOUT_SECONDS:
            self._close_conn()
            self._failed("timeout")

    def leave(self) -> None:
        """The viewer closed the page: its connection goes (a request in
        flight with it) and it polls no more."""
        if self.stopped:
            return
        now = time.monotonic()
        self.stopped = True
        self.ledger.left_at = now
        self.recorder.left_at.append(now)
        self.sent_at = 0.0
        if self.timer is not None:
            self.timer.cancel()
        self._close_conn()

    def churn(self) -> None:
        """The network dropped: the connection is gone (a request in flight
        with it), and the viewer polls again at once on a new one."""
        if self.conn is None or self.stopped:
            return
        self.recorder.churned += 1
        self._close_conn()
        if self.sent_at:
            self.retried = False
            self._connect(time.monotonic())
