"""Behind deploy/nginx.conf the node counts what nginx served, not the few
misses that reach it: a real nginx sends its pull feed to a real gunicorn
(two workers, DANMAKU_POLL_FEED_PORT), and the node's shared figures
(infra.nodeshare's files, what the controller and /metrics add up) show the
crowd's pulls."""

from __future__ import annotations

import http.client
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
import requests

from harness import local
from harness.nginx import nginx, require_nginx

pytestmark = pytest.mark.slow

ROOM = "feed"
PULLS = 200
# Pulls through nginx, over a few keep-alive connections (mostly cache hits).
CONNECTIONS = 4
REQUEST_TIMEOUT_SECONDS = 10
# A receiver binds on a refresher tick (each second) once a worker served a pull.
RECEIVER_WAIT_SECONDS = 10
# The figures are shared once a second; a viewer promised a return in >= 3 s
# stays counted that long.
FIGURES_WAIT_SECONDS = 4
# danmaku.delivery's row of a room: [room_id, viewers, polls per second, bytes per second, ...].
_VIEWERS, _POLLS, _BYTES = 1, 2, 3


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def node_rows(share_dir: Path) -> list[list]:
    """The room's row from every worker's share file (fresh or not)."""
    rows = []
    for path in share_dir.glob("load-*.json"):
        try:
            record = orjson.loads(path.read_bytes())
        except (OSError, ValueError):
            continue  # replaced while read
        row = record["data"]["rooms"].get(ROOM)
        if row is not None and time.time() - record["at"] < 3:
            rows.append(row)
    return rows


def receiving(base_url: str) -> float:
    text = requests.get(f"{base_url}/metrics", timeout=REQUEST_TIMEOUT_SECONDS).text
    for line in text.splitlines():
        if line.startswith("danmaku_poll_feed_receiving "):
            return float(line.split()[1])
    return 0.0


def pull_many(url: str, count: int) -> dict[str, int]:
    """``count`` pulls over CONNECTIONS keep-alive connections; X-Cache-Status counts."""
    parts = urlsplit(url)
    conns = [
        http.client.HTTPConnection(parts.hostname, parts.port, timeout=REQUEST_TIMEOUT_SECONDS)
        for _ in range(CONNECTIONS)
    ]
    statuses: dict[str, int] = {}
    try:
        for n in range(count):
            conn = conns[n % CONNECTIONS]
            conn.request("GET", f"{parts.path}?{parts.query}", headers={"Accept-Encoding": "gzip"})
            response = conn.getresponse()
            response.read()
            assert response.status == 200
            cache = response.headers.get("X-Cache-Status", "?")
            statuses[cache] = statuses.get(cache, 0) + 1
    finally:
        for conn in conns:
            conn.close()
    return statuses


def test_node_figures_count_the_pulls_nginx_served_not_only_the_misses(tmp_path):
    require_nginx()
    port = free_udp_port()
    access_log = tmp_path / "gunicorn-access.log"
    with (
        local.gunicorn(
            room=ROOM,
            workers=2,
            extra_env={"DANMAKU_POLL_FEED_PORT": str(port), "GUNICORN_ACCESS_LOG": str(access_log)},
        ) as app,
        nginx(upstream=urlsplit(app.base_url).netloc, poll_feed_port=port) as front,
    ):
        share_dir = Path(app.env["DANMAKU_VAR_DIR"]) / "prometheus"
        url = front.pull_url(ROOM)
        first = requests.get(url, timeout=REQUEST_TIMEOUT_SECONDS)
        assert first.status_code == 200, front.log_tail()
        deadline = time.monotonic() + RECEIVER_WAIT_SECONDS
        while receiving(app.base_url) != 1 and time.monotonic() < deadline:
            requests.get(url, timeout=REQUEST_TIMEOUT_SECONDS)
            time.sleep(0.2)
        assert receiving(app.base_url) == 1, app.log_tail()

        cursor = first.json()["cursor"]
        started = time.monotonic()
        statuses = pull_many(f"{url}?after={cursor}", PULLS)
        pulled_in = time.monotonic() - started

        # The highest the node's figures for the room went (each a sum over workers).
        viewers = polls = size = 0.0
        deadline = time.monotonic() + FIGURES_WAIT_SECONDS
        while time.monotonic() < deadline:
            rows = node_rows(share_dir)
            viewers = max(viewers, sum(row[_VIEWERS] for row in rows))
            polls = max(polls, sum(row[_POLLS] for row in rows))
            size = max(size, sum(row[_BYTES] for row in rows))
            time.sleep(0.1)
        misses = sum(f"/{ROOM}/danmaku?after={cursor} " in line for line in access_log.read_text().splitlines())

    assert pulled_in < 2.0
    assert statuses.get("HIT", 0) >= PULLS * 0.9, statuses
    assert misses <= 3
    # Every pull nginx answered is a viewer due back in one interval (>= 3 s):
    # the batch, the first pull and any that waited for the receiver.
    assert viewers >= PULLS, (viewers, statuses)
    # The batch lands in one or two readings, each over about a second.
    assert polls >= PULLS / 4, polls
    assert size >= polls * 100, (size, polls)
