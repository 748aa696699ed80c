"""The one Redis client factory fails fast; django-redis is configured to."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
import redis

from harness.local import BASE_DIR
from harness.services import private_redis
from infra.redis import Breaker, evalsha, get_redis, make_redis, reset_clients, thread_redis


@pytest.fixture(autouse=True)
def _fresh_clients():
    reset_clients()
    yield
    reset_clients()


def test_clients_time_out_quickly_and_never_retry(settings):
    settings.REDIS_TIMEOUT_MS = 250
    client = make_redis("redis://127.0.0.1:6379/0")
    kwargs = client.connection_pool.connection_kwargs

    assert kwargs["socket_connect_timeout"] == 0.25
    assert kwargs["socket_timeout"] == 0.25
    assert kwargs["retry_on_timeout"] is False
    assert kwargs["retry"].get_retries() == 0
    # Waiting for a free connection is bounded too.
    assert client.connection_pool.timeout == 0.25


def test_a_frozen_redis_costs_one_timeout_not_a_minute(settings):
    settings.REDIS_TIMEOUT_MS = 250
    with private_redis() as server:
        client = get_redis(server.url)
        assert client.ping()
        server.freeze()
        try:
            started = time.monotonic()
            with pytest.raises(redis.TimeoutError):
                client.get("anything")
            elapsed = time.monotonic() - started
        finally:
            server.thaw()

    assert elapsed < 0.6


def test_a_stopped_redis_fails_at_once(settings):
    with private_redis() as server:
        url = server.url
        get_redis(url).ping()
        server.stop()
        started = time.monotonic()
        with pytest.raises(redis.ConnectionError):
            get_redis(url).ping()

    assert time.monotonic() - started < 0.3


def test_each_thread_keeps_its_own_connection_and_gets_a_new_one_after_a_failure(settings):
    settings.REDIS_TIMEOUT_MS = 250
    with private_redis() as server:
        mine = thread_redis(server.url)
        mine.set("k", "v")
        others = []
        worker = threading.Thread(target=lambda: others.append(thread_redis(server.url)))
        worker.start()
        worker.join(5)

        # The same client (one connection, no pool checkout) on every call of
        # this thread; another thread's is its own, from the same pool.
        assert thread_redis(server.url) is mine
        assert others[0] is not mine
        assert others[0].connection_pool is mine.connection_pool is get_redis(server.url).connection_pool
        assert others[0].get("k") == b"v"

        # A restart breaks the kept connection: one command fails at once,
        # the next connects again.
        server.stop()
        started = time.monotonic()
        with pytest.raises(redis.ConnectionError):
            mine.get("k")
        assert time.monotonic() - started < 0.3
        server.start()
        assert mine.ping()

        # Clients made before reset_clients are not handed out after it.
        reset_clients()
        assert thread_redis(server.url) is not mine


ECHO_LUA = "return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}"


def test_evalsha_runs_a_script_on_the_threads_connection_through_restarts_and_freezes(settings):
    settings.REDIS_TIMEOUT_MS = 250
    with private_redis() as server:
        mine = thread_redis(server.url)
        script = get_redis(server.url).register_script(ECHO_LUA)
        # A new server knows no script: loaded on NOSCRIPT, then run.
        assert evalsha(mine, script, ["n"], ["a"]) == [b"n", b"a", 1]
        assert evalsha(mine, script, ["n"], [2]) == [b"n", b"2", 2]
        # Redis's own error reply leaves the connection usable.
        with pytest.raises(redis.ResponseError):
            evalsha(mine, get_redis(server.url).register_script("return redis.call('NOPE')"), [], [])
        assert evalsha(mine, script, ["n"], ["b"]) == [b"n", b"b", 3]

        # A frozen server: one timeout; the connection is dropped, not left
        # holding the late reply for the next command to read.
        server.freeze()
        try:
            started = time.monotonic()
            with pytest.raises(redis.TimeoutError):
                evalsha(mine, script, ["n"], ["c"])
            assert time.monotonic() - started < 0.6
        finally:
            server.thaw()
        assert evalsha(mine, script, ["n"], ["d"]) == [b"n", b"d", 5]

        # A restart (it keeps nothing: no key, no script): one failure, then
        # a new connection, the script loaded again.
        server.stop()
        with pytest.raises(redis.ConnectionError):
            evalsha(mine, script, ["n"], ["e"])
        server.start()
        assert evalsha(mine, script, ["n"], ["f"]) == [b"n", b"f", 1]

        # A pooled client runs it through redis-py.
        assert evalsha(get_redis(server.url), script, ["n"], ["g"]) == [b"n", b"g", 2]


def test_breaker_opens_after_a_failure_and_closes_after_its_interval():
    now = [100.0]
    breaker = Breaker(open_seconds=1.0, clock=lambda: now[0])
    assert breaker.allows()

    breaker.failed()
    assert not breaker.allows()
    now[0] += 1.01
    assert breaker.allows()
    breaker.failed()
    breaker.succeeded()
    assert breaker.allows()


def _settings_with(env: dict[str, str]) -> dict:
    code = (
        "import json; from django.conf import settings; import django; django.setup(); "
        "from django.core.cache import cache; "
        "pool = cache.client.get_client().connection_pool if hasattr(cache, 'client') else None; "
        "retries = pool.connection_kwargs['retry'].get_retries() if pool else None; "
        "print(json.dumps({'CACHES': settings.CACHES, 'retries': retries}, default=str))"
    )
    environment = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    environment.update(DJANGO_SETTINGS_MODULE="danmaku_site.settings", **env)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=BASE_DIR, env=environment, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_django_cache_is_django_redis_with_timeouts_when_redis_is_configured():
    loaded = _settings_with({"REDIS_URL": "redis://127.0.0.1:6379/3", "REDIS_TIMEOUT_MS": "250"})
    default = loaded["CACHES"]["default"]
    assert loaded["retries"] == 0

    assert default["BACKEND"] == "django_redis.cache.RedisCache"
    assert default["LOCATION"] == "redis://127.0.0.1:6379/3"
    assert default["OPTIONS"]["SOCKET_CONNECT_TIMEOUT"] == 0.25
    assert default["OPTIONS"]["SOCKET_TIMEOUT"] == 0.25
    assert default["OPTIONS"]["IGNORE_EXCEPTIONS"] is True
    assert default["OPTIONS"]["CONNECTION_POOL_KWARGS"]["retry_on_timeout"] is False


def test_embedded_default_caches_in_process():
    caches = _settings_with({})["CACHES"]

    assert caches["default"]["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"
