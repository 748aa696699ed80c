"""The replay cache alone (fake database reads): a crowd asking for a
segment nobody has built yet gets one build; versions and states behave."""

from __future__ import annotations

import threading
import time

import pytest

from danmaku.errors import NotFound
from danmaku.replaycache import IMMUTABLE, STATE_TTL_S, ReplayCache
from danmaku.segments import BroadcastState


def state(versions=(1, 1), ended_at_ms=10_000) -> BroadcastState:
    return BroadcastState(
        id=7,
        room_id=1,
        room_slug="live",
        started_at_ms=0,
        ended_at_ms=ended_at_ms,
        offset_ms=0,
        recording_url="",
        versions=versions,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_crowd_arriving_together_gets_one_build():
    builds = []
    gate = threading.Event()

    def build(s, index, version):
        builds.append((index, version))
        gate.wait(2)  # every other reader arrives while this one builds
        return b'{"items": {}}'

    cache = ReplayCache(read_state=lambda _: state(), build=build, now_ms=lambda: 60_000)
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(cache.segment(7, 0, 1))) for _ in range(50)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    gate.set()
    for thread in threads:
        thread.join(5)

    assert builds == [(0, 1)]
    assert len(answers) == 50
    assert {id(answer) for answer in answers} == {id(answers[0])}
    assert answers[0].cache_control == IMMUTABLE


def test_states_are_read_at_most_once_a_second_and_a_newer_version_reads_again():
    clock, reads = Clock(), []
    current = {"versions": (1,)}

    def read(_):
        reads.append(clock.now)
        return state(current["versions"])

    cache = ReplayCache(read_state=read, build=lambda s, i, v: b"{}", monotonic=clock, now_ms=lambda: 60_000)
    cache.segment(7, 0)
    cache.segment(7, 0)
    assert len(reads) == 1

    current["versions"] = (2,)
    clock.now += 0.3
    cache.segment(7, 0, 2)  # a reader who saw the listing already: read again now
    assert len(reads) == 2
    with pytest.raises(NotFound, match="no version 9"):
        cache.segment(7, 0, 9)
    assert len(reads) == 2  # not again within the quarter second
    clock.now += STATE_TTL_S
    cache.segment(7, 0)
    assert len(reads) == 3


def test_an_unsettled_broadcast_is_rebuilt_each_second_and_never_immutable():
    clock, builds = Clock(), []
    live = state(ended_at_ms=None)
    cache = ReplayCache(
        read_state=lambda _: live,
        build=lambda s, i, v: builds.append(v) or b"{}",
        monotonic=clock,
        now_ms=lambda: 60_000,
    )
    assert cache.segment(7, 0, 1).cache_control == "public, max-age=1"
    cache.segment(7, 0, 1)
    assert len(builds) == 1
    clock.now += 1.0
    cache.segment(7, 0, 1)
    assert len(builds) == 2


def test_the_cache_keeps_within_its_bytes():
    body = b"x" * 1000
    cache = ReplayCache(
        read_state=lambda _: state(versions=tuple([1] * 40)),
        build=lambda s, i, v: body,
        now_ms=lambda: 60_000,
        max_bytes=10_000,
    )
    for index in range(40):
        cache.segment(7, index, 1)
    assert cache._bytes <= 10_000
    assert len(cache._built) < 40
