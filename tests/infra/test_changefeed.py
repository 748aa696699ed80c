"""The change channel and the caches it keeps honest (pure: a fake channel and clock)."""

from __future__ import annotations

import pytest

from infra.changefeed import EVERYTHING, ChangeFeed, LookupCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Channel:
    """What other processes recorded, read from a position (an index)."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, object]] = []
        self.down = False
        self.reads = 0

    def read(self, position):
        self.reads += 1
        if self.down:
            raise ConnectionError("database unreachable")
        start = len(self.changes) if position is None else position
        return self.changes[start:], len(self.changes)


@pytest.fixture
def setup():
    clock, channel = Clock(), Channel()
    feed = ChangeFeed(channel.read, lease_seconds=2.0, clock=clock)
    source = {"a": 1, "b": 2}
    loads: list[str] = []

    def load(key):
        loads.append(key)
        return source.get(key)

    cache = LookupCache(feed, "thing", load, ttl_seconds=60, clock=clock)
    return clock, channel, feed, cache, source, loads


def test_a_cache_answers_from_memory_only_while_the_channel_was_read_within_the_lease(setup):
    clock, _channel, feed, cache, _source, loads = setup
    assert cache.get("a") == 1  # never read: the source
    assert cache.get("a") == 1
    assert loads == ["a", "a"]

    feed.poll()
    assert cache.get("a") == 1
    assert loads == ["a", "a"]

    clock.now += 2.0  # the lease ran out with no read
    assert cache.get("a") == 1
    assert loads == ["a", "a", "a"]


def test_a_change_read_from_the_channel_drops_the_key(setup):
    _clock, channel, feed, cache, source, loads = setup
    feed.poll()
    cache.get("a")
    cache.get("b")
    source["a"] = 10
    channel.changes.append(("thing", "a"))
    channel.changes.append(("other kind", "b"))

    assert feed.poll() is True

    assert cache.get("a") == 10
    assert cache.get("b") == 2
    assert loads == ["a", "b", "a"]


def test_everything_and_the_star_kind_drop_every_entry(setup):
    _clock, channel, feed, cache, _source, _loads = setup
    feed.poll()
    cache.get("a")
    channel.changes.append(("thing", EVERYTHING))
    feed.poll()
    assert len(cache) == 0
    cache.get("a")
    feed.changed("*", EVERYTHING)
    assert len(cache) == 0


def test_a_failed_read_keeps_the_caches_until_the_lease_then_the_source_answers(setup):
    clock, channel, feed, cache, source, loads = setup
    feed.poll()
    cache.get("a")
    channel.down = True
    clock.now += 1.0

    assert feed.poll() is False
    assert feed.fresh() is True
    assert cache.get("a") == 1
    assert loads == ["a"]

    clock.now += 1.0
    assert feed.fresh() is False
    source["a"] = 5
    assert cache.get("a") == 5


def test_the_lease_counts_from_when_the_read_started():
    clock = Clock()

    def slow_read(position):
        clock.now += 1.5  # the read itself takes time
        return [], 0

    feed = ChangeFeed(slow_read, lease_seconds=2.0, clock=clock)
    feed.poll()
    clock.now += 0.6
    assert feed.fresh() is False  # 2.1 s since the read began


def test_a_value_loaded_across_a_drop_is_not_cached(setup):
    clock, _channel, feed, _cache, source, _loads = setup
    feed.poll()

    def load_while_changed(key):
        value = source[key]  # the old value, read before the change committed
        feed.changed("thing", key)
        return value

    racing = LookupCache(feed, "thing", load_while_changed, clock=clock)
    assert racing.get("a") == 1
    source["a"] = 7
    assert len(racing) == 0


def test_missing_keys_are_cached_too_and_entries_expire(setup):
    clock, _channel, feed, cache, _source, loads = setup
    feed.poll()
    assert cache.get("nobody") is None
    assert cache.get("nobody") is None
    assert loads == ["nobody"]
    clock.now += 61
    feed.poll()
    cache.get("nobody")
    assert loads == ["nobody", "nobody"]


def test_the_cache_keeps_at_most_its_bound_dropping_the_oldest():
    clock = Clock()
    feed = ChangeFeed(lambda position: ([], 0), clock=clock)
    feed.poll()
    cache = LookupCache(feed, "n", lambda key: key * 2, max_entries=3, clock=clock)
    for key in range(5):
        cache.get(key)
    assert len(cache) == 3
    assert set(cache._entries) == {2, 3, 4}


def test_a_value_offered_by_another_lookup_is_kept_unless_a_drop_came_between(setup):
    _clock, _channel, feed, cache, _source, loads = setup
    feed.poll()
    generation = feed.generation
    cache.offer("c", 3, generation=generation)
    assert cache.get("c") == 3
    assert loads == []

    stale = feed.generation
    feed.changed("thing", "d")
    cache.offer("d", 4, generation=stale)
    assert "d" not in cache._entries
