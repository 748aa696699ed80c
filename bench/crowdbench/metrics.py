"""The node's delivery-control gauges off /metrics, once a second during a run.

Issue 15's controller exposes what it measures and decides (polls and bytes
per second, the poll multiplier, per room the display cap and the viewers
estimate); the crowd plots them beside what it received. A node without
them (or without /metrics) simply gives none.
"""

from __future__ import annotations

import re

import requests

NODE_GAUGES = (
    "danmaku_node_polls_per_second",
    "danmaku_node_egress_bytes_per_second",
    "danmaku_node_poll_multiplier",
)
ROOM_GAUGES = (
    "danmaku_room_polls_per_second",
    "danmaku_room_egress_bytes_per_second",
    "danmaku_room_poll_multiplier",
    "danmaku_room_display_cap",
    "danmaku_room_viewers",
)
# A scrape that takes longer is skipped: the once-a-second loop around it
# also watches the run's clock.
SCRAPE_TIMEOUT_SECONDS = 0.5
SAMPLE_RE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_gauges(text: str, *, room: str) -> dict[str, float]:
    """The node gauges, and the room gauges labelled ``room``, from a
    Prometheus text exposition. A gauge given on several lines (one per
    gunicorn worker, say) is read as its largest value."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = SAMPLE_RE.match(line)
        if match is None:
            continue
        name, labels, value = match.groups()
        if name in ROOM_GAUGES:
            if dict(LABEL_RE.findall(labels or "")).get("room") != room:
                continue
        elif name not in NODE_GAUGES:
            continue
        try:
            number = float(value)
        except ValueError:
            continue
        found[name] = max(number, found.get(name, number))
    return found


def scrape(base_url: str, *, room: str, session: requests.Session) -> dict[str, float]:
    try:
        response = session.get(f"{base_url}/metrics", timeout=SCRAPE_TIMEOUT_SECONDS)
    except requests.RequestException:
        return {}
    if response.status_code != 200:
        return {}
    return parse_gauges(response.text, room=room)
