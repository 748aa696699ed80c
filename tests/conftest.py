from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from danmaku import changes, publishing, runtime, sweeps
from danmaku.models import ApiToken, Room


@pytest.fixture(autouse=True)
def _fresh_runtime(settings):
    """Each test gets its own rings and no background refresher thread;
    tests drive ``refresh_once()`` themselves. No jobs loop runs either
    (nothing here calls ``danmaku_site.wsgi.serve``): tests run the jobs."""
    from danmaku.replaycache import replay_cache
    from moderation.services import matcher_cache

    settings.DANMAKU_REFRESHER_AUTOSTART = False
    # Broadcast ids restart in every test database.
    replay_cache.clear()
    runtime.reset()
    sweeps.reset()
    matcher_cache.invalidate()
    # Each test's rows roll back: what a process cached of them must go too.
    changes.feed.reset()
    publishing.stream_marks.discard()
    yield
    runtime.reset()
    changes.feed.reset()
    sweeps.reset()
    matcher_cache.invalidate()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Users made in this process get an MD5 hash: the shipped PBKDF2 takes
    ~0.25 s per user here, paid again in every test that makes one. What a
    hash proves is the same either way; servers the tests start (their own
    processes) keep the shipped hashers."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def room(db):
    return Room.objects.create(slug="live", title="Live", user_send_interval_ms=0)


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user("viewer", password="pw-for-tests-only")


@pytest.fixture
def token(user):
    _, raw = ApiToken.issue(user)
    return raw


@pytest.fixture
def auth_headers(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.fixture
def redis_mode(settings):
    """Production mode against the shared Redis, with a key prefix of this
    test's own (ids restart in every test database), cleaned up after."""
    from uuid import uuid4

    from harness.services import require_redis
    from infra.redis import breaker, get_redis, reset_clients

    settings.REDIS_URL = require_redis()
    settings.DANMAKU_REDIS_PREFIX = prefix = f"test-{uuid4().hex}"
    runtime.reset()
    breaker.succeeded()
    client = get_redis()
    yield client
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    runtime.reset()
    reset_clients()
    breaker.succeeded()


@pytest.fixture
def private_redis_mode(settings):
    """Production mode against a redis-server of this test's own, to stop or freeze."""
    from harness.services import private_redis
    from infra.redis import breaker, reset_clients

    with private_redis() as server:
        settings.REDIS_URL = server.url
        settings.DANMAKU_REDIS_PREFIX = "dm"
        runtime.reset()
        reset_clients()
        breaker.succeeded()
        yield server
        runtime.reset()
        reset_clients()
        breaker.succeeded()
