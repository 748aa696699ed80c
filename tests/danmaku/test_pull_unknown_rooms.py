"""Pulls for rooms a process does not know: what they cost and what they get.

A made-up slug costs a database lookup; a flood of them must cost a bounded
number per second (DANMAKU_UNKNOWN_ROOM_LOOKUPS_PER_SECOND) and leave the
rooms that exist pullable. A 404 may be cached for a few seconds (nginx
absorbs repeats); what the bound refuses is a 503 nobody caches.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from danmaku import runtime
from danmaku.models import Room
from danmaku.pull.cache import MISSING_TTL_SECONDS

URL = "/api/v1/rooms/{}/danmaku"
RATE = 5
FLOOD = 100
# Bound on the tests' own waiting loops.
WAIT_LIMIT_SECONDS = 10.0


@pytest.fixture(autouse=True)
def _slow_lookups(settings):
    settings.DANMAKU_UNKNOWN_ROOM_LOOKUPS_PER_SECOND = RATE


def pull(client, room: str):
    return client.get(URL.format(room))


def test_unknown_room_404_is_cacheable_for_a_few_seconds(client, room):
    response = pull(client, "nowhere")

    assert response.status_code == 404
    assert response.json() == {"detail": "room not found"}
    assert response["Cache-Control"] == "public, max-age=2"


def test_a_flood_of_unknown_rooms_costs_a_bounded_number_of_lookups(client, room):
    assert pull(client, "live").status_code == 200  # active in this process from now on
    started = time.monotonic()
    with CaptureQueriesContext(connection) as queries:
        answers = [pull(client, f"ghost-{n}") for n in range(FLOOD)]
        live = pull(client, "live")
    elapsed = time.monotonic() - started

    # The burst (one second's worth) and what the rate refilled meanwhile.
    bound = RATE + RATE * elapsed
    statuses = Counter(answer.status_code for answer in answers)
    assert len(queries) <= bound, f"{len(queries)} queries for {FLOOD} unknown rooms in {elapsed:.2f} s"
    assert set(statuses) == {404, 503}
    assert statuses[404] <= bound
    refused = next(answer for answer in answers if answer.status_code == 503)
    assert refused.json() == {"detail": "too many unknown rooms asked for at once; retry shortly"}
    assert refused["Retry-After"] == "1"
    assert refused["Cache-Control"] == "no-store"
    # A room already active answers throughout, without a query.
    assert live.status_code == 200


def test_a_room_not_active_yet_is_refused_for_a_moment_never_told_it_does_not_exist(client, room):
    for n in range(FLOOD):
        pull(client, f"ghost-{n}")
    statuses = []
    deadline = time.monotonic() + WAIT_LIMIT_SECONDS
    while not statuses or statuses[-1] != 200:
        assert time.monotonic() < deadline, statuses
        statuses.append(pull(client, "live").status_code)
        if statuses[-1] != 200:
            time.sleep(0.05)

    assert set(statuses) <= {200, 503}
    # Found rooms do not use the bound up: many first pulls in a row all activate.
    for n in range(3 * RATE):
        Room.objects.create(slug=f"real-{n}")
    assert {pull(client, f"real-{n}").status_code for n in range(3 * RATE)} == {200}


def test_a_room_created_just_after_a_miss_is_pullable_once_the_miss_is_forgotten(client, db, monkeypatch):
    assert pull(client, "soon").status_code == 404
    Room.objects.create(slug="soon")
    cache = runtime.pull_cache()
    now = cache.clock()

    # Still the remembered miss, without a lookup...
    monkeypatch.setattr(cache, "clock", lambda: now + MISSING_TTL_SECONDS - 0.1)
    assert pull(client, "soon").status_code == 404
    # ...and found at the first pull after it is forgotten.
    monkeypatch.setattr(cache, "clock", lambda: now + MISSING_TTL_SECONDS + 0.1)
    assert pull(client, "soon").status_code == 200
    assert MISSING_TTL_SECONDS <= 3
