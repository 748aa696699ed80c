"""What a node serves, per room: polls, bytes, and the viewers it is owed.

Pure (no Django). ``RoomMeter.count`` runs on every pull, so it only adds to
three numbers; the controller (``danmaku.delivery``, in the refresher
thread) reads them once a second with ``take``.

Viewers are counted from the intervals the node handed out: a viewer told
"come back in 3 s" is a viewer for those 3 s. Each pull files a promise
under the tick (a twentieth of a second) it falls due; the viewers now are
the promises not yet due. Unlike polls per second x interval this is right
at once when the interval changes (a stretched interval changes how often
viewers come, not how many there are), and a viewer who leaves drops out
one interval later. A viewer is not counted while its next request is on
its way (its round trip after the interval): an undercount of about
round trip / interval, 3 % at 100 ms and 3 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from time import monotonic

# Promises are filed by the tick they fall due. The tick under way counts
# for the share of it still to come (its promises spread over it): counted
# whole, the promises in it that fell due already (their viewers back and
# counted again under a new promise) were counted twice, as many as the
# refresher's phase in the tick says, and that phase is the same every
# second on every process of a node (their ticks follow the wall clock):
# with quarter-second ticks, up to +8 % at a 3 s interval all the time, and
# +30 to +47 % when a crowd that came together fell due just before.
TICKS_PER_SECOND = 20


@dataclass(frozen=True, slots=True)
class Reading:
    polls: int
    bytes: int
    viewers: int


class RoomMeter:
    """One room's counters in one process.

    Written by every thread that answers a pull, without a lock: under the
    GIL an ``x += 1`` on an attribute is not interrupted by another thread
    in CPython 3.11, and a lost count would only blur a rate.
    """

    __slots__ = ("_bytes_read", "_polls_read", "bytes", "due", "polls")

    def __init__(self) -> None:
        self.polls = 0
        self.bytes = 0
        # Viewers coming back, by the tick (monotonic clock) they are due.
        self.due: dict[int, int] = {}
        self._polls_read = 0
        self._bytes_read = 0

    def count(self, size: int, next_ms: int, now: float | None = None) -> None:
        """One pull answered with ``size`` bytes, asking to come back in ``next_ms``."""
        self.polls += 1
        self.bytes += size
        tick = int(((monotonic() if now is None else now) + next_ms * 0.001) * TICKS_PER_SECOND)
        due = self.due
        due[tick] = due.get(tick, 0) + 1

    def take(self, now: float | None = None) -> Reading:
        """Polls and bytes since the last ``take``, and the viewers now.

        Called from one thread only (the refresher's)."""
        ticks = (monotonic() if now is None else now) * TICKS_PER_SECOND
        now_tick = int(ticks)
        still_to_come = now_tick + 1 - ticks
        # list() copies in one step under the GIL while pulls keep counting.
        viewers = 0.0
        for tick, count in list(self.due.items()):
            if tick > now_tick:
                viewers += count
            elif tick == now_tick:
                viewers += count * still_to_come
            else:
                self.due.pop(tick, None)
        polls, size = self.polls, self.bytes
        reading = Reading(polls - self._polls_read, size - self._bytes_read, round(viewers))
        self._polls_read, self._bytes_read = polls, size
        return reading
