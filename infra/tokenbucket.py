"""A token bucket: on average at most ``rate_per_second`` takes a second,
and at most ``burst`` at once after a quiet spell.

Pure (no Django) and thread-safe; the clock is injected so tests can step it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, *, rate_per_second: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_second <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.rate_per_second = rate_per_second
        self.burst = burst
        self.clock = clock
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Take one token; False (and nothing taken) when the bucket is empty."""
        with self._lock:
            self._refill()
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True

    def give_back(self) -> None:
        """Return a token taken for work that turned out not to count."""
        with self._lock:
            self._tokens = min(self.burst, self._tokens + 1)

    def _refill(self) -> None:
        now = self.clock()
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate_per_second)
        self._stamp = now
