"""gunicorn's gthread worker, answering viewers' polls on its event loop.

In a gthread worker every request on a kept-alive connection crosses two
threads: the loop sees the socket readable, takes it off the poller and
queues it for a pool thread; the thread parses the request, runs the app,
writes the answer and queues the connection back to the loop through a
pipe, which puts it on the poller again. For a poll answered from memory in
about 2 µs that hand-over is most of the server's work: a dozen system
calls and several GIL hand-offs between threads per request.

``PullWorker`` reads a kept-alive connection on the loop instead. When the
read holds exactly one plain ``GET`` (danmaku_site.pullrequest) that the
pull fast path answers without blocking, the loop writes the answer and
leaves the connection on the poller: one read, one write. Everything else
(a new connection's first request, a partial or pipelined request, a send,
a pull for a room this process has not activated, any request at all when
the app has no fast path) is put back in front of gunicorn's parser and
goes to the pool exactly as in gthread. Run it with
``-k danmaku_site.pullworker.PullWorker``; every gthread setting applies.
"""

from __future__ import annotations

import errno
import os
import time
from functools import partial

from gunicorn import SERVER
from gunicorn.util import http_date
from gunicorn.workers.gthread import ThreadWorker

from danmaku_site import pullrequest

# One read takes the whole of a poll; a read this long may have been cut
# short, so it goes to gunicorn's parser.
READ_BYTES = 8192


class PullWorker(ThreadWorker):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._answer = None
        self._date_second = -1
        self._head_prefix = b""
        # id(HttpAnswer) -> (the answer, what sendmsg writes for it: the
        # status line and headers as bytes, then the body; and their length),
        # for the current second (the Date header changes).
        self._sent: dict[int, tuple[object, list[bytes], int]] = {}

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self._answer = self._loop_answerer()
        self._limits = pullrequest.Limits.from_config(self.cfg, READ_BYTES)

    def _loop_answerer(self):
        """The app's non-blocking pull answer, where the loop may use it."""
        answer = getattr(self.wsgi, "answer", None)
        cfg = self.cfg
        if answer is None or cfg.is_ssl or cfg.proxy_protocol != "off" or cfg.protocol != "http":
            return None
        if self.log.access_log_enabled or os.environ.get("SCRIPT_NAME") or _hooked(cfg):
            # The regular path logs each request, strips SCRIPT_NAME and runs
            # the hooks; the loop does none of that.
            return None
        return partial(answer, on_event_loop=True)

    def on_client_socket_readable(self, conn, client) -> None:
        if (
            self._answer is None
            or conn.is_http2
            or not self.alive
            # The regular way answers these with "Connection: close".
            or self.nr + 1 >= self.max_requests
            or len(self.keepalived_conns) > self.max_keepalived
        ):
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
        http = None
        if len(data) < READ_BYTES:
            environ = pullrequest.parse(data, self._limits)
            if environ is not None:
                try:
                    http = self._answer(environ)
                except Exception:
                    # A fault in the fast path must not take the loop (and
                    # every connection on it) down: Django answers this one.
                    self.log.exception("pull answer failed on the event loop; handing the request over")
        if http is None:
            # gunicorn's parser reads these bytes before the socket's.
            conn.parser.unreader.unread(data)
            return super().on_client_socket_readable(conn, client)
        self.nr += 1
        buffers, length = self._buffers(http)
        try:
            sent = conn.sock.sendmsg(buffers)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close_kept_alive(conn, client)
            return
        rest = length - sent
        if rest:
            # The client's buffer is full (a slow reader): a pool thread
            # waits for it, and the loop goes on.
            tail = b"".join(buffers)[sent:]
            self.log.debug("pull answer: %d of %d bytes written on the loop, the rest in a thread", sent, sent + rest)
            self.poller.unregister(client)
            self.keepalived_conns.remove(conn)
            future = self.tpool.submit(_send_rest, conn, tail)
            future.add_done_callback(lambda fut: self.method_queue.defer(self.finish_request, conn, fut))
            return
        # Still on the poller and in the keep-alive queue where it was: its
        # deadline moves, and murder_keepalived moves it to the back when it
        # reaches the front (finding it in the queue costs one step per
        # kept-alive connection, on every poll).
        conn.set_timeout()
        conn.extended = True

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

    def _close_kept_alive(self, conn, client) -> None:
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self.nr_conns -= 1
        conn.close()


def _send_rest(conn, tail: bytes) -> bool:
    """In a pool thread: the rest of an answer the loop could not write.
    True keeps the connection alive (gthread's ``finish_request``)."""
    try:
        conn.sock.setblocking(True)
        conn.sock.sendall(tail)
    except OSError as exc:
        if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
            raise
        return False
    return True


def _hooked(cfg) -> bool:
    return any(cfg.settings[name].value is not cfg.settings[name].default for name in ("pre_request", "post_request"))
