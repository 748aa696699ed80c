"""Stutter: how long a viewer's screen stayed empty while comments were due on it.

A comment accepted (its send answered 201) at ``a`` is *due on screen* from
``a + due_after`` to ``a + due_after + on_screen``: when a viewer on a good
network has it on screen (``due_after``: one poll interval with its jitter,
the second its slot takes to be sealed, the page's replay spread) and for as
long as it stays there (a scroll comment crosses the stage in 8 s).

Stutter is the total time, within ``[start, end]``, during which at least
one comment was due and the page had none on screen. A healthy page at one
comment a second has none; an outage, a stall or a slow recovery shows up
as stutter once the comments already on screen have left.

Pure: times are plain seconds on one clock; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable


def _union(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for begin, finish in sorted(intervals):
        if finish <= begin:
            continue
        if merged and begin <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], finish)
        else:
            merged.append([begin, finish])
    return [(begin, finish) for begin, finish in merged]


def _clip(intervals: list[tuple[float, float]], start: float, end: float) -> list[tuple[float, float]]:
    return [(max(begin, start), min(finish, end)) for begin, finish in intervals if finish > start and begin < end]


def _length(intervals: list[tuple[float, float]]) -> float:
    return sum(finish - begin for begin, finish in intervals)


def due_intervals(accepted_at: Iterable[float], *, due_after: float, on_screen: float) -> list[tuple[float, float]]:
    """When at least one comment was due on screen (merged, ordered)."""
    return _union((at + due_after, at + due_after + on_screen) for at in accepted_at)


def stutter_seconds(
    accepted_at: Iterable[float],
    shown: Iterable[tuple[float, float]],
    *,
    due_after: float,
    on_screen: float,
    start: float,
    end: float,
) -> float:
    """Seconds in ``[start, end]`` with a comment due and none on screen.

    ``shown``: every comment's (appeared, left) on the page; one still on
    screen at the end has ``left`` at or after ``end``.
    """
    due = _clip(due_intervals(accepted_at, due_after=due_after, on_screen=on_screen), start, end)
    busy = _union(shown)
    empty_while_due = 0.0
    for begin, finish in due:
        covered = _length(_clip(busy, begin, finish))
        empty_while_due += (finish - begin) - covered
    return empty_while_due
