"""The danmaku app's background sweeps, and which processes run them.

Registered when Django starts (``DanmakuConfig.ready``) and run by each
server process's jobs loop (``infra.jobs``), which starts with the process,
so an idle node runs them too. Both need Redis (``REDIS_URL``) and do
nothing without it:

- ``danmaku.republish_held_back`` (roles ``send`` and ``all``, every 2 s):
  comments and retractions the database accepted while Redis could not take
  them. Only nodes that accept sends and moderation actions write such rows.
- ``danmaku.mark_stream_publishes`` (roles ``send`` and ``all``, every
  second): records in one UPDATE that this process's sends reached Redis.
- ``danmaku.republish_room_settings`` (every role, every 2 s): room settings
  saved since the previous run, rooms this process's refresher found missing
  from Redis, and a rolling slice of the rooms it serves (pull nodes hold
  those).

The moderation app registers its own (``moderation.deadlines``).
"""

from __future__ import annotations

import logging

from django.db import DatabaseError

from danmaku import publishing, republish, runtime
from danmaku.store import StoreUnavailable, redis_store
from infra import jobs
from infra.ratelimitlog import RateLimitedLog

logger = logging.getLogger(__name__)
postponed_log = RateLimitedLog(logger, every_seconds=10)

# How often each process catches Redis up with the database.
SWEEP_INTERVAL_SECONDS = 2.0

_settings_sweep = republish.RoomSettingsSweep()


def republish_held_back() -> None:
    store = redis_store()
    if store is None:
        return
    try:
        republish.held_back(store)
    except (StoreUnavailable, DatabaseError) as exc:
        postponed_log.warning("republish sweep postponed: %s", exc)


def mark_stream_publishes() -> None:
    try:
        publishing.stream_marks.flush()
    except DatabaseError as exc:
        postponed_log.warning("published comments not marked yet: %s", exc)


def republish_room_settings() -> None:
    store = redis_store()
    if store is None:
        return
    refresher = runtime.current_refresher()
    asked = refresher.take_missing_from_store() if refresher is not None else set()
    active = refresher.active_room_ids() if refresher is not None else []
    try:
        _settings_sweep.run(store, asked=asked, active=active)
    except (StoreUnavailable, DatabaseError) as exc:
        postponed_log.warning("room settings republish postponed: %s", exc)


def register() -> None:
    jobs.register(
        "danmaku.republish_held_back",
        every_seconds=SWEEP_INTERVAL_SECONDS,
        run=republish_held_back,
        roles=("send", "all"),
    )
    jobs.register(
        "danmaku.mark_stream_publishes",
        every_seconds=publishing.STREAM_MARKS_SECONDS,
        run=mark_stream_publishes,
        roles=("send", "all"),
    )
    jobs.register(
        "danmaku.republish_room_settings",
        every_seconds=SWEEP_INTERVAL_SECONDS,
        run=republish_room_settings,
        roles=("pull", "send", "all"),
    )


def reset() -> None:
    """Forget what the settings sweep has done (tests)."""
    global _settings_sweep
    _settings_sweep = republish.RoomSettingsSweep()
