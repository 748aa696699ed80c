"""What one send costs the database and Redis, through the API, with warm caches.

The caches are trusted while the change channel was read within its lease;
servers read it in a background job, which the tests do not run, so each
test reads it itself (``changes.feed.poll()``) where a warm cache matters.
The full moderation check is started through the hook; in production it is
a buffer flushed to a worker, so here it is only recorded.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter

import pytest
import redis
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from danmaku import changes, hooks
from danmaku.models import ApiToken, Danmaku
from moderation.models import Sanction

URL = "/api/v1/rooms/live/danmaku"


@pytest.fixture
def reviewed():
    """The full check's hook, recording instead of running inline (eager Celery)."""
    ids: list[int] = []
    installed = hooks.moderation()
    hooks.install(dataclasses.replace(installed, review=lambda danmaku_id, **_: ids.append(danmaku_id)))
    yield ids
    hooks.install(installed)


@pytest.fixture
def round_trips(monkeypatch):
    """Counts requests written to Redis (a pipeline is one), by the real client."""
    counted = {"n": 0}
    original = redis.connection.AbstractConnection.send_packed_command

    def send_packed_command(self, command, check_health=True):
        counted["n"] += 1
        return original(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", send_packed_command)
    return counted


def send(client, headers, text, **fields):
    return client.post(URL, {"text": text, **fields}, content_type="application/json", **headers)


def warm(client, headers):
    """The channel read, one accepted send (caches filled, scripts loaded), read again."""
    changes.feed.poll()
    assert send(client, headers, "warm-up").status_code == 201
    changes.feed.poll()


def test_accepted_bearer_send_with_warm_caches_is_one_insert(redis_mode, client, room, auth_headers, reviewed):
    warm(client, auth_headers)

    with CaptureQueriesContext(connection) as queries:
        response = send(client, auth_headers, "one statement", client_id="c-1")

    assert response.status_code == 201
    statements = [query["sql"] for query in queries.captured_queries]
    assert len(statements) == 1, statements
    assert statements[0].startswith("INSERT INTO")
    assert "ON CONFLICT DO NOTHING" in statements[0]
    assert reviewed[-1] == response.json()["id"]


def test_accepted_send_costs_two_redis_round_trips(redis_mode, client, room, auth_headers, reviewed, round_trips):
    warm(client, auth_headers)
    before = round_trips["n"]

    assert send(client, auth_headers, "two round trips", client_id="c-2").status_code == 201

    # The limits script; then the publish with the copy's answer, pipelined.
    assert round_trips["n"] - before == 2


def test_retry_with_a_known_client_id_is_answered_from_redis_without_a_query_or_a_429(
    redis_mode, client, room, auth_headers, reviewed, round_trips
):
    room.user_send_interval_ms = 60_000
    room.save()
    changes.feed.poll()
    first = send(client, auth_headers, "only once", client_id="retry-1")
    assert first.status_code == 201
    changes.feed.poll()
    before = round_trips["n"]

    with CaptureQueriesContext(connection) as queries:
        again = send(client, auth_headers, "only once", client_id="retry-1")

    assert again.status_code == 201
    assert again.json() == first.json()
    assert queries.captured_queries == []
    assert round_trips["n"] - before == 1
    assert Danmaku.objects.filter(client_id="retry-1").count() == 1
    # A new send is still limited: the retry took nothing and changed nothing.
    assert send(client, auth_headers, "another", client_id="retry-2").status_code == 429


@pytest.mark.parametrize(
    ("case", "status"),
    [("slow_mode", 429), ("room_cap", 202), ("banned", 403), ("bad_input", 400), ("too_long", 400), ("closed", 403)],
)
def test_rejections_do_no_database_work(redis_mode, client, room, user, auth_headers, reviewed, case, status):
    room.user_send_interval_ms = 60_000 if case == "slow_mode" else 0
    room.room_send_cap_per_second = 1 if case == "room_cap" else 100
    room.is_open = case != "closed"
    room.save()
    if case == "banned":
        Sanction.objects.create(user=user, room=room, kind=Sanction.Kind.BAN, reason="test")
    body = {"text": "hello"}
    if case == "too_long":
        body = {"text": "x" * (room.max_text_length + 1)}
    if case == "bad_input":
        body = {"text": "hello", "color": "red"}
    changes.feed.poll()
    # The room's one place a second: a pair that straddles a second tries again.
    for _ in range(3):
        # The first takes the slow-mode slot or the room's place, or fills the caches.
        primed = client.post(URL, body, content_type="application/json", **auth_headers)
        assert primed.status_code == (201 if case in ("slow_mode", "room_cap") else status)
        changes.feed.poll()
        with CaptureQueriesContext(connection) as queries:
            response = client.post(URL, body, content_type="application/json", **auth_headers)
        if response.status_code != 201:
            break

    assert response.status_code == status, response.content
    assert queries.captured_queries == []


def test_a_ban_made_elsewhere_reaches_this_process_within_the_lease(redis_mode, client, room, user, auth_headers):
    warm(client, auth_headers)
    # Another process bans: its row commits, this process's callbacks never run.
    Sanction.objects.create(user=user, room=None, kind=Sanction.Kind.BAN, reason="elsewhere")

    changes.feed.poll()  # the background job's next read

    response = send(client, auth_headers, "after the ban")
    assert response.status_code == 403
    assert response.json()["detail"] == "banned"


def test_a_revoked_token_and_a_deactivated_user_stop_at_the_next_read(redis_mode, client, room, user, auth_headers):
    warm(client, auth_headers)
    token = ApiToken.objects.get(user=user)
    token.revoked = True
    token.save()
    assert send(client, auth_headers, "cached").status_code == 201  # not read yet

    changes.feed.poll()

    assert send(client, auth_headers, "revoked").status_code == 401
    _, raw = ApiToken.issue(user)
    fresh = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    assert send(client, fresh, "new token").status_code == 201
    user.is_active = False
    user.save()
    changes.feed.poll()
    assert send(client, fresh, "deactivated").status_code == 401


def test_without_a_recent_read_every_lookup_goes_to_the_database(redis_mode, client, room, auth_headers, reviewed):
    warm(client, auth_headers)
    changes.feed.reset()  # as if the channel had not been read for the lease

    with CaptureQueriesContext(connection) as queries:
        assert send(client, auth_headers, "untrusted caches").status_code == 201

    assert len(queries.captured_queries) > 1


def test_the_room_cap_holds_for_the_seconds_comments_are_stored_and_shown_in(redis_mode, client, room, reviewed):
    room.room_send_cap_per_second = 3
    room.save()
    changes.feed.poll()
    headers = []
    for n in range(8):
        user = get_user_model().objects.create_user(f"capped-{n}")
        headers.append({"HTTP_AUTHORIZATION": f"Bearer {ApiToken.issue(user)[1]}"})

    accepted = []
    for round_ in range(6):  # about 1.5 s: the cap's seconds turn over in it
        for n, header in enumerate(headers):
            response = send(client, header, f"round {round_} from {n}")
            if response.status_code == 201:
                accepted.append(response.json()["id"])
        time.sleep(0.2)

    per_second = Counter(ts // 1000 for ts in Danmaku.objects.filter(pk__in=accepted).values_list("ts_ms", flat=True))
    assert accepted
    assert max(per_second.values()) <= 3, per_second
