"""A small crowd against gunicorn as shipped, so bench/crowd.py cannot rot:
2,000 viewers, each on its own connection, polling at the server's next_ms
for 10 s while a comment a second is sent. It asserts what every viewer
gets, not how fast: no errors, every comment sent after a viewer joined
seen by it exactly once through its cursor chain, and no viewer kept
waiting past two of its poll intervals. And viewers trickling onto a quiet
node end up spread over every worker (each worker is woken alone for a new
connection, always the same one while they all idle)."""

from __future__ import annotations

import threading
import time

import pytest

from harness import local, procnet
from harness.crowd import Crowd, CrowdSpec, Sent, delivery
from harness.load import Sender
from tests.openfiles import open_files_for

pytestmark = pytest.mark.slow

ROOM = "crowd"
VIEWERS = 2000
DURATION_SECONDS = 10.0
# A trickle: 500 viewers a second, each connection a moment's work for a
# worker, so the workers idle between them.
TRICKLE_SECONDS = 4.0
# How far from the mean a worker's share of them may be.
SPREAD_ABOVE_MEAN = 1.5
# The room is lively (its normal interval, not the quiet one) before the
# crowd comes.
SEED_SECONDS = 3.0


@pytest.fixture(scope="module")
def open_files():
    """Two generator processes of 1,000 connections each, and the server's share."""
    with open_files_for(2 * VIEWERS):
        yield


def test_a_crowd_sees_every_comment_once_with_no_errors(open_files, tmp_path):
    room_fields = {"user_send_interval_ms": 0, "room_send_cap_per_second": 100_000}
    with local.gunicorn(room=ROOM, workers=None, var_dir=tmp_path, room_fields=room_fields) as server:
        stop = threading.Event()
        sender = Sender(url=server.danmaku_url(ROOM), token=server.tokens[0], name="crowd", interval=1.0, stop=stop)
        seeded_at = time.monotonic() + SEED_SECONDS
        sender.start()
        try:
            spec = CrowdSpec(
                url=server.base_url, room=ROOM, viewers=VIEWERS, duration_seconds=DURATION_SECONDS, per_process=1000
            )
            # The crowd's processes start (spawn, imports) while the room is seeded.
            with Crowd(spec) as crowd:
                time.sleep(max(0.0, seeded_at - time.monotonic()))
                crowd.start()
                result = crowd.join()
        finally:
            stop.set()
            sender.join(5)

    assert sender.failures == []
    assert len(sender.sent) >= SEED_SECONDS + DURATION_SECONDS - 2
    assert result.errors == []
    assert set(result.status) == {200}
    ledgers = result.ledgers
    assert len(result.first_latency) == VIEWERS, "every viewer's first poll answered"
    # Everyone joined within the first second and polls every ~3 s: each
    # had its first answer and at least two more.
    assert min(ledger.answers for ledger in ledgers) >= 3
    checked = delivery(ledgers, [Sent(s.id, s.started, s.finished) for s in sender.sent])
    assert checked.owed >= VIEWERS * 3, "each viewer was owed the comments sent while it watched"
    assert (checked.missed, checked.missed_in_gap, checked.duplicates, checked.gaps) == (0, 0, 0, 0), checked.examples
    assert max(ledger.longest_wait_intervals for ledger in ledgers) <= 2
    # A bound that catches a hang, not a speed target.
    assert max(result.latency) < 5.0


def test_viewers_joining_a_quiet_node_spread_over_every_worker(open_files, tmp_path):
    with local.gunicorn(room=ROOM, workers=None, var_dir=tmp_path) as server:
        spec = CrowdSpec(
            url=server.base_url,
            room=ROOM,
            viewers=VIEWERS,
            duration_seconds=TRICKLE_SECONDS + 2,
            connect_seconds=TRICKLE_SECONDS,
            per_process=1000,
        )
        with Crowd(spec) as crowd:
            start = crowd.start()
            time.sleep(max(0.0, start + TRICKLE_SECONDS + 1 - time.monotonic()))
            held = procnet.connections_per_child(server.process.pid, int(server.base_url.rsplit(":", 1)[1]))
            result = crowd.join()

    assert result.errors == []
    assert sum(held) == VIEWERS, held
    mean = VIEWERS / len(held)
    assert max(held) <= SPREAD_ABOVE_MEAN * mean, held
    assert min(held) >= mean / SPREAD_ABOVE_MEAN, held
