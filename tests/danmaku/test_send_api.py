"""POST /api/v1/rooms/{room}/danmaku, driven the way real clients drive it.

Every client here enforces CSRF, as a browser does and as an app (which has
no CSRF cookie at all) effectively does: Django's test client skips the check
by default, which would hide how the session fallback treats app requests.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.contrib.auth import get_user_model
from django.db import OperationalError, connection
from django.test import Client

from danmaku.models import ApiToken, Danmaku, Room
from infra import clock as host_clock

URL = "/api/v1/rooms/{}/danmaku"


@pytest.fixture
def api_client():
    return Client(enforce_csrf_checks=True)


def post(client, body, headers=None, room="live", raw=False):
    data = body if raw else json.dumps(body)
    return client.post(URL.format(room), data, content_type="application/json", **(headers or {}))


def bearer_for(username: str) -> dict:
    user = get_user_model().objects.create_user(username)
    _, raw = ApiToken.issue(user)
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def error_fields(response) -> set[str]:
    return {error["field"] for error in response.json()["errors"]}


# -- authentication -----------------------------------------------------------


def test_send_without_auth_is_401(api_client, room):
    response = post(api_client, {"text": "hi"})

    assert response.status_code == 401
    assert "detail" in response.json()
    assert not Danmaku.objects.exists()


@pytest.mark.parametrize("header", ["Bearer dmk_not-a-real-token", "Bearer nonsense", "Basic dXNlcjpwdw=="])
def test_send_with_unknown_token_is_401(api_client, room, header):
    response = post(api_client, {"text": "hi"}, {"HTTP_AUTHORIZATION": header})

    assert response.status_code == 401
    assert not Danmaku.objects.exists()


def test_send_with_revoked_token_is_401(api_client, room, token, auth_headers):
    ApiToken.objects.update(revoked=True)

    response = post(api_client, {"text": "hi"}, auth_headers)

    assert response.status_code == 401
    assert not Danmaku.objects.exists()


def test_send_with_token_of_inactive_user_is_401(api_client, room, user, auth_headers):
    user.is_active = False
    user.save()

    assert post(api_client, {"text": "hi"}, auth_headers).status_code == 401


def test_send_with_bearer_token_publishes_and_stores_the_row(api_client, room, user, auth_headers):
    response = post(api_client, {"text": "  hello  ", "color": "#FF8800", "mode": "top"}, auth_headers)

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "published"
    row = Danmaku.objects.get()
    assert body == {"id": row.id, "status": "published"}
    assert (row.room_id, row.user_id) == (room.id, user.id)
    assert row.text == "hello"
    assert row.color == 0xFF8800
    assert row.mode == Danmaku.Mode.TOP
    assert row.client_id == ""
    assert abs(row.ts_ms - time.time() * 1000) < 5000


def test_send_defaults_to_white_scroll(api_client, room, auth_headers):
    assert post(api_client, {"text": "hi"}, auth_headers).status_code == 201

    row = Danmaku.objects.get()
    assert (row.color, row.mode) == (0xFFFFFF, Danmaku.Mode.SCROLL)


def test_session_send_without_csrf_token_is_403(api_client, room, user):
    api_client.force_login(user)

    response = post(api_client, {"text": "hi"})

    assert response.status_code == 403
    assert not Danmaku.objects.exists()


def test_session_send_with_csrf_token_from_room_page_is_201(api_client, room, user):
    api_client.force_login(user)
    page = api_client.get("/rooms/live/")
    assert page.status_code == 200
    csrf = api_client.cookies["csrftoken"].value

    response = post(api_client, {"text": "from the page"}, {"HTTP_X_CSRFTOKEN": csrf})

    assert response.status_code == 201
    assert Danmaku.objects.get().user_id == user.id


# -- input validation ---------------------------------------------------------

TOO_MANY_BYTES = "\U0001f600" * 76  # 76 code points (room allows 100) but 304 bytes (allows 300)

BAD_INPUT = [
    ("empty_text", {"text": ""}, "text"),
    ("whitespace_only", {"text": " \t  "}, "text"),
    ("too_many_code_points", {"text": "a" * 101}, "text"),
    ("too_many_utf8_bytes", {"text": TOO_MANY_BYTES}, "text"),
    ("nul", {"text": "a\x00b"}, "text"),
    ("control_char", {"text": "bell\x07"}, "text"),
    ("bidi_override", {"text": "abc\u202edef"}, "text"),
    ("unknown_field", {"text": "hi", "font": "comic"}, "font"),
    ("color_name", {"text": "hi", "color": "red"}, "color"),
    ("color_short", {"text": "hi", "color": "#12345"}, "color"),
    ("color_not_hex", {"text": "hi", "color": "#gggggg"}, "color"),
    ("mode", {"text": "hi", "mode": "sideways"}, "mode"),
    ("client_id_space", {"text": "hi", "client_id": "has space"}, "client_id"),
    ("client_id_too_long", {"text": "hi", "client_id": "x" * 65}, "client_id"),
    ("client_id_empty", {"text": "hi", "client_id": ""}, "client_id"),
    ("text_not_string", {"text": 5}, "text"),
    ("missing_text", {}, "text"),
]


@pytest.mark.parametrize(("body", "field"), [case[1:] for case in BAD_INPUT], ids=[case[0] for case in BAD_INPUT])
def test_send_bad_input_is_400_naming_the_field(api_client, room, auth_headers, body, field):
    response = post(api_client, body, auth_headers)

    assert response.status_code == 400
    assert field in error_fields(response)
    assert response.json()["detail"]
    assert not Danmaku.objects.exists()


RAW_BAD_BODIES = [
    ("lone_surrogate", '{"text": "a\\ud800b"}', "text"),
    ("not_json", "text=hi", "body"),
    ("truncated_json", '{"text": "hi"', "body"),
    ("json_array", '["hi"]', "body"),
    ("json_string", '"hi"', "body"),
]


@pytest.mark.parametrize(
    ("raw", "field"), [case[1:] for case in RAW_BAD_BODIES], ids=[case[0] for case in RAW_BAD_BODIES]
)
def test_send_malformed_body_is_400_naming_the_field(api_client, room, auth_headers, raw, field):
    response = post(api_client, raw, auth_headers, raw=True)

    assert response.status_code == 400
    assert field in error_fields(response)
    assert not Danmaku.objects.exists()


def test_send_length_limit_follows_the_room_setting(api_client, room, auth_headers):
    Room.objects.filter(pk=room.pk).update(max_text_length=5)

    assert post(api_client, {"text": "abcdef"}, auth_headers).status_code == 400
    assert post(api_client, {"text": "abcde"}, auth_headers).status_code == 201


def test_send_cjk_text_at_full_length_is_accepted(api_client, room, auth_headers):
    # 3 bytes per code point is exactly the byte budget.
    response = post(api_client, {"text": "弹" * 100}, auth_headers)

    assert response.status_code == 201


# -- rooms --------------------------------------------------------------------


def test_send_to_unknown_room_is_404(api_client, room, auth_headers):
    response = post(api_client, {"text": "hi"}, auth_headers, room="nowhere")

    assert response.status_code == 404
    assert not Danmaku.objects.exists()


def test_send_to_closed_room_is_403(api_client, room, auth_headers):
    Room.objects.filter(pk=room.pk).update(is_open=False)

    response = post(api_client, {"text": "hi"}, auth_headers)

    assert response.status_code == 403
    assert "closed" in response.json()["detail"]
    assert not Danmaku.objects.exists()


# -- limits -------------------------------------------------------------------


def test_slow_mode_second_send_is_429_with_retry_after(api_client, room, auth_headers):
    Room.objects.filter(pk=room.pk).update(user_send_interval_ms=2000)

    first = post(api_client, {"text": "one"}, auth_headers)
    second = post(api_client, {"text": "two"}, auth_headers)

    assert first.status_code == 201
    assert second.status_code == 429
    assert int(second["Retry-After"]) >= 1
    assert 0 < second.json()["retry_after_ms"] <= 2000
    assert Danmaku.objects.count() == 1


def test_slow_mode_is_per_user(api_client, room, auth_headers):
    Room.objects.filter(pk=room.pk).update(user_send_interval_ms=2000)

    assert post(api_client, {"text": "one"}, auth_headers).status_code == 201
    assert post(api_client, {"text": "two"}, bearer_for("other")).status_code == 201


def test_room_cap_discards_the_excess_of_one_second_with_202(api_client, room):
    Room.objects.filter(pk=room.pk).update(room_send_cap_per_second=2)
    for attempt in range(5):
        senders = [bearer_for(f"cap{attempt}-{n}") for n in range(3)]
        started = time.time()
        responses = [post(api_client, {"text": f"msg {n}"}, headers) for n, headers in enumerate(senders)]
        if int(started) == int(time.time()):
            break
        # The sends straddled a second boundary and the cap counts per second: try
        # again in a fresh second, one these sends did not already count against.
        time.sleep(1 - time.time() % 1)
    else:
        pytest.fail("could not fit three sends into one wall-clock second")

    assert [r.status_code for r in responses] == [201, 201, 202]
    assert responses[2].json() == {"broadcast": False, "reason": "room_busy"}
    sent_by = {r.json()["id"] for r in responses[:2]}
    rows = Danmaku.objects.filter(user__username__startswith=f"cap{attempt}-")
    assert set(rows.values_list("id", flat=True)) == sent_by


# -- idempotency --------------------------------------------------------------


def test_same_client_id_returns_the_first_answer_and_writes_once(api_client, room, auth_headers):
    first = post(api_client, {"text": "hi", "client_id": "c-1"}, auth_headers)
    again = post(api_client, {"text": "hi", "client_id": "c-1"}, auth_headers)

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert Danmaku.objects.count() == 1


def test_retry_with_same_client_id_is_not_charged_slow_mode(api_client, room, auth_headers):
    Room.objects.filter(pk=room.pk).update(user_send_interval_ms=2000)

    first = post(api_client, {"text": "hi", "client_id": "c-1"}, auth_headers)
    retry = post(api_client, {"text": "hi", "client_id": "c-1"}, auth_headers)
    fresh = post(api_client, {"text": "hi", "client_id": "c-2"}, auth_headers)

    assert (first.status_code, retry.status_code) == (201, 201)
    assert retry.json()["id"] == first.json()["id"]
    assert fresh.status_code == 429
    assert Danmaku.objects.count() == 1


def test_retry_of_a_send_the_room_cap_discarded_gets_202_again(api_client, room, auth_headers, monkeypatch):
    # One server second, a cap of one, slow mode on: the first answer was
    # 202, and its retry is the same send, not a second one within the interval.
    monkeypatch.setattr(host_clock, "source", FrozenClock(1_700_000_000.25))
    Room.objects.filter(pk=room.pk).update(user_send_interval_ms=5000, room_send_cap_per_second=1)
    assert post(api_client, {"text": "first in"}, bearer_for("early")).status_code == 201

    first = post(api_client, {"text": "hi", "client_id": "c-1"}, auth_headers)
    retry = post(api_client, {"text": "hi", "client_id": "c-1"}, auth_headers)
    fresh = post(api_client, {"text": "hi", "client_id": "c-2"}, auth_headers)

    assert (first.status_code, retry.status_code) == (202, 202)
    assert retry.json() == first.json() == {"broadcast": False, "reason": "room_busy"}
    assert fresh.status_code == 429
    assert Danmaku.objects.count() == 1


def test_retry_of_a_blocked_send_in_slow_mode_is_blocked_again(api_client, room, auth_headers):
    from moderation.services import blocked_term_create

    Room.objects.filter(pk=room.pk).update(user_send_interval_ms=5000)
    blocked_term_create(term="forbidden")

    first = post(api_client, {"text": "forbidden words", "client_id": "c-1"}, auth_headers)
    retry = post(api_client, {"text": "forbidden words", "client_id": "c-1"}, auth_headers)

    assert (first.status_code, retry.status_code) == (400, 400)
    assert retry.json() == first.json()
    assert not Danmaku.objects.exists()


def test_retry_after_the_comment_was_hidden_reports_it_hidden(api_client, room, auth_headers):
    first = post(api_client, {"text": "hi", "client_id": "c-1"}, auth_headers)
    Danmaku.objects.update(status=Danmaku.Status.HIDDEN)

    retry = post(api_client, {"text": "hi", "client_id": "c-1"}, auth_headers)

    assert retry.status_code == 201
    assert retry.json() == {"id": first.json()["id"], "status": "hidden"}
    assert Danmaku.objects.count() == 1


def test_same_client_id_from_another_user_is_a_new_comment(api_client, room, auth_headers):
    mine = post(api_client, {"text": "hi", "client_id": "c-1"}, auth_headers)
    theirs = post(api_client, {"text": "hi", "client_id": "c-1"}, bearer_for("other"))

    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]


def test_client_id_reused_in_another_room_is_400(api_client, room, auth_headers):
    Room.objects.create(slug="other", title="Other", user_send_interval_ms=0)
    assert post(api_client, {"text": "hi", "client_id": "c-1"}, auth_headers).status_code == 201

    response = post(api_client, {"text": "hi", "client_id": "c-1"}, auth_headers, room="other")

    assert response.status_code == 400
    assert error_fields(response) == {"client_id"}
    assert Danmaku.objects.count() == 1


# -- limits under concurrency -------------------------------------------------


class FrozenClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _wait_while_locked(execute, sql, params, many, context):
    # The test database is an in-memory SQLite in shared-cache mode: a
    # statement that meets another connection's table lock fails at once
    # ("database table is locked") where the real file database waits out its
    # busy timeout. Wait the same way, one statement at a time, so what is
    # tested is the limits' own logic under interleaving, not the test DB.
    deadline = time.monotonic() + 10
    while True:
        try:
            return execute(sql, params, many, context)
        except OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.001)


def _send_concurrently(requests: list[tuple[dict, dict]]) -> list:
    """Send every (body, headers) at once, one thread each; return the responses in order."""
    barrier = threading.Barrier(len(requests))
    responses: list = [None] * len(requests)

    def worker(index: int, body: dict, headers: dict) -> None:
        try:
            with connection.execute_wrapper(_wait_while_locked):
                barrier.wait(timeout=10)
                responses[index] = post(Client(), body, headers)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, *request)) for i, request in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return responses


def test_room_cap_is_exact_under_concurrent_sends(transactional_db, monkeypatch):
    # All sends share one server second, so exactly `cap` of them may pass.
    monkeypatch.setattr(host_clock, "source", FrozenClock(1_700_000_000.25))
    Room.objects.create(slug="live", title="Live", user_send_interval_ms=0, room_send_cap_per_second=3)
    senders = [bearer_for(f"crowd{n}") for n in range(8)]

    responses = _send_concurrently([({"text": f"msg {n}"}, headers) for n, headers in enumerate(senders)])

    assert sorted(r.status_code for r in responses) == [201] * 3 + [202] * 5
    accepted = {r.json()["id"] for r in responses if r.status_code == 201}
    assert set(Danmaku.objects.values_list("id", flat=True)) == accepted


def test_slow_mode_is_exact_under_concurrent_sends_from_one_user(transactional_db, monkeypatch):
    monkeypatch.setattr(host_clock, "source", FrozenClock(1_700_000_000.25))
    Room.objects.create(slug="live", title="Live", user_send_interval_ms=5000)
    headers = bearer_for("eager")

    responses = _send_concurrently([({"text": f"msg {n}"}, headers) for n in range(6)])

    assert sorted(r.status_code for r in responses) == [201] + [429] * 5
    assert Danmaku.objects.count() == 1


def test_same_client_id_sent_concurrently_is_stored_once(transactional_db):
    Room.objects.create(slug="live", title="Live", user_send_interval_ms=0)
    headers = bearer_for("retrier")

    responses = _send_concurrently([({"text": "hi", "client_id": "once"}, headers) for _ in range(6)])

    assert [r.status_code for r in responses] == [201] * 6
    assert {r.json()["id"] for r in responses} == {Danmaku.objects.get().id}


@pytest.fixture(params=["database", "redis", "redis down"])
def limits_backend(request, settings):
    """Where slow mode is kept: the table (no Redis), Redis, or this process
    (Redis configured but not answering)."""
    from infra.redis import breaker, reset_clients

    if request.param == "redis":
        request.getfixturevalue("redis_mode")
    elif request.param == "redis down":
        from harness.local import free_port

        settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
        settings.DANMAKU_REDIS_PREFIX = "nobody-listens"
        reset_clients()
        yield request.param
        reset_clients()
        breaker.succeeded()
        return
    yield request.param


def test_copies_of_one_send_racing_in_slow_mode_all_get_its_answer(transactional_db, limits_backend, monkeypatch):
    from danmaku import limits

    Room.objects.create(slug="live", title="Live", user_send_interval_ms=5000)
    headers = bearer_for("double-clicker")
    copies = 3
    # Every copy has looked for an earlier one (none yet) before any takes
    # the slow-mode slot: the interleaving that made all but one 429.
    all_looked = threading.Barrier(copies)
    take_send = limits.take_send

    def take_send_after_all_looked(**kwargs):
        all_looked.wait(timeout=10)
        return take_send(**kwargs)

    monkeypatch.setattr(limits, "take_send", take_send_after_all_looked)

    responses = _send_concurrently([({"text": "hi", "client_id": "once"}, headers)] * copies)

    assert [r.status_code for r in responses] == [201] * copies, [r.content for r in responses]
    stored = Danmaku.objects.get()
    assert [r.json() for r in responses] == [{"id": stored.id, "status": "published"}] * copies
    monkeypatch.setattr(limits, "take_send", take_send)
    assert post(Client(), {"text": "another", "client_id": "twice"}, headers).status_code == 429


def test_timed_out_user_gets_403_saying_until_when(room, user, token, admin_user):
    from moderation.actions import user_timeout

    sanction = user_timeout(user_id=user.id, room_id=room.id, seconds=600, actor=admin_user, reason="spam")
    client = Client(enforce_csrf_checks=True)

    response = client.post(
        URL.format("live"),
        json.dumps({"text": "let me talk"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )

    assert response.status_code == 403
    assert response.json()["detail"] == f"timed out until {sanction.until.replace(microsecond=0).isoformat()}"
    assert not Danmaku.objects.filter(user=user).exists()


def test_banned_user_gets_403(room, user, token, admin_user):
    from moderation.actions import user_ban

    user_ban(user_id=user.id, room_id=None, actor=admin_user, reason="abuse")
    client = Client(enforce_csrf_checks=True)

    response = client.post(
        URL.format("live"),
        json.dumps({"text": "let me talk"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )

    assert response.status_code == 403
    assert response.json()["detail"] == "banned"
