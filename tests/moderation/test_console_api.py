"""The moderation console: its summary endpoint (through the API) and its page."""

from __future__ import annotations

import re
import time

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.staticfiles import finders
from django.test import Client

from danmaku.models import ApiToken, Danmaku, Room
from danmaku.rooms import room_emergency_apply, room_emergency_undo
from infra.csp import PAGE_CSP
from moderation.selectors import (
    MODERATORS_GROUP,
    PRODUCT_STAFF_GROUP,
    SUMMARY_HIDDEN_SECONDS,
    SUMMARY_RECENT_SECONDS,
    room_summary,
)

SUMMARY = "/api/v1/moderation/rooms/{room}/summary"
PASSWORD = "pw-for-tests-only"
ROLE_STATUS = {"anonymous": 401, "viewer": 403, "product_staff": 403, "moderator": 200, "superuser": 200}
HELD, HIDDEN, PUBLISHED = Danmaku.Status.HELD, Danmaku.Status.HIDDEN, Danmaku.Status.PUBLISHED


def make_user(role: str):
    users = get_user_model().objects
    if role == "superuser":
        return users.create_superuser(f"as-{role}", password=PASSWORD)
    user = users.create_user(f"as-{role}", password=PASSWORD)
    group = {"moderator": MODERATORS_GROUP, "product_staff": PRODUCT_STAFF_GROUP}.get(role)
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


def bearer(role: str) -> dict[str, str]:
    if role == "anonymous":
        return {}
    _, raw = ApiToken.issue(make_user(role))
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def logged_in(role: str) -> Client:
    client = Client(enforce_csrf_checks=True)
    if role != "anonymous":
        client.force_login(make_user(role))
    return client


def comment(room: Room, user, *, age_seconds: float, status: str = PUBLISHED) -> Danmaku:
    return Danmaku.objects.create(
        room=room, user=user, text="hi", ts_ms=int((time.time() - age_seconds) * 1000), status=status, in_stream=True
    )


# -- the summary endpoint ---------------------------------------------------------


def test_summary_counts_last_minute_held_now_and_hidden_last_hour(room, user):
    other = Room.objects.create(slug="other", title="Other")
    recent_edge, hidden_edge = SUMMARY_RECENT_SECONDS, SUMMARY_HIDDEN_SECONDS
    comment(room, user, age_seconds=1)  # recent
    comment(room, user, age_seconds=recent_edge - 10, status=HELD)  # recent, held
    comment(room, user, age_seconds=recent_edge - 5, status=HIDDEN)  # recent, hidden
    comment(room, user, age_seconds=recent_edge + 10)  # none of them
    comment(room, user, age_seconds=hidden_edge - 60, status=HIDDEN)  # hidden
    comment(room, user, age_seconds=hidden_edge + 60, status=HIDDEN)  # too old to count
    comment(room, user, age_seconds=3 * hidden_edge, status=HELD)  # held: waits however old
    comment(other, user, age_seconds=1, status=HELD)  # another room

    answer = Client().get(SUMMARY.format(room=room.slug), **bearer("moderator"))

    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert (body["recent"], body["held"], body["hidden"]) == (3, 2, 2)
    assert body["room"] == room.slug
    assert body["recent_window_seconds"] == SUMMARY_RECENT_SECONDS
    assert body["hidden_window_seconds"] == SUMMARY_HIDDEN_SECONDS
    assert abs(body["now_ms"] - time.time() * 1000) < 5000


def test_summary_reports_throttle_settings(room):
    Room.objects.filter(pk=room.pk).update(
        poll_interval_ms=4000,
        quiet_interval_ms=12_000,
        user_send_interval_ms=5000,
        room_send_cap_per_second=50,
        display_cap_per_second=20,
        moderation_policy=Room.Policy.MANUAL,
        is_open=False,
    )

    body = Client().get(SUMMARY.format(room=room.slug), **bearer("moderator")).json()

    assert body["throttle"] == {
        "poll_interval_ms": 4000,
        "poll_multiplier": 1.0,
        "quiet_interval_ms": 12_000,
        "user_send_interval_ms": 5000,
        "room_send_cap_per_second": 50,
        "display_cap_per_second": 20,
        "moderation_policy": "manual",
        "is_open": False,
        "emergency": False,
    }


def test_summary_shows_the_emergency_preset_until_undone(room):
    headers = bearer("moderator")
    room_emergency_apply(room=room)

    on = Client().get(SUMMARY.format(room=room.slug), **headers).json()["throttle"]
    room.refresh_from_db()
    room_emergency_undo(room=room)
    off = Client().get(SUMMARY.format(room=room.slug), **headers).json()["throttle"]

    assert on["emergency"] is True
    assert (on["user_send_interval_ms"], on["poll_multiplier"], on["moderation_policy"]) == (10_000, 2.0, "pre")
    assert off["emergency"] is False
    assert (off["user_send_interval_ms"], off["poll_multiplier"], off["moderation_policy"]) == (0, 1.0, "post")


