"""How one shared answer's next_ms is spread over a crowd (danmaku.pull.spread)."""

from __future__ import annotations

import heapq
import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from danmaku.pull.spread import (
    BUSY_SPREAD,
    CROWD_SPREAD,
    CROWD_VARIANTS,
    JITTER_SHARE,
    arriving_delay,
    equilibrium_quantile,
    jitter,
    stretched_ms,
    unstretched_ceiling_ms,
    variant_factor,
    variant_rank,
)

SHIFTS = [i / 100 for i in range(100)]


def test_variants_rank_from_the_middle_outwards():
    ranks = [variant_rank(index) for index in range(CROWD_VARIANTS)]
    assert sorted(ranks) == list(range(CROWD_VARIANTS))
    middle = CROWD_VARIANTS // 2
    assert ranks[:3] == [middle, middle - 1, middle + 1]


def test_unstretched_variants_spread_evenly_around_the_interval():
    factors = sorted(variant_factor(index) for index in range(CROWD_VARIANTS))
    assert factors[0] == pytest.approx(1 - CROWD_SPREAD)
    assert factors[-1] == pytest.approx(1 + CROWD_SPREAD)
    assert sum(factors) / len(factors) == pytest.approx(1)
    assert variant_factor(0) == 1


@pytest.mark.parametrize("multiplier", [1.1, 2.0, 3.0, 5.0])
def test_settled_waits_keep_the_stretched_mean(multiplier):
    waits = [stretched_ms(i, 3000, multiplier, s, arriving=False) for i in range(CROWD_VARIANTS) for s in SHIFTS]
    mean = 3000 * multiplier
    spread = max(CROWD_SPREAD, min((multiplier - 1) / multiplier, BUSY_SPREAD))
    assert sum(waits) / len(waits) == pytest.approx(mean, rel=0.01)
    assert min(waits) >= mean * (1 - spread) - 1e-6
    assert max(waits) <= mean * (1 + spread) + 1e-6


@given(
    quantile=st.floats(0, 1),
    other=st.floats(0, 1),
    mean=st.floats(100, 100_000),
    spread=st.floats(CROWD_SPREAD, BUSY_SPREAD),
)
def test_the_equilibrium_law_is_a_monotone_map_onto_its_support(quantile, other, mean, spread):
    wait = equilibrium_quantile(quantile, mean, spread)
    assert 0 <= wait <= mean * (1 + spread) * (1 + 1e-9)
    low, high = sorted((quantile, other))
    assert equilibrium_quantile(low, mean, spread) <= equilibrium_quantile(high, mean, spread) + 1e-9


@given(quantile=st.floats(0, 1), spread=st.floats(CROWD_SPREAD, BUSY_SPREAD))
def test_the_equilibrium_quantile_inverts_its_distribution(quantile, spread):
    """F_e(x) = integral of (1 - F(u)) du / mean, F uniform over mean * (1 -/+ spread)."""
    mean = 9000.0
    x = equilibrium_quantile(quantile, mean, spread)
    low, width = mean * (1 - spread), 2 * spread * mean
    beyond = min(max(x - low, 0.0), width)
    cdf = (min(x, low) + beyond - beyond**2 / (2 * width)) / mean
    assert cdf == pytest.approx(quantile, abs=1e-9)


@pytest.mark.parametrize("multiplier", [1.05, 2.0, 3.0, 5.0])
def test_arriving_waits_keep_the_stretched_mean_too(multiplier):
    """So a viewer taken for an arriving one by mistake (only its cursor's
    age tells) polls as often as it should; and none comes back sooner than
    the delay."""
    mean = 3000 * multiplier
    spread = max(CROWD_SPREAD, min((multiplier - 1) / multiplier, BUSY_SPREAD))
    waits = [stretched_ms(i, 3000, multiplier, s, arriving=True) for i in range(CROWD_VARIANTS) for s in SHIFTS]
    assert sum(waits) / len(waits) == pytest.approx(mean, rel=0.01)
    assert min(waits) >= arriving_delay(mean, spread)
    assert max(waits) <= arriving_delay(mean, spread) + mean * (1 + spread) + 1e-6


@pytest.mark.parametrize("interval", [1000, 3000, 10_000])
def test_a_cursor_younger_than_the_ceiling_is_one_from_an_unstretched_wait(interval):
    widest = jitter(interval * max(variant_factor(i) for i in range(CROWD_VARIANTS)), 1.0)
    # A cursor can lag its pull by up to a second.
    assert widest + 1000 <= unstretched_ceiling_ms(interval) + 1


def test_jitter_moves_at_most_its_share_and_never_below_100_ms():
    assert jitter(3000, 0.0) == round(3000 * (1 - JITTER_SHARE))
    assert jitter(3000, 1.0) == round(3000 * (1 + JITTER_SHARE))
    assert jitter(10, 0.5) == 100


def storm_polls(*, arriving: bool, viewers: int = 9000, multiplier: float = 3.0, seconds: int = 60) -> Counter[int]:
    """Viewers back within one second from their normal 3 s interval, in a
    room now stretched ``multiplier`` times; each later wait is a settled one.
    The variant and its shift are drawn per viewer (the many cohorts of a
    real crowd), so this measures the laws, not the lattice of one answer."""
    rng = random.Random(7)
    due = [(rng.random(), viewer, True) for viewer in range(viewers)]
    heapq.heapify(due)
    polls: Counter[int] = Counter()
    while due[0][0] < seconds:
        at, viewer, first = heapq.heappop(due)
        polls[int(at)] += 1
        index, shift = rng.randrange(CROWD_VARIANTS), rng.random()
        wait = stretched_ms(index, 3000, multiplier, shift, arriving=arriving and first)
        heapq.heappush(due, (at + wait / 1000, viewer, False))
    return polls


def five_second_rates(polls: Counter[int], start: int, end: int) -> list[float]:
    return [sum(polls[s] for s in range(at, at + 5)) / 5 for at in range(start, end - 4)]


def test_a_storm_given_equilibrium_waits_polls_at_its_stretched_rate_from_its_first_return():
    polls = storm_polls(arriving=True)
    target = 9000 / 9
    # The earliest return is after the delay (4.1 s at 9 s) and the rate is
    # flat from there on, apart from the storm's own second of arrival.
    rates = five_second_rates(polls, 7, 60)
    assert min(rates) >= 0.95 * target, rates
    assert max(rates) <= 1.05 * target, rates


def test_a_storm_given_plain_stretched_waits_overshoots_then_undershoots():
    """What the equilibrium waits are for (and that the test above can fail)."""
    polls = storm_polls(arriving=False)
    rates = five_second_rates(polls, 7, 60)
    assert max(rates) > 1.1 * 1000 or min(rates) < 0.9 * 1000, rates
