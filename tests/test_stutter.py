"""harness.stutter: seconds with comments due on screen and none there."""

from __future__ import annotations

import pytest

from harness.stutter import due_intervals, stutter_seconds

DUE = {"due_after": 5.0, "on_screen": 8.0}


def test_due_intervals_merge_overlapping_comments():
    assert due_intervals([0.0, 1.0, 20.0], **DUE) == [(5.0, 14.0), (25.0, 33.0)]


@pytest.mark.parametrize(
    ("shown", "expected"),
    [
        ([(5.0, 13.0)], 0.0),  # on screen exactly while due
        ([(3.0, 20.0)], 0.0),  # on screen longer than due costs nothing
        ([], 8.0),  # never shown: every due second is stutter
        ([(7.0, 9.0), (11.0, 13.0)], 4.0),  # late, and a hole in the middle
        ([(5.0, 9.0), (6.0, 13.0)], 0.0),  # overlapping comments count once
    ],
)
def test_stutter_is_due_time_with_nothing_on_screen(shown, expected):
    assert stutter_seconds([0.0], shown, **DUE, start=0.0, end=100.0) == pytest.approx(expected)


def test_stutter_counts_only_within_the_measured_span():
    assert stutter_seconds([0.0], [], **DUE, start=7.0, end=10.0) == pytest.approx(3.0)


def test_no_comment_due_means_no_stutter_however_empty_the_screen():
    assert stutter_seconds([], [], **DUE, start=0.0, end=100.0) == 0.0
