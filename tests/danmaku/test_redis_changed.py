"""The refresher reads only what changed: the Redis indexes of rooms whose
stream or settings changed, the periodic full read that backs them up, and
the sweep that republishes settings without touching every room each time.

Against the real shared Redis (own key prefix, see the ``redis_mode`` fixture).
"""

from __future__ import annotations

import time

import pytest

from danmaku import runtime, sweeps
from danmaku import store as store_module
from danmaku.models import Danmaku, Room
from danmaku.pull.cache import PullCache, PullConfig
from danmaku.refresher import Refresher
from danmaku.republish import ROLLING_REPUBLISH_SWEEPS, RoomSettingsSweep
from danmaku.store import FULL_READ_SECONDS, ROOM_FIELDS, DatabaseStore, RedisStore, RoomRef
from infra.redis import get_redis


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(redis_mode, settings, clock) -> RedisStore:
    return RedisStore(get_redis, prefix=settings.DANMAKU_REDIS_PREFIX, window_seconds=60, clock=clock)


@pytest.fixture
def rooms(db) -> list[RoomRef]:
    created = [Room.objects.create(slug=f"room-{n}", title=f"Room {n}") for n in range(3)]
    return [RoomRef(room.id, room.slug) for room in created]


def publish(store: RedisStore, room: RoomRef, danmaku_id: int, user) -> None:
    danmaku = Danmaku(
        id=danmaku_id, room_id=room.room_id, user=user, text=f"c{danmaku_id}", ts_ms=int(time.time() * 1000)
    )
    store.publish(danmaku, nick="nick", avatar="/a.png")


def item_ids(batch, room: RoomRef) -> list[int]:
    return [item.id for item in batch.items.get(room.room_id, ())]


def since_ms() -> int:
    return int(time.time() * 1000) - 60_000


def test_a_read_returns_what_was_published_since_the_previous_read_and_nothing_twice(store, rooms, user):
    store.read(rooms, since_ms())
    publish(store, rooms[0], 1, user)
    publish(store, rooms[2], 2, user)

    first = store.read(rooms, since_ms())
    publish(store, rooms[1], 3, user)
    second = store.read(rooms, since_ms())

    assert (item_ids(first, rooms[0]), item_ids(first, rooms[1]), item_ids(first, rooms[2])) == ([1], [], [2])
    assert (item_ids(second, rooms[0]), item_ids(second, rooms[1]), item_ids(second, rooms[2])) == ([], [3], [])


def test_an_entry_missing_from_the_index_is_read_at_the_next_full_read(store, rooms, clock, redis_mode):
    store.read(rooms, since_ms())
    # A publisher running older code: the stream entry without its index entry.
    redis_mode.xadd(
        store.stream_key(rooms[1].room_id),
        {"k": "m", "id": 7, "u": 1, "n": "old", "a": "", "c": 0xFFFFFF, "o": 0, "t": "from old code"},
    )

    skipped = store.read(rooms, since_ms())
    clock.now += FULL_READ_SECONDS
    caught_up = store.read(rooms, since_ms())

    assert item_ids(skipped, rooms[1]) == []
    assert item_ids(caught_up, rooms[1]) == [7]


def room_row(room: RoomRef, **changes) -> dict:
    row = Room.objects.filter(id=room.room_id).values(*ROOM_FIELDS).get()
    row.update(changes)
    return row


def test_settings_reach_the_reader_only_when_they_changed(store, rooms, monkeypatch):
    # Without the margin that re-reads the last 2 s (a clock stepping back).
    monkeypatch.setattr(store_module, "CHANGED_MARGIN_MS", 0)
    assert store.publish_rooms([room_row(r) for r in rooms]) == 3
    time.sleep(0.002)  # the index has millisecond resolution: a read in the same ms sees it again
    full = store.read(rooms, since_ms())

    unchanged = store.publish_rooms([room_row(r) for r in rooms])
    nothing = store.read(rooms, since_ms())
    changed = store.publish_rooms([room_row(rooms[1], poll_interval_ms=4500), room_row(rooms[2])])
    one = store.read(rooms, since_ms())

    assert (full.all_rooms, sorted(full.rooms)) == (True, sorted(r.room_id for r in rooms))
    assert (unchanged, nothing.all_rooms, nothing.rooms) == (0, False, {})
    assert (changed, list(one.rooms), one.rooms[rooms[1].room_id]["poll_interval_ms"]) == (1, [rooms[1].room_id], 4500)


def test_a_room_gone_from_redis_is_noticed_at_a_full_read_and_republished(redis_mode, settings, room, client):
    client.get("/api/v1/rooms/live/danmaku")
    refresher = runtime.refresher()
    refresher.refresh_once()
    redis_mode.delete(refresher.store.room_key("live"))

    refresher.store._next_full_read = 0.0
    refresher.refresh_once()  # full read: the key is missing, the settings job is asked for
    sweeps.republish_room_settings()  # the job runs

    assert redis_mode.get(refresher.store.room_key("live")) is not None
    assert "live" in runtime.pull_cache().rooms


def sweep_once(refresher: Refresher, sweep: RoomSettingsSweep) -> None:
    """One run of the room settings job over ``refresher``'s rooms."""
    sweep.run(refresher.store, asked=refresher.take_missing_from_store(), active=refresher.active_room_ids())


@pytest.fixture
def settings_sweep() -> RoomSettingsSweep:
    return RoomSettingsSweep()


@pytest.fixture
def warm_refresher(redis_mode, settings, db, settings_sweep):
    """A refresher over 40 active rooms that already ran its first sweep."""
    for n in range(40):
        Room.objects.create(slug=f"active-{n}", title=f"Active {n}")
    cache = PullCache(PullConfig(window_seconds=60))
    store = RedisStore(get_redis, prefix=settings.DANMAKU_REDIS_PREFIX, window_seconds=60)
    refresher = Refresher(cache=cache, store=store, fallback=DatabaseStore())
    cache.set_activator(refresher.activate)
    for n in range(40):
        cache.pull(f"active-{n}", None)
    sweep_once(refresher, settings_sweep)
    return refresher


def test_a_settings_change_redis_missed_lands_within_one_rolling_round(warm_refresher, settings_sweep, redis_mode):
    store = warm_refresher.store
    # An update that bypasses save(): updated_at does not move.
    Room.objects.filter(slug="active-17").update(poll_interval_ms=7000)

    for _ in range(ROLLING_REPUBLISH_SWEEPS):
        sweep_once(warm_refresher, settings_sweep)

    assert b'"poll_interval_ms": 7000' in redis_mode.get(store.room_key("active-17"))


def test_a_room_saved_while_redis_was_down_is_published_by_the_next_sweep(warm_refresher, settings_sweep, redis_mode):
    store = warm_refresher.store
    room = Room.objects.get(slug="active-3")
    room.poll_interval_ms = 6000
    room.save()  # its publish "failed": Redis still has the old settings

    sweep_once(warm_refresher, settings_sweep)

    assert b'"poll_interval_ms": 6000' in redis_mode.get(store.room_key("active-3"))
