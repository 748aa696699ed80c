"""Prometheus metrics, defined once and imported where they are counted.

Served at /metrics. Under gunicorn with PROMETHEUS_MULTIPROC_DIR set, every
worker writes its values there and /metrics adds them up.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PULLS = Counter("danmaku_pulls_total", "Pull requests answered, by HTTP status.", ["status"])
SENDS = Counter(
    "danmaku_sends_total",
    "Send attempts by outcome: accepted, discarded (room busy), rate_limited, invalid, refused, unavailable.",
    ["outcome"],
)
FALLBACKS = Counter(
    "danmaku_fallbacks_total",
    "Times a fallback was taken because a dependency failed, by what was unavailable and where.",
    ["dependency", "where"],
)
REFRESH_ERRORS = Counter("danmaku_refresher_errors_total", "Refresher ticks that failed.")
REFRESH_SECONDS = Histogram(
    "danmaku_refresher_tick_seconds",
    "Time one refresher tick took.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
REFRESH_LAG = Gauge(
    "danmaku_refresher_lag_seconds",
    "Seconds between now and the newest sealed second's end, per process.",
    # livemax: a dead worker's last value leaves the maximum with it.
    multiprocess_mode="livemax",
)
RING_ROOMS = Gauge("danmaku_ring_rooms", "Rooms held in this process's rings.", multiprocess_mode="livesum")
RING_ITEMS = Gauge("danmaku_ring_items", "Danmaku held in this process's rings.", multiprocess_mode="livesum")
REPLAY_BUILDS = Histogram(
    "danmaku_replay_segment_build_seconds",
    "Time building one replay segment (or another player's format of a broadcast) took, by what was built.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5),
)
REPUBLISHED = Counter("danmaku_republished_total", "Danmaku published to the store after it came back.")
JOB_ERRORS = Counter("danmaku_job_errors_total", "Background job runs that raised, by job.", ["job"])
POLL_FEED_LINES = Counter(
    "danmaku_poll_feed_lines_total",
    "Lines of nginx's pull feed read (danmaku.pollfeed), by outcome: counted, malformed, "
    "unplaced (a room this process could not activate).",
    ["outcome"],
)
POLL_FEED_RECEIVING = Gauge(
    "danmaku_poll_feed_receiving",
    "Processes receiving nginx's pull feed: 1 on a node behind nginx with DANMAKU_POLL_FEED_PORT set "
    "(0: nginx's pulls are not counted).",
    multiprocess_mode="livesum",
)
