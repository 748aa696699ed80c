"""bench/crowd.py's issue 15 parts: the node's gauges read off /metrics, and
the delivery-control checks judged on a made-up timeline."""

from __future__ import annotations

import dataclasses
import math

import pytest

from bench.crowdbench import control
from bench.crowdbench.metrics import parse_gauges
from bench.crowdbench.report import Figures

EXPOSITION = """\
# HELP danmaku_node_poll_multiplier The poll multiplier.
# TYPE danmaku_node_poll_multiplier gauge
danmaku_node_poll_multiplier 3.0
danmaku_node_polls_per_second{pid="1"} 480.5
danmaku_node_polls_per_second{pid="2"} 520.0
danmaku_room_display_cap{room="crowd"} 12.0
danmaku_room_display_cap{room="other"} 30.0
danmaku_room_viewers{room="crowd",kind="x"} 9012
danmaku_ring_items 500
"""


def test_parse_gauges_reads_the_node_gauges_and_the_rooms_own():
    assert parse_gauges(EXPOSITION, room="crowd") == {
        "danmaku_node_poll_multiplier": 3.0,
        "danmaku_node_polls_per_second": 520.0,  # one line per worker: the largest
        "danmaku_room_display_cap": 12.0,
        "danmaku_room_viewers": 9012.0,
    }
    assert parse_gauges("", room="crowd") == {}


def second(number: int, **fields) -> dict:
    return {
        "second": number,
        "polls": 1000,
        "answers": 1000,
        "bytes": 50_000,
        "busy_share": 1.0,
        "normal_share": 0.0,
        "next_ms_p50": 9000,
        "missed_mean": 2.0,
        "items_mean": 5.0,
        "empty": 0,
        "viewers_estimate": 9000,
        "viewers_true": 9000,
        "gauges": {},
    } | fields


def figures(scenario: str, seconds: list[dict], **fields) -> Figures:
    required = {f.name: 0 for f in dataclasses.fields(Figures) if f.default is dataclasses.MISSING}
    return Figures(**required | {"scenario": scenario, "duration_seconds": len(seconds), "seconds": seconds} | fields)


def budget_run(after_leave: dict, *, back_from: int = 75) -> Figures:
    seconds = [second(n) for n in range(70)]
    seconds += [second(n, polls=600, answers=600, viewers_true=2250, viewers_estimate=2250) for n in range(70, 100)]
    for s in seconds[back_from:]:
        s.update(after_leave)
    return figures("budget", seconds, poll_budget=1000.0, leave_at_seconds=70.0, left=6750)


NORMAL = {"busy_share": 0.0, "normal_share": 1.0, "next_ms_p50": 3100}


def test_budget_checks_pass_a_node_that_held_its_budget_and_let_go():
    found = control.checks(budget_run(NORMAL))
    assert [check.passed for check in found] == [True] * len(found)
    assert len(found) == 6  # ceiling, within, busy, recovery, estimate before and after the leave


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        ({n: {"polls": 1150} for n in range(19, 24)}, {"ceiling", "within"}),
        ({n: {"polls": 880} for n in range(30, 35)}, {"within"}),
        # A single second's lump is the crowd's, not the rate's.
        ({19: {"polls": 1150}, 30: {"polls": 880}}, set()),
        ({n: {"busy_share": 0.0} for n in range(40, 44)}, {"busy"}),  # 4 s of 60 not busy: 93 %
        ({99: {"next_ms_p50": 3400}}, {"recovery"}),
        ({50: {"viewers_estimate": 7000}}, {"estimate"}),
    ],
)
def test_budget_checks_fail_where_the_timeline_breaks_them(change, failing):
    run = budget_run(NORMAL)
    for number, fields in change.items():
        run.seconds[number].update(fields)
    names = {
        "ceiling": "1.1x",
        "within": "of the budget from",
        "busy": "busy",
        "recovery": "back to normal",
        "estimate": "estimate",
    }
    failed = {
        key for key, text in names.items() for check in control.checks(run) if text in check.name and not check.passed
    }
    assert failed == failing


def test_recovery_counts_from_the_leave_to_the_first_second_normal_for_good():
    late = budget_run(NORMAL, back_from=90)
    (recovery,) = [check for check in control.checks(late) if "back to normal" in check.name]
    assert not recovery.passed
    assert "from 90 s, 20.0 s after the leave" in recovery.detail


def test_egress_checks_want_the_budget_held_the_cut_reported_and_no_empty_answer():
    seconds = [
        second(n, bytes=40_000 if n < 10 else 50_500, viewers_estimate=3000, viewers_true=3000) for n in range(60)
    ]
    held = figures("egress", seconds, egress_budget=50_000.0, send_rate=20.0)
    assert all(check.passed for check in control.checks(held))
    held.seconds[30]["empty"] = 1
    for n in range(40, 45):
        held.seconds[n]["bytes"] = 56_000
    assert [check.passed for check in control.egress_checks(held)] == [False, True, False]


def test_the_estimate_is_judged_elsewhere_only_when_the_node_sends_one():
    untold = figures("steady", [second(n, viewers_estimate=0, viewers_true=3000) for n in range(20)])
    assert control.checks(untold) == []
    told = figures("steady", [second(n, viewers_estimate=3100, viewers_true=3000) for n in range(20)])
    (estimate,) = control.checks(told)
    assert estimate.passed
    assert "median 1.033" in estimate.detail
    assert math.isclose(3100 / 3000, 1.0333, rel_tol=1e-3)
