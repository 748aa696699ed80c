"""Send limits against a real Redis (the shared one, or a private one to freeze),
against Redis down, and on the database backend."""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from uuid import uuid4

import pytest
from prometheus_client import REGISTRY

from danmaku import limits
from danmaku.limits import Allowance, take_send
from harness.local import free_port
from harness.services import private_redis, require_redis
from infra.ratelimitlog import RateLimitedLog
from infra.redis import breaker, get_redis, reset_clients


@pytest.fixture(autouse=True)
def _breaker_closed():
    """Each test starts with Redis trusted, whatever the last one did to it."""
    breaker.succeeded()
    yield
    breaker.succeeded()


# Room ids unique to this run: the in-process fallback is per process, not per test.
_room_ids = itertools.count(random.randrange(10**9, 2 * 10**9))


def fresh_room() -> int:
    return next(_room_ids)


def now_ms() -> int:
    return int(time.time() * 1000)


def send(room_id: int, user_id: int, *, interval_ms: int = 0, cap: int = 100) -> Allowance:
    return take_send(room_id=room_id, user_id=user_id, interval_ms=interval_ms, cap_per_second=cap, now_ms=now_ms())


def fallbacks() -> float:
    return REGISTRY.get_sample_value("danmaku_fallbacks_total", {"dependency": "redis", "where": "limits"}) or 0.0


def prefixed_keys(client, prefix: str) -> list[bytes]:
    return list(client.scan_iter(match=f"{prefix}:*", count=1000))


@pytest.fixture
def shared_redis(settings):
    """The shared Redis with a key prefix of this test's own, cleaned up after."""
    settings.REDIS_URL = require_redis()
    settings.DANMAKU_REDIS_PREFIX = prefix = f"test-{uuid4().hex}"
    client = get_redis()
    yield client
    keys = prefixed_keys(client, prefix)
    if keys:
        client.delete(*keys)
    reset_clients()


def sleep_into_next_redis_second(client) -> None:
    time.sleep(1 - client.time()[1] / 1e6 + 0.005)


def in_one_redis_second(client, run, attempts: int = 3):
    """Call ``run(room_id)`` early in a Redis second; return its result once it
    also finished in that second (a fresh room per try, so a try that crossed
    the boundary leaves nothing behind for the next)."""
    for _ in range(attempts):
        sleep_into_next_redis_second(client)
        started = client.time()[0]
        result = run(fresh_room())
        if client.time()[0] == started:
            return result
    pytest.fail(f"could not fit the sends into one Redis second in {attempts} tries")


# -- Redis up -------------------------------------------------------------------------


def test_slow_mode_allows_the_first_send_and_limits_the_second(shared_redis):
    room = fresh_room()

    first = send(room, 1, interval_ms=2000)
    second = send(room, 1, interval_ms=2000)

    assert first == Allowance()
    assert 0 < second.retry_after_ms <= 2000
    assert not second.room_busy


def test_slow_mode_is_per_user_and_off_at_zero_interval(shared_redis):
    room = fresh_room()

    assert send(room, 1, interval_ms=2000) == Allowance()
    assert send(room, 2, interval_ms=2000) == Allowance()
    assert [send(room, 3, interval_ms=0) for _ in range(3)] == [Allowance()] * 3


def test_slow_mode_lets_the_user_send_again_after_the_interval(shared_redis):
    room = fresh_room()
    assert send(room, 1, interval_ms=200) == Allowance()
    wait_ms = send(room, 1, interval_ms=200).retry_after_ms
    assert 0 < wait_ms <= 200

    time.sleep(wait_ms / 1000 + 0.02)

    assert send(room, 1, interval_ms=200) == Allowance()


def test_limited_user_does_not_use_room_capacity(shared_redis):
    def run(room: int) -> list[Allowance]:
        eager = [send(room, 1, interval_ms=10_000, cap=2) for _ in range(5)]
        return [*eager, send(room, 2, interval_ms=10_000, cap=2), send(room, 3, interval_ms=10_000, cap=2)]

    verdicts = in_one_redis_second(shared_redis, run)

    assert verdicts[0] == Allowance()
    assert all(v.retry_after_ms > 0 and not v.room_busy for v in verdicts[1:5])
    assert verdicts[5] == Allowance()
    assert verdicts[6] == Allowance(room_busy=True)


