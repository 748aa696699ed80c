from __future__ import annotations

import pytest

from moderation import services


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
