"""Viewers on a weak network (issue 14), against gunicorn as shipped: a
crowd (harness.crowd, the pull contract and poller.js's back-off) behind
the weak-network proxy (harness.weaknet) while the room, at its normal 3 s
interval, gets a comment a second through the send API.

* 300 ms round trips with jitter, 64 KB/s per connection, resets in the
  middle of answers and stalls: every viewer sees every comment, none twice,
  and no answer says ``gap``.
* The network gone for a few seconds, first stalling (connections held, as
  when a phone loses its signal), then refusing (every connection reset):
  the same, and each viewer is back within the wait in force when the
  network returned (the back-off step, or the poll interval) + 1 s.

Longer runs and more viewers: bench/weaknet.py.
"""

from __future__ import annotations

import pytest

from harness import local
from harness.weakcrowd import Outage, WeakResult, WeakSpec, run
from harness.weaknet import Weakness

pytestmark = pytest.mark.slow

ROOM = "weak"
# Three senders taking turns: each sends every 3 s, clear of the 2 s slow mode.
SENDERS = ("weak-sender-0", "weak-sender-1", "weak-sender-2")
VIEWERS = 50
MOBILE = Weakness(rtt_ms=300, jitter_ms=100, rate_bytes_per_second=64_000, seed=14)


@pytest.fixture(scope="module")
def server():
    with local.gunicorn(room=ROOM, users=SENDERS) as server:
        yield server


def crowd(server, spec: WeakSpec) -> WeakResult:
    return run(base_url=server.base_url, room=ROOM, send_url=server.danmaku_url(ROOM), tokens=server.tokens, spec=spec)


def assert_every_comment_once(result: WeakResult) -> None:
    seen = result.delivery
    assert result.every_viewer_owed_everything, (seen, result.errors)
    assert (seen.missed, seen.missed_in_gap, seen.duplicates, seen.gaps) == (0, 0, 0, 0), (seen, result.errors)


def test_viewers_on_a_weak_network_see_every_comment_once(server):
    weakness = Weakness(
        rtt_ms=300,
        jitter_ms=100,
        rate_bytes_per_second=64_000,
        reset_probability=0.05,
        stall_probability=0.02,
        stall_seconds=(0.5, 2.0),
        seed=14,
    )
    result = crowd(server, WeakSpec(viewers=VIEWERS, comments=10, weakness=weakness))
    assert_every_comment_once(result)
    # The network really was weak: answers were cut and stalled.
    assert result.net.resets > 0, result.net
    assert result.net.stalls > 0, result.net


def test_viewers_are_back_within_their_backoff_step_after_outages(server):
    outages = (Outage(before_comment=3, seconds=5, mode="stall"), Outage(before_comment=10, seconds=5, mode="reset"))
    result = crowd(server, WeakSpec(viewers=VIEWERS, comments=18, weakness=MOBILE, outages=outages))
    assert_every_comment_once(result)
    for recovered in result.recoveries:
        assert len(recovered.viewers) == VIEWERS
        # No random faults here: nothing excuses a viewer over its limit.
        over = [viewer for viewer in recovered.viewers if viewer.seconds > viewer.limit]
        assert over == [], recovered
    assert result.net.cut > 0, result.net
