from __future__ import annotations

import pytest

from infra.tokenbucket import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_full_bucket_gives_its_burst_then_refills_at_the_rate():
    clock = Clock()
    bucket = TokenBucket(rate_per_second=4, burst=4, clock=clock)

    assert [bucket.take() for _ in range(5)] == [True] * 4 + [False]
    clock.now += 0.25
    assert [bucket.take() for _ in range(2)] == [True, False]
    clock.now += 10
    assert sum(bucket.take() for _ in range(10)) == 4


def test_a_token_given_back_can_be_taken_again_but_never_beyond_the_burst():
    clock = Clock()
    bucket = TokenBucket(rate_per_second=1, burst=2, clock=clock)
    assert bucket.take()
    assert bucket.take()
    assert not bucket.take()

    bucket.give_back()
    bucket.give_back()
    bucket.give_back()

    assert [bucket.take() for _ in range(3)] == [True, True, False]


def test_a_clock_stepping_back_adds_nothing():
    clock = Clock()
    bucket = TokenBucket(rate_per_second=1, burst=1, clock=clock)
    assert bucket.take()
    clock.now -= 5
    assert not bucket.take()
    # Refilled from the clock's new reading on.
    clock.now += 1
    assert bucket.take()


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0.5)])
def test_a_bucket_that_could_never_give_is_refused(rate, burst):
    with pytest.raises(ValueError, match="positive rate"):
        TokenBucket(rate_per_second=rate, burst=burst)
