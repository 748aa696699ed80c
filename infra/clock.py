"""The one wall clock: milliseconds since the epoch on this host. No Django.

Comments are stamped with it in the embedded default (Redis stamps them
with its own time in production), so everything that compares with those
stamps reads it here: send limits, a comment's timestamp, retractions, the
database store's sealing, the moderation sweeps and counts. Tests replace
``source`` (a function returning epoch seconds, like ``time.time``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

source: Callable[[], float] = time.time


def now_ms() -> int:
    return int(source() * 1000)
