"""A weak network in user space: an event-loop TCP proxy on 127.0.0.1.

This machine's kernel has no netem, so viewers that should live on a mobile
network connect to this proxy instead of the server. Per connection it adds
latency (half the round trip each way, with jitter, bytes never reordered),
a bandwidth cap per direction, resets in the middle of an answer (RST on
both sides, through SO_LINGER 0) and stalls (the connection forwards nothing
for a while); ``outage(seconds)`` takes the whole network away and brings it
back. Every random choice comes from ``Weakness.seed``: each connection draws
its own generator from the proxy's, in the order connections are accepted.

One asyncio loop in one thread carries every connection (today's
``harness.tcpproxy`` spends two threads on each and stops at a few dozen).
Everything is bounded: connections held, bytes queued per direction (a full
queue stops reading, so TCP pushes back on the sender), delays, stalls and
outages. ``stop()`` leaves no task, thread or socket behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from harness.local import free_port

# Bytes read at once; one chunk is the unit of delay, reset and stall.
CHUNK_BYTES = 16384
# Chunks queued per direction of one connection before reading pauses: with
# CHUNK_BYTES, at most 256 KiB held per direction.
QUEUE_CHUNKS = 16
# A capped direction writes this many pieces a second, so the rate holds
# within a piece even over a fraction of a second.
PIECES_PER_SECOND = 50
MAX_CONNECTIONS = 5000
MAX_DELAY_MS = 10_000
MAX_STALL_SECONDS = 60.0
MAX_OUTAGE_SECONDS = 600.0
CONNECT_TIMEOUT_SECONDS = 5.0
# stop() gives the loop this long to close everything before it gives up.
STOP_TIMEOUT_SECONDS = 10.0
OUTAGE_MODES = ("stall", "reset")
_LINGER_ZERO = struct.pack("ii", 1, 0)


@dataclass(frozen=True)
class Weakness:
    """What the network does to every connection through the proxy."""

    rtt_ms: float = 0.0
    # Each chunk's one-way delay is rtt/2 plus up to +/- jitter/2 (never
    # below zero, never ahead of the chunk before it).
    jitter_ms: float = 0.0
    # Per connection and per direction; 0: no cap.
    rate_bytes_per_second: int = 0
    # Per chunk the server sends: the client gets its first half, then both
    # sides are reset.
    reset_probability: float = 0.0
    # Per chunk the server sends: the connection forwards nothing, either
    # way, for a time drawn from stall_seconds, before that chunk.
    stall_probability: float = 0.0
    stall_seconds: tuple[float, float] = (1.0, 3.0)
    seed: int = 0

    def __post_init__(self) -> None:
        if not (0 <= self.rtt_ms <= MAX_DELAY_MS and 0 <= self.jitter_ms <= MAX_DELAY_MS):
            raise ValueError(f"rtt_ms and jitter_ms must be within 0..{MAX_DELAY_MS}")
        if self.rate_bytes_per_second < 0:
            raise ValueError("rate_bytes_per_second must be 0 (no cap) or more")
        for name in ("reset_probability", "stall_probability"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be within 0..1")
        low, high = self.stall_seconds
        if not 0 <= low <= high <= MAX_STALL_SECONDS:
            raise ValueError(f"stall_seconds must be an ordered pair within 0..{MAX_STALL_SECONDS}")

    def one_way_seconds(self, rng: random.Random) -> float:
        spread = rng.uniform(-self.jitter_ms, self.jitter_ms) / 2
        return max(0.0, self.rtt_ms / 2 + spread) / 1000


@dataclass
class NetStats:
    """What the proxy did, totalled over every connection (read with ``stats()``)."""

    connections: int = 0
    refused: int = 0  # reset at once: during a resetting outage, or over MAX_CONNECTIONS
    upstream_failed: int = 0  # reset at once: the server could not be reached
    resets: int = 0  # cut mid-answer at random
    cut: int = 0  # open when a resetting outage began
    stalls: int = 0
    outages: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    open_connections: int = 0


@dataclass
class _Chunk:
    data: bytes  # b"": the sender closed its side
    due: float  # loop time at which the chunk may leave
    reset: bool = False
    stall_seconds: float = 0.0


@dataclass(eq=False)
class _Link:
    """One client connection and its upstream connection."""

    rng: random.Random
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    stalled_until: float = 0.0
    pumps: list[asyncio.Task] = field(default_factory=list)
    closed: bool = False


def _reset(writer: asyncio.StreamWriter | None) -> None:
    """Close with RST, not FIN: the peer's next read or write fails at once."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    writer.transport.abort()


