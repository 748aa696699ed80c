"""gunicorn's gthread worker with the client's side of every connection on
its event loop: requests read there, slow clients' answers written there,
viewers' polls answered there.

In a gthread worker a request crosses two threads: the loop sees the socket
readable and queues it for a pool thread; the thread parses the request,
runs the app, writes the answer and queues the connection back to the loop
through a pipe. ``PullWorker`` changes three things.

**Requests are read on the loop.** gthread hands a connection to a pool
thread at its first byte, and the thread then waits on the client for the
rest: a few clients sending half a request and going quiet held every
thread, and nothing else was answered. Here the loop reads a connection (new
or kept alive) until it holds a whole request (danmaku_site.requestframe:
the head, and a body of up to ``LOOP_BODY_BYTES``) and only then hands it to
a pool thread, the bytes put back in front of gunicorn's parser, so gunicorn
still parses, refuses and logs everything. A request must be whole
``read_timeout`` seconds after its first byte (for a new connection, after
it was accepted), or the connection gets a 408 and is closed. A larger or
chunked body the thread reads itself, each read bounded by ``read_timeout``.

**Answers never make a thread wait on the client.** A pool thread's writes
take what the kernel accepts and hold the rest (danmaku_site.clientsocket);
the loop writes what is held as the client reads, and resets a client that
took nothing for ``write_timeout`` seconds. gthread's closing linger (wait
up to 2 s for the client to close) runs on the loop too, which gthread
blocked for it.

**Polls are answered on the loop.** When a whole request is exactly one
plain ``GET`` (danmaku_site.pullrequest) that the pull fast path answers
without blocking, the loop writes the answer itself: a dozen system calls
and several GIL hand-offs fewer than the trip to a pool thread and back,
which was most of a poll's cost. On a send node, whose application offers
it (``SendFastPath.loop_answers_sends``), a whole request that is exactly
one plain bearer send (danmaku_site.sendrequest) is answered on the loop
too, the loop waiting for its Redis round trips and its INSERT: a send
costs the worker less than the hand-off to a thread and back did. When
more sends arrive than the loop can answer, those a turn reaches after
``SHED_SENDS_AFTER_SECONDS`` are told at once to come back later.
Everything else (a page, a login, a send the fast path leaves to Django, a
pull for a room this process has not activated, any request when the app
has no fast path) goes to the pool as in gthread.

**A crowd connects in storms, and a stopping worker hands its viewers on.**
A new connection wakes one idle worker, not every worker (EPOLLEXCLUSIVE),
and workers take turns at being the one woken. A readable listening socket
is accepted from until it has nothing more (or ``ACCEPT_BATCH``
connections, or the worker's ``worker_connections``), each new connection's
first request read (and a poll answered) on the loop at once. In a process
that has not served a room yet (a new worker meeting the storm) only one
poll of that room goes to a pool thread (Django
activates the room); the room's other polls wait on the loop, off the
poller, and are answered there once it is done. A worker that stops
(``max_requests`` reached, ``SIGTERM`` from a reload or a graceful stop)
drains instead of dropping its viewers (stopped by a signal while it holds
viewers, once as many workers as configured have started since, or after
10 s: a reload's new workers may still be booting): it stops accepting (the other workers take the listening socket's
connections), and each connection's next request is answered with
``Connection: close``, so the client
reconnects to another worker between two polls; a connection not used
again within its keep-alive timeout is closed then, as it would have been
anyway. ``max_requests`` recycles one worker at a time (a lock the master
hands every worker), so the others can take its viewers. All of it is
bounded by ``graceful_timeout``.

With SSL, the PROXY protocol, HTTP/2 cleartext or the uwsgi protocol,
gunicorn reads the connection itself from its first byte and the worker is
plain gthread: no deadlines, no loop answers. Run it with
``-k danmaku_site.pullworker.PullWorker``; every gthread setting applies,
and gunicorn.conf.py sets the two timeouts (``set_timeouts``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import selectors
import socket
import struct
import sys
import tempfile
import time
from functools import partial

from gunicorn import SERVER
from gunicorn.http.errors import LimitRequestHeaders
from gunicorn.util import http_date
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, TConn, ThreadWorker

from danmaku_site import pullrequest, requestframe, sendrequest
from danmaku_site.clientsocket import ClientSocket, Listening
from danmaku_site.deadlines import Deadlines

# One read takes the whole of a poll; a read this long may have been cut
# short, so it is not answered on the loop.
READ_BYTES = 8192
# Bodies read on the loop before the request goes to a thread: far above a
# send, a login or an admin form, small enough that a thousand connections
# trickling them cost little memory.
LOOP_BODY_BYTES = 64 * 1024
# What a connection's answer may leave in memory for the loop to write; past
# it (a streamed answer) the pool thread waits for the client, within the
# write timeout. Far above any page or API answer the app renders (the
# OpenAPI schema, 25 KiB, is the largest public one); files are held as a
# range of the file, not in memory, and pulls answered on the loop as the
# answer every viewer shares.
HOLD_BYTES = 1024 * 1024
# gunicorn's closing linger (gunicorn.util.close_graceful): how long, and
# how much, a closed connection is drained so the last answer is not reset.
LINGER_SECONDS = 2.0
LINGER_BYTES = 64 * 1024
# New connections accepted per readiness of the listening socket: a connect
# storm costs one wake-up per batch instead of one per connection, while the
# loop still turns (answering the polls of connections it already holds)
# every batch (512 new connections with their first polls: ~40 ms). Other
# workers sharing the socket take their share meanwhile (each woken alone,
# see set_accept_enabled). In a 20,000-viewer storm on 2 cores, 512 gave
# first polls a p99 of 0.7-0.9 s where 64 gave 1.1-1.5 s (2,048: no better).
ACCEPT_BATCH = 512
# A worker goes to the back of the listener's queue of idle workers at most
# this often (see set_accept_enabled): on a quiet node after nearly every
# connection, in a storm after a few batches. After every batch, a storm's
# connections (one a batch while the server keeps up) hopped from worker to
# worker, each hop a wake-up: about 10 % more server CPU in a 20,000 storm,
# and the generator fell 0.2 s behind its 1 s connect window.
ROTATE_EVERY_SECONDS = 0.01
# How often the loop tells the master it is alive (gunicorn's heartbeat: a
# file's mtime, one system call). gthread does it every turn of the loop,
# which in a connect storm turns thousands of times a second; the master
# kills a worker silent for its timeout (30 s), far above this.
NOTIFY_EVERY_SECONDS = 1.0
# A send node's loop answers sends one after another. Once one turn of it
# (the events one wait returned) has been answering this long, the sends
# still to come in that turn have waited at least as long: each is told at
# once to come back (503, Retry-After; the app's ``busy_answer``) instead
# of being answered seconds late, or after its client gave up, when more
# sends arrive than the node can take.
SHED_SENDS_AFTER_SECONDS = 0.5
# Longest a poll waits parked behind another of its room that a pool thread
# is answering (the room's first in the process) before a thread takes it.
PARK_SECONDS = 1.0
# A worker stopped by a signal (a HUP reload, a graceful stop) while it
# holds viewers serves as before (accepting, keeping connections alive)
# until as many workers as configured have started since, or this long at
# most, before it hands them on: on a reload every old worker stops at once
# while the new ones are still booting (8 s and more on a busy 2-core
# machine), and viewers told to reconnect meanwhile would wait for them.
# A worker recycling hands on at once: the others are up; so does one
# stopped when no worker was forked just before (the whole server stopping:
# nobody would take its viewers, and waiting would only delay the stop).
HAND_OVER_AFTER_SECONDS = 10.0
# Once handing over, a viewer's connection kept alive is closed if not used
# within this, however long the keep-alive: longer than a poll at the normal
# 3 s with its jitter and a crowd variant's spread (3 s x 1.1 x 1.25 = 4.1 s)
# plus a slow network's round trip. A viewer told to wait longer (a quiet or
# stretched room) finds its connection closed and reconnects, to another
# worker, as it would have after the drain.
HAND_OVER_IDLE_SECONDS = 6.0
# A reload forks the new workers, then stops the old ones: successors are
# the workers forked this long before a stop at most, and this long after
# this one at least (the master forks all of a start's workers at once).
SUCCESSORS_FORKED_WITHIN_SECONDS = 5.0
SUCCESSORS_FORKED_AFTER_SECONDS = 1.0
# Workers' fork and start times in the shared file: one 8-byte slot per
# worker age for each.
STARTED_SLOTS = 256
FORKED_OFFSET = 8 * STARTED_SLOTS
# How often a draining worker looks at its connections' deadlines.
DRAIN_TICK_SECONDS = 0.25
# What a draining worker leaves of graceful_timeout before the master's
# SIGKILL: time to close what is left and exit.
DRAIN_MARGIN_SECONDS = 1.0
REQUEST_TIMEOUT_ANSWER = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class _Conn(TConn):
    """gthread's connection, plus what the loop keeps for it."""

    def __init__(self, *args, linger) -> None:
        super().__init__(*args)
        self.arrival: requestframe.Arrival | None = None  # a request still arriving
        self.last_write = 0.0
        self.after_write = None
        self.warms = None  # the room path of a poll parking others (PullWorker._to_pool)
        self._linger = linger

    def close(self, graceful: bool = False) -> None:
        if graceful:
            self._linger(self)
        else:
            super().close()


