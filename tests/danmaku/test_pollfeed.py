"""nginx's pull feed (danmaku.pollfeed): its lines, and what one receiver counts."""

from __future__ import annotations

import socket
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from danmaku.pollfeed import PollFeed, parse_line
from danmaku.pull.cache import SLUG_RE, PullCache, PullConfig, RoomControl, RoomSettings

NOW = 1000.0
INTERVAL_MS = 3000
RECEIVE_WAIT_SECONDS = 5


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        (b"<190>Dec  6 13:48:47 danmaku: /api/v1/rooms/live/danmaku 200 412", ("live", 412)),
        (b"<190>Dec 16 03:08:07 danmaku: /api/v1/rooms/Live_2-b/danmaku 304 170\n", ("Live_2-b", 170)),
        # Whatever comes before the last three fields is the syslog header's.
        (b"/api/v1/rooms/live/danmaku 200 0", ("live", 0)),
        (b"danmaku: /api/v1/rooms/live/danmaku 404 120", None),
        (b"danmaku: /api/v1/rooms/live/danmaku 200 -5", None),
        (b"danmaku: /api/v1/rooms/live/danmaku 200 1234567890", None),
        (b"danmaku: /api/v1/rooms/live/danmaku 200", None),
        (b"danmaku: /api/v1/rooms/l\xc3\xa9/danmaku 200 10", None),
        (b"danmaku: /api/v1/rooms/" + b"a" * 51 + b"/danmaku 200 10", None),
        (b"danmaku: /api/v1/rooms/live/danmaku/x 200 10", None),
        (b"danmaku: x/api/v1/rooms/live/danmaku 200 10", None),
        (b"", None),
        (b"\x00\xff garbage", None),
    ],
)
def test_parse_line(line, parsed):
    assert parse_line(line) == parsed


@given(st.binary(max_size=300))
def test_parse_line_never_raises_and_yields_only_slugs_and_sizes(data):
    parsed = parse_line(data)
    if parsed is not None:
        slug, size = parsed
        assert SLUG_RE.fullmatch(slug)
        assert 0 <= size < 10**9


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def cache() -> PullCache:
    cache = PullCache(PullConfig(meter_pulls=False))
    cache.publish(cache.install(RoomSettings(room_id=1, slug="live", poll_interval_ms=INTERVAL_MS)))

    def activate(slug: str):
        if slug != "other":
            return None
        entry = cache.install(RoomSettings(room_id=2, slug=slug, poll_interval_ms=INTERVAL_MS))
        cache.publish(entry)
        return entry

    cache.set_activator(activate)
    return cache


@pytest.fixture
def feed(cache):
    feed = PollFeed(cache=cache, port=free_udp_port(), clock=lambda: NOW)
    yield feed
    feed.stop()


def lines(outcome: str) -> float:
    return REGISTRY.get_sample_value("danmaku_poll_feed_lines_total", {"outcome": outcome}) or 0.0


def send_and_receive(feed: PollFeed, datagrams: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for datagram in datagrams:
            sender.sendto(datagram, ("127.0.0.1", feed.port))
    read = 0
    deadline = time.monotonic() + RECEIVE_WAIT_SECONDS
    while read < len(datagrams) and time.monotonic() < deadline:
        read += feed.receive_once()
    assert read == len(datagrams)


# Activating a room closes the thread's old database connections afterwards,
# as a request would: a test that ran before may have left one open.
@pytest.mark.django_db
def test_receiver_counts_each_pull_into_its_rooms_meter_activating_rooms_it_lacks(feed, cache):
    before = {outcome: lines(outcome) for outcome in ("counted", "malformed", "unplaced")}
    assert feed.bind()

    send_and_receive(
        feed,
        [
            b"<190>Dec  6 13:48:47 danmaku: /api/v1/rooms/live/danmaku 200 400",
            b"<190>Dec  6 13:48:47 danmaku: /api/v1/rooms/live/danmaku 304 150",
            b"<190>Dec  6 13:48:47 danmaku: /api/v1/rooms/other/danmaku 200 300",
            b"<190>Dec  6 13:48:47 danmaku: /api/v1/rooms/ghost/danmaku 200 300",
            b"not a line",
        ],
    )

    live = cache.rooms["live"].meter.take(NOW)
    other = cache.rooms["other"].meter.take(NOW)
    assert (live.polls, live.bytes, live.viewers) == (2, 550, 2)
    assert (other.polls, other.bytes, other.viewers) == (1, 300, 1)
    assert "ghost" not in cache.rooms
    assert {outcome: lines(outcome) - before[outcome] for outcome in before} == {
        "counted": 3,
        "malformed": 1,
        "unplaced": 1,
    }


def test_viewers_are_due_back_after_the_rooms_interval_stretched_by_its_control(feed, cache):
    entry = cache.rooms["live"]
    entry.control = RoomControl(multiplier=2.0)
    assert feed.bind()

    send_and_receive(feed, [b"danmaku: /api/v1/rooms/live/danmaku 200 400"])

    # Due back after 6 s: still a viewer just before, gone just after.
    assert entry.meter.take(NOW + 5.9).viewers == 1
    assert entry.meter.take(NOW + 6.3).viewers == 0


def test_only_one_process_receives_and_another_takes_over_when_it_stops(feed, cache):
    sibling = PollFeed(cache=cache, port=feed.port)
    try:
        assert feed.bind()
        assert not sibling.bind()
        feed.stop()
        assert sibling.bind()
        assert sibling.receiving
    finally:
        sibling.stop()


def test_pulls_served_are_not_metered_while_the_feed_counts(cache):
    answer = cache.pull("live", None)
    assert answer.status == 200
    assert answer.meter is None
