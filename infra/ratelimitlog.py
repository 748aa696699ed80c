"""A logger wrapper that says a repeated warning once per interval.

Fallbacks happen per request during an outage; the log should say so once
every few seconds with a count, not thousands of times.
"""

from __future__ import annotations

import logging
import threading
import time


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, *, every_seconds: float = 10.0, clock=time.monotonic) -> None:
        self.logger = logger
        self.every_seconds = every_seconds
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def warning(self, message: str, *args) -> bool:
        """Log unless the same message was logged within the interval."""
        now = self.clock()
        with self._lock:
            last = self._last.get(message)
            if last is not None and now - last < self.every_seconds:
                self._suppressed[message] = self._suppressed.get(message, 0) + 1
                return False
            self._last[message] = now
            suppressed = self._suppressed.pop(message, 0)
        if suppressed:
            self.logger.warning(message + " (and %d more like it)", *args, suppressed)
        else:
            self.logger.warning(message, *args)
        return True
