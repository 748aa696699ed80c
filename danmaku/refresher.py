"""The one writer: reads the store, fills and seals every active room's ring.

``refresh_once()`` is a plain method the tests call directly. The thread is
a small loop around it that survives every exception, ticks just after each
second can be sealed, and stops when asked.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from django.db import close_old_connections

from danmaku.models import Room
from danmaku.pullcache import PullCache, RoomEntry, RoomSettings
from danmaku.store import Store

logger = logging.getLogger(__name__)

SETTINGS_FIELDS = (
    "id",
    "slug",
    "poll_interval_ms",
    "quiet_interval_ms",
    "quiet_after_seconds",
    "display_cap_per_second",
    "updated_at",
)
# Wake this long after a second becomes sealable, so it is sealed promptly.
TICK_SLACK_MS = 20


def settings_from_row(row: dict) -> RoomSettings:
    return RoomSettings(
        room_id=row["id"],
        slug=row["slug"],
        poll_interval_ms=row["poll_interval_ms"],
        quiet_interval_ms=row["quiet_interval_ms"],
        quiet_after_seconds=row["quiet_after_seconds"],
        display_cap_per_second=row["display_cap_per_second"],
        version=int(row["updated_at"].timestamp() * 1_000_000),
    )


class Refresher:
    def __init__(
        self,
        *,
        cache: PullCache,
        store: Store,
        seal_lag_ms: int = 400,
        overlap_ms: int = 10_000,
        interval_ms: int = 1000,
    ) -> None:
        self.cache = cache
        self.store = store
        self.seal_lag_ms = seal_lag_ms
        self.overlap_ms = overlap_ms
        self.interval_ms = interval_ms
        # Serializes the writers (the loop and first-pull activations), so
        # each ring still has exactly one writer at a time.
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self.last_success_ms: int | None = None
        self.errors = 0

    # -- the work ----------------------------------------------------------

    def sealable_second(self, now_ms: int) -> int:
        """The newest second whose end is at least ``seal_lag_ms`` ago."""
        return (now_ms - self.seal_lag_ms) // 1000 - 1

    def refresh_once(self) -> None:
        with self._lock:
            self.cache.forget_idle()
            entries = list(self.cache.rooms.values())
            if not entries:
                return
            try:
                self._refresh_settings(entries)
                entries = list(self.cache.rooms.values())
                if not entries:  # every active room was deleted
                    return
                now_ms = self.store.now_ms()
                seal = self.sealable_second(now_ms)
                oldest_open = min(_sealed_or(e, seal) for e in entries) + 1
                items = self.store.read([e.settings.room_id for e in entries], oldest_open * 1000 - self.overlap_ms)
            except Exception:
                for entry in entries:
                    entry.degraded = True
                raise
            for entry in entries:
                entry.ring.add(items.get(entry.settings.room_id, ()))
                entry.ring.seal_through(seal)
                entry.degraded = False
            self.last_success_ms = now_ms

    def _refresh_settings(self, entries: list[RoomEntry]) -> None:
        by_id = {e.settings.room_id: e for e in entries}
        seen = set()
        for row in Room.objects.filter(id__in=by_id).values(*SETTINGS_FIELDS):
            seen.add(row["id"])
            entry = by_id[row["id"]]
            fresh = settings_from_row(row)
            if fresh != entry.settings:
                entry.ring.display_cap = fresh.display_cap_per_second
                entry.settings = fresh
        for room_id in by_id.keys() - seen:
            self.cache.forget(by_id[room_id].settings.slug)

    def activate(self, slug: str) -> RoomEntry | None:
        """Load a room on its first pull in this process, history included."""
        with self._lock:
            entry = self.cache.rooms.get(slug)
            if entry is not None:
                return entry
            row = Room.objects.filter(slug=slug).values(*SETTINGS_FIELDS).first()
            if row is None:
                return None
            entry = self.cache.install(settings_from_row(row))
            seal = self.sealable_second(self.store.now_ms())
            first = seal - entry.ring.size + 1
            items = self.store.read([entry.settings.room_id], first * 1000 - self.overlap_ms)
            entry.ring.add(items.get(entry.settings.room_id, ()))
            entry.ring.seal_through(seal)
            self.cache.publish(entry)
            return entry

    # -- the thread --------------------------------------------------------

    def ensure_started(self) -> None:
        """Start the loop in this process if it is not running.

        Called from requests, so it runs after gunicorn forked the worker; a
        thread inherited across a fork is dead, hence the pid check.
        """
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
                return
            self._stop.clear()
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="danmaku-refresher", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        logger.info("refresher started (interval %d ms)", self.interval_ms)
        while not self._stop.is_set():
            try:
                self.refresh_once()
            except Exception:
                self.errors += 1
                logger.exception("refresher tick failed; pulls keep answering from the rings")
            finally:
                close_old_connections()
            self._stop.wait(self._delay_s())
        logger.info("refresher stopped")

    def _delay_s(self) -> float:
        now_ms = int(time.time() * 1000)
        phase = (now_ms - self.seal_lag_ms - TICK_SLACK_MS) % self.interval_ms
        return (self.interval_ms - phase) / 1000


def _sealed_or(entry: RoomEntry, default: int) -> int:
    sealed = entry.ring.sealed_through
    return default if sealed is None else sealed
