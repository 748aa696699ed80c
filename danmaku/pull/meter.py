"""What a node serves, per room: polls, bytes, and the viewers it is owed.

Pure (no Django). ``RoomMeter.count`` runs on every pull, so it only adds to
three numbers; the controller (``danmaku.delivery``, in the refresher
thread) reads them once a second with ``take``.

Viewers are counted from the intervals the node handed out: a viewer told
"come back in 3 s" is a viewer for those 3 s. Each pull files a promise
under the quarter second it falls due; the viewers now are the promises not
yet due. Unlike polls per second x interval this is right at once when the
interval changes (a stretched interval changes how often viewers come, not
how many there are), and a viewer who leaves drops out one interval later.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

# Promises are filed by quarter second: a promise counts for at most this
# long after it fell due (the viewer's request still on its way back).
TICKS_PER_SECOND = 4


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
        # Viewers coming back, by the quarter second (monotonic clock) they are due.
        self.due: dict[int, int] = {}
        self._polls_read = 0
        self._bytes_read = 0

    def count(self, size: int, next_ms: int, now: float | None = None) -> None:
        """One pull answered with ``size`` bytes, asking to come back in ``next_ms``."""
        self.polls += 1
        self.bytes += size
        tick = int(((time.monotonic() if now is None else now) + next_ms / 1000) * TICKS_PER_SECOND)
        due = self.due
        due[tick] = due.get(tick, 0) + 1

    def take(self, now: float | None = None) -> Reading:
        """Polls and bytes since the last ``take``, and the viewers now.

        Called from one thread only (the refresher's)."""
        now_tick = int((time.monotonic() if now is None else now) * TICKS_PER_SECOND)
        # list() copies in one step under the GIL while pulls keep counting.
        viewers = 0
        for tick, count in list(self.due.items()):
            if tick < now_tick:
                self.due.pop(tick, None)
            else:
                viewers += count
        polls, size = self.polls, self.bytes
        reading = Reading(polls - self._polls_read, size - self._bytes_read, viewers)
        self._polls_read, self._bytes_read = polls, size
        return reading
