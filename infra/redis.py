"""The one place that builds Redis clients.

Every client fails fast: short connect and read timeouts and no retries.
redis-py's defaults (5 s timeouts, retries with backoff, and no timeout at
all on a frozen server mid-command in some paths) would let a frozen Redis
hold a request for most of a minute; here it costs at most one timeout and
the caller takes its fallback.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry

_clients: dict[tuple[str, float], redis.Redis] = {}
_lock = threading.Lock()
# Per thread: (generation of _clients, {shared client: this thread's}) for thread_redis.
_local = threading.local()
_generation = 0


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


def thread_redis(url: str | None = None, *, timeout_s: float | None = None) -> redis.Redis:
    """This thread's own connection to ``url``, taken once from the shared
    client's pool and kept for the thread's life: a hot path's command then
    skips the pool's checkout and return (in redis-py 8, with its per-call
    metrics hooks, a sixth of a refused send's CPU). Same timeouts, same
    failures: a broken connection is dropped and the next command connects
    again. Raises as a command would when no connection can be made."""
    shared = get_redis(url, timeout_s=timeout_s)
    mine = getattr(_local, "clients", None)
    if mine is None or mine[0] != _generation:
        mine = _local.clients = (_generation, {})
    client = mine[1].get(shared)
    if client is None:
        client = mine[1][shared] = redis.Redis(connection_pool=shared.connection_pool, single_connection_client=True)
    return client


def evalsha(client: redis.Redis, script: Script, keys: Sequence, args: Sequence):
    """Run ``script`` on ``client``'s one connection (a ``thread_redis``
    client): the command written and its reply read straight on the
    connection, as redis-py's ``execute_command`` does under its retry,
    metrics and lock layers (a fifth of a refused send's CPU; this client
    retries nothing and has no one to share the connection with). The
    connection drops itself on any failure but Redis's own error reply, as
    in redis-py. Loads the script on NOSCRIPT (a new or restarted server).
    A pooled client runs it through redis-py's ``Script``."""
    connection = client.connection
    if connection is None:
        return script(keys=keys, args=args, client=client)
    for attempt in range(2):
        try:
            connection.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
            return connection.read_response()
        except redis.exceptions.NoScriptError:
            if attempt:
                raise
            connection.send_command("SCRIPT", "LOAD", script.script)
            connection.read_response()
    raise AssertionError("unreachable")


def _forget_thread_clients() -> None:
    # A forked child must not use its parent's connections (the forking
    # thread's carry over); every other client checks its pool's pid.
    global _generation
    _generation += 1


os.register_at_fork(after_in_child=_forget_thread_clients)


def reset_clients() -> None:
    """Forget every client (tests; a forked child must not share sockets)."""
    global _generation
    with _lock:
        _generation += 1
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
