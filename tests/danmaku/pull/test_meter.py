"""Counting what a node serves (danmaku.pull.meter), alone."""

from __future__ import annotations

import pytest

from danmaku.pull.meter import RoomMeter


def test_take_reports_polls_and_bytes_since_the_last_take():
    meter = RoomMeter()
    meter.count(500, 3000, now=100.0)
    meter.count(700, 3000, now=100.5)

    first = meter.take(now=101.0)
    meter.count(100, 3000, now=101.5)
    second = meter.take(now=102.0)

    assert (first.polls, first.bytes) == (2, 1200)
    assert (second.polls, second.bytes) == (1, 100)


def test_viewers_are_the_promises_not_yet_due():
    meter = RoomMeter()
    # 30 viewers polling every 3 s, spread over the interval.
    for n in range(90):
        meter.count(500, 3000, now=100 + n / 10)

    # At 109 s the viewers who polled in the last 3 s are still owed; each viewer once.
    assert 29 <= meter.take(now=109.0).viewers <= 31


def test_a_stretched_interval_does_not_change_the_count():
    meter = RoomMeter()
    for n in range(30):
        meter.count(500, 3000, now=100 + n / 10)
    # From now on the same 30 viewers are told 9 s; each polls once more.
    for n in range(30):
        meter.count(500, 9000, now=103 + n / 10)

    assert 29 <= meter.take(now=106.0).viewers <= 31
    assert 29 <= meter.take(now=111.0).viewers <= 31


def test_viewers_who_leave_drop_out_after_their_interval():
    meter = RoomMeter()
    for n in range(30):
        meter.count(500, 3000, now=100 + n / 10)

    assert meter.take(now=106.5).viewers == 0


@pytest.mark.parametrize("phase", [0.0, 0.01, 0.02, 0.03, 0.049])
def test_a_crowd_back_on_time_is_counted_once_whatever_the_phase_of_the_take(phase):
    meter = RoomMeter()
    # 300 viewers who came together (within 0.3 s), told 3 s, back exactly when due.
    for n in range(300):
        meter.count(500, 3000, now=100 + n / 1000)
    for n in range(300):
        answered = 103 + n / 1000
        if answered < 103.2 + phase:
            meter.count(500, 3000, now=answered)

    # Taken 0.2 s into their return (the refresher takes at one phase of
    # the clock every second): those back are counted once, not twice.
    assert abs(meter.take(now=103.2 + phase).viewers - 300) <= 3
