"""The one writer: reads the store, fills and seals every active room's ring.

That is all it does. ``refresh_once()`` is a plain method the tests call
directly. The thread is a small loop around it that survives every
exception, ticks just after each second can be sealed, updates the ring
gauges and this process's pull counts, and stops when asked.

With Redis configured the store is the Redis streams, and the database is
the fallback: while Redis cannot be read, rooms are read from the database
and marked degraded (pulls keep answering, with a longer next_ms). Rooms a
full read finds missing from Redis are noted for the background job that
republishes room settings (``danmaku.sweeps``), which also takes the active
rooms from here.
"""

from __future__ import annotations

import logging
import threading
import time

from django.db import DatabaseError, close_old_connections

from danmaku import hooks
from danmaku.models import Room
from danmaku.pull.cache import Pin, PullCache, RoomEntry, RoomSettings
from danmaku.store import ROOM_FIELDS, Batch, DatabaseStore, RedisStore, RoomRef, StoreUnavailable, settings_version
from infra import clock
from infra.loopthread import LoopThread
from infra.metrics import FALLBACKS, REFRESH_ERRORS, REFRESH_LAG, REFRESH_SECONDS, RING_ITEMS, RING_ROOMS
from infra.pullcounts import flush_pull_counts
from infra.ratelimitlog import RateLimitedLog

logger = logging.getLogger(__name__)
fallback_log = RateLimitedLog(logger, every_seconds=10)

# Wake this long after a second becomes sealable, so it is sealed promptly.
TICK_SLACK_MS = 20
# For this long after the store came back the refresher reads the database
# too. Sends that committed after its last database read may not be in the
# store: their publish failed or was skipped (the breaker skips Redis for a
# second after a failure). Without this they would show only once the sweep
# publishes them, 2-7 s late; the ring drops the ids it already has.
RECOVERY_DATABASE_READ_SECONDS = 3.0


def settings_from_row(row: dict) -> RoomSettings:
    return RoomSettings(
        room_id=row["id"],
        slug=row["slug"],
        poll_interval_ms=row["poll_interval_ms"],
        quiet_interval_ms=row["quiet_interval_ms"],
        quiet_after_seconds=row["quiet_after_seconds"],
        display_cap_per_second=row["display_cap_per_second"],
        # Settings published to Redis by an older release lack these.
        poll_multiplier=float(row.get("poll_multiplier") or 1.0),
        version=settings_version(row),
        merge_duplicates=bool(row.get("merge_duplicates", False)),
        pin=_pin(row),
    )


def _pin(row: dict) -> Pin | None:
    until_ms = row.get("pinned_until_ms")
    if not until_ms or not row.get("pinned_text"):
        return None
    return Pin(
        danmaku_id=row.get("pinned_danmaku_id"),
        text=row["pinned_text"],
        nick=row.get("pinned_nick") or "",
        until_ms=int(until_ms),
    )


def merge_key_for(settings: RoomSettings):
    """What the room's ring merges duplicates by (moderation's normalizer), or None."""
    return hooks.moderation().merge_key if settings.merge_duplicates else None