def test_room_cap_is_exact_under_concurrency(shared_redis):
    threads, attempts, cap = 16, 4, 5

    def run(room: int) -> list[Allowance]:
        barrier = threading.Barrier(threads)
        verdicts: list[Allowance] = []
        lock = threading.Lock()

        def worker(n: int) -> None:
            barrier.wait(timeout=5)
            for a in range(attempts):
                verdict = send(room, n * attempts + a + 1, cap=cap)
                with lock:
                    verdicts.append(verdict)

        workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(10)
        return verdicts

    verdicts = in_one_redis_second(shared_redis, run)

    assert len(verdicts) == threads * attempts
    assert sum(not v.room_busy for v in verdicts) == cap
    assert all(v.retry_after_ms == 0 for v in verdicts)


def test_room_cap_starts_over_in_the_next_redis_second(shared_redis):
    def fill(room: int) -> tuple[int, list[Allowance]]:
        return room, [send(room, user, cap=2) for user in (1, 2, 3)]

    room, verdicts = in_one_redis_second(shared_redis, fill)
    assert [v.room_busy for v in verdicts] == [False, False, True]

    sleep_into_next_redis_second(shared_redis)

    assert send(room, 4, cap=2) == Allowance()


def test_every_key_expires(shared_redis, settings):
    room = fresh_room()
    send(room, 1, interval_ms=5000, cap=10)

    keys = prefixed_keys(shared_redis, settings.DANMAKU_REDIS_PREFIX)
    ttls = {key.decode().split(":")[1]: shared_redis.pttl(key) for key in keys}

    assert set(ttls) == {"slow", "cap"}
    assert 0 < ttls["slow"] <= 5000
    assert 0 < ttls["cap"] <= limits.CAP_KEY_TTL_MS


# -- Redis down or frozen -----------------------------------------------------------------


def test_redis_down_falls_back_to_limits_in_this_process(settings, caplog, monkeypatch):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    monkeypatch.setattr(limits, "_fallback_log", RateLimitedLog(limits.logger, every_seconds=60))
    room, now, before = fresh_room(), now_ms(), fallbacks()

    def timed(user_id: int) -> Allowance:
        started = time.monotonic()
        verdict = take_send(room_id=room, user_id=user_id, interval_ms=1000, cap_per_second=2, now_ms=now)
        assert time.monotonic() - started < 0.5
        return verdict

    try:
        with caplog.at_level(logging.WARNING, logger="danmaku.limits"):
            verdicts = [timed(user) for user in (1, 1, 2, 3)]
    finally:
        reset_clients()

    assert verdicts == [Allowance(), Allowance(retry_after_ms=1000), Allowance(), Allowance(room_busy=True)]
    assert fallbacks() - before == 4
    assert len([r for r in caplog.records if r.name == "danmaku.limits"]) == 1


def test_redis_frozen_falls_back_quickly_and_recovers_on_thaw(settings):
    with private_redis() as server:
        settings.REDIS_URL = server.url
        try:
            room, before = fresh_room(), fallbacks()
            assert send(room, 1, interval_ms=5000) == Allowance()
            assert fallbacks() == before

            server.freeze()
            try:
                started = time.monotonic()
                frozen = send(room, 2, interval_ms=5000)
                elapsed = time.monotonic() - started
            finally:
                server.thaw()

            assert frozen == Allowance()
            assert elapsed < 0.5
            assert fallbacks() == before + 1

            # While the breaker is open the fallback answers at once...
            started = time.monotonic()
            send(room, 3, interval_ms=5000)
            assert time.monotonic() - started < 0.05
            assert fallbacks() == before + 2
            # ...then Redis again: user 1's wait from before the freeze is still there.
            time.sleep(breaker.open_seconds + 0.05)
            assert 0 < send(room, 1, interval_ms=5000).retry_after_ms <= 5000
            assert fallbacks() == before + 2
        finally:
            reset_clients()


# -- Database (no REDIS_URL) ----------------------------------------------------------------


@pytest.mark.django_db
def test_database_backend_applies_slow_mode_then_room_cap(settings):
    settings.REDIS_URL = ""
    room, now = fresh_room(), 1_700_000_000_250

    def at(ms: int, user_id: int) -> Allowance:
        return take_send(room_id=room, user_id=user_id, interval_ms=1000, cap_per_second=2, now_ms=ms)

    assert at(now, 1) == Allowance()
    assert at(now + 100, 1) == Allowance(retry_after_ms=900)
    assert at(now + 200, 2) == Allowance()
    assert at(now + 300, 3) == Allowance(room_busy=True)
    assert at(now + 1000, 4) == Allowance()
    assert at(now + 1100, 1) == Allowance()


