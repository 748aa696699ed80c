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
which was most of a poll's cost. Everything else (a send, a page, a pull for
a room this process has not activated, any request when the app has no fast
path, as on a send node) goes to the pool as in gthread.

With SSL, the PROXY protocol, HTTP/2 cleartext or the uwsgi protocol,
gunicorn reads the connection itself from its first byte and the worker is
plain gthread: no deadlines, no loop answers. Run it with
``-k danmaku_site.pullworker.PullWorker``; every gthread setting applies,
and gunicorn.conf.py sets the two timeouts (``set_timeouts``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import time
from functools import partial

from gunicorn import SERVER
from gunicorn.http.errors import LimitRequestHeaders
from gunicorn.util import http_date
from gunicorn.workers.gthread import TConn, ThreadWorker

from danmaku_site import pullrequest, requestframe
from danmaku_site.clientsocket import ClientSocket
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
REQUEST_TIMEOUT_ANSWER = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class _Conn(TConn):
    """gthread's connection, plus what the loop keeps for it."""

    def __init__(self, *args, linger) -> None:
        super().__init__(*args)
        self.arrival: requestframe.Arrival | None = None  # a request still arriving
        self.last_write = 0.0
        self.after_write = None
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

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._answer = None
        self._reads_on_loop = False
        self._date_second = -1
        self._head_prefix = b""
        # id(HttpAnswer) -> (the answer, what sendmsg writes for it: the
        # status line and headers as bytes, then the body; and their length),
        # for the current second (the Date header changes).
        self._sent: dict[int, tuple[object, list[bytes], int]] = {}
        self._deadlines = Deadlines()

    def set_timeouts(self, *, read_seconds: float, write_seconds: float) -> None:
        self.read_timeout = read_seconds
        self.write_timeout = write_seconds

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self._reads_on_loop = _plain_http(self.cfg)
        if not self._reads_on_loop:
            self.log.warning("SSL, PROXY protocol, HTTP/2 or uwsgi: requests are read as in gthread, without deadlines")
        self._answer = self._loop_answerer()
        self._limits = pullrequest.Limits.from_config(self.cfg, READ_BYTES)
        self._framing = requestframe.Framing.from_config(self.cfg, max_body=LOOP_BODY_BYTES)

    def _loop_answerer(self):
        """The app's non-blocking pull answer, where the loop may use it."""
        answer = getattr(self.wsgi, "answer", None)
        if answer is None or not self._reads_on_loop or not self.cfg.keepalive:
            return None
        if self.log.access_log_enabled or os.environ.get("SCRIPT_NAME") or _hooked(self.cfg):
            # The regular path logs each request, strips SCRIPT_NAME and runs
            # the hooks; the loop does none of that.
            return None
        return partial(answer, on_event_loop=True)

    # -- a new connection ---------------------------------------------------------

    def accept(self, listener) -> None:
        if not self._reads_on_loop:
            return super().accept(listener)
        try:
            accepted, client = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        sock = ClientSocket.adopt(
            accepted, read_timeout=self.read_timeout, write_timeout=self.write_timeout, hold_limit=HOLD_BYTES
        )
        conn = _Conn(self.cfg, sock, client, listener.getsockname(), linger=self._linger)
        conn.init()  # the HTTP/1 parser; plain HTTP reads nothing here
        conn.arrival = requestframe.Arrival(self._framing)
        sock.setblocking(False)
        self.poller.register(sock, selectors.EVENT_READ, partial(self._on_request_readable, conn))
        self._deadlines.set(conn, time.monotonic() + self.read_timeout, self._request_expired)
        # The request often came with the handshake: no need to wait for the poller.
        self._on_request_readable(conn, sock)

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
        if len(data) < READ_BYTES and self._may_answer(in_keepalive_queue=True):
            http = self._loop_answer(data)
            if http is not None:
                self._answer_kept_alive(conn, client, http)
                return
        self.keepalived_conns.remove(conn)
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
        if not conn.arrival.add(data):
            return
        self._deadlines.clear(conn)
        if conn.arrival.too_large:
            self.poller.unregister(client)
            self._refuse_too_large(conn)
            return
        data, conn.arrival = bytes(conn.arrival.data), None
        if len(data) < READ_BYTES and self._may_answer(in_keepalive_queue=False):
            http = self._loop_answer(data)
            if http is not None:
                self._answer_from_loop(conn, http, then=self._keep_alive, registered=True)
                return
        self.poller.unregister(client)
        self._to_pool(conn, data)

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

    def _to_pool(self, conn, data: bytes) -> None:
        # gunicorn's parser reads these bytes before the socket's.
        conn.parser.unreader.unread(data)
        conn.data_ready = True
        super().enqueue_req(conn)

    # -- answering on the loop ----------------------------------------------------------

    def _may_answer(self, *, in_keepalive_queue: bool) -> bool:
        """Whether the loop may answer now (else gthread's regular way
        answers, with "Connection: close" when it must)."""
        kept_alive = len(self.keepalived_conns) + (0 if in_keepalive_queue else 1)
        return (
            self._answer is not None
            and self.alive
            and self.nr + 1 < self.max_requests
            and kept_alive <= self.max_keepalived
        )

    def _loop_answer(self, data: bytes):
        """The fast path's answer when ``data`` is exactly one plain poll."""
        environ = pullrequest.parse(data, self._limits)
        if environ is None:
            return None
        try:
            return self._answer(environ)
        except Exception:
            # A fault in the fast path must not take the loop (and every
            # connection on it) down: Django answers this one.
            self.log.exception("pull answer failed on the event loop; handing the request over")
            return None

    def _answer_kept_alive(self, conn, client, http) -> None:
        self.nr += 1
        buffers, length = self._buffers(http)
        try:
            sent = conn.sock.sendmsg(buffers)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close_kept_alive(conn, client)
            return
        if sent == length:
            # Still on the poller and in the keep-alive queue where it was:
            # its deadline moves, and murder_keepalived moves it to the back
            # when it reaches the front (finding it in the queue costs one
            # step per kept-alive connection, on every poll).
            conn.set_timeout()
            conn.extended = True
            return
        # The client's buffer is full (a slow reader): the loop writes the
        # rest as it drains, and goes on meanwhile.
        self.log.debug("pull answer: %d of %d bytes written, the rest when the client reads", sent, length)
        self.keepalived_conns.remove(conn)
        conn.sock.hold(buffers, sent)
        self._write_held(conn, then=self._keep_alive, registered=True)

    def _answer_from_loop(self, conn, http, *, then, registered: bool) -> None:
        self.nr += 1
        buffers, length = self._buffers(http)
        try:
            sent = conn.sock.sendmsg(buffers)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._drop(conn)
            return
        if sent == length:
            then(conn)
            return
        conn.sock.hold(buffers, sent)
        self._write_held(conn, then=then, registered=registered)

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

    def _buffers(self, http) -> tuple[list[bytes], int]:
        """gunicorn's bytes for ``http`` and their length, built once per
        answer per second."""
        second = int(time.time())
        if second != self._date_second:
            self._date_second = second
            self._head_prefix = f"Server: {SERVER}\r\nDate: {http_date(second)}\r\nConnection: keep-alive\r\n".encode(
                "latin-1"
            )
            self._sent.clear()
        cached = self._sent.get(id(http))
        if cached is not None and cached[0] is http:
            return cached[1], cached[2]
        lines = [f"HTTP/1.1 {http.status_line}\r\n".encode("latin-1"), self._head_prefix]
        lines += [f"{name}: {value}\r\n".encode("latin-1") for name, value in http.headers]
        lines.append(b"\r\n")
        buffers = [b"".join(lines), http.body] if http.body else [b"".join(lines)]
        length = sum(map(len, buffers))
        self._sent[id(http)] = (http, buffers, length)
        return buffers, length

    # -- writing what a slow reader has not taken yet ---------------------------------------

    def finish_request(self, conn, fs) -> None:
        """gthread's, once the loop has written what the pool thread's
        answer left held."""
        sock = conn.sock
        if isinstance(sock, ClientSocket) and sock.holds_output:
            self._write_held(conn, then=partial(self._finish_after_write, fs=fs), registered=False)
            return
        super().finish_request(conn, fs)

    def _finish_after_write(self, conn, *, fs) -> None:
        self.poller.unregister(conn.sock)
        super().finish_request(conn, fs)

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
        self._deadlines.clear(conn)
        self.poller.unregister(conn.sock)
        conn.sock.close()

    def murder_pending(self) -> None:
        """gthread's, and the deadlines of connections the loop holds."""
        super().murder_pending()
        self._deadlines.expire(time.monotonic())


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
