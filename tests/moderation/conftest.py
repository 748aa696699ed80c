from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from danmaku.models import ApiToken
from moderation import services
from moderation.selectors import MODERATORS_GROUP, PRODUCT_STAFF_GROUP


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
def matcher_cache(monkeypatch, clock):
    """Each test gets its own term matcher cache on a fake clock, so terms
    never leak between tests (or into the process-wide cache)."""
    cache = services.MatcherCache(clock=clock)
    monkeypatch.setattr(services, "matcher_cache", cache)
    return cache


def headers_for(role: str) -> dict[str, str]:
    """Bearer headers of a new user in ``role`` (one of the roles the moderation tests cross)."""
    if role == "anonymous":
        return {}
    users = get_user_model().objects
    if role == "superuser":
        user = users.create_superuser(f"as-{role}", password="pw")
    else:
        user = users.create_user(f"as-{role}", password="pw", is_staff=role != "viewer")
        group = {"moderator": MODERATORS_GROUP, "product_staff": PRODUCT_STAFF_GROUP}.get(role)
        if group:
            user.groups.add(Group.objects.get(name=group))
    _, raw = ApiToken.issue(user)
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
