"""One deadline per connection, for the pull worker's event loop.

A connection waiting on its client (for the rest of a request, for room to
write an answer, to close) has one deadline at a time; setting another
replaces it, and clearing it forgets it. Replaced and cleared entries stay
in the heap until they come due and are then skipped, so setting and
clearing cost no search however many connections wait. Pure: the caller
passes the time.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

Expiry = Callable[[Any, float], None]


class Deadlines:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Any, Expiry]] = []
        self._tokens = itertools.count()
        # id(connection) -> the token of its current deadline.
        self._current: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._current)

    def set(self, conn: Any, when: float, on_expiry: Expiry) -> None:
        """``on_expiry(conn, now)`` runs once ``when`` has passed, unless
        ``set`` or ``clear`` is called for ``conn`` before."""
        token = next(self._tokens)
        self._current[id(conn)] = token
        heapq.heappush(self._heap, (when, token, conn, on_expiry))

    def clear(self, conn: Any) -> None:
        self._current.pop(id(conn), None)

    def expire(self, now: float) -> None:
        """Run the expiry of every current deadline that has passed."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, token, conn, on_expiry = heapq.heappop(heap)
            if self._current.get(id(conn)) == token:
                del self._current[id(conn)]
                on_expiry(conn, now)