class PullWorker(ThreadWorker):
    # Seconds; gunicorn.conf.py sets both from the environment.
    read_timeout = 5.0
    write_timeout = 10.0
    # A file the master opened for every worker it forks: a worker due to
    # recycle holds a POSIX lock on it while it drains (such locks belong to
    # the process, and go with it however it ends), and each worker writes
    # when it started accepting (a stopping one waits for its successors).
    _shared = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # gthread stops a worker from a pool thread, mid-request, once
        # max_requests is reached; here the loop decides (see run).
        self._recycle_after = self.max_requests
        self.max_requests = sys.maxsize
        self._lingering = 0
        self._signalled = False
        self._hand_over_at = 0.0  # once stopping: when answers start saying "Connection: close"
        # A room's path -> (since when, [(connection, request)]): polls
        # parked while a pool thread answers one of that room (_to_pool).
        self._warming: dict[str, tuple[float, list]] = {}
        self._answer = None
        self._answer_send = None
        self._busy_answer = None
        # When the current turn's events were returned (SHED_SENDS_AFTER_SECONDS).
        self._turn_began = 0.0
        self._reads_on_loop = False
        self._date_second = -1
        self._head_prefixes = (b"", b"")  # keep-alive, close
        # For keep-alive and for close answers: id(HttpAnswer) -> (the answer,
        # what sendmsg writes for it: the status line and headers as bytes,
        # then the body; and their length), for the current second (the Date
        # header changes).
        self._sent: tuple[dict[int, tuple[object, list[bytes], int]], ...] = ({}, {})
        self._deadlines = Deadlines()
        self._listening: dict[object, Listening] = {}
        self._rotated_at = 0.0
        self._notified_at = -NOTIFY_EVERY_SECONDS
        # The master builds each worker just before forking it.
        self._forked_at = self._record_time(FORKED_OFFSET)

    @classmethod
    def check_config(cls, cfg, log) -> None:
        super().check_config(cfg, log)
        if cls._shared is None:
            # Open for the life of the master and every worker it forks.
            cls._shared = tempfile.TemporaryFile(prefix="gunicorn-pullworkers-")  # noqa: SIM115
        idle = min(cfg.keepalive, HAND_OVER_IDLE_SECONDS)
        drain = HAND_OVER_AFTER_SECONDS + idle + LINGER_SECONDS + DRAIN_MARGIN_SECONDS
        if cfg.graceful_timeout < drain:
            log.warning(
                "graceful_timeout (%s s) is shorter than a drain (%s s): "
                "a stopping worker may close connections a viewer is about to use",
                cfg.graceful_timeout,
                drain,
            )

    def notify(self) -> None:
        now = time.monotonic()
        if now - self._notified_at >= NOTIFY_EVERY_SECONDS:
            self._notified_at = now
            super().notify()

    def set_accept_enabled(self, enabled: bool) -> None:
        """gthread's, with the listening sockets on the poller exclusively
        (EPOLLEXCLUSIVE, where there is epoll): a new connection wakes one
        of the workers waiting for it, not all of them to race for one
        accept; in a 20,000-viewer storm the losers' wake-ups cost the
        server half its CPU (about 100 µs a connection against 50). The
        kernel wakes the first idle worker in the listener's queue: each
        worker goes to the back of it after taking a batch (``accept``), or
        on a quiet node one worker would take every connection."""
        was = self._accepting
        super().set_accept_enabled(enabled)
        if enabled and not was:
            for listener in self.sockets:
                self._wait_exclusively(listener)

    def _wait_exclusively(self, listener) -> None:
        """(Re-)add ``listener`` to the poller as an exclusive waiter, at the
        back of its wait queue (the kernel adds there, and refuses a change
        of an exclusive registration)."""
        epoll = getattr(self.poller, "_selector", None)
        exclusive = getattr(select, "EPOLLEXCLUSIVE", 0)
        if exclusive and isinstance(epoll, select.epoll):
            epoll.unregister(listener.fileno())
            epoll.register(listener.fileno(), select.EPOLLIN | exclusive)

    def set_timeouts(self, *, read_seconds: float, write_seconds: float) -> None:
        self.read_timeout = read_seconds
        self.write_timeout = write_seconds

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self._reads_on_loop = _plain_http(self.cfg)
        if not self._reads_on_loop:
            self.log.warning("SSL, PROXY protocol, HTTP/2 or uwsgi: requests are read as in gthread, without deadlines")
        self._answer = self._loop_answerer()
        self._answer_send = self._loop_send_answerer()
        self._busy_answer = getattr(self.wsgi, "busy_answer", None) if self._answer_send is not None else None
        self._limits = pullrequest.Limits.from_config(self.cfg, READ_BYTES)
        self._framing = requestframe.Framing.from_config(self.cfg, max_body=LOOP_BODY_BYTES)

    def _loop_answerer(self):
        """The app's non-blocking pull answer, where the loop may use it."""
        answer = getattr(self.wsgi, "answer", None)
        if answer is None or not self._loop_may_answer():
            return None
        return partial(answer, on_event_loop=True)

    def _loop_send_answerer(self):
        """The app's send answer, where the app offers it to the loop (a send node's)."""
        if not getattr(self.wsgi, "loop_answers_sends", False) or not self._loop_may_answer():
            return None
        return self.wsgi.answer_send

    def _loop_may_answer(self) -> bool:
        # The regular path logs each request, strips SCRIPT_NAME and runs
        # the hooks; the loop does none of that.
        return (
            self._reads_on_loop
            and bool(self.cfg.keepalive)
            and not self.log.access_log_enabled
            and not os.environ.get("SCRIPT_NAME")
            and not _hooked(self.cfg)
        )

    def wait_for_and_dispatch_events(self, timeout) -> None:
        """gthread's, noting when the turn's events were returned."""
        try:
            events = self.poller.select(timeout)
            self._turn_began = time.monotonic()
            for key, _ in events:
                key.data(key.fileobj)
        except OSError as exc:
            if exc.errno != errno.EINTR:
                raise

    # -- a new connection ---------------------------------------------------------

    def accept(self, listener) -> None:
        """Take the connections waiting on ``listener``, up to a batch, then
        (at most every ``ROTATE_EVERY_SECONDS``) let the next idle worker
        have the next one."""
        listening = self._listening.get(listener)
        if listening is None:
            listening = self._listening[listener] = Listening.of(listener)
        self._accept_batch(listener, listening)
        now = time.monotonic()
        if self._accepting and now - self._rotated_at >= ROTATE_EVERY_SECONDS:
            self._rotated_at = now
            self._wait_exclusively(listener)

    def _accept_batch(self, listener, listening: Listening) -> None:
        for _ in range(ACCEPT_BATCH):
            if self.nr_conns >= self.worker_connections:
                return
            try:
                accepted, client = self._accept_one(listener, listening)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    # Out of files: the connection waits in the listen queue
                    # (or another worker takes it); this worker accepts again
                    # next turn of its loop, not in a busy loop meanwhile.
                    self.log.warning("accept: %s (worker_connections above the open-file limit?)", exc)
                    self.set_accept_enabled(False)
                    return
                raise
            self._take(accepted, client, listening.name)

    def _accept_one(self, listener, listening: Listening):
        if not self._reads_on_loop:
            return listener.accept()
        return ClientSocket.accept_from(
            listening, read_timeout=self.read_timeout, write_timeout=self.write_timeout, hold_limit=HOLD_BYTES
        )

    def _take(self, accepted, client, name) -> None:
        self.nr_conns += 1
        if not self._reads_on_loop:
            accepted.setblocking(True)
            self.enqueue_req(TConn(self.cfg, accepted, client, name))
            return
        sock = accepted
        # Non-blocking from here (TConn does it). gunicorn's parser is made
        # only for a request that goes to a pool thread (_to_pool): a viewer's
        # polls, answered here, never need it.
        conn = _Conn(self.cfg, sock, client, name, linger=self._linger)
        # In a storm the request has usually arrived with the handshake by
        # the time the connection is accepted: a poll is answered before the
        # socket is registered, which is then registered once, to wait for
        # the next poll (no read deadline to set and clear meanwhile).
        try:
            data = sock.recv(READ_BYTES)
        except (BlockingIOError, InterruptedError):
            data = None
        except OSError:
            self.nr_conns -= 1
            conn.close()
            return
        if data == b"":
            self.nr_conns -= 1
            conn.close()
            return
        if data is not None and self._answered_at_once(conn, data):
            return
        conn.arrival = requestframe.Arrival(self._framing)
        self.poller.register(sock, selectors.EVENT_READ, partial(self._on_request_readable, conn))
        self._deadlines.set(conn, time.monotonic() + self.read_timeout, self._request_expired)
        if data is not None:
            self._on_request_data(conn, data)

    def _answered_at_once(self, conn, data: bytes) -> bool:
        """Whether a new connection's first request, read before its socket
        is on the poller, was a poll answered (or the connection dropped) here."""
        if not self._loop_answers(data) or self._closes_after_answer(in_keepalive_queue=False):
            return False
        _, http = self._loop_answer(data)
        if http is None:
            return False  # the regular path decides (a pool thread, or parked)
        whole = self._send(conn, http)
        if whole is None:
            self.nr_conns -= 1
            conn.close()
        elif whole:
            conn.set_timeout()
            conn.extended = False
            self.keepalived_conns.append(conn)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn))
        else:
            self._write_held(conn, then=self._keep_alive, registered=False)
        return True

    def _send(self, conn, http, *, close: bool = False) -> bool | None:
        """Write the answer ``http`` to ``conn``: True when all of it went,
        False when the client's buffer took only part (the rest is held, for
        the loop to write as the client reads), None when the connection failed."""
        self.nr += 1
        buffers, length = self._buffers(http, close=close)
        try:
            sent = conn.sock.sendmsg(buffers)
        except BlockingIOError:
            sent = 0
        except OSError:
            return None
        if sent == length:
            return True
        self.log.debug("pull answer: %d of %d bytes written, the rest when the client reads", sent, length)
        conn.sock.hold(buffers, sent)
        return False

    # -- reading a request ------------------------------------------------------------

    def on_client_socket_readable(self, conn, client) -> None:
        """A kept-alive connection's next request begins."""
        if not self._reads_on_loop:
            return super().on_client_socket_readable(conn, client)
        try:
            data = conn.sock.recv(READ_BYTES)
        except BlockingIOError:
            return
        except OSError:
            self._close_kept_alive(conn, client)
            return
        if not data:
            # The client closed the connection.
            self._close_kept_alive(conn, client)
            return
        poll = None
        if self._loop_answers(data):
            poll, http = self._loop_answer(data)
            if http is not None:
                if self._closes_after_answer(in_keepalive_queue=True):
                    self.keepalived_conns.remove(conn)
                    self._answer_from_loop(conn, http, then=self._close_answered, registered=True, close=True)
                else:
                    self._answer_kept_alive(conn, client, http)
                return
        self.keepalived_conns.remove(conn)
        if poll is not None:
            self.poller.unregister(client)
            self._to_pool(conn, data, poll=poll)
            return
        arrival = requestframe.Arrival(self._framing)
        if arrival.add(data):
            self.poller.unregister(client)
            if arrival.too_large:
                self._refuse_too_large(conn)
            else:
                self._to_pool(conn, data)
            return
        # The rest of the request is still on its way: the loop waits for it.
        conn.arrival = arrival
        self.poller.modify(client, selectors.EVENT_READ, partial(self._on_request_readable, conn))
        self._deadlines.set(conn, time.monotonic() + self.read_timeout, self._request_expired)

    def _on_request_readable(self, conn, client) -> None:
        try:
            data = conn.sock.recv(READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        if not data:
            self._drop(conn)
            return
        self._on_request_data(conn, data)

    def _on_request_data(self, conn, data: bytes) -> None:
        if not conn.arrival.add(data):
            return
        self._deadlines.clear(conn)
        if conn.arrival.too_large:
            self.poller.unregister(conn.sock)
            self._refuse_too_large(conn)
            return
        data, conn.arrival = bytes(conn.arrival.data), None
        self._answer_or_hand_over(conn, data, park=True)

    def _answer_or_hand_over(self, conn, data: bytes, *, park: bool) -> None:
        """A whole request of a connection on the poller: answered here when
        it is a poll the loop answers, else handed to a pool thread (or, a
        poll, parked behind the one a thread is answering, with ``park``)."""
        poll = None
        if self._loop_answers(data):
            poll, http = self._loop_answer(data)
            if http is not None:
                if self._closes_after_answer(in_keepalive_queue=False):
                    self._answer_from_loop(conn, http, then=self._close_answered, registered=True, close=True)
                else:
                    self._answer_from_loop(conn, http, then=self._keep_alive, registered=True)
                return
        self.poller.unregister(conn.sock)
        self._to_pool(conn, data, poll=poll if park else None)

    def _refuse_too_large(self, conn) -> None:
        """gunicorn's 431 for a head past its limits, from the loop: gunicorn
        would have a pool thread wait for one more read before refusing."""
        self.nr_conns -= 1
        self.handle_error(None, conn.sock, conn.client, LimitRequestHeaders("max buffer headers"))
        conn.arrival = None
        self._linger(conn)

    def _request_expired(self, conn, now: float) -> None:
        self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        if conn.arrival is not None and conn.arrival.data:
            self.log.debug("request not whole within %s s from %s: 408", self.read_timeout, conn.client)
            with contextlib.suppress(OSError):
                conn.sock.send(REQUEST_TIMEOUT_ANSWER)
            self._linger(conn)
        else:
            conn.close()

    def enqueue_req(self, conn) -> None:
        """gthread hands a connection to a pool thread here, also with the
        start of a next request already read (behind a body it drained): the
        loop waits for the rest of that one first."""
        held = conn.parser.unreader.buf.getvalue() if self._reads_on_loop and conn.parser else b""
        if held:
            arrival = requestframe.Arrival(self._framing)
            if not arrival.add(held):
                conn.parser.unreader.take_buffered()
                conn.sock.setblocking(False)
                conn.arrival = arrival
                self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_request_readable, conn))
                self._deadlines.set(conn, time.monotonic() + self.read_timeout, self._request_expired)
                return
            if arrival.too_large:
                self._refuse_too_large(conn)
                return
        super().enqueue_req(conn)

    def _to_pool(self, conn, data: bytes, *, poll: str | None = None) -> None:
        """Hand a whole request to a pool thread. A ``poll`` (its room's
        path) the loop could not answer waits instead, off the poller,
        while a thread answers another poll of the same room: in a process
        that has not served the room yet (a new worker meeting a connect
        storm), only that one needs Django, which activates the room, and
        the loop then answers those waiting; without this, thousands queue
        for four threads and the last waits seconds."""
        if poll is not None:
            warming = self._warming.get(poll)
            if warming is not None:
                warming[1].append((conn, data))
                return
            self._warming[poll] = (time.monotonic(), [])
            conn.warms = poll
        # gunicorn's parser (made now: the loop answers polls without it)
        # reads these bytes before the socket's.
        conn.init()
        conn.parser.unreader.unread(data)
        conn.data_ready = True
        super().enqueue_req(conn)

    # -- answering on the loop ----------------------------------------------------------

    def _closes_after_answer(self, *, in_keepalive_queue: bool) -> bool:
        """Whether the loop's answer says "Connection: close" (as gunicorn's
        would): the worker is stopping, or keeps as many idle connections as
        it may."""
        kept_alive = len(self.keepalived_conns) + (0 if in_keepalive_queue else 1)
        return self._handing_over() or kept_alive > self.max_keepalived

    def _handing_over(self) -> bool:
        return not self.alive and time.monotonic() >= self._hand_over_at

    def _loop_answers(self, data: bytes) -> bool:
        """Whether the loop may answer ``data`` itself (a poll, or a send where it takes them)."""
        return len(data) < READ_BYTES and (self._answer is not None or self._answer_send is not None)

    def _loop_answer(self, data: bytes):
        """(the path, the fast path's answer or ``None``) when ``data`` is
        exactly one plain poll; (``None``, the answer or ``None``) when it is
        one plain send and the loop takes sends; else (``None``, ``None``)."""
        if data.startswith(b"POST "):
            return None, self._loop_send(data)
        environ = pullrequest.parse(data, self._limits) if self._answer is not None else None
        if environ is None:
            return None, None
        try:
            return environ["PATH_INFO"], self._answer(environ)
        except Exception:
            # A fault in the fast path must not take the loop (and every
            # connection on it) down: Django answers this one.
            self.log.exception("pull answer failed on the event loop; handing the request over")
            return None, None

    def _loop_send(self, data: bytes):
        """A send node's answer to one plain send, or ``None`` (a pool thread's)."""
        parsed = sendrequest.parse(data, self._limits) if self._answer_send is not None else None
        if parsed is None:
            return None
        if self._busy_answer is not None and time.monotonic() - self._turn_began > SHED_SENDS_AFTER_SECONDS:
            return self._busy_answer()
        try:
            return self._answer_send(*parsed)
        except Exception:
            # As for a poll. The send may have taken its slot already: with
            # a client_id its copy (this request, again) is not charged twice.
            self.log.exception("send answer failed on the event loop; handing the request over")
            return None

    def _release(self, poll: str) -> None:
        """The polls parked behind ``poll``'s pool thread, answered on the
        loop now if it can, else each by a thread."""
        _, parked = self._warming.pop(poll, (0.0, ()))
        for conn, data in parked:
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_request_readable, conn))
            self._answer_or_hand_over(conn, data, park=False)

    def _release_overdue(self, now: float) -> None:
        """Parked polls whose room's first answer is taking long (a slow
        database): each to a thread, as without parking."""
        for poll in [poll for poll, (since, _) in self._warming.items() if now - since > PARK_SECONDS]:
            self._release(poll)

    def _answer_kept_alive(self, conn, client, http) -> None:
        whole = self._send(conn, http)
        if whole is None:
            self._close_kept_alive(conn, client)
            return
        if whole:
            # Still on the poller and in the keep-alive queue where it was:
            # its deadline moves, and murder_keepalived moves it to the back
            # when it reaches the front (finding it in the queue costs one
            # step per kept-alive connection, on every poll).
            conn.set_timeout()
            conn.extended = True
            return
        # The client's buffer is full (a slow reader): the loop writes the
        # rest as it drains, and goes on meanwhile.
        self.keepalived_conns.remove(conn)
        self._write_held(conn, then=self._keep_alive, registered=True)

    def _answer_from_loop(self, conn, http, *, then, registered: bool, close: bool = False) -> None:
        whole = self._send(conn, http, close=close)
        if whole is None:
            self._drop(conn)
        elif whole:
            then(conn)
        else:
            self._write_held(conn, then=then, registered=registered)

    def _close_answered(self, conn) -> None:
        """Closed after an answer that said so: the client reconnects (to
        another worker when this one is stopping)."""
        self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        self._linger(conn)

    def _keep_alive(self, conn) -> None:
        """Back on the poller, waiting for the connection's next request."""
        conn.set_timeout()
        conn.extended = False
        self.keepalived_conns.append(conn)
        self.poller.modify(conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn))

    def murder_keepalived(self, force: bool = False) -> None:
        """gthread's, with connections whose deadline a loop answer moved
        sent to the back of the queue instead of closed. Each goes back once
        per move, so the queue stays in deadline order but for those: one
        may be closed up to a keep-alive timeout late, never early."""
        while True:
            super().murder_keepalived(force)
            # Left at the front: nothing, or a connection not expired yet.
            queue = self.keepalived_conns
            if not queue or not getattr(queue[0], "extended", False):
                return
            queue[0].extended = False
            queue.rotate(-1)

    def _buffers(self, http, *, close: bool = False) -> tuple[list[bytes], int]:
        """gunicorn's bytes for ``http`` and their length, built once per
        answer (and connection header) per second."""
        second = int(time.time())
        if second != self._date_second:
            self._date_second = second
            head = f"Server: {SERVER}\r\nDate: {http_date(second)}\r\nConnection: ".encode("latin-1")
            self._head_prefixes = (head + b"keep-alive\r\n", head + b"close\r\n")
            self._sent = ({}, {})
        sent = self._sent[close]
        cached = sent.get(id(http))
        if cached is not None and cached[0] is http:
            return cached[1], cached[2]
        lines = [f"HTTP/1.1 {http.status_line}\r\n".encode("latin-1"), self._head_prefixes[close]]
        lines += [f"{name}: {value}\r\n".encode("latin-1") for name, value in http.headers]
        lines.append(b"\r\n")
        buffers = [b"".join(lines), http.body] if http.body else [b"".join(lines)]
        length = sum(map(len, buffers))
        sent[id(http)] = (http, buffers, length)
        return buffers, length

    # -- writing what a slow reader has not taken yet ---------------------------------------

    def finish_request(self, conn, fs) -> None:
        """gthread's, once the loop has written what the pool thread's
        answer left held."""
        sock = conn.sock
        if isinstance(sock, ClientSocket) and sock.holds_output:
            self._write_held(conn, then=partial(self._finish_after_write, fs=fs), registered=False)
            return
        self._finish(conn, fs)

    def _finish_after_write(self, conn, *, fs) -> None:
        self.poller.unregister(conn.sock)
        self._finish(conn, fs)

    def _finish(self, conn, fs) -> None:
        warmed = getattr(conn, "warms", None)
        super().finish_request(conn, fs)
        if warmed is not None:
            conn.warms = None
            self._release(warmed)
        if not self.alive and self.keepalived_conns and self.keepalived_conns[-1] is conn:
            # An answer that began before the drain said keep-alive: gthread
            # gives the client 2 s to come back, a viewer polling every 3 s
            # would find it closed; it gets its keep-alive timeout, and its
            # next request "Connection: close".
            conn.set_timeout()

    def _write_held(self, conn, *, then, registered: bool) -> None:
        conn.after_write = then
        conn.last_write = time.monotonic()
        conn.sock.setblocking(False)
        callback = partial(self._on_writable, conn)
        if registered:
            self.poller.modify(conn.sock, selectors.EVENT_WRITE, callback)
        else:
            self.poller.register(conn.sock, selectors.EVENT_WRITE, callback)
        self._deadlines.set(conn, conn.last_write + self.write_timeout, self._write_expired)

    def _on_writable(self, conn, client) -> None:
        try:
            written = conn.sock.flush()
        except OSError:
            self._drop(conn, reset=True)
            return
        if conn.sock.holds_output:
            if written:
                # Expiry looks at this and sets the deadline again.
                conn.last_write = time.monotonic()
            return
        self._deadlines.clear(conn)
        then, conn.after_write = conn.after_write, None
        then(conn)

    def _write_expired(self, conn, now: float) -> None:
        deadline = conn.last_write + self.write_timeout
        if deadline > now:
            self._deadlines.set(conn, deadline, self._write_expired)
            return
        self.log.debug("client %s read nothing for %s s: reset", conn.client, self.write_timeout)
        self._drop(conn, reset=True)

    # -- closing ---------------------------------------------------------------------------

    def _drop(self, conn, *, reset: bool = False) -> None:
        """Close a connection the loop holds (reading or writing)."""
        self._deadlines.clear(conn)
        self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        if reset:
            conn.sock.abort()
        else:
            conn.close()

    def _close_kept_alive(self, conn, client) -> None:
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self.nr_conns -= 1
        conn.close()

    def _linger(self, conn) -> None:
        """gthread's graceful close (send FIN, read until the client closes
        too, up to a bound) on the loop: gthread blocked the loop for it."""
        sock = conn.sock
        if sock.fileno() == -1:
            return  # closed already (gunicorn does on some errors)
        try:
            sock.setblocking(False)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        conn.lingered = 0
        self._lingering += 1
        self.poller.register(sock, selectors.EVENT_READ, partial(self._on_linger_readable, conn))
        self._deadlines.set(conn, time.monotonic() + LINGER_SECONDS, self._linger_expired)

    def _on_linger_readable(self, conn, client) -> None:
        try:
            data = conn.sock.recv(READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        conn.lingered += len(data)
        if not data or conn.lingered >= LINGER_BYTES:
            self._linger_expired(conn, 0.0)

    def _linger_expired(self, conn, now: float) -> None:
        self._lingering -= 1
        self._deadlines.clear(conn)
        self.poller.unregister(conn.sock)
        conn.sock.close()

    # -- running, recycling and stopping ------------------------------------------------------

    def run(self) -> None:
        """gthread's loop, with the worker's recycle decided here and a
        drain instead of gthread's stop (see the module's docstring)."""
        self.poller.register(self.method_queue.fileno(), selectors.EVENT_READ, self.method_queue.run_callbacks)
        self.set_accept_enabled(True)
        self._record_time(0)
        while self.alive:
            self.notify()
            can_accept = self.nr_conns < self.worker_connections
            if can_accept != self._accepting:
                self.set_accept_enabled(can_accept)
            self.wait_for_and_dispatch_events(timeout=1.0)
            if not self.is_parent_alive():
                break
            self.murder_keepalived()
            self.murder_pending()
            if self.nr >= self._recycle_after and self._recycle_turn():
                self.log.info("Autorestarting worker after %s requests: draining its connections", self.nr)
                self.alive = False
        self.drain()

    def _recycle_turn(self) -> bool:
        """Whether no other worker is recycling (else this one keeps serving
        and asks again next turn): the others take a recycling worker's
        viewers, and two at once would leave them fewer places to go."""
        if self._shared is None:
            return True
        try:
            fcntl.lockf(self._shared.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def handle_exit(self, sig, frame) -> None:
        self._signalled = True
        super().handle_exit(sig, frame)

    def drain(self) -> None:
        """Hand the viewers on (after a while, when stopped by a signal):
        stop accepting, answer each connection's next request with
        "Connection: close", close the ones not used again within their
        keep-alive timeout; all within graceful_timeout."""
        began = time.monotonic()
        if self._signalled and self.nr_conns > 0 and self._successors_forked(began):
            self._hand_over_at = began + HAND_OVER_AFTER_SECONDS
        elif self._signalled:
            # The whole server stopping: no worker here takes a viewer over,
            # so an idle connection is closed after gthread's stop linger
            # (its client reconnects, to another node), not its keep-alive.
            self._cap_keepalive(began + STOP_KEEPALIVE_LINGER)
        deadline = began + max(0.0, self.cfg.graceful_timeout - DRAIN_MARGIN_SECONDS)
        idle_capped = False
        while True:
            now = time.monotonic()
            if now < self._hand_over_at and self._times_since(began, 0) >= self.cfg.workers:
                self._hand_over_at = now
            handing_over = now >= self._hand_over_at
            if handing_over and not idle_capped:
                idle_capped = True
                self._cap_keepalive(now + HAND_OVER_IDLE_SECONDS)
            self.set_accept_enabled(not handing_over and self.nr_conns < self.worker_connections)
            if (handing_over and self.nr_conns <= 0 and self._lingering <= 0) or now >= deadline:
                break
            self.notify()
            self.wait_for_and_dispatch_events(timeout=DRAIN_TICK_SECONDS)
            self.murder_keepalived()
            self.murder_pending()
        self.murder_keepalived(force=True)
        self.tpool.shutdown(wait=False)
        self.poller.close()
        self.method_queue.close()
        for sock in self.sockets:
            sock.close()

    def _record_time(self, offset: int) -> float:
        now = time.monotonic()
        if self._shared is not None:
            os.pwrite(self._shared.fileno(), struct.pack("d", now), offset + 8 * (self.age % STARTED_SLOTS))
        return now

    def _successors_forked(self, began: float) -> bool:
        """Whether workers were forked to take over from this one (a reload),
        rather than the whole server stopping."""
        since = max(began - SUCCESSORS_FORKED_WITHIN_SECONDS, self._forked_at + SUCCESSORS_FORKED_AFTER_SECONDS)
        return self._times_since(since, FORKED_OFFSET) > 0

    def _times_since(self, since: float, offset: int) -> int:
        """How many workers were forked (``FORKED_OFFSET``) or started
        accepting (0) after ``since``."""
        if self._shared is None:
            return 0
        slots = os.pread(self._shared.fileno(), 8 * STARTED_SLOTS, offset).ljust(8 * STARTED_SLOTS, b"\0")
        return sum(1 for (at,) in struct.iter_unpack("d", slots) if at > since)

    def murder_pending(self) -> None:
        """gthread's, the deadlines of connections the loop holds, and
        polls parked for too long."""
        super().murder_pending()
        now = time.monotonic()
        self._deadlines.expire(now)
        if self._warming:
            self._release_overdue(now)


def _plain_http(cfg) -> bool:
    """Whether requests arrive as plain HTTP/1 the loop can read."""
    return (
        not cfg.is_ssl
        and cfg.proxy_protocol == "off"
        and cfg.protocol == "http"
        and cfg.http2_cleartext in (None, "off")
    )


def _hooked(cfg) -> bool:
    return any(cfg.settings[name].value is not cfg.settings[name].default for name in ("pre_request", "post_request"))