class WeakNet:
    """The proxy. ``start()`` runs it in a thread of its own; ``stop()`` ends it."""

    def __init__(self, target_host: str, target_port: int, weakness: Weakness = Weakness()) -> None:
        self.target = (target_host, target_port)
        self.weakness = weakness
        self.port = 0
        self._rng = random.Random(weakness.seed)
        self._stats = NetStats()
        self._links: set[_Link] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._up: asyncio.Event | None = None  # cleared during a stalling outage
        self._refusing = False  # during a resetting outage
        self._outage_timer: asyncio.TimerHandle | None = None
        self.outage_ends_at = 0.0  # time.monotonic() at which the last outage ends

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- control, from any thread -------------------------------------------------

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="weaknet", daemon=True)
        self._thread.start()
        self._call(self._listen())

    def stop(self) -> None:
        if self._loop is None:
            return
        try:
            self._call(self._close(), timeout=STOP_TIMEOUT_SECONDS)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(STOP_TIMEOUT_SECONDS)
            self._loop.close()
            self._loop = None

    def outage(self, seconds: float, mode: str = "stall") -> float:
        """Take the network away for ``seconds``, from now; returns at once.

        ``stall``: every connection, open or new, forwards nothing until the
        end (as when a phone loses its signal); ``reset``: every open
        connection is reset and new ones are reset as soon as they connect.
        Returns the ``time.monotonic()`` at which the network comes back.
        """
        if mode not in OUTAGE_MODES:
            raise ValueError(f"mode must be one of {OUTAGE_MODES}")
        if not 0 < seconds <= MAX_OUTAGE_SECONDS:
            raise ValueError(f"an outage lasts 0..{MAX_OUTAGE_SECONDS} s")
        self.outage_ends_at = time.monotonic() + seconds
        self._call(self._begin_outage(seconds, mode))
        return self.outage_ends_at

    def set_weakness(self, weakness: Weakness) -> None:
        """From now on (each chunk read after this), the network is ``weakness``;
        the random choices keep drawing from the generators already made."""
        self.weakness = weakness

    def stats(self) -> NetStats:
        return self._call(self._snapshot())

    def _call(self, coroutine, timeout: float = STOP_TIMEOUT_SECONDS):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    # -- on the loop -------------------------------------------------------------------

    async def _listen(self) -> None:
        self._up = asyncio.Event()
        self._up.set()
        port = self.port or free_port()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port, backlog=1024)
        self.port = port

    async def _snapshot(self) -> NetStats:
        self._stats.open_connections = len(self._links)
        return NetStats(**vars(self._stats))

    async def _begin_outage(self, seconds: float, mode: str) -> None:
        self._stats.outages += 1
        if self._outage_timer is not None:
            self._outage_timer.cancel()
        if mode == "stall":
            self._up.clear()
        else:
            self._refusing = True
            for link in list(self._links):
                self._stats.cut += 1
                self._cut(link)
        self._outage_timer = asyncio.get_running_loop().call_later(seconds, self._end_outage)

    def _end_outage(self) -> None:
        self._outage_timer = None
        self._refusing = False
        self._up.set()

    async def _close(self) -> None:
        if self._outage_timer is not None:
            self._outage_timer.cancel()
        self._server.close()
        for link in list(self._links):
            self._cut(link)
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), STOP_TIMEOUT_SECONDS / 2)

    def _cut(self, link: _Link) -> None:
        if link.closed:
            return
        link.closed = True
        _reset(link.client)
        _reset(link.upstream)
        for task in link.pumps:
            if task is not asyncio.current_task():
                task.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Cancelled only by stop(): end quietly (asyncio's streams log a
        # handler that ends cancelled as an error).
        with contextlib.suppress(asyncio.CancelledError):
            await self._serve(reader, writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._stats.connections += 1
        if self._refusing or len(self._links) >= MAX_CONNECTIONS:
            self._stats.refused += 1
            _reset(writer)
            return
        link = _Link(random.Random(self._rng.getrandbits(64)), writer)
        self._links.add(link)
        try:
            try:
                up_reader, link.upstream = await asyncio.wait_for(
                    asyncio.open_connection(*self.target), CONNECT_TIMEOUT_SECONDS
                )
            except (OSError, TimeoutError):
                self._stats.upstream_failed += 1
                self._cut(link)
                return
            if link.closed:  # a resetting outage began while connecting
                _reset(link.upstream)
                return
            up_queue: asyncio.Queue[_Chunk] = asyncio.Queue(QUEUE_CHUNKS)
            down_queue: asyncio.Queue[_Chunk] = asyncio.Queue(QUEUE_CHUNKS)
            pumps = [
                self._read(link, reader, up_queue, answers=False),
                self._write(link, up_queue, link.upstream, upward=True),
                self._read(link, up_reader, down_queue, answers=True),
                self._write(link, down_queue, link.client, upward=False),
            ]
            link.pumps = [asyncio.ensure_future(pump) for pump in pumps]
            # A pump ends when its side closes; one that fails (a peer's
            # reset, a broken pipe) resets the whole link at once.
            for pump in link.pumps:
                pump.add_done_callback(functools.partial(self._pump_done, link))
            await asyncio.gather(*link.pumps, return_exceptions=True)
        finally:
            self._links.discard(link)
            if not link.closed:
                link.closed = True
                for side in (link.client, link.upstream):
                    if side is not None:
                        side.transport.close()

    def _pump_done(self, link: _Link, pump: asyncio.Task) -> None:
        if not pump.cancelled() and pump.exception() is not None:
            self._cut(link)

    async def _read(self, link: _Link, reader: asyncio.StreamReader, queue: asyncio.Queue, *, answers: bool) -> None:
        loop = asyncio.get_running_loop()
        last_due = 0.0
        while True:
            data = await reader.read(CHUNK_BYTES)
            weakness = self.weakness
            # Never ahead of the chunk before: a TCP stream keeps its order.
            last_due = max(last_due, loop.time() + weakness.one_way_seconds(link.rng))
            chunk = _Chunk(data, last_due)
            if data and answers:
                chunk.reset = link.rng.random() < weakness.reset_probability
                if link.rng.random() < weakness.stall_probability:
                    chunk.stall_seconds = link.rng.uniform(*weakness.stall_seconds)
            await queue.put(chunk)
            if not data:
                return

    async def _write(self, link: _Link, queue: asyncio.Queue, writer: asyncio.StreamWriter, *, upward: bool) -> None:
        loop = asyncio.get_running_loop()
        next_free = 0.0
        while True:
            chunk = await queue.get()
            rate = self.weakness.rate_bytes_per_second
            piece = max(1, rate // PIECES_PER_SECOND) if rate else CHUNK_BYTES
            if chunk.stall_seconds:
                self._stats.stalls += 1
                link.stalled_until = max(link.stalled_until, loop.time() + chunk.stall_seconds)
            await self._wait_until(link, chunk.due)
            if not chunk.data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            data = chunk.data[: max(1, len(chunk.data) // 2)] if chunk.reset else chunk.data
            for start in range(0, len(data), piece):
                part = data[start : start + piece]
                if rate:
                    await self._wait_until(link, next_free)
                    next_free = max(next_free, loop.time()) + len(part) / rate
                writer.write(part)
                await writer.drain()
                if upward:
                    self._stats.bytes_up += len(part)
                else:
                    self._stats.bytes_down += len(part)
            if chunk.reset:
                self._stats.resets += 1
                self._cut(link)
                return

    async def _wait_until(self, link: _Link, due: float) -> None:
        """Sleep until ``due`` (loop time), the link's stall and any stalling outage are over."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._up.is_set():
                await self._up.wait()
                # What was held arrives one trip after the network is back.
                due = max(due, loop.time() + self.weakness.one_way_seconds(link.rng))
            wait = max(due, link.stalled_until) - loop.time()
            if wait <= 0 and self._up.is_set():
                return
            if wait > 0:
                await asyncio.sleep(wait)


@contextlib.contextmanager
def weak_net(target_host: str, target_port: int, weakness: Weakness = Weakness()) -> Iterator[WeakNet]:
    """A started ``WeakNet`` in front of ``target_host:target_port`` until the block exits."""
    net = WeakNet(target_host, target_port, weakness)
    net.start()
    try:
        yield net
    finally:
        net.stop()
