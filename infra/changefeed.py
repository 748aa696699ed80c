"""Per-process caches of rarely changing facts, and the channel that keeps them honest.

The send path asks the same questions on every send (which room is this
slug, whose token is this, is the sender banned) and the answers change a
few times a day. Each process keeps them in a ``LookupCache``. Whoever
changes such a fact records the change (kind, key) on the channel, in the
same transaction as the change; a background job in every process reads
the channel every ``POLL_SECONDS`` and drops what it names. A cache answers
only while its process has read the channel within ``lease_seconds`` (the
bound a change takes to reach every process); past that (the channel cannot
be read, or nothing reads it: a shell, a test) every lookup goes back to
the source.

Pure: the channel's reader and the loaders are functions handed in.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

from infra.ratelimitlog import RateLimitedLog

logger = logging.getLogger(__name__)
failed_log = RateLimitedLog(logger, every_seconds=10)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Each process reads the channel this often (a background job).
POLL_SECONDS = 0.5
# How long a cache trusts a read: past it without a successful read (the
# database is unreachable, the process was stopped), lookups go to the
# source. Four polls: one slow read does not empty the caches.
LEASE_SECONDS = 2.0
# Everything: the kind's key that drops every entry of that kind.
EVERYTHING = None

Reader = Callable[[object], tuple[Iterable[tuple[str, object]], object]]


class ChangeFeed:
    """Reads the channel and tells the subscribed caches what changed.

    ``read(position)`` returns the changes recorded since ``position`` (None:
    the first read, which needs none) as (kind, key) pairs, and the position
    to read from next; a key ``EVERYTHING`` drops every entry of its kind,
    and the kind ``"*"`` every cache. It may raise: the caches then stay
    trusted until the lease runs out.
    """

    def __init__(
        self,
        read: Reader,
        *,
        lease_seconds: float = LEASE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self.lease_seconds = lease_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._subscribers: dict[str, list[Callable[[object], None]]] = {}
        self._position: object = None
        # When the last successful read started: what it saw is what had
        # committed by then.
        self._read_at = float("-inf")
        # Bumped by every drop: a value loaded across a drop is not cached.
        self.generation = 0

    def subscribe(self, kind: str, drop: Callable[[object], None]) -> None:
        self._subscribers.setdefault(kind, []).append(drop)

    def changed(self, kind: str, key: object) -> None:
        """Drop ``key`` of ``kind`` from this process's caches now."""
        self.generation += 1
        kinds = self._subscribers if kind == "*" else {kind: self._subscribers.get(kind, ())}
        for drops in kinds.values():
            for drop in drops:
                drop(EVERYTHING if kind == "*" else key)

    def fresh(self) -> bool:
        """Whether cached answers may be used now: the channel was read
        within the lease. Lookups never read it themselves (a database that
        hangs would hold the request twice); the background job does."""
        return self._clock() - self._read_at < self.lease_seconds

    def poll(self) -> bool:
        """Read the channel now (the background job); whether the read succeeded."""
        with self._lock:
            return self._poll()

    def reset(self) -> None:
        """Forget the position and drop everything (tests; a forked child)."""
        with self._lock:
            self._position = None
            self._read_at = float("-inf")
        self.changed("*", EVERYTHING)

    def _poll(self) -> bool:
        started = self._clock()
        try:
            changes, position = self._read(self._position)
            for kind, key in changes:
                self.changed(kind, key)
        except Exception as exc:  # whatever the reader raised, the caches expire with the lease
            failed_log.warning("cache channel not read (%s: %s); lookups go to the source", type(exc).__name__, exc)
            return False
        self._position = position
        self._read_at = started
        return True


class LookupCache(Generic[K, V]):
    """Answers of ``load(key)`` kept while the feed is fresh, each for at most ``ttl_seconds``.

    ``load`` may return None (nothing there): that is cached too, so asking
    again for a room that does not exist costs nothing; creating it is a change.
    """

    def __init__(
        self,
        feed: ChangeFeed,
        kind: str,
        load: Callable[[K], V],
        *,
        ttl_seconds: float = 300.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._feed = feed
        self._load = load
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        # key -> (value, expires at); insertion order is age order.
        self._entries: dict[K, tuple[V, float]] = {}
        feed.subscribe(kind, self.drop)

    def get(self, key: K) -> V:
        now = self._clock()
        if self._feed.fresh():
            hit = self._entries.get(key)
            if hit is not None and hit[1] > now:
                return hit[0]
        generation = self._feed.generation
        value = self._load(key)
        if self._feed.generation == generation:
            if len(self._entries) >= self._max:
                # The oldest entry goes; dict pop of the first key is O(1).
                self._entries.pop(next(iter(self._entries)), None)
            self._entries[key] = (value, now + self._ttl)
        return value

    def offer(self, key: K, value: V, *, generation: int) -> None:
        """Cache ``value``, loaded along with another lookup's when the feed
        was at ``generation``, unless anything was dropped since or ``key``
        is cached already."""
        if self._feed.generation == generation and key not in self._entries and len(self._entries) < self._max:
            self._entries[key] = (value, self._clock() + self._ttl)

    def drop(self, key: object) -> None:
        if key is EVERYTHING:
            self._entries.clear()
        else:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
