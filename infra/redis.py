"""The one place that builds Redis clients.

Every client fails fast: short connect and read timeouts and no retries.
redis-py's defaults (5 s timeouts, retries with backoff, and no timeout at
all on a frozen server mid-command in some paths) would let a frozen Redis
hold a request for most of a minute; here it costs at most one timeout and
the caller takes its fallback.
"""

from __future__ import annotations

import threading
import time

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

_clients: dict[tuple[str, float], redis.Redis] = {}
_lock = threading.Lock()


def client_options(timeout_s: float) -> dict:
    return {
        "socket_connect_timeout": timeout_s,
        "socket_timeout": timeout_s,
        "retry": Retry(NoBackoff(), 0),
        "retry_on_timeout": False,
        "health_check_interval": 0,
        "socket_keepalive": True,
        "max_connections": settings.REDIS_MAX_CONNECTIONS,
    }


def make_redis(url: str, *, timeout_s: float | None = None) -> redis.Redis:
    """A new client for ``url`` with the fail-fast options."""
    timeout_s = settings.REDIS_TIMEOUT_MS / 1000 if timeout_s is None else timeout_s
    pool = redis.BlockingConnectionPool.from_url(url, timeout=timeout_s, **client_options(timeout_s))
    return redis.Redis(connection_pool=pool)


def get_redis(url: str | None = None, *, timeout_s: float | None = None) -> redis.Redis:
    """This process's shared client for ``url`` (default: REDIS_URL)."""
    url = url or settings.REDIS_URL
    if not url:
        raise RuntimeError("REDIS_URL is not configured")
    timeout_s = settings.REDIS_TIMEOUT_MS / 1000 if timeout_s is None else timeout_s
    key = (url, timeout_s)
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = make_redis(url, timeout_s=timeout_s)
    return client


def reset_clients() -> None:
    """Forget every client (tests; a forked child must not share sockets)."""
    with _lock:
        for client in _clients.values():
            client.connection_pool.disconnect()
        _clients.clear()


class Breaker:
    """After a Redis failure, skip Redis for a moment instead of waiting again.

    During an outage every call would otherwise pay the full timeout; with
    the breaker open, callers take their fallback at once, and one call per
    ``open_seconds`` tries Redis again.
    """

    def __init__(self, *, open_seconds: float = 1.0, clock=time.monotonic) -> None:
        self.open_seconds = open_seconds
        self._clock = clock
        self._open_until = 0.0

    def allows(self) -> bool:
        return self._clock() >= self._open_until

    def failed(self) -> None:
        self._open_until = self._clock() + self.open_seconds

    def succeeded(self) -> None:
        self._open_until = 0.0


breaker = Breaker()
