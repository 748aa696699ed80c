"""Per-process wiring of the pull path: the pull cache, its refresher, and
the WSGI fast path in front of them.

The cache and the refresher are built lazily, on a process's first pull
(after gunicorn forked), from settings; building reads the store's epoch.
Send-only processes never build them.
"""

from __future__ import annotations

import threading

from django.conf import settings

from danmaku.delivery import Delivery
from danmaku.pull.cache import PullCache, PullConfig
from danmaku.pull.control import Controller
from danmaku.pull.fastpath import Process, PullFastPath, WSGIApp
from danmaku.refresher import Refresher
from danmaku.store import database_store, redis_store, reset_stores
from infra.nodeshare import node_share

_lock = threading.Lock()
_cache: PullCache | None = None
_refresher: Refresher | None = None


def pull_cache() -> PullCache:
    if _cache is None:
        _build()
    return _cache


def refresher() -> Refresher:
    if _refresher is None:
        _build()
    return _refresher


def built_pull_cache() -> PullCache | None:
    """This process's pull cache if it was built, without building it (that
    reads the store's epoch: a network call)."""
    return _cache


def current_refresher() -> Refresher | None:
    """This process's refresher if it was built, without building it."""
    return _refresher


def ensure_refresher() -> None:
    if settings.DANMAKU_REFRESHER_AUTOSTART:
        refresher().ensure_started()


# What the fast path asks of this process.
PROCESS = Process(pull_cache=pull_cache, built_pull_cache=built_pull_cache, refresher=refresher)


def wrap_fast_path(app: WSGIApp) -> WSGIApp:
    """``app`` behind the pull fast path when this process serves pulls and
    DANMAKU_PULL_FAST_PATH is on; ``app`` itself otherwise."""
    if settings.DANMAKU_PULL_FAST_PATH and settings.DANMAKU_ROLE in ("all", "pull"):
        return PullFastPath(app, PROCESS)
    return app


def _build() -> None:
    global _cache, _refresher
    with _lock:
        if _cache is not None:
            return
        store = redis_store() or database_store()
        cache = PullCache(
            PullConfig(
                epoch=store.epoch,
                join_seconds=settings.DANMAKU_JOIN_SECONDS,
                window_seconds=settings.DANMAKU_WINDOW_SECONDS,
                degraded_multiplier=settings.DANMAKU_DEGRADED_MULTIPLIER,
                max_next_ms=settings.DANMAKU_MAX_NEXT_MS,
                max_age_seconds=settings.DANMAKU_PULL_MAX_AGE_SECONDS,
                unknown_room_lookups_per_second=settings.DANMAKU_UNKNOWN_ROOM_LOOKUPS_PER_SECOND,
            )
        )
        refresher = Refresher(
            cache=cache,
            store=store,
            fallback=database_store() if store is not database_store() else None,
            seal_lag_ms=settings.DANMAKU_SEAL_LAG_MS,
            overlap_ms=settings.DANMAKU_READ_OVERLAP_MS,
            interval_ms=settings.DANMAKU_REFRESH_INTERVAL_MS,
        )
        cache.set_activator(refresher.activate)
        controller = Controller(
            poll_budget=settings.DANMAKU_PULL_BUDGET_PER_SECOND or None,
            egress_budget=settings.DANMAKU_EGRESS_BUDGET_BYTES_PER_SECOND or None,
            max_multiplier=settings.DANMAKU_MAX_POLL_MULTIPLIER,
        )
        refresher.delivery = Delivery(cache=cache, controller=controller, share=node_share(), cluster=redis_store())
        _refresher = refresher
        _cache = cache


def reset() -> None:
    """Drop this process's rings and stop its refresher (tests use this)."""
    global _cache, _refresher
    with _lock:
        if _refresher is not None:
            _refresher.stop()
        _cache = None
        _refresher = None
        reset_stores()
