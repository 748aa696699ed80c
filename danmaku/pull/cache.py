"""The pull path: rooms -> ring views -> shared, memoized response bytes.

No database, no store, no Django import. A pull parses the cursor, takes the
room's current ring view and returns bytes that every client asking the same
question at the same moment shares. The refresher is the only writer of the
rooms and rings held here; the first pull of a room in a process asks it to
activate the room (``set_activator``).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from danmaku.pull import wire
from danmaku.pull.control import sparse_interval_ms
from danmaku.pull.meter import RoomMeter
from danmaku.pull.ringbuffer import RingView, RoomRing
from danmaku.pull.spread import (
    CROWD_STEP,
    CROWD_VARIANTS,
    jitter,
    stretched_ms,
    unstretched_ceiling_ms,
    variant_factor,
)
from infra.ratelimitlog import RateLimitedLog
from infra.tokenbucket import TokenBucket

logger = logging.getLogger(__name__)
busy_log = RateLimitedLog(logger, every_seconds=10)

SLUG_RE = re.compile(r"[-a-zA-Z0-9_]{1,50}")
# A room nobody pulled for this long is dropped from the process (the ring
# is a cache; it rebuilds from the store when someone comes back).
IDLE_SECONDS = 60.0
# An unknown slug is remembered this long so a flood of pulls for a room that
# does not exist costs one lookup, not one per pull. Short, because a room
# created a moment after a miss must become pullable promptly: at worst this
# plus NOT_FOUND_MAX_AGE_SECONDS (a proxy's copy of the 404) later.
MISSING_TTL_SECONDS = 3.0
MISSING_MAX = 10_000
# A 404 may be cached this long (nginx's micro-cache absorbs a flood of pulls
# for one unknown room); a 200 is fresh for PullConfig.max_age_seconds.
NOT_FOUND_MAX_AGE_SECONDS = 2
NOT_FOUND = "room not found"
# Over the bound on unknown-room lookups (PullConfig) a pull for a room this
# process does not know is answered at once, without a lookup: a 503 with
# Retry-After, which clients retry (a 404 would tell the viewers of a real
# room that was not active here yet that it does not exist) and proxies do
# not cache.
LOOKUPS_BUSY = "too many unknown rooms asked for at once; retry shortly"
# Below this size gzip costs more than it saves.
GZIP_MIN_BYTES = 200
# A cursor this far ahead of our newest slot may come from a process that
# sealed a little earlier; beyond it, it is treated as a gap.
MAX_AHEAD_SECONDS = 5
# Distinct cursor spellings remembered per room and snapshot. Real clients
# use at most about window + MAX_AHEAD_SECONDS of them; the bound keeps a
# flood of made-up (gap) cursors from growing the memo: those still get the
# shared gap answer, they are only parsed each time.
RAW_MEMO_MAX = 256


@dataclass(frozen=True, slots=True)
class Pin:
    """The room's pinned notice, as every pull shows it until ``until_ms``
    (``danmaku_id`` None: a notice a moderator wrote; moderation.pins)."""

    danmaku_id: int | None
    text: str
    nick: str
    # Server time in ms.
    until_ms: int

    def expires_in_ms(self, now_ms: int) -> int:
        return max(0, self.until_ms - now_ms)

    def wire(self, now_ms: int) -> dict | None:
        left = self.expires_in_ms(now_ms)
        if not left:
            return None
        return {"id": self.danmaku_id, "text": self.text, "nick": self.nick, "expires_in_ms": left}


@dataclass(frozen=True, slots=True)
class RoomSettings:
    """The per-room knobs the pull path needs, swapped whole on change."""

    room_id: int
    slug: str
    poll_interval_ms: int = 3000
    quiet_interval_ms: int = 10000
    quiet_after_seconds: int = 30
    display_cap_per_second: int = 30
    # The staff's multiplier of next_ms (the room admin, the emergency
    # preset); the controller's own multiplies it (RoomControl).
    poll_multiplier: float = 1.0
    version: int = 0
    merge_duplicates: bool = False
    pin: Pin | None = None


@dataclass(frozen=True, slots=True)
class RoomControl:
    """What delivery control (danmaku.delivery) decided for a room; swapped
    whole, about once a second, by the refresher."""

    # The controller's multiplier of next_ms (the poll budget).
    multiplier: float = 1.0
    # The room's viewers, rounded, as the pull answer shows them.
    viewers: int = 0


NO_CONTROL = RoomControl()


@dataclass(frozen=True, slots=True)
class PullConfig:
    epoch: int = 0
    join_seconds: int = 3
    window_seconds: int = 60
    # next_ms while the refresher cannot read the store.
    degraded_multiplier: float = 2.0
    # No answer asks a viewer to wait longer than this, or than the room's
    # quiet interval where that is longer (multipliers are bounded by it).
    max_next_ms: int = 30_000
    max_age_seconds: int = 1
    # Lookups of rooms this process does not know that may find nothing, per
    # second (and as many at once): each is a database query. A lookup that
    # finds a room does not count, so activating every room after a restart
    # is never held back; only made-up or deleted slugs use it up.
    unknown_room_lookups_per_second: float = 20.0
    # Count each pull served into its room's meter. Off behind nginx's
    # micro-cache, where nginx's own count of every pull it answered feeds
    # the meters instead (danmaku.pollfeed): this process sees only misses.
    meter_pulls: bool = True


@dataclass(slots=True)
class RoomEntry:
    settings: RoomSettings
    ring: RoomRing
    last_pulled: float = 0.0
    # Set by the refresher when its last read of the store failed.
    degraded: bool = False
    # Store epochs this ring has held continuously: a cursor from one of them
    # can be continued exactly even after the epoch changed.
    epochs: tuple[int, ...] = ()
    # ((view, settings, degraded, epoch, control), answers by cursor key,
    # answers by the cursor exactly as the client spelled it): an answer
    # depends on all five, so a change to any of them starts a new memo. The
    # second dict lets a repeated pull skip parsing its cursor altogether.
    memo: tuple[tuple | None, dict, dict] = field(default_factory=lambda: (None, {}, {}))
    control: RoomControl = NO_CONTROL
    # Polls, bytes and viewers served (danmaku.pull.meter).
    meter: RoomMeter = field(default_factory=RoomMeter)
    # The second this process started serving the room: a room with no
    # comment in its window counts as quiet since then (sparse control).
    since: int | None = None
    # Its last memo's answers were pulled CROWD_STEP times each on average
    # (SharedAnswer).
    crowded: bool = False


@dataclass(slots=True)
class PullAnswer:
    """One finished answer, shared by every client asking the same question.

    Immutable once built, except ``http``: the HTTP forms of the answer
    (status line, header list, body per encoding), each built by
    ``danmaku.pull.response`` the first time it is asked for and reused by every
    later request.
    """

    status: int
    body: bytes
    gzipped: bytes | None = None
    etag: str = ""
    cache_control: str = "no-store"
    content_type: str = "application/json"
    http: list | None = field(default=None, compare=False)
    # The room's meter, counted once per request served (None: an error,
    # counted only by status, or PullConfig.meter_pulls off), and the
    # next_ms the answer asks for.
    meter: RoomMeter | None = field(default=None, compare=False)
    next_ms: int = 0


class SharedAnswer:
    """An answer and its crowd variants (danmaku.pull.spread), built on first
    use. ``take`` is lock-free: two threads racing may hand out the same
    variant or build one twice, and either result is a valid answer."""

    __slots__ = ("_build", "pulls", "step", "variants")

    def __init__(self, first: PullAnswer, build: Callable[[int], PullAnswer], *, crowded: bool = False) -> None:
        self.variants: list[PullAnswer | None] = [first] + [None] * (CROWD_VARIANTS - 1)
        self.pulls = 0
        # In a room whose answers were each pulled often a moment ago, one
        # variant each in turn from the first pull. Each process starts a
        # new memo every second: handing its first CROWD_STEP pulls the one
        # same form put most of a crowd back in step (four workers x 16
        # pulls of every cursor's answer, about 60 % of a 1,000-poll/s
        # crowd, and the node's polls lumped +/-25 % from one second to the
        # next).
        self.step = 0 if crowded else CROWD_STEP
        self._build = build

    def take(self) -> PullAnswer:
        pulls = self.pulls
        self.pulls = pulls + 1
        if pulls < self.step:
            return self.variants[0]
        index = (pulls - self.step) % CROWD_VARIANTS
        variant = self.variants[index]
        if variant is None:
            variant = self.variants[index] = self._build(index)
        return variant


class PullCache:
    def __init__(self, config: PullConfig | None = None, *, clock: Callable[[], float] = time.monotonic):
        self.config = config or PullConfig()
        # The store's epoch; the refresher updates it when the store lost its
        # history (a Redis that restarted empty), turning old cursors into gaps.
        self.epoch = self.config.epoch
        self.clock = clock
        self.rooms: dict[str, RoomEntry] = {}
        self._missing: dict[str, float] = {}
        rate = self.config.unknown_room_lookups_per_second
        self._lookups = TokenBucket(rate_per_second=rate, burst=max(1.0, rate), clock=clock)
        self._activator: Callable[[str], RoomEntry | None] | None = None
        self._errors: dict[tuple[int, str], PullAnswer] = {}

    def set_activator(self, activator: Callable[[str], RoomEntry | None]) -> None:
        self._activator = activator

    # -- reader side -------------------------------------------------------

    def pull(self, slug: str, after: str | None) -> PullAnswer:
        """The answer for ``after`` in room ``slug``; activates the room on its
        first pull in this process (the only step that reads the database)."""
        entry = self.rooms.get(slug)
        if entry is None:
            if not self._may_exist(slug):
                return self._not_found()
            # Taken before the lookup, so concurrent lookups cannot overrun
            # the bound; handed back when the room turns out to exist.
            if not self._lookups.take():
                busy_log.warning(
                    "over %s unknown-room lookups a second in this process: answering 503 without a lookup",
                    self.config.unknown_room_lookups_per_second,
                )
                return self._error(503, LOOKUPS_BUSY)
            try:
                entry = self._activator(slug)
            except Exception:
                # Only a room's first pull in this process reads the database;
                # if that fails the client retries, warm rooms are unaffected.
                logger.warning("could not activate room %r", slug, exc_info=True)
                return self._error(503, "room temporarily unavailable; retry shortly")
            if entry is None:
                self._remember_missing(slug)
                return self._not_found()
            self._lookups.give_back()
        return self._answer(entry, after)

    def pull_active(self, slug: str, after: str | None) -> PullAnswer | None:
        """Like ``pull`` for a room already active in this process; ``None``
        otherwise. Never activates, so it never touches the database."""
        entry = self.rooms.get(slug)
        if entry is None:
            return None
        return self._answer(entry, after)

    def cached(self, slug: str, after: str | None) -> PullAnswer | None:
        """The answer already built for exactly this room and cursor spelling
        in the current snapshot, or ``None``. Only cursors that parsed are
        remembered, so a hit is always an answer ``pull`` would give."""
        entry = self.rooms.get(slug)
        if entry is None:
            return None
        if not self._memo_current(entry, entry.ring.view):
            return None
        shared = entry.memo[2].get(after)
        if shared is None:
            return None
        entry.last_pulled = self.clock()
        return shared.take()

    def _memo_current(self, entry: RoomEntry, view: RingView) -> bool:
        """Whether the room's memo was built from this snapshot, settings,
        health and epoch. Compared field by field: nothing is allocated."""
        stamp = entry.memo[0]
        return (
            stamp is not None
            and stamp[0] is view
            and stamp[1] is entry.settings
            and stamp[2] is entry.degraded
            and stamp[3] == self.epoch
            and stamp[4] is entry.control
        )

    def _answer(self, entry: RoomEntry, after: str | None) -> PullAnswer:
        entry.last_pulled = self.clock()
        view = entry.ring.view
        _, memo, by_raw = entry.memo
        if not self._memo_current(entry, view):
            entry.crowded = _crowded(memo)
            memo, by_raw = {}, {}
            entry.memo = ((view, entry.settings, entry.degraded, self.epoch, entry.control), memo, by_raw)
        else:
            shared = by_raw.get(after)
            if shared is not None:
                return shared.take()
        after_second: int | None = None
        stale = False
        if after is not None:
            try:
                epoch, after_second = wire.decode_cursor(after)
            except wire.CursorError as exc:
                return self._error(400, f"after: {exc}")
            if epoch != self.epoch:
                # A cursor from before the store lost its history. The answer
                # says so (gap), but if this ring lived through the change it
                # still holds every second after the cursor, so it continues
                # from there instead of skipping or repeating anything.
                stale = True
                if epoch not in entry.epochs:
                    after_second = -1
        key = self._memo_key(view, after_second)
        if stale:
            key = ("stale", key)
        shared = memo.get(key)
        if shared is None:
            build = partial(self._build, entry, view, after_second, force_gap=stale)
            shared = memo[key] = SharedAnswer(build(0), build, crowded=entry.crowded)
        if len(by_raw) < RAW_MEMO_MAX:
            by_raw[after] = shared
        return shared.take()

    def _memo_key(self, view: RingView, after: int | None) -> int | str | None:
        # Every cursor that reads as a gap gets the same answer; folding them
        # into one key keeps the memo bounded by the window size.
        if after is None or view.newest is None:
            return after
        if view.oldest - 1 <= after <= view.newest + MAX_AHEAD_SECONDS:
            return after
        return "gap"

    def _may_exist(self, slug: str) -> bool:
        """Whether a lookup could find ``slug``: a valid slug not missed lately."""
        if self._activator is None or not SLUG_RE.fullmatch(slug):
            return False
        expires = self._missing.get(slug)
        return expires is None or expires <= self.clock()

    def _remember_missing(self, slug: str) -> None:
        now = self.clock()
        if len(self._missing) >= MISSING_MAX:
            self._missing = {s: t for s, t in self._missing.items() if t > now}
        self._missing[slug] = now + MISSING_TTL_SECONDS

    def _not_found(self) -> PullAnswer:
        return self._error(404, NOT_FOUND, cache_control=f"public, max-age={NOT_FOUND_MAX_AGE_SECONDS}")

    def _build(
        self, entry: RoomEntry, view: RingView, after: int | None, index: int, *, force_gap: bool = False
    ) -> PullAnswer:
        settings = entry.settings
        read = view.read(after, self.config.join_seconds, MAX_AHEAD_SECONDS)
        gap = read.gap or force_gap
        # An empty ring (room activated this instant) hands back what it got.
        cursor_second = read.newest if read.newest is not None else max(after or 0, 0)
        cursor = wire.encode_cursor(self.epoch, cursor_second)
        key = f"{settings.slug}|{after}|{view.newest}|{settings.version}|{self.epoch}|{entry.degraded:d}|{gap:d}"
        digest = hashlib.blake2b(key.encode(), digest_size=8).hexdigest()
        interval, multiplier, reason = self._interval(entry, view, joining=after is None)
        if reason == "busy":
            # Derived from the answer's identity, not random per request, so
            # the shared bytes stay identical for everyone who gets them.
            shift = int(digest[4:8], 16) / 0x10000  # 0..1
            arriving = (
                after is None or view.newest is None or (view.newest - after) * 1000 < unstretched_ceiling_ms(interval)
            )
            wait = stretched_ms(index, interval, multiplier, shift, arriving=arriving)
        else:
            wait = interval * variant_factor(index)
        longest = max(self.config.max_next_ms, settings.quiet_interval_ms, settings.poll_interval_ms)
        next_ms = min(jitter(wait, int(digest[:4], 16) / 0xFFFF), longest)
        pin = settings.pin
        body = wire.encode_pull(
            cursor=cursor,
            next_ms=next_ms,
            reason=reason,
            gap=gap,
            slots=read.slots,
            viewers=entry.control.viewers,
            # Timed from the end of the second after the newest sealed one:
            # this answer is served until about then (the memo starts over
            # with every seal), so a pin never outstays its time on a screen.
            pinned=pin.wire((view.newest + 2) * 1000) if pin is not None and view.newest is not None else None,
        )
        gzipped = gzip.compress(body, 6, mtime=0) if len(body) >= GZIP_MIN_BYTES else None
        # The ETag hashes the body itself, not the answer's identity: a
        # retraction rebuilds a second's answer under the same identity, and
        # a strong ETag shared by two bodies would get a stale one a 304.
        # Once per answer: about 1 µs per KB, a small share of the gzip above.
        etag = hashlib.blake2b(body, digest_size=8).hexdigest()
        return PullAnswer(
            status=200,
            body=body,
            gzipped=gzipped,
            etag=f'"{etag}"',
            cache_control=f"public, max-age={self.config.max_age_seconds}",
            meter=entry.meter if self.config.meter_pulls else None,
            next_ms=next_ms,
        )

    def _interval(self, entry: RoomEntry, view: RingView, *, joining: bool) -> tuple[int, float, str]:
        """The interval an answer asks for before spread and jitter, as
        (interval, multiplier stretching it, why).

        A viewer joining gets the room's normal interval; afterwards the
        interval grows the longer the room stays quiet (sparse control).
        Staff's and the controller's multipliers stretch it ("busy"); a
        store that cannot be read stretches it more ("degraded")."""
        settings = entry.settings
        interval = settings.poll_interval_ms
        if entry.degraded:
            return int(interval * self.config.degraded_multiplier), 1.0, "degraded"
        if not joining:
            interval = sparse_interval(entry, view)
        multiplier = settings.poll_multiplier * entry.control.multiplier
        if multiplier > 1.0:
            return interval, multiplier, "busy"
        return interval, 1.0, "quiet" if interval > settings.poll_interval_ms else "normal"

    def base_interval_ms(self, entry: RoomEntry, view: RingView) -> float:
        """The interval the room's viewers get before delivery control: sparse
        control and the staff's multiplier (what the controller weighs)."""
        return sparse_interval(entry, view) * entry.settings.poll_multiplier

    def _error(self, status: int, detail: str, *, cache_control: str = "no-store") -> PullAnswer:
        key = (status, detail)
        answer = self._errors.get(key)
        if answer is None:
            body = wire.orjson.dumps({"detail": detail})
            answer = PullAnswer(status=status, body=body, cache_control=cache_control)
            if len(self._errors) < 1000:
                self._errors[key] = answer
        return answer

    # -- writer side (the refresher) ---------------------------------------

    def install(self, settings: RoomSettings) -> RoomEntry:
        """Create the entry for a room; the caller fills its ring first."""
        ring = RoomRing(size=self.config.window_seconds, display_cap=settings.display_cap_per_second)
        return RoomEntry(settings=settings, ring=ring, last_pulled=self.clock())

    def change_epoch(self, epoch: int) -> None:
        """The store lost its history: new cursors carry ``epoch``; every ring
        alive now keeps answering cursors of the epochs it has lived through."""
        for entry in self.rooms.values():
            entry.epochs = (*entry.epochs, epoch)[-4:]
        self.epoch = epoch

    def publish(self, entry: RoomEntry) -> None:
        self.rooms[entry.settings.slug] = entry
        self._missing.pop(entry.settings.slug, None)

    def forget_idle(self) -> list[RoomEntry]:
        cutoff = self.clock() - IDLE_SECONDS
        idle = [e for e in self.rooms.values() if e.last_pulled < cutoff]
        for entry in idle:
            self.rooms.pop(entry.settings.slug, None)
        return idle

    def forget(self, slug: str) -> None:
        self.rooms.pop(slug, None)


def sparse_interval(entry: RoomEntry, view: RingView) -> int:
    settings = entry.settings
    return sparse_interval_ms(
        settings.poll_interval_ms, settings.quiet_interval_ms, settings.quiet_after_seconds, quiet_seconds(entry, view)
    )


def quiet_seconds(entry: RoomEntry, view: RingView) -> int:
    """How long the room has had no comment, as of its newest sealed second:
    since its last comment in the window, else since this process started
    serving it (a new room is not punished for having had none yet)."""
    newest = view.newest
    if newest is None:
        return 0
    last = view.last_active_second()
    if last is None:
        last = entry.since if entry.since is not None else view.oldest
    return max(0, newest - last)


def _crowded(memo: dict) -> bool:
    """Whether a memo's answers were pulled CROWD_STEP times each on average.

    Per answer, not per room: a room of many small cohorts (a few hundred
    viewers, their cursors spread over the seconds) would otherwise build a
    variant for nearly every pull (about 40 us each) where one answer per
    cohort serves it as well."""
    if not memo:
        return False
    return sum(shared.pulls for shared in memo.values()) >= CROWD_STEP * len(memo)
