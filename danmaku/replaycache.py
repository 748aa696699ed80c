"""Built replay segments, kept per node and shared by every reader.

A segment is built once per version (``danmaku.segments``) and kept with
its gzip as an immutable answer, so serving one that is built runs no
query. What the current versions are is read at most once a second per
broadcast; a reader naming a version newer than that makes it read again,
at most four times a second.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable

import orjson

from danmaku import segments
from danmaku.errors import NotFound
from danmaku.pull.cache import PullAnswer
from danmaku.segments import BroadcastState
from infra import clock
from infra.metrics import REPLAY_BUILDS

IMMUTABLE = "public, max-age=31536000, immutable"
# An answer that is not addressed by its version: new readers see a change
# within this, plus the node's STATE_TTL_S.
CURRENT = "public, max-age=2"
# A segment of a broadcast still live or just over: its comments may still
# grow without a version change, so it is rebuilt each second.
UNSETTLED = "public, max-age=1"
UNSETTLED_TTL_S = 1.0
STATE_TTL_S = 1.0
FORCED_READ_GAP_S = 0.25
MAX_BYTES = 64 * 1024 * 1024
MAX_STATES = 10_000
# Other players' answers kept (a broadcast's whole XML, DPlayer reads by limit).
MAX_COMPOSED = 64
GZIP_LEVEL = 6


class Built:
    """One segment version: the same bytes under its two cache policies."""

    __slots__ = ("current", "expires", "pinned", "size")

    def __init__(
        self, body: bytes, etag: str, *, settled: bool, expires: float, content_type: str = "application/json"
    ) -> None:
        zipped = gzip.compress(body, GZIP_LEVEL, mtime=0)
        pinned, current = (IMMUTABLE, CURRENT) if settled else (UNSETTLED, UNSETTLED)
        shared = dict(status=200, body=body, gzipped=zipped, etag=etag, content_type=content_type)
        self.pinned = PullAnswer(**shared, cache_control=pinned)
        self.current = PullAnswer(**shared, cache_control=current)
        self.size = len(body) + len(zipped)
        self.expires = expires


class ReplayCache:
    def __init__(
        self,
        *,
        read_state: Callable[[int], BroadcastState | None] = segments.read_state,
        build: Callable[[BroadcastState, int, int], bytes] = segments.build_segment,
        monotonic: Callable[[], float] = time.monotonic,
        now_ms: Callable[[], int] = clock.now_ms,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self._read_state = read_state
        self._build = build
        self._monotonic = monotonic
        self._now_ms = now_ms
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        # broadcast id -> (read at, state or None for no such broadcast)
        self._states: dict[int, tuple[float, BroadcastState | None]] = {}
        self._built: OrderedDict[tuple[int, int, int], Built] = OrderedDict()
        self._bytes = 0
        self._building: dict[tuple[int, int, int], threading.Lock] = {}
        self._composed: dict[tuple, Built] = {}
        # broadcast id -> (good until, its detail answer)
        self._details: dict[int, tuple[float, PullAnswer]] = {}

    def state(self, broadcast_id: int, *, newer_than: int | None = None) -> BroadcastState:
        """The broadcast's state, at most STATE_TTL_S old; NotFound if none."""
        now = self._monotonic()
        read_at, state = self._states.get(broadcast_id, (None, None))
        stale = read_at is None or now - read_at >= STATE_TTL_S
        if not stale and newer_than is not None and state is not None and now - read_at >= FORCED_READ_GAP_S:
            stale = True
        if stale:
            state = self._read_state(broadcast_id)
            with self._lock:
                if len(self._states) >= MAX_STATES:
                    self._states.clear()
                self._states[broadcast_id] = (now, state)
        if state is None:
            raise NotFound("no such broadcast", field="broadcast_id")
        return state

    def segment(self, broadcast_id: int, index: int, version: int | None = None) -> PullAnswer:
        """Segment ``index``: immutable when asked for by its current version."""
        if version is not None:
            built = self._cached((broadcast_id, index, version))
            if built is not None:
                return built.pinned
        state = self.state(broadcast_id)
        if index >= len(state.versions):
            raise NotFound(f"segment: the broadcast has {len(state.versions)} segments", field="segment")
        current = state.versions[index]
        if version is not None and version > current:
            state = self.state(broadcast_id, newer_than=current)
            current = state.versions[index] if index < len(state.versions) else current
            if version > current:
                raise NotFound(f"v: segment {index} has no version {version} (now {current})", field="v")
        built = self._get_or_build(state, index, current)
        return built.pinned if version == current else built.current

    def built(self, broadcast_id: int, index: int, version: int) -> PullAnswer | None:
        """Segment ``index`` at ``version`` if this node has it built (no query, no lock), else None."""
        built = self._cached((broadcast_id, index, version))
        return None if built is None else built.pinned

    def detail(self, broadcast_id: int, build: Callable[[int], bytes]) -> PullAnswer:
        """The broadcast's own answer (its listing row), built by ``build`` at
        most once a second per broadcast and shared."""
        cached = self.cached_detail(broadcast_id)
        if cached is not None:
            return cached
        body = build(broadcast_id)
        built = Built(body, f'"d{broadcast_id}-{zlib.crc32(body):08x}"', settled=False, expires=0.0)
        answer = PullAnswer(
            status=200, body=body, gzipped=built.current.gzipped, etag=built.current.etag, cache_control=CURRENT
        )
        with self._lock:
            if len(self._details) >= MAX_STATES:
                self._details.clear()
            self._details[broadcast_id] = (self._monotonic() + STATE_TTL_S, answer)
        return answer

    def cached_detail(self, broadcast_id: int) -> PullAnswer | None:
        expires, answer = self._details.get(broadcast_id, (0.0, None))
        return answer if answer is not None and self._monotonic() < expires else None

    def items(self, broadcast_id: int) -> tuple[BroadcastState, list[dict]]:
        """The broadcast's state and every segment's ``items`` columns, from the built segments."""
        state = self.state(broadcast_id)
        return state, [
            orjson.loads(self._get_or_build(state, index, version).pinned.body)["items"]
            for index, version in enumerate(state.versions)
        ]

    def composed(
        self, broadcast_id: int, kind: tuple, build: Callable[[BroadcastState, list[dict]], bytes], content_type: str
    ) -> PullAnswer:
        """An answer made from all of a broadcast's segments (another
        player's format), kept until a segment's version changes."""
        state = self.state(broadcast_id)
        key = (broadcast_id, kind, state.versions)
        built = self._composed.get(key)
        if built is None or (built.expires and self._monotonic() >= built.expires):
            state, items = self.items(broadcast_id)
            settled = state.settled(self._now_ms())
            with REPLAY_BUILDS.labels(kind=kind[0]).time():
                body = build(state, items)
            etag = f'"c{broadcast_id}-{zlib.crc32(repr(key).encode()):08x}"'
            expires = 0.0 if settled else self._monotonic() + UNSETTLED_TTL_S
            built = Built(body, etag, settled=settled, expires=expires, content_type=content_type)
            with self._lock:
                if len(self._composed) >= MAX_COMPOSED:
                    self._composed.pop(next(iter(self._composed)))
                self._composed[key] = built
        return built.current

    def _cached(self, key) -> Built | None:
        built = self._built.get(key)
        if built is None or (built.expires and self._monotonic() >= built.expires):
            return None
        return built

    def _get_or_build(self, state: BroadcastState, index: int, version: int) -> Built:
        key = (state.id, index, version)
        built = self._cached(key)
        if built is not None:
            return built
        with self._lock:
            lock = self._building.setdefault(key, threading.Lock())
        # One reader builds; the others arriving meanwhile wait and share it.
        with lock:
            built = self._cached(key)
            if built is None:
                settled = state.settled(self._now_ms())
                with REPLAY_BUILDS.labels(kind="segment").time():
                    body = self._build(state, index, version)
                expires = 0.0 if settled else self._monotonic() + UNSETTLED_TTL_S
                built = Built(body, f'"r{state.id}-{index}-{version}"', settled=settled, expires=expires)
                self._keep(key, built)
        with self._lock:
            self._building.pop(key, None)
        return built

    def _keep(self, key, built: Built) -> None:
        with self._lock:
            old = self._built.pop(key, None)
            if old is not None:
                self._bytes -= old.size
            self._built[key] = built
            self._bytes += built.size
            while self._bytes > self._max_bytes and len(self._built) > 1:
                _, evicted = self._built.popitem(last=False)
                self._bytes -= evicted.size

    def clear(self) -> None:
        with self._lock:
            self._states.clear()
            self._built.clear()
            self._composed.clear()
            self._details.clear()
            self._bytes = 0


replay_cache = ReplayCache()
