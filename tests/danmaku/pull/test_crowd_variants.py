"""A crowd asking one question at once is not kept in lockstep by the
shared answer it gets: an answer pulled often comes in variants differing
only in next_ms (danmaku.pull.cache.SharedAnswer)."""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter

import orjson
import pytest

from danmaku.pull import cache as pull_cache
from danmaku.pull.cache import PullCache, RoomSettings
from danmaku.pull.ringbuffer import Item
from danmaku.pull.spread import CROWD_SPREAD, CROWD_STEP, CROWD_VARIANTS, JITTER_SHARE
from danmaku.pull.wire import encode_cursor

INTERVAL_MS = 3000
START_SECOND = 1_000_000


class Room:
    """A lively room (a comment every second) in a cache, one second at a time."""

    def __init__(self) -> None:
        self.cache = PullCache()
        self.entry = self.cache.install(RoomSettings(room_id=1, slug="live", poll_interval_ms=INTERVAL_MS))
        self.second = START_SECOND
        self._seal(START_SECOND)
        self.cache.publish(self.entry)

    def _seal(self, second: int) -> None:
        ring = self.entry.ring
        ring.add([Item(second, second * 1000, 0xFFFFFF, 0, 7, "nick", "", f"comment {second}")])
        ring.seal_through(second)

    def advance_to(self, second: int) -> None:
        while self.second < second:
            self.second += 1
            self._seal(self.second)

    def pull(self, cursor: str | None) -> dict:
        return orjson.loads(self.cache.pull("live", cursor).body)


def test_a_few_pulls_of_one_question_share_one_answer():
    room = Room()
    answers = {id(room.cache.pull("live", None)) for _ in range(CROWD_STEP)}
    assert len(answers) == 1


