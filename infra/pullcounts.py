"""danmaku_pulls_total, counted cheaply enough for the pull path.

``count_pull`` is called for every pull (the WSGI fast path and the API
middleware both call it); ``flush_pull_counts`` writes this process's
counts, the sends' too, where /metrics reads them (``infra.tallies``).
"""

from __future__ import annotations

from infra.metrics import PULLS
from infra.tallies import Tally, flush_tallies

_pulls = Tally(PULLS, "pulls")


def count_pull(status: int) -> None:
    """Count one pull answered with ``status`` in danmaku_pulls_total."""
    _pulls.inc(status)


def flush_pull_counts() -> None:
    """Write this process's counts where /metrics reads them."""
    flush_tallies()
