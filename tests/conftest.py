from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from danmaku import runtime
from danmaku.models import ApiToken, Room


@pytest.fixture(autouse=True)
def _fresh_runtime(settings):
    """Each test gets its own rings and no background refresher thread;
    tests drive ``refresh_once()`` themselves."""
    settings.DANMAKU_REFRESHER_AUTOSTART = False
    runtime.reset()
    yield
    runtime.reset()


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
