"""Bounds on every wait for PostgreSQL in a web process.

A database that is down refuses connections at once, and a new connection
to one that hangs gives up after libpq's ``connect_timeout`` (settings). A
query on a connection that is already open is another matter: a frozen
server, or a hung proxy or pooler in front of it, keeps the TCP connection
alive (its kernel acknowledges what we send), so neither keepalives nor
``tcp_user_timeout`` notice, and libpq has no client-side query timeout.
The query would wait forever, holding a gunicorn thread; with every thread
of a worker held, that worker stops answering pulls as well.

So in web processes every query runs under a client-side deadline: a
watchdog thread shuts the connection's socket down when a query outlives
DATABASE_QUERY_TIMEOUT_MS. psycopg then raises OperationalError (the send
path answers 503) and Django drops the connection at the end of the request.
The same value is set as the session's ``statement_timeout``, so a server
that is merely slow stops working on the query too.

Commands (``migrate``) and Celery workers do not install it: a migration may
legitimately run for minutes, and tasks have their own time limits. Not
covered: COMMIT and ROLLBACK, which Django does not route through execute
wrappers (a freeze landing exactly between a write and its commit).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

import psycopg
from django.conf import settings
from django.db.backends.signals import connection_created

from infra.ratelimitlog import RateLimitedLog

logger = logging.getLogger(__name__)
cut_log = RateLimitedLog(logger, every_seconds=10)

# The watchdog waits this much longer than the server's statement_timeout, so
# a server that is merely slow cancels the query itself (a clean error that
# keeps the connection); only one that does not answer gets its socket cut.
WATCHDOG_GRACE_SECONDS = 0.25


class Watchdog:
    """Cuts the socket of a query that outlives its deadline.

    One thread per process, started on first use (after a fork too); a heap
    of deadlines; arming and disarming cost a lock and a heap push.
    """

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._heap: list[tuple[float, int]] = []
        self._armed: dict[int, int] = {}
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self.cuts = 0

    def arm(self, fd: int, timeout_s: float) -> int:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="db-watchdog", daemon=True)
                self._thread.start()
            seq = next(self._seq)
            self._armed[seq] = fd
            heapq.heappush(self._heap, (time.monotonic() + timeout_s, seq))
            if self._heap[0][1] == seq:
                self._wake.notify()
            return seq

    def disarm(self, seq: int) -> None:
        with self._lock:
            self._armed.pop(seq, None)

    def _run(self) -> None:
        with self._lock:
            while True:
                while self._heap and self._heap[0][1] not in self._armed:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._wake.wait()
                    continue
                deadline, seq = self._heap[0]
                delay = deadline - time.monotonic()
                if delay > 0:
                    self._wake.wait(delay)
                    continue
                heapq.heappop(self._heap)
                # Still armed under the lock: the query has not returned, so
                # its connection (and this descriptor) is still open.
                self._cut(self._armed.pop(seq))

    def _cut(self, fd: int) -> None:
        self.cuts += 1
        try:
            # shutdown() acts on the socket itself, whichever descriptor names it.
            with socket.socket(fileno=os.dup(fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError as exc:
            logger.warning("could not cut a database connection past its deadline: %s", exc)
            return
        cut_log.warning("database query cut off after DATABASE_QUERY_TIMEOUT_MS; the database is not answering")


watchdog = Watchdog()


def query_deadline(timeout_s: float) -> Callable:
    """A Django execute wrapper that bounds each query by ``timeout_s``."""

    def wrapper(execute, sql, params, many, context):
        fd = _socket_fd(context["connection"])
        if fd is None:
            return execute(sql, params, many, context)
        seq = watchdog.arm(fd, timeout_s)
        try:
            return execute(sql, params, many, context)
        finally:
            watchdog.disarm(seq)

    wrapper.danmaku_query_deadline = True
    return wrapper


def _socket_fd(wrapper) -> int | None:
    raw = getattr(wrapper, "connection", None)
    pgconn = getattr(raw, "pgconn", None)
    if pgconn is None:
        return None
    try:
        fd = pgconn.socket
    except psycopg.Error:  # the connection is closed
        return None
    return fd if fd >= 0 else None


def _on_connection_created(sender, connection, **kwargs) -> None:
    if connection.vendor != "postgresql":
        return
    timeout_ms = settings.DATABASE_QUERY_TIMEOUT_MS
    if not any(getattr(w, "danmaku_query_deadline", False) for w in connection.execute_wrappers):
        connection.execute_wrappers.append(query_deadline(timeout_ms / 1000 + WATCHDOG_GRACE_SECONDS))
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = %s", [int(timeout_ms)])


def install() -> None:
    """Bound every PostgreSQL query of this process (web processes call it)."""
    if settings.DATABASE_QUERY_TIMEOUT_MS <= 0:
        return
    connection_created.connect(_on_connection_created, dispatch_uid="danmaku_query_deadline")
