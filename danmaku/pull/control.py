"""Delivery control: how often each room's viewers poll and how many comments
an answer carries, so that a node stays within its budgets.

Pure (no Django, no I/O): ``danmaku.delivery`` feeds it the node's
measurements once a second and installs its decisions in the rooms.

Policy, per viewer rather than per room (max-min fairness):

- Polls. Each viewer is allowed at most ``rate_level`` polls a second. A
  viewer of a room whose interval already asks for fewer (a quiet room) is
  untouched; the fastest-polling rooms give way first, and every viewer of
  them gets the same longer interval. A viewer costs the node the same per
  poll in any room, so a popular room's viewers are not stretched more than
  anyone else's.
- Bytes. Each viewer is allowed at most ``comment_level`` comments a second.
  The liveliest rooms are cut first (their answers are the large ones); a
  room below the level keeps every comment. Stretching the interval does not
  help here: a viewer polling half as often gets twice the comments per
  answer.

Both levels are found by water-filling over the rooms' viewers, smoothed,
and changed only past a dead band, so the decisions neither jitter nor
oscillate; both return to "no limit" as soon as the demand fits again.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

# A level moves only when the new one differs by more than this share (no
# jitter in next_ms from measurement noise).
DEAD_BAND = 0.04
# The bytes are measured, not predicted from the crowd's intervals: aimed at
# closely, within a narrower band (the budget's tolerance is +/-10 %).
EGRESS_HEADROOM = 0.99
EGRESS_DEAD_BAND = 0.02
CUT_AFTER_SECONDS = 3
# The node's bytes per second are smoothed with this weight for the newest
# second (where the egress stretch begins).
SMOOTHING = 0.3
# The comment level moves at most once in this many seconds: the bytes show
# a new cap an interval and a seal later (4-5 s at the normal interval), and
# a loop moving again before it saw its last move oscillates.
SETTLE_SECONDS = 4


class RoomLoad(NamedTuple):
    """One room as the node sees it this second (a tuple: 10,000 a second)."""

    key: str
    # Viewers now (the node's, from the intervals it handed out).
    viewers: float
    # The interval its viewers get without any multiplier (sparse control
    # included), in seconds.
    interval_s: float
    # Comments arriving per second (before any display cap).
    arrivals: float
    # The staff's display cap, comments per second.
    display_cap: int


@dataclass(frozen=True, slots=True)
class Decision:
    # Auto multiplier of next_ms per room (1.0: none).
    multipliers: dict[str, float]
    # Comments shown per second per room where the egress budget cuts it
    # (fractional: the writer alternates between the integers around it).
    caps: dict[str, float]
    rate_level: float | None
    comment_level: float | None


def sparse_interval_ms(poll_ms: int, quiet_ms: int, quiet_after_s: int, quiet_for_s: float) -> int:
    """The interval of a room quiet for ``quiet_for_s`` seconds: the normal
    one while the last comment is less than one normal interval old, then
    growing geometrically to the quiet one at ``quiet_after_s`` (3 s -> 3.3 s
    after 5 s -> 5.3 s after 18 s -> 10 s after 30 s with the defaults), so a
    comment in a room quiet for a few seconds is still seen within about the
    normal interval."""
    grace_s = poll_ms / 1000
    if quiet_ms <= poll_ms or quiet_for_s < grace_s:
        return poll_ms
    if quiet_for_s >= quiet_after_s:
        return quiet_ms
    return int(poll_ms * (quiet_ms / poll_ms) ** ((quiet_for_s - grace_s) / (quiet_after_s - grace_s)))


def water_level(demands: Sequence[tuple[float, float]], budget: float) -> float | None:
    """The level L with sum(weight * min(demand, L)) == budget, or None when
    every demand fits (no limit needed). ``demands`` are (demand, weight)."""
    total = sum(weight * demand for demand, weight in demands)
    if total <= budget:
        return None
    ordered = sorted((d, w) for d, w in demands if w > 0)
    below = 0.0  # sum of weight * demand for demands under the level
    weight_left = sum(w for _, w in ordered)
    for demand, weight in ordered:
        # Everything from here on is cut to the level: is this demand under it?
        level = (budget - below) / weight_left if weight_left else math.inf
        if demand >= level:
            return max(level, 0.0)
        below += weight * demand
        weight_left -= weight
    return None


def _settled(old: float | None, new: float | None, *, rise: float = math.inf) -> float | None:
    """``new`` unless it is within the dead band of ``old``; a rise is capped."""
    if new is None or old is None:
        return new
    if abs(new - old) <= DEAD_BAND * old:
        return old
    return min(new, old * rise)


class Controller:
    """Keeps a node within its poll and egress budgets (``None``: off).

    ``decide`` is called about once a second with the node's rooms and what
    the node served in the last second; it returns the multipliers and caps
    to install. State: the two levels and the bytes-per-comment estimate.
    """

    def __init__(self, *, poll_budget: float | None, egress_budget: float | None, max_multiplier: float) -> None:
        self.poll_budget = poll_budget
        self.egress_budget = egress_budget
        self.max_multiplier = max_multiplier
        self.rate_level: float | None = None
        self.comment_level: float | None = None
        self.bytes_per_comment: float | None = None
        # The node's bytes per second, smoothed.
        self.egress_seen: float | None = None
        # Every room's interval stretched for the egress budget (1.0: not).
        self.egress_stretch = 1.0
        # Seconds in a row the bytes were over the egress budget, not cut yet.
        self._over_for = 0
        # The last seconds' bytes, and seconds since the comment level moved.
        self._recent: deque[float] = deque(maxlen=2)
        self._since_move = 0

    def decide(
        self, rooms: Iterable[RoomLoad], *, polls: float, egress: float, answer_overhead: float, delivered: float
    ) -> Decision:
        """``polls`` and ``egress`` are the node's last second; ``answer_overhead``
        the bytes of an answer without comments; ``delivered`` the comments
        per second the viewers were sent (sum of viewers x comments shown per
        second)."""
        rooms = list(rooms)
        multipliers = self._polls(rooms)
        caps = self._bytes(rooms, polls=polls, egress=egress, overhead=answer_overhead, delivered=delivered)
        if self.egress_stretch > 1.0:
            multipliers = {room.key: max(multipliers.get(room.key, 1.0), self.egress_stretch) for room in rooms}
        return Decision(multipliers, caps, self.rate_level, self.comment_level)

    def _polls(self, rooms: list[RoomLoad]) -> dict[str, float]:
        if not self.poll_budget:
            self.rate_level = None
            return {}
        demands = [(1.0 / room.interval_s, room.viewers) for room in rooms if room.interval_s > 0]
        # Aimed at the budget itself: a crowd polls at the rate its mean
        # interval says (a renewal process; jitter and variants keep the
        # mean), and the crowd bench held 0.96 times the budget with 3 %
        # headroom.
        target = water_level(demands, self.poll_budget)
        self.rate_level = _settled(self.rate_level, target)
        level = self.rate_level
        if level is None:
            return {}
        # Bounded: past max_multiplier the node goes over its budget rather
        # than keep viewers waiting longer.
        return {
            room.key: min(self.max_multiplier, 1.0 / (level * room.interval_s))
            for room in rooms
            if room.interval_s > 0 and 1.0 / room.interval_s > level
        }

    def _bytes(
        self, rooms: list[RoomLoad], *, polls: float, egress: float, overhead: float, delivered: float
    ) -> dict[str, float]:
        """Display caps for the egress budget (and ``egress_stretch``).

        The first cut is the model's (water-filling the comments the budget
        leaves room for, at the bytes a comment was measured to cost); from
        then on the level follows the measured bytes, damped (they answer a
        cut an interval late) and past a dead band. Where one comment a
        second is still too much, the fixed part of the answers is what the
        budget cannot carry: then every interval is stretched as well
        (``egress_stretch``, from the poll demand and what an answer costs),
        and released first when the bytes fall."""
        if not self.egress_budget:
            self.comment_level, self.egress_stretch = None, 1.0
            return {}
        if polls <= 0 and egress <= 0:
            # No reading this second (a process's first): nothing to learn from.
            return _caps(rooms, self.comment_level)
        seen = self.egress_seen = egress if self.egress_seen is None else _smooth(self.egress_seen, egress)
        self._recent.append(egress)
        comment_bytes = egress - polls * overhead
        # This second's: the first cut comes seconds after a storm's joins
        # (full windows of comments), which a smoothed figure would remember.
        self.bytes_per_comment = comment_bytes / delivered if delivered > 0 and comment_bytes > 0 else None
        target = self.egress_budget * EGRESS_HEADROOM
        demands = [(min(room.arrivals, room.display_cap), room.viewers) for room in rooms]
        top = max((demand for demand, _ in demands), default=0.0)
        level = self.comment_level
        off = target / seen if seen > 0 else 1.0
        if level is None:
            # Over for a few seconds in a row, not one: a connect storm's
            # joins (each a full window of comments) are over for a second,
            # and cutting for the seconds after it would only starve them.
            self._over_for = self._over_for + 1 if egress > self.egress_budget else 0
            if self._over_for < CUT_AFTER_SECONDS or not self.bytes_per_comment:
                return {}
            room_for = (target - polls * overhead) / self.bytes_per_comment
            level = water_level(demands, max(room_for, 0.0))
            if level is None:
                return {}
        elif self.egress_stretch > 1.0 or (level <= 1.0 and off < 1 - EGRESS_DEAD_BAND):
            # Polls come as often as the viewers and their intervals say,
            # each costing what an answer costs now: the stretch that fits
            # follows from the demand, not from the bytes it shaped itself.
            demand = sum(room.viewers / room.interval_s for room in rooms if room.interval_s > 0)
            per_answer = egress / polls if polls > 0 else overhead
            wanted = min(self.max_multiplier, demand * per_answer / target)
            # Let go at once once it is (nearly) not needed: a stretch of a
            # few per cent left in place would keep answers saying busy.
            self.egress_stretch = 1.0 if wanted <= 1 + DEAD_BAND else _settled(self.egress_stretch, wanted)
        else:
            self._since_move += 1
            measured = sum(self._recent) / len(self._recent)
            if self._since_move >= SETTLE_SECONDS and abs(measured / target - 1) > EGRESS_DEAD_BAND:
                # The comments' part of the bytes is about proportional to
                # the level; the rest (heads, frames) is not.
                fixed = polls * overhead
                step = (target - fixed) / (measured - fixed) if measured > fixed else 0.5
                level *= max(0.5, min(step, 2.0))
                self._since_move = 0
                if level >= top and measured < target:
                    self.comment_level = None
                    return {}
        # At least one comment a second: an answer is never empty while the
        # room has comments.
        self.comment_level = level = max(1.0, level)
        return _caps(rooms, level)


def _caps(rooms: list[RoomLoad], level: float | None) -> dict[str, float]:
    if level is None:
        return {}
    return {room.key: level for room in rooms if min(room.arrivals, room.display_cap) > level}


def _smooth(previous: float, newest: float) -> float:
    return previous + SMOOTHING * (newest - previous)
