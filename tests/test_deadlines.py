"""One deadline per connection on the pull worker's loop."""

from __future__ import annotations

from danmaku_site.deadlines import Deadlines


class Conn:
    def __init__(self, name: str) -> None:
        self.name = name


def test_due_deadlines_expire_in_order_and_the_rest_wait():
    deadlines, expired = Deadlines(), []
    a, b, c = Conn("a"), Conn("b"), Conn("c")
    for conn, when in ((b, 2.0), (a, 1.0), (c, 5.0)):
        deadlines.set(conn, when, lambda conn, now: expired.append((conn.name, now)))
    deadlines.expire(3.0)
    assert expired == [("a", 3.0), ("b", 3.0)]
    assert len(deadlines) == 1
    deadlines.expire(3.0)  # each runs once
    assert len(expired) == 2


def test_a_cleared_or_replaced_deadline_never_runs():
    deadlines, expired = Deadlines(), []

    def note(conn, now):
        expired.append((conn.name, now))

    a, b = Conn("a"), Conn("b")
    deadlines.set(a, 1.0, note)
    deadlines.set(b, 1.0, note)
    deadlines.clear(a)
    deadlines.set(b, 4.0, note)  # replaces b's first
    deadlines.expire(2.0)
    assert expired == []
    deadlines.expire(4.0)
    assert expired == [("b", 4.0)]
    assert len(deadlines) == 0


def test_an_expiry_may_set_the_next_deadline():
    deadlines, runs = Deadlines(), []

    def again(conn, now):
        runs.append(now)
        if len(runs) < 3:
            deadlines.set(conn, now + 1, again)

    deadlines.set(Conn("a"), 1.0, again)
    for now in (1.0, 2.0, 3.0, 4.0):
        deadlines.expire(now)
    assert runs == [1.0, 2.0, 3.0]
