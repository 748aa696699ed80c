"""Behind deploy/nginx.conf the node counts what nginx served, not the few
misses that reach it: a real nginx sends its pull feed to a real gunicorn
(two workers, DANMAKU_POLL_FEED_PORT), and the node's figures (what the
controller decides on and /metrics shows) are the crowd's pulls."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from harness import local
from harness.nginx import NginxServer, nginx, require_nginx
from harness.procnet import children, held_by

pytestmark = pytest.mark.slow

ROOM = "feed"
# A room of its own for the takeover test: no viewers from the other test.
TAKEOVER_ROOM = "feed-takeover"
PULLS = 200
# Pulls through nginx, over a few keep-alive connections (mostly cache hits).
CONNECTIONS = 4
REQUEST_TIMEOUT_SECONDS = 10
# A receiver binds on a refresher tick (each second) once a worker served a pull.
RECEIVER_WAIT_SECONDS = 10
# The figures are shared once a second; a viewer promised a return in >= 3 s
# stays counted that long.
FIGURES_WAIT_SECONDS = 4


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def metric(base_url: str, name: str) -> float:
    """One sample of the app's /metrics (0 when absent)."""
    text = requests.get(f"{base_url}/metrics", timeout=REQUEST_TIMEOUT_SECONDS).text
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def receiving(base_url: str) -> float:
    return metric(base_url, "danmaku_poll_feed_receiving")


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


def udp_inodes(port: int) -> set[str]:
    """Inodes of the UDP sockets bound to ``port`` (/proc/net/udp)."""
    inodes = set()
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        parts = line.split()
        if int(parts[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(parts[9])
    return inodes


@dataclass
class Stack:
    app: local.LocalServer
    front: NginxServer
    port: int
    access_log: Path

    def receiver(self) -> int | None:
        """The gunicorn worker holding the feed's port."""
        inodes = udp_inodes(self.port)
        return next((pid for pid in children(self.app.process.pid) if held_by(pid, inodes)), None)

    def wait_for_receiver(self, room: str, *, other_than: int | None = None) -> int:
        """Pull ``room`` straight from the app (starting workers' refreshers)
        until a worker (not ``other_than``) receives the feed."""
        deadline = time.monotonic() + RECEIVER_WAIT_SECONDS
        while time.monotonic() < deadline:
            pid = self.receiver()
            if pid is not None and pid != other_than and receiving(self.app.base_url) == 1:
                return pid
            with contextlib.suppress(requests.RequestException):
                requests.get(self.app.danmaku_url(room), timeout=REQUEST_TIMEOUT_SECONDS)
            time.sleep(0.2)
        raise AssertionError(f"no worker took up the feed:\n{self.app.log_tail()}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    require_nginx()
    port = free_udp_port()
    access_log = tmp_path_factory.mktemp("pollfeed") / "gunicorn-access.log"
    with local.gunicorn(
        room=ROOM,
        workers=2,
        extra_env={"DANMAKU_POLL_FEED_PORT": str(port), "GUNICORN_ACCESS_LOG": str(access_log)},
    ) as app:
        app.manage("shell", "-c", f"from danmaku.rooms import room_create\nroom_create(slug={TAKEOVER_ROOM!r})")
        with nginx(upstream=urlsplit(app.base_url).netloc, poll_feed_port=port) as front:
            yield Stack(app, front, port, access_log)


def highest_figures(base_url: str, room: str) -> tuple[float, float, float]:
    """The highest /metrics put the node's viewers, polls and bytes per
    second of ``room`` (sums over its workers) within FIGURES_WAIT_SECONDS."""
    viewers = polls = size = 0.0
    deadline = time.monotonic() + FIGURES_WAIT_SECONDS
    while time.monotonic() < deadline:
        label = f'{{room="{room}"}}'
        viewers = max(viewers, metric(base_url, f"danmaku_room_viewers{label}"))
        polls = max(polls, metric(base_url, f"danmaku_room_polls_per_second{label}"))
        size = max(size, metric(base_url, f"danmaku_room_egress_bytes_per_second{label}"))
        time.sleep(0.2)
    return viewers, polls, size


def test_node_figures_count_the_pulls_nginx_served_not_only_the_misses(stack):
    url = stack.front.pull_url(ROOM)
    first = requests.get(url, timeout=REQUEST_TIMEOUT_SECONDS)
    assert first.status_code == 200, stack.front.log_tail()
    stack.wait_for_receiver(ROOM)

    cursor = first.json()["cursor"]
    started = time.monotonic()
    statuses = pull_many(f"{url}?after={cursor}", PULLS)
    pulled_in = time.monotonic() - started
    viewers, polls, size = highest_figures(stack.app.base_url, ROOM)
    lines = stack.access_log.read_text().splitlines()
    misses = sum(f"/{ROOM}/danmaku?after={cursor} " in line for line in lines)

    assert pulled_in < 2.0
    assert statuses.get("HIT", 0) >= PULLS * 0.9, statuses
    assert misses <= 3
    # Every pull nginx answered is a viewer due back in one interval (>= 3 s):
    # the batch, the first pull and any that waited for the receiver.
    assert viewers >= PULLS, (viewers, statuses)
    # The batch lands in one or two readings, each over about a second.
    assert polls >= PULLS / 4, polls
    assert size >= polls * 100, (size, polls)


def test_a_killed_receiver_is_replaced_and_counting_goes_on(stack):
    killed = stack.wait_for_receiver(TAKEOVER_ROOM)
    os.kill(killed, signal.SIGKILL)
    stack.wait_for_receiver(TAKEOVER_ROOM, other_than=killed)

    url = stack.front.pull_url(TAKEOVER_ROOM)
    cursor = requests.get(url, timeout=REQUEST_TIMEOUT_SECONDS).json()["cursor"]
    statuses = pull_many(f"{url}?after={cursor}", PULLS // 2)
    viewers, _, _ = highest_figures(stack.app.base_url, TAKEOVER_ROOM)

    assert statuses.get("HIT", 0) >= PULLS // 2 * 0.9, statuses
    assert viewers >= PULLS // 2, viewers