@pytest.mark.parametrize(("role", "status"), ROLE_STATUS.items())
def test_summary_is_for_moderators_only(room, role, status):
    answer = Client().get(SUMMARY.format(room=room.slug), **bearer(role))

    assert answer.status_code == status, answer.content
    if status != 200:
        assert answer.json()["detail"]


@pytest.mark.parametrize(("role", "status"), ROLE_STATUS.items())
def test_summary_with_the_session_cookie(room, role, status):
    # The console's own way in: the session cookie (a GET needs no CSRF token).
    answer = logged_in(role).get(SUMMARY.format(room=room.slug))

    assert answer.status_code == status, answer.content


def test_summary_of_unknown_room_is_404(db):
    answer = Client().get(SUMMARY.format(room="nope"), **bearer("moderator"))

    assert answer.status_code == 404
    assert answer.json()["detail"] == "room not found"


def test_summary_declares_its_answers(room):
    schema = Client().get("/api/v1/openapi.json").json()
    responses = schema["paths"]["/api/v1/moderation/rooms/{room}/summary"]["get"]["responses"]

    assert set(responses) == {"200", "400", "401", "403", "404", "503"}


def test_room_summary_takes_two_queries(room, user, django_assert_num_queries):
    comment(room, user, age_seconds=1, status=HELD)

    with django_assert_num_queries(2):
        summary = room_summary(room=room, now_ms=int(time.time() * 1000))

    assert (summary.recent, summary.held, summary.hidden, summary.emergency) == (1, 1, 0, False)


# -- the console page -------------------------------------------------------------

PAGE = "/moderate/{room}/"


def test_console_sends_anonymous_visitors_to_log_in(room):
    answer = Client().get(PAGE.format(room=room.slug))

    assert answer.status_code == 302
    assert answer["Location"] == f"/accounts/login/?next=/moderate/{room.slug}/"


@pytest.mark.parametrize("role", ["viewer", "product_staff"])
def test_console_is_forbidden_to_non_moderators(room, role):
    client = logged_in(role)

    answer = client.get(PAGE.format(room=room.slug))
    assert answer.status_code == 403
    assert answer.content == b"Moderators only."
    assert answer["Content-Security-Policy"] == PAGE_CSP
    # Not even whether a room exists.
    assert client.get(PAGE.format(room="nope")).status_code == 403


@pytest.mark.parametrize("role", ["moderator", "superuser"])
def test_console_page_for_moderators(room, role):
    answer = logged_in(role).get(PAGE.format(room=room.slug))

    assert answer.status_code == 200
    assert answer["Content-Security-Policy"] == PAGE_CSP
    assert "csrftoken" in answer.cookies
    html = answer.content.decode()
    assert f'data-room="{room.slug}"' in html
    assert f'href="/rooms/{room.slug}/"' in html
    assert '<script type="module" src="/static/moderation/console.js"></script>' in html
    assert '<link rel="stylesheet" href="/static/moderation/console.css">' in html


def test_console_page_has_no_inline_script_or_style(room):
    html = logged_in("moderator").get(PAGE.format(room=room.slug)).content.decode()

    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts
    assert all(" src=" in tag for tag in scripts), scripts
    assert re.findall(r"<script\b[^>]*>\s*[^<\s]", html) == []
    assert re.findall(r"\son[a-z]+\s*=", html) == []
    assert re.findall(r"\sstyle\s*=", html) == []
    assert "<style" not in html


def test_console_of_unknown_room_is_404(db):
    assert logged_in("moderator").get(PAGE.format(room="nope")).status_code == 404


@pytest.mark.parametrize("name", ["moderation/console.js", "moderation/console.css"])
def test_console_assets_are_static_files(name):
    assert finders.find(name)


CONSOLE_MODULES = [
    "console.js",
    "api.js",
    "poller.js",
    "feed.js",
    "actionform.js",
    "actions.js",
    "summary.js",
    "format.js",
]
HTML_SINKS = [b"innerHTML", b"outerHTML", b"insertAdjacentHTML", b"document.write", b"eval(", b"new Function"]


@pytest.mark.parametrize("module", CONSOLE_MODULES)
def test_console_modules_are_javascript_without_html_sinks(client, module):
    # A browser runs a module only if it is served as JavaScript.
    response = client.get(f"/static/moderation/{module}")

    assert response.status_code == 200
    assert "javascript" in response["Content-Type"]
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert [sink for sink in HTML_SINKS if sink in body] == []