def test_a_crowd_gets_variants_that_differ_only_in_next_ms_spread_evenly():
    room = Room()
    answers = [room.cache.pull("live", None) for _ in range(CROWD_STEP + 6 * CROWD_VARIANTS)]
    distinct = {id(answer): answer for answer in answers}.values()
    assert len(distinct) == CROWD_VARIANTS
    bodies = [orjson.loads(answer.body) for answer in distinct]
    next_ms = sorted(body.pop("next_ms") for body in bodies)
    assert all(body == bodies[0] for body in bodies), "only next_ms differs"
    base = next_ms[len(next_ms) // 2]
    assert INTERVAL_MS * (1 - JITTER_SHARE) <= base <= INTERVAL_MS * (1 + JITTER_SHARE)
    assert next_ms[0] == pytest.approx(base * (1 - CROWD_SPREAD), abs=2)
    assert next_ms[-1] == pytest.approx(base * (1 + CROWD_SPREAD), abs=2)
    # Each variant is an answer of its own: its ETag is its body's.
    assert len({answer.etag for answer in distinct}) == CROWD_VARIANTS
    # Past the first CROWD_STEP, one pull each in turn: every variant as often
    # as the others, and never twice in a row.
    crowd = answers[CROWD_STEP : CROWD_STEP + 6 * CROWD_VARIANTS]
    assert set(Counter(id(answer) for answer in crowd).values()) == {6}
    assert all(a is not b for a, b in itertools.pairwise(crowd))


def polls_per_second(
    room: Room, viewers: int, seconds: int, *, seed: int = 1, stretch_at: int | None = None
) -> Counter[int]:
    """Viewers joining within one second, each polling when its answer says
    (and a round trip later); from ``stretch_at`` seconds in, the room is
    stretched three times (the controller counted the crowd)."""
    rng = random.Random(seed)
    due = [(START_SECOND + rng.random(), viewer, None) for viewer in range(viewers)]
    heapq.heapify(due)
    polls: Counter[int] = Counter()
    end = START_SECOND + seconds
    while due[0][0] < end:
        at, viewer, cursor = heapq.heappop(due)
        # The refresher has sealed the second before the current one.
        room.advance_to(int(at) - 1)
        if stretch_at is not None and at >= START_SECOND + stretch_at:
            room.entry.control, stretch_at = pull_cache.RoomControl(multiplier=3.0), None
        answer = room.pull(cursor)
        polls[int(at)] += 1
        heapq.heappush(due, (at + answer["next_ms"] / 1000 + rng.uniform(0.005, 0.05), viewer, answer["cursor"]))
    return polls


def five_second_rates(polls: Counter[int], start: int, end: int) -> list[float]:
    return [sum(polls[START_SECOND + s] for s in range(at, at + 5)) / 5 for at in range(start, end - 4)]


def test_a_crowd_that_joined_in_one_second_spreads_over_the_interval():
    room = Room()
    polls = polls_per_second(room, viewers=3000, seconds=40)
    settled = [polls[START_SECOND + second] for second in range(20, 40)]
    mean = sum(settled) / len(settled)
    # In lockstep each 3 s would be one second with the whole crowd and two
    # nearly empty: a peak of 3 times the mean.
    assert max(settled) <= 1.5 * mean, settled
    assert min(settled) >= 0.5 * mean, settled


def test_without_variants_the_crowd_stays_in_lockstep(monkeypatch):
    """What the variants are for (and that the test above can fail)."""
    monkeypatch.setattr(pull_cache, "CROWD_STEP", 10**9)
    room = Room()
    polls = polls_per_second(room, viewers=3000, seconds=40)
    settled = [polls[START_SECOND + second] for second in range(20, 40)]
    assert max(settled) > 2 * sum(settled) / len(settled), settled


def test_a_stretched_crowd_spreads_over_its_longer_interval_within_a_round():
    """Told to wait three times longer, a crowd that arrived together would
    come back as a wave every 9 s; its variants spread it over the whole
    stretched interval at once (its joins' waits from the equilibrium law,
    danmaku.pull.spread), so the node serves the budget's rate, not waves
    of it."""
    room = Room()
    room.entry.control = pull_cache.RoomControl(multiplier=3.0)

    polls = polls_per_second(room, viewers=3000, seconds=45)

    # From 20 s on, single seconds (the one cohort of joins is a lattice of
    # seven variants at first). Without the wider spread: 0.56-1.48 of the mean.
    rates = [polls[START_SECOND + second] for second in range(20, 45)]
    mean = sum(rates) / len(rates)
    assert mean == pytest.approx(3000 / 9, rel=0.1)
    assert 0.65 * mean <= min(rates) <= max(rates) <= 1.35 * mean, rates


def test_a_storm_back_from_its_normal_interval_polls_at_the_stretched_rate():
    """9,000 viewers join in one second at the normal 3 s; the controller
    stretches the room three times from 2 s in, while the storm is on its
    way back. The node serves about 1,000 polls/s from 10 s on, not a
    second wave on top of the first one's next round."""
    polls = polls_per_second(Room(), viewers=9000, seconds=60, stretch_at=2)
    rates = five_second_rates(polls, 10, 60)
    assert 0.85 * 1000 <= min(rates) <= max(rates) <= 1.15 * 1000, rates


def test_a_storm_given_the_plain_stretched_spread_overshoots(monkeypatch):
    """What the equilibrium waits are for (and that the test above can fail):
    every viewer taken for one already waiting the stretched interval."""
    monkeypatch.setattr(pull_cache, "unstretched_ceiling_ms", lambda interval_ms: -1e9)
    polls = polls_per_second(Room(), viewers=9000, seconds=60, stretch_at=2)
    rates = five_second_rates(polls, 10, 60)
    assert max(rates) > 1.15 * 1000, rates


def test_a_room_crowded_a_second_ago_hands_out_variants_from_the_first_pull():
    """Each second starts a new memo; in a crowded room its first pulls get
    the variants in turn, not CROWD_STEP times the same answer."""
    room = Room()
    for _ in range(CROWD_STEP):
        room.cache.pull("live", None)
    room.advance_to(START_SECOND + 1)
    first, second = room.cache.pull("live", None), room.cache.pull("live", None)
    assert first is not second
    assert first.next_ms != second.next_ms


def test_a_room_pulled_a_few_times_keeps_one_answer_per_question():
    room = Room()
    for _ in range(3):
        room.cache.pull("live", None)
    room.advance_to(START_SECOND + 1)
    assert len({id(room.cache.pull("live", None)) for _ in range(CROWD_STEP)}) == 1


def test_a_room_of_many_small_cohorts_keeps_one_answer_per_question():
    """Thirty pulls a second spread over ten cursors (a few hundred viewers)
    do not make a crowd: variants for them would cost a build per pull."""
    room = Room()
    room.advance_to(START_SECOND + 12)
    cursors = [encode_cursor(room.cache.epoch, START_SECOND + s) for s in range(1, 11)]
    for cursor in cursors:
        for _ in range(3):
            room.cache.pull("live", cursor)
    room.advance_to(START_SECOND + 13)
    assert len({id(room.cache.pull("live", cursors[0])) for _ in range(CROWD_STEP)}) == 1
