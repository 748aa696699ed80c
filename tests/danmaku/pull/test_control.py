"""The delivery controller's decisions (danmaku.pull.control), alone."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from danmaku.pull.control import (
    CUT_AFTER_SECONDS,
    EGRESS_HEADROOM,
    SETTLE_SECONDS,
    Controller,
    RoomLoad,
    sparse_interval_ms,
    water_level,
)


def room(key="r", viewers=1000.0, interval_s=3.0, arrivals=0.0, cap=30):
    return RoomLoad(key, viewers, interval_s, arrivals, cap)


def polls_after(rooms, multipliers):
    return sum(r.viewers / (r.interval_s * multipliers.get(r.key, 1.0)) for r in rooms)


# -- sparse control -------------------------------------------------------------


def test_sparse_interval_is_normal_within_one_interval_then_grows_to_the_quiet_one():
    intervals = [sparse_interval_ms(3000, 10_000, 30, quiet) for quiet in (0, 2, 3, 5, 10, 18, 25, 30, 600)]

    assert intervals[:3] == [3000, 3000, 3000]
    assert intervals == sorted(intervals)
    assert 3000 < intervals[3] < 3500  # quiet 5 s: a comment is still seen within about 3 s
    assert 4500 < intervals[5] < 6000
    assert intervals[-2:] == [10_000, 10_000]


def test_sparse_interval_never_goes_below_the_normal_one():
    # A quiet interval set below the normal one means: no sparse control.
    assert sparse_interval_ms(3000, 2000, 30, 100) == 3000


# -- water level ----------------------------------------------------------------


def test_water_level_is_none_when_everything_fits():
    assert water_level([(1.0, 10), (2.0, 5)], 100) is None


def test_water_level_cuts_the_largest_demands_first():
    # 10 x 1 + 10 x 5 = 60 > 30: the small demand fits whole, the large one is cut.
    level = water_level([(1.0, 10), (5.0, 10)], 30)

    assert level == pytest.approx(2.0)


@given(
    st.lists(st.tuples(st.floats(0.01, 100), st.floats(0.0, 1e5)), min_size=1, max_size=30),
    st.floats(1, 1e6),
)
def test_water_level_spends_exactly_the_budget(demands, budget):
    level = water_level(demands, budget)
    total = sum(weight * demand for demand, weight in demands)
    if level is None:
        assert total <= budget
    else:
        spent = sum(weight * min(demand, level) for demand, weight in demands)
        assert spent == pytest.approx(budget, rel=1e-6)


# -- polls ------------------------------------------------------------------------


def test_no_budget_no_multiplier():
    controller = Controller(poll_budget=None, egress_budget=None, max_multiplier=5)

    decision = controller.decide([room(viewers=9000)], polls=3000, egress=1e6, answer_overhead=500, delivered=0)

    assert decision.multipliers == {}
    assert decision.caps == {}


def test_over_the_poll_budget_every_viewer_is_stretched_alike():
    controller = Controller(poll_budget=1000, egress_budget=None, max_multiplier=5)
    rooms = [room("a", viewers=6000), room("b", viewers=3000)]

    decision = controller.decide(rooms, polls=3000, egress=0, answer_overhead=500, delivered=0)

    assert decision.multipliers["a"] == decision.multipliers["b"] == pytest.approx(3)
    assert polls_after(rooms, decision.multipliers) == pytest.approx(1000)


def test_quiet_rooms_give_way_last():
    controller = Controller(poll_budget=1000, egress_budget=None, max_multiplier=5)
    # 3,000 viewers polling every 3 s and 1,000 every 10 s: 1,100 polls/s.
    rooms = [room("lively", viewers=3000), room("quiet", viewers=1000, interval_s=10)]

    decision = controller.decide(rooms, polls=1100, egress=0, answer_overhead=500, delivered=0)

    assert "quiet" not in decision.multipliers
    assert decision.multipliers["lively"] > 1
    assert polls_after(rooms, decision.multipliers) == pytest.approx(1000)


def test_the_multiplier_is_bounded():
    controller = Controller(poll_budget=100, egress_budget=None, max_multiplier=4)

    decision = controller.decide([room(viewers=100_000)], polls=30_000, egress=0, answer_overhead=500, delivered=0)

    assert decision.multipliers["r"] == 4


def test_small_changes_in_the_crowd_do_not_move_the_multiplier():
    controller = Controller(poll_budget=1000, egress_budget=None, max_multiplier=5)
    first = controller.decide([room(viewers=9000)], polls=3000, egress=0, answer_overhead=500, delivered=0)

    later = [
        controller.decide([room(viewers=viewers)], polls=1000, egress=0, answer_overhead=500, delivered=0)
        for viewers in (9050, 8950, 9100, 8900)
    ]

    assert {decision.multipliers["r"] for decision in later} == {first.multipliers["r"]}


def test_when_the_crowd_shrinks_the_multiplier_goes_at_once():
    controller = Controller(poll_budget=1000, egress_budget=None, max_multiplier=5)
    controller.decide([room(viewers=9000)], polls=3000, egress=0, answer_overhead=500, delivered=0)

    decision = controller.decide([room(viewers=2250)], polls=250, egress=0, answer_overhead=500, delivered=0)

    assert decision.multipliers == {}
    assert controller.rate_level is None


# -- bytes ------------------------------------------------------------------------


def test_over_the_egress_budget_the_liveliest_room_is_cut_first():
    controller = Controller(poll_budget=None, egress_budget=1_000_000, max_multiplier=5)
    rooms = [room("lively", viewers=1000, arrivals=20), room("calm", viewers=1000, arrivals=1)]
    # 100 bytes a comment: 1000 x 20 x 100 + 1000 x 1 x 100 = 2.1 MB/s, plus answers' overhead.
    delivered = 1000 * 20 + 1000 * 1
    egress = delivered * 100 + 667 * 500

    for _ in range(CUT_AFTER_SECONDS):
        decision = controller.decide(rooms, polls=667, egress=egress, answer_overhead=500, delivered=delivered)

    assert "calm" not in decision.caps
    cap = decision.caps["lively"]
    spent = 667 * 500 + 100 * (1000 * min(20, cap) + 1000 * 1)
    assert spent == pytest.approx(1_000_000 * EGRESS_HEADROOM, rel=0.01)


def test_one_second_over_the_egress_budget_is_not_cut():
    """A connect storm: every joiner gets a full window of comments once."""
    controller = Controller(poll_budget=None, egress_budget=1_000_000, max_multiplier=5)
    rooms = [room("lively", viewers=3000, arrivals=20)]

    storm = controller.decide(rooms, polls=3000, egress=9_000_000, answer_overhead=500, delivered=180_000)
    after = controller.decide(rooms, polls=1000, egress=900_000, answer_overhead=500, delivered=60_000)

    assert storm.caps == after.caps == {}


def test_an_answer_always_keeps_one_comment_a_second():
    controller = Controller(poll_budget=None, egress_budget=1000, max_multiplier=5)
    rooms = [room("lively", viewers=1000, arrivals=20)]

    for _ in range(CUT_AFTER_SECONDS):
        decision = controller.decide(rooms, polls=333, egress=2_166_500, answer_overhead=500, delivered=20_000)

    assert decision.caps["lively"] == 1


def test_when_the_bytes_fall_the_cut_is_lifted_step_by_step():
    controller = Controller(poll_budget=None, egress_budget=1_000_000, max_multiplier=5)
    lively = [room("r", viewers=1000, arrivals=20)]
    for _ in range(CUT_AFTER_SECONDS):
        controller.decide(lively, polls=333, egress=2_166_500, answer_overhead=500, delivered=20_000)
    levels = [controller.comment_level]

    # Half the viewers leave: the same cut now costs a quarter of the budget.
    calmer = [room("r", viewers=500, arrivals=20)]
    for _ in range(30):
        controller.decide(calmer, polls=167, egress=250_000, answer_overhead=500, delivered=500 * levels[-1])
        levels.append(controller.comment_level or 20.0)

    rises = [later / earlier for earlier, later in itertools.pairwise(levels)]
    # A step at most every few seconds, each at most doubling the level.
    assert max(rises) <= 2
    assert sum(rise > 1 for rise in rises) <= len(rises) / SETTLE_SECONDS + 1
    assert levels[-1] == 20.0, levels  # the cut is gone
    assert controller.comment_level is None


def test_under_a_steady_load_the_cut_settles_on_the_budget():
    """A toy node: answers cost 500 bytes plus 30 a comment; the controller
    sees the bytes its previous caps caused, two seconds late."""
    controller = Controller(poll_budget=None, egress_budget=600_000, max_multiplier=5)
    rooms = [room("r", viewers=3000, arrivals=20)]
    polls = 1000
    caps: list[float] = [20.0, 20.0]
    served = []
    for _ in range(60):
        egress = polls * 500 + 3000 * caps[-2] * 30
        served.append(egress)
        decision = controller.decide(rooms, polls=polls, egress=egress, answer_overhead=500, delivered=3000 * caps[-2])
        caps.append(decision.caps.get("r", 20.0))

    settled = served[20:]
    assert max(abs(egress / 600_000 - 1) for egress in settled) <= 0.1, settled


def test_when_answers_without_comments_are_already_too_many_bytes_the_intervals_stretch():
    controller = Controller(poll_budget=None, egress_budget=300_000, max_multiplier=5)
    rooms = [room("r", viewers=3000, arrivals=20)]

    for _ in range(20):
        decision = controller.decide(rooms, polls=1000, egress=600_000, answer_overhead=500, delivered=3000)

    assert decision.caps["r"] == 1.0
    assert decision.multipliers["r"] > 1.0
    assert controller.egress_stretch <= 5
