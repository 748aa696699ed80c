"""How many viewers a room has, for staff (the console, the room admin).

Any process can answer, pull node or not: with Redis, the cluster's tally
of the last whole window (``danmaku.delivery``); without it, what the
processes of this node shared last (``infra.nodeshare``), or this process's
own figures when it is the whole node.
"""

from __future__ import annotations

import time

from danmaku import runtime
from danmaku.delivery import VIEWER_WINDOW_SECONDS, node_figures, round_viewers
from danmaku.store import StoreUnavailable, redis_store
from infra.nodeshare import node_share


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
    share = node_share()
    if share is not None:
        figures, _ = node_figures(share.everyone(), at=time.time())
    else:
        refresher = runtime.current_refresher()
        delivery = refresher.delivery if refresher is not None else None
        figures = delivery.figures if delivery is not None else None
    room = figures.rooms.get(slug) if figures is not None else None
    return None if room is None else round_viewers(room.viewers)