class Refresher:
    def __init__(
        self,
        *,
        cache: PullCache,
        store: DatabaseStore | RedisStore,
        fallback: DatabaseStore | None = None,
        seal_lag_ms: int = 400,
        overlap_ms: int = 10_000,
        interval_ms: int = 1000,
    ) -> None:
        self.cache = cache
        self.store = store
        # Read instead of ``store`` while it is unavailable (Redis down).
        self.fallback = fallback
        self.seal_lag_ms = seal_lag_ms
        self.overlap_ms = overlap_ms
        self.interval_ms = interval_ms
        # Serializes the writers (the loop and first-pull activations), so
        # each ring still has exactly one writer at a time.
        self._lock = threading.Lock()
        self._loop = LoopThread("danmaku-refresher", self._tick, self._delay_s)
        # Rooms a full read found missing from Redis, for the settings job.
        self._missing_lock = threading.Lock()
        self._missing_from_store: set[int] = set()
        self._read_database_until = 0.0
        self._refs: dict[int, RoomRef] = {}
        self.last_success_ms: int | None = None
        self.store_degraded = False
        self.errors = 0
        # Delivery control (danmaku.delivery), run after each tick; the
        # runtime installs it.
        self.delivery = None
        # nginx's pull feed (danmaku.pollfeed), offered each tick before
        # delivery control; the runtime installs it behind nginx.
        self.poll_feed = None

    @property
    def uses_redis(self) -> bool:
        return isinstance(self.store, RedisStore)

    # -- the work ----------------------------------------------------------

    def sealable_second(self, now_ms: int) -> int:
        """The newest second whose end is at least ``seal_lag_ms`` ago."""
        return (now_ms - self.seal_lag_ms) // 1000 - 1

    def refresh_once(self) -> None:
        started = time.perf_counter()
        with self._lock:
            for idle in self.cache.forget_idle():
                self._forget_position(idle.settings.room_id)
            entries = list(self.cache.rooms.values())
            if entries:
                batch, degraded = self._read(entries)
                self._apply(batch, degraded)
                self.last_success_ms = batch.now_ms
        REFRESH_SECONDS.observe(time.perf_counter() - started)

    def active_room_ids(self) -> list[int]:
        """The rooms this process serves now (takes no lock)."""
        return [entry.settings.room_id for entry in list(self.cache.rooms.values())]

    def take_missing_from_store(self) -> set[int]:
        """Rooms whose settings a full read did not find in the store since
        the previous call; the room settings job republishes them."""
        with self._missing_lock:
            missing, self._missing_from_store = self._missing_from_store, set()
        return missing

    def _read(self, entries: list[RoomEntry]) -> tuple[Batch, bool]:
        refs = [self._ref(e.settings) for e in entries]
        fallback_seal = self.sealable_second(self.store.now_ms())
        oldest_open = min(_sealed_or(e, fallback_seal) for e in entries) + 1
        since_ms = oldest_open * 1000 - self.overlap_ms
        try:
            try:
                batch = self.store.read(refs, since_ms)
                if self.store_degraded:
                    self._read_database_until = time.monotonic() + RECOVERY_DATABASE_READ_SECONDS
                self.store_degraded = False
                if self.fallback is not None and time.monotonic() < self._read_database_until:
                    self._add_database_rows(batch, refs, since_ms)
                return batch, False
            except StoreUnavailable as exc:
                if self.fallback is None:
                    raise
                self.store_degraded = True
                FALLBACKS.labels(dependency="redis", where="refresher").inc()
                fallback_log.warning("store unavailable, reading the database instead: %s", exc)
                return self.fallback.read(refs, since_ms), True
        except Exception:
            for entry in entries:
                entry.degraded = True
            raise

    def _ref(self, settings: RoomSettings) -> RoomRef:
        # Kept across ticks: with thousands of active rooms, building every
        # ref anew each tick was a visible share of the tick.
        ref = self._refs.get(settings.room_id)
        if ref is None or ref.slug != settings.slug:
            ref = self._refs[settings.room_id] = RoomRef(settings.room_id, settings.slug)
        return ref

    def _add_database_rows(self, batch: Batch, refs: list[RoomRef], since_ms: int) -> None:
        """Add what the database holds since ``since_ms`` to a store batch."""
        try:
            rows = self.fallback.read(refs, since_ms)
        except DatabaseError as exc:
            fallback_log.warning("database read after the store's outage failed: %s", exc)
            return
        for room_id, items in rows.items.items():
            batch.items[room_id].extend(items)
        for room_id, ids in rows.retracted.items():
            batch.retracted[room_id].extend(ids)
        for room_id, restored in rows.restored.items():
            batch.restored[room_id].extend(restored)

    def _apply(self, batch: Batch, degraded: bool) -> None:
        if not degraded and batch.epoch != self.cache.epoch:
            self.cache.change_epoch(batch.epoch)
        entries = list(self.cache.rooms.values())
        if batch.rooms is not None and (batch.rooms or batch.all_rooms):
            self._apply_settings(entries, batch, degraded)
            entries = list(self.cache.rooms.values())
        seal = self.sealable_second(batch.now_ms)
        # Most rooms get nothing in most ticks: look up only what the batch has.
        items, retracted, restored, partial = batch.items, batch.retracted, batch.restored, batch.partial
        for entry in entries:
            room_id = entry.settings.room_id
            ring = entry.ring
            if room_id in items:
                ring.add(items[room_id])
            if room_id in retracted:
                _retract(entry, retracted[room_id])
            if restored and room_id in restored:
                ring.restore(restored[room_id])
            partial_ms = partial.get(room_id) if partial else None
            ring.seal_through(seal if partial_ms is None else min(seal, partial_ms // 1000 - 1))
            entry.degraded = degraded

    def _apply_settings(self, entries: list[RoomEntry], batch: Batch, degraded: bool) -> None:
        missing = []
        for entry in entries:
            row = batch.rooms.get(entry.settings.room_id)
            if row is None:
                if batch.all_rooms:
                    missing.append(entry)
                continue
            fresh = settings_from_row(row)
            if fresh != entry.settings:
                entry.ring.display_cap = fresh.display_cap_per_second
                entry.ring.merge_key = merge_key_for(fresh)
                entry.settings = fresh
        if not missing:
            return
        if degraded or not self.uses_redis:
            # Read from the database itself: the room is gone.
            for entry in missing:
                self.cache.forget(entry.settings.slug)
                self._forget_position(entry.settings.room_id)
        else:
            # Not in Redis yet (never published, or Redis lost it): the room
            # settings job republishes it from the database; the current
            # settings stay meanwhile.
            with self._missing_lock:
                self._missing_from_store.update(entry.settings.room_id for entry in missing)

    def activate(self, slug: str) -> RoomEntry | None:
        """Load a room on its first pull in this process, history included."""
        # Looked up before taking the lock: a slug that names no room neither
        # waits for the refresher's tick nor holds it up. A settings change
        # saved between this read and the install is read by a later tick
        # (each looks back further than this takes).
        row = self._room_row(slug)
        if row is None:
            return None
        with self._lock:
            entry = self.cache.rooms.get(slug)
            if entry is not None:
                return entry
            entry = self.cache.install(settings_from_row(row))
            entry.ring.merge_key = merge_key_for(entry.settings)
            ref = RoomRef(entry.settings.room_id, entry.settings.slug)
            try:
                batch = self._backfill(self.store, entry, ref)
                degraded = False
            except StoreUnavailable:
                if self.fallback is None:
                    raise
                FALLBACKS.labels(dependency="redis", where="activate").inc()
                batch = self._backfill(self.fallback, entry, ref)
                degraded = True
            if not degraded and batch.epoch != self.cache.epoch:
                self.cache.change_epoch(batch.epoch)
            entry.epochs = (self.cache.epoch,)
            entry.ring.add(batch.items.get(ref.room_id, ()))
            _retract(entry, batch.retracted.get(ref.room_id, ()))
            entry.ring.restore(batch.restored.get(ref.room_id, ()))
            entry.since = self.sealable_second(batch.now_ms)
            entry.ring.seal_through(entry.since)
            entry.degraded = degraded
            self.cache.publish(entry)
            return entry

    def _backfill(self, store, entry: RoomEntry, ref: RoomRef) -> Batch:
        first = self.sealable_second(store.now_ms()) - entry.ring.size + 1
        # The database can commit out of order, so read a little earlier;
        # a stream cannot.
        overlap_ms = self.overlap_ms if isinstance(store, DatabaseStore) else 0
        return store.backfill(ref, first * 1000 - overlap_ms)

    def _room_row(self, slug: str) -> dict | None:
        try:
            return Room.objects.filter(slug=slug).values(*ROOM_FIELDS).first()
        except DatabaseError:
            if not self.uses_redis:
                raise
            # The database is down: Redis holds every published room's settings.
            FALLBACKS.labels(dependency="database", where="activate").inc()
            return self.store.room_row(slug)

    def _forget_position(self, room_id: int) -> None:
        self._refs.pop(room_id, None)
        if self.uses_redis:
            self.store.forget(room_id)

    # -- the thread --------------------------------------------------------

    def ensure_started(self) -> None:
        """Start the loop in this process if it is not running.

        Called from pulls, so it runs after gunicorn forked the worker.
        """
        self._loop.start()

    def running(self) -> bool:
        """Whether the loop runs in this process (takes no lock)."""
        return self._loop.running()

    def stop(self, timeout: float = 5.0) -> None:
        self._loop.stop(timeout)

    def _tick(self) -> None:
        try:
            self.refresh_once()
        except Exception:
            self.errors += 1
            REFRESH_ERRORS.inc()
            logger.exception("refresher tick failed; pulls keep answering from the rings")
        try:
            if self.poll_feed is not None:
                self.poll_feed.tick()
        except Exception:
            logger.exception("nginx's pull feed: could not take it up this tick")
        try:
            if self.delivery is not None:
                self.delivery.tick()
        except Exception:
            logger.exception("delivery control failed this tick; the rooms keep their last decisions")
        finally:
            # Also after a failure: the lag gauge must show an outage grow.
            observe_refresher(self)
            flush_pull_counts()
            close_old_connections()

    def _delay_s(self) -> float:
        now_ms = clock.now_ms()
        phase = (now_ms - self.seal_lag_ms - TICK_SLACK_MS) % self.interval_ms
        return (self.interval_ms - phase) / 1000


def observe_refresher(refresher: Refresher, *, now_ms: int | None = None) -> None:
    """Set the ring and lag gauges from a refresher's rings.

    Call it from the refresher thread at the end of every tick (it reads the
    rings the refresher writes, so it is cheapest and consistent there).
    """
    now_ms = clock.now_ms() if now_ms is None else now_ms
    entries = list(refresher.cache.rooms.values())
    items = 0
    newest: int | None = None
    for entry in entries:
        ring = entry.ring
        items += ring.item_count
        sealed = ring.sealed_through
        if sealed is not None and (newest is None or sealed > newest):
            newest = sealed
    RING_ROOMS.set(len(entries))
    RING_ITEMS.set(items)
    # Lag: how far the newest sealed second's end is behind now. About
    # seal_lag + up to one tick when healthy; it grows while the store is out.
    REFRESH_LAG.set(0.0 if newest is None else max(0.0, (now_ms - (newest + 1) * 1000) / 1000))


def _sealed_or(entry: RoomEntry, default: int) -> int:
    sealed = entry.ring.sealed_through
    return default if sealed is None else sealed


def _retract(entry: RoomEntry, retracted: list[tuple[int, int]]) -> None:
    if retracted:
        entry.ring.retract([danmaku_id for danmaku_id, _ in retracted], at_ms=dict(retracted))
