"""The viewers a pull answer shows, against a crowd of known size on two nodes.

Two gunicorn nodes in production mode over one PostgreSQL and the shared
Redis (harness.cluster), a comment a second, 300 viewers split 60/40 over
the nodes. Once the estimate has settled (promises fill in one interval,
the shown count is the last whole 5 s window's), every answer on both nodes
must show the cluster's sum within issue 15's ±15 %, and both nodes the
same. bench/viewers.py runs the same at 1,000 and 10,000 viewers.
"""

from __future__ import annotations

import statistics
import threading
import time

import pytest

from bench.crowdbench.nodes import ROOM_FIELDS
from harness import cluster as cluster_harness
from harness.crowd import Crowd, CrowdSpec
from harness.load import Sender
from harness.services import require_postgres, require_redis
from harness.viewerpoll import ViewerPoll, own_share

pytestmark = pytest.mark.slow

ROOM = "viewers"
SPLIT = (180, 120)
SEED_SECONDS = 2.0
SETTLE_SECONDS = 15.0
DURATION_SECONDS = 21.0
TOLERANCE = 0.15
# Both nodes read the same tally; a reading taken just as a window turns
# may still show the last one.
NODES_APART = 0.05


def test_both_nodes_show_the_clusters_viewers_within_15_percent(tmp_path, capsys):
    require_postgres()
    redis_url = require_redis()
    with cluster_harness.two_nodes(
        room=ROOM, var_dir=tmp_path, room_fields=ROOM_FIELDS, workers=2, redis_url=redis_url
    ) as cluster:
        node_a = cluster.nodes[0]
        stop_sending = threading.Event()
        sender = Sender(url=node_a.danmaku_url(ROOM), token=node_a.tokens[0], name="est", interval=1.0,
                        stop=stop_sending)  # fmt: skip
        sender.start()
        specs = [
            CrowdSpec(url=node.base_url, room=ROOM, viewers=count, duration_seconds=DURATION_SECONDS)
            for node, count in zip(cluster.nodes, SPLIT, strict=True)
        ]
        try:
            time.sleep(SEED_SECONDS)
            with (
                Crowd(specs[0]) as crowd_a,
                Crowd(specs[1]) as crowd_b,
                ViewerPoll([node.danmaku_url(ROOM) for node in cluster.nodes]) as poll,
            ):
                start = crowd_a.start()
                crowd_b.start()
                results = [crowd_a.join(), crowd_b.join()]
        finally:
            stop_sending.set()
            sender.join(5)

    settled = poll.between(start + SETTLE_SECONDS, start + DURATION_SECONDS)
    true_total = sum(SPLIT) + own_share(settled)
    readings = [[sample.viewers for sample in settled if sample.node == node] for node in (0, 1)]
    with capsys.disabled():
        print(f"\nviewers {sum(SPLIT)} (+{own_share(settled):.1f} the poller's): a {readings[0]}, b {readings[1]}")

    assert not poll.failures, poll.failures[:5]
    assert all(not result.errors for result in results), [result.errors[:3] for result in results]
    assert all(len(node) >= 4 for node in readings), readings
    for node in readings:
        assert all(abs(reading / true_total - 1) <= TOLERANCE for reading in node), (true_total, readings)
    medians = [statistics.median(node) for node in readings]
    assert abs(medians[0] - medians[1]) <= NODES_APART * true_total, medians
