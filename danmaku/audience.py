"""How many viewers a room has, for staff (the console, the room admin,
/metrics).

Any process can answer, pull node or not: with Redis, the cluster's tally
of the last whole window (``danmaku.delivery``); without it, what the
processes of this node shared last (``infra.nodeshare``), or this process's
own figures when it is the whole node.
"""

from __future__ import annotations

import time

from django.conf import settings
from prometheus_client.core import GaugeMetricFamily

from danmaku import runtime
from danmaku.delivery import VIEWER_WINDOW_SECONDS, NodeFigures, node_figures, round_viewers
from danmaku.store import StoreUnavailable, redis_store
from infra.nodeshare import node_share

# Rooms with a series of their own in /metrics: those with the most viewers.
METRICS_ROOMS = 100


def room_viewers(*, room_id: int, slug: str) -> int | None:
    """The room's estimated viewers, rounded; None when no pull process
    serves it now (or nothing could be read)."""
    cluster = redis_store()
    if cluster is not None:
        window = int(time.time() // VIEWER_WINDOW_SECONDS) - 1
        try:
            counted = cluster.viewers(window, [room_id])
        except StoreUnavailable:
            counted = {}
        if room_id in counted:
            return round_viewers(counted[room_id])
    figures = node_now()
    room = figures.rooms.get(slug) if figures is not None else None
    return None if room is None else round_viewers(room.viewers)


def node_now() -> NodeFigures | None:
    """What this node serves now: its processes' last shares added up, or
    this process's own figures when it is the whole node."""
    share = node_share()
    if share is not None:
        figures, _ = node_figures(share.everyone(), at=time.time())
        return figures
    refresher = runtime.current_refresher()
    delivery = refresher.delivery if refresher is not None else None
    return delivery.figures if delivery is not None else None


class DeliveryCollector:
    """/metrics: the node's delivery figures, and those of its METRICS_ROOMS
    rooms with the most viewers (a series per room is bounded so that a
    node with 10,000 rooms does not answer with 50,000 series)."""

    def collect(self):
        figures = node_now()
        if figures is None:
            return
        rooms = sorted(figures.rooms.items(), key=lambda item: -item[1].viewers)[:METRICS_ROOMS]
        node = [
            ("polls_per_second", "Pull answers served per second by this node.", figures.polls),
            ("egress_bytes_per_second", "Bytes of pull answers served per second by this node.", figures.bytes),
            ("viewers", "Viewers of this node, estimated from the intervals it handed out.",
             sum(room.viewers for room in figures.rooms.values())),
            ("poll_multiplier", "The largest multiplier of next_ms delivery control applies in a room.",
             max((room.multiplier for room in figures.rooms.values()), default=1.0)),
            ("capped_rooms", "Rooms whose display cap delivery control lowers now.",
             sum(room.display_cap is not None for room in figures.rooms.values())),
            ("poll_budget_per_second", "DANMAKU_PULL_BUDGET_PER_SECOND (0: none).",
             settings.DANMAKU_PULL_BUDGET_PER_SECOND),
            ("egress_budget_bytes_per_second", "DANMAKU_EGRESS_BUDGET_BYTES_PER_SECOND (0: none).",
             settings.DANMAKU_EGRESS_BUDGET_BYTES_PER_SECOND),
        ]  # fmt: skip
        for name, documentation, value in node:
            yield GaugeMetricFamily(f"danmaku_node_{name}", documentation, value=value)
        per_room = [
            ("polls_per_second", "Pull answers served per second in the room by this node.", lambda r: r.polls),
            ("egress_bytes_per_second", "Bytes of the room's pull answers per second.", lambda r: r.bytes),
            ("viewers", "The room's viewers on this node (estimate).", lambda r: r.viewers),
            ("poll_multiplier", "Delivery control's multiplier of the room's next_ms.", lambda r: r.multiplier),
            ("display_cap", "Comments shown per second where delivery control cuts them; -1: the room's own cap.",
             lambda r: -1 if r.display_cap is None else r.display_cap),
        ]  # fmt: skip
        for name, documentation, read in per_room:
            family = GaugeMetricFamily(f"danmaku_room_{name}", documentation, labels=["room"])
            for slug, room in rooms:
                family.add_metric([slug], read(room))
            yield family
