"""nginx's count of the pulls it answered, fed into the rooms' meters.

Behind deploy/nginx.conf's micro-cache a node's processes see only the
misses (about one per room and cursor a second), so what they count
measures neither the crowd nor the uplink. nginx therefore logs every pull
it answers, hits included, as one syslog datagram to
127.0.0.1:DANMAKU_POLL_FEED_PORT: ``<pri>timestamp danmaku: <uri> <status>
<bytes_sent>``. With the port set, no process counts its own pulls
(``PullConfig.meter_pulls``) and one process of the node counts the feed:
each tries to bind the port on its refresher's tick, and the one that binds
reads the datagrams in a thread of its own. If it dies, a sibling binds the
port on its next tick. The meters it fills are shared with the node
(``infra.nodeshare``) like any process's, so the controller, /metrics and
the viewer estimate see what nginx served.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import re
import select
import socket
import time
from collections.abc import Callable

from django.db import close_old_connections

from danmaku.pull.cache import PullCache, RoomEntry
from infra.loopthread import LoopThread
from infra.metrics import POLL_FEED_LINES, POLL_FEED_RECEIVING
from infra.ratelimitlog import RateLimitedLog

logger = logging.getLogger(__name__)
bind_log = RateLimitedLog(logger, every_seconds=60)

# Only loopback: nginx on the same host sends it, nobody else may.
HOST = "127.0.0.1"
# The tail of a line: a pull's path (Django slugs only, as nginx's pull
# location and the pull cache take them), its status and the bytes nginx
# sent (head and body). Only answers that carry comments count, as in the
# app: 200 and 304 (nginx's map logs no other).
LINE_RE = re.compile(rb"/api/v1/rooms/([-a-zA-Z0-9_]{1,50})/danmaku (200|304) ([0-9]{1,9})")
# A line is about 80 bytes; anything longer than this is cut and fails to parse.
DATAGRAM_MAX_BYTES = 1024
# Datagrams read before they are counted: one pass of the loop stays short,
# and a flood is read at the rate the loop counts it.
BATCH_MAX = 2000
# How long one pass waits for the first datagram (the thread's stop is seen
# within this).
WAIT_SECONDS = 0.5
# Datagrams the kernel holds while the loop counts (or waits for the GIL): at
# 100,000 pulls a second, about 0.1 s worth. Linux caps it at
# net.core.rmem_max (deploy/README.md); past it datagrams are dropped, and
# pulls go uncounted.
RECEIVE_BUFFER_BYTES = 8 * 1024 * 1024


def parse_line(datagram: bytes) -> tuple[str, int] | None:
    """(room slug, bytes sent) from one datagram of the feed, or None if it
    is not a counted pull (garbage, another status, a cut line)."""
    match = LINE_RE.fullmatch(b" ".join(datagram.rsplit(None, 3)[-3:]))
    if match is None:
        return None
    return match[1].decode("ascii"), int(match[3])


class PollFeed:
    """Binds the feed's port if it can (``tick``) and counts what arrives."""

    def __init__(
        self, *, cache: PullCache, port: int, host: str = HOST, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.cache = cache
        self.port = port
        self.host = host
        self.clock = clock
        self._sock: socket.socket | None = None
        self._poll: select.poll | None = None
        self._loop = LoopThread("danmaku-poll-feed", self.receive_once, lambda: 0.0)

    @property
    def receiving(self) -> bool:
        return self._sock is not None

    def tick(self) -> None:
        """From the refresher's tick: receive the feed unless a sibling does.

        A bind that fails costs three system calls: each process tries every
        tick, so a receiver that died is replaced within about a second
        (meanwhile nginx logs a refused send to its error log per pull)."""
        if self._sock is None and not self.bind():
            POLL_FEED_RECEIVING.set(0)
            return
        POLL_FEED_RECEIVING.set(1)
        self._loop.start()

    def bind(self) -> bool:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
            # No SO_REUSEADDR or SO_REUSEPORT: the port must refuse a second
            # process, so that exactly one counts each datagram.
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE:
                bind_log.warning("cannot receive nginx's pull feed on %s:%s: %s", self.host, self.port, exc)
            return False
        sock.setblocking(False)
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)
        self._sock = sock
        logger.info("receiving nginx's pull feed on %s:%s", self.host, self.port)
        return True

    def receive_once(self) -> int:
        """Wait (bounded) for datagrams, read up to BATCH_MAX, count them;
        how many were read."""
        sock, poll = self._sock, self._poll
        if sock is None or poll is None or not poll.poll(WAIT_SECONDS * 1000):
            return 0
        sizes: dict[str, list[int]] = {}
        read = malformed = 0
        while read < BATCH_MAX:
            try:
                datagram = sock.recv(DATAGRAM_MAX_BYTES)
            except (BlockingIOError, InterruptedError):
                break
            read += 1
            parsed = parse_line(datagram)
            if parsed is None:
                malformed += 1
                continue
            slug, size = parsed
            room = sizes.get(slug)
            if room is None:
                room = sizes[slug] = []
            room.append(size)
        if malformed:
            POLL_FEED_LINES.labels(outcome="malformed").inc(malformed)
        self._count(sizes)
        return read

    def _count(self, sizes: dict[str, list[int]]) -> None:
        counted = unplaced = 0
        activated = False
        now = self.clock()
        for slug, room in sizes.items():
            entry = self.cache.rooms.get(slug)
            if entry is None:
                entry = self._activate(slug)
                activated = True
            if entry is None:
                unplaced += len(room)
                continue
            # Viewers keep this process's copy of the room alive too.
            entry.last_pulled = self.cache.clock()
            # The interval the room's answers ask for now, without jitter
            # or crowd variants (they average out).
            next_ms = int(self.cache.base_interval_ms(entry, entry.ring.view) * entry.control.multiplier)
            meter = entry.meter
            for size in room:
                meter.count(size, next_ms, now)
            counted += len(room)
        if counted:
            POLL_FEED_LINES.labels(outcome="counted").inc(counted)
        if unplaced:
            POLL_FEED_LINES.labels(outcome="unplaced").inc(unplaced)
        if activated:
            # Activating reads the database from this thread.
            close_old_connections()

    def _activate(self, slug: str) -> RoomEntry | None:
        """The room, made active here the way its first pull would (bounded
        like one: a room that does not exist, or too many unknown at once,
        leaves it inactive and these lines uncounted)."""
        self.cache.pull(slug, None)
        return self.cache.rooms.get(slug)

    def stop(self) -> None:
        self._loop.stop()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock = self._poll = None
        POLL_FEED_RECEIVING.set(0)