@pytest.mark.django_db
def test_database_backend_counts_a_send_stamped_just_before_a_newer_seconds_first(settings):
    # Two sends race across a second's end: the later-stamped one moves the
    # room's row on first. The earlier one counts in the newer second; it is
    # not refused as if the room were full.
    settings.REDIS_URL = ""
    room, now = fresh_room(), 1_700_000_000_999

    def at(ms: int, user_id: int) -> Allowance:
        return take_send(room_id=room, user_id=user_id, interval_ms=0, cap_per_second=2, now_ms=ms)

    assert at(now + 1, 1) == Allowance()
    assert at(now, 2) == Allowance()
    assert at(now, 3) == Allowance(room_busy=True)  # the newer second holds 2 now


# -- copies of one send (same client_id) ----------------------------------------------------


@pytest.fixture(params=["redis", "redis down", "database"])
def backend(request, settings):
    if request.param == "redis":
        request.getfixturevalue("shared_redis")
    elif request.param == "redis down":
        settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
        yield request.param
        reset_clients()
        return
    else:
        settings.REDIS_URL = ""
    yield request.param


@pytest.mark.django_db
def test_a_copy_of_the_send_holding_the_slot_gets_its_allowance_uncharged(backend):
    # Fixed host time; Redis uses its own, so that run must fit in one of its seconds.
    now = now_ms()

    def run(room: int) -> list[Allowance]:
        def take(user_id: int, client_id: str) -> Allowance:
            return take_send(
                room_id=room, user_id=user_id, interval_ms=5000, cap_per_second=2, now_ms=now, client_id=client_id
            )

        return [
            take(1, "first"),
            take(1, "first"),  # not charged: the room still has a place for user 2
            take(1, "second"),
            take(1, ""),
            take(2, ""),
            take(3, "late"),
            take(3, "late"),
            take(3, "later"),
        ]

    verdicts = in_one_redis_second(get_redis(), run) if backend == "redis" else run(fresh_room())

    waiting = [0 < verdict.retry_after_ms <= 5000 for verdict in verdicts]
    assert waiting == [False, False, True, True, False, False, False, True], verdicts
    assert [verdict.room_busy for verdict in verdicts] == [False] * 5 + [True, True, False], verdicts


# -- Fair share in a capped room ------------------------------------------------------------


def _room_full_in_the_previous_second(client, room_id: int, cap: int) -> None:
    second = int(client.time()[0]) - 1
    client.hset(f"{limits.settings.DANMAKU_REDIS_PREFIX}:cap:{{{room_id}}}", mapping={"second": second, "count": cap})


def test_in_a_room_full_the_second_before_a_fast_sender_takes_one_place_a_second(shared_redis):
    def run(room):
        _room_full_in_the_previous_second(shared_redis, room, cap=3)
        fast = [send(room, 9, cap=3).room_busy for _ in range(3)]
        others = [send(room, user, cap=3).room_busy for user in (4, 5)]
        late = send(room, 6, cap=3).room_busy
        return fast, others, late

    fast, others, late = in_one_redis_second(shared_redis, run)

    assert fast == [False, True, True]
    assert others == [False, False]
    assert late is True  # the cap itself still holds


def test_in_a_room_that_was_not_full_a_sender_may_take_several_places(shared_redis):
    def run(room):
        return [send(room, 9, cap=3).room_busy for _ in range(4)]

    assert in_one_redis_second(shared_redis, run) == [False, False, False, True]


def test_fair_share_leaves_slow_modes_of_a_second_or_more_alone(shared_redis):
    # One send a second per user already: the rule adds no key and no refusal.
    def run(room):
        _room_full_in_the_previous_second(shared_redis, room, cap=3)
        return [send(room, user, interval_ms=1000, cap=3).room_busy for user in (1, 2, 3, 4)]

    assert in_one_redis_second(shared_redis, run) == [False, False, False, True]
    assert not list(shared_redis.scan_iter(match=f"{limits.settings.DANMAKU_REDIS_PREFIX}:fair:*"))
