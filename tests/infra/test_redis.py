"""The one Redis client factory fails fast; django-redis is configured to."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import redis

from harness.local import BASE_DIR
from harness.services import private_redis
from infra.redis import Breaker, get_redis, make_redis, reset_clients


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
