"""Redis frozen, stopped, restarted empty or with its data, under a load of
sends and pulls through real gunicorn (2 workers, SQLite in a tmp dir).

Each scenario starts its own redis-server on a free port, so the shared one
is never touched. The load, the client-side ledger and the checks live in
harness.load (bench/faults.py runs the same scenarios, each phase longer,
and prints the figures). A scenario fails on any of: a failed send or pull,
a request slower than 1 s, a comment a viewer never saw or saw twice, one slower than
3 s to reach a viewer, a gap answer where Redis kept its data (or not exactly
one per viewer where it lost it), no degraded answer during the fault, an
accepted comment missing from the room's stream or in it twice, a row left
unpublished in the database.
"""

from __future__ import annotations

import pytest

from harness import load, local

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("scenario", load.SCENARIOS)
def test_redis_fault_under_load_fails_no_request_and_publishes_every_comment_once(scenario):
    try:
        figures = load.run_scenario(scenario, phases=load.SHORT_PHASES)
    except local.LocalServerError as exc:
        pytest.fail(str(exc))
    # Shown with -s or -rP: the figures for the closing note.
    print(figures.line())

    assert figures.violations == [], "\n".join([figures.line(), *figures.details])
    assert figures.accepted > 0
    assert figures.pull_failures == 0
    assert max(figures.max_send_ms, figures.max_pull_ms) < load.LATENCY_LIMIT_SECONDS * 1000
    assert (figures.lost, figures.duplicated, figures.stream_duplicates, figures.stream_missing) == (0, 0, 0, 0)
