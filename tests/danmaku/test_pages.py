"""The HTML pages: CSP, no inline scripts, escaping, login."""

from __future__ import annotations

import io
import re

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client

from danmaku.models import Danmaku, Room
from infra.csp import PAGE_CSP

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)


@pytest.mark.parametrize("path", ["/", "/rooms/live/", "/accounts/login/", "/broadcasts/{broadcast}/"])
def test_page_sends_a_csp_that_forbids_inline_scripts(client, room, path):
    from danmaku.models import Broadcast

    broadcast = Broadcast.objects.create(room=room, started_at_ms=1_000, ended_at_ms=61_000)
    response = client.get(path.format(broadcast=broadcast.pk))

    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    assert csp == PAGE_CSP
    assert "script-src 'self';" in csp
    assert "unsafe-inline" not in csp.split("script-src", 1)[1].split(";", 1)[0]


@pytest.mark.parametrize("path", ["/api/v1/rooms/live/danmaku", "/admin/login/"])
def test_api_and_admin_have_no_page_csp(client, room, path):
    response = client.get(path)

    assert response.status_code == 200
    assert "Content-Security-Policy" not in response


def test_room_page_has_no_inline_script_and_loads_room_js(client, room):
    html = client.get("/rooms/live/").content.decode()

    assert not INLINE_SCRIPT.search(html)
    assert '<script type="module" src="/static/danmaku/room.js"' in html
    assert 'id="stage"' in html
    assert 'data-slug="live"' in html
    assert 'id="status"' in html


PAGE_MODULES = ["room.js", "replay.js", "overlay.js", "poller.js", "sendbox.js", "controls.js", "backdrop.js"]
HTML_SINKS = [b"innerHTML", b"outerHTML", b"insertAdjacentHTML", b"document.write", b"eval(", b"new Function"]


@pytest.mark.parametrize("module", PAGE_MODULES)
def test_page_modules_are_static_files_without_html_sinks(client, module):
    response = client.get(f"/static/danmaku/{module}")

    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert [sink for sink in HTML_SINKS if sink in body] == []


def test_comments_are_rendered_with_text_content(client):
    response = client.get("/static/danmaku/overlay.js")
    body = b"".join(response.streaming_content)

    assert b"el.textContent = displayText(comment.text)" in body


def test_room_without_stream_url_gets_the_animated_backdrop(client, room):
    html = client.get("/rooms/live/").content.decode()

    assert '<canvas id="backdrop"' in html
    assert "<video" not in html


def test_room_with_stream_url_plays_it_under_the_overlay(client, room):
    room.stream_url = "https://media.example.org/live/demo.mp4?a=1&b=2"
    room.full_clean()
    room.save()

    html = client.get("/rooms/live/").content.decode()

    assert '<video id="video" src="https://media.example.org/live/demo.mp4?a=1&amp;b=2" autoplay muted loop' in html
    assert "<canvas" not in html


@pytest.mark.parametrize("url", ["http://media.example.org/a.mp4", "javascript:alert(1)", "ftp://x.org/a.mp4"])
def test_stream_url_must_be_https(room, url):
    room.stream_url = url

    with pytest.raises(ValidationError) as raised:
        room.full_clean()

    assert "stream_url" in raised.value.message_dict


XSS_TITLE = '</title><script>alert(1)</script><img src=x onerror="alert(2)">'


@pytest.mark.parametrize("path", ["/", "/rooms/xss/"])
def test_xss_room_title_is_escaped(client, db, path):
    Room.objects.create(slug="xss", title=XSS_TITLE)

    html = client.get(path).content.decode()

    assert XSS_TITLE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html
    assert not INLINE_SCRIPT.search(html)


def test_guest_sees_a_login_link_with_next(client, room):
    html = client.get("/rooms/live/").content.decode()

    assert 'href="/accounts/login/?next=/rooms/live/"' in html
    assert 'id="send"' not in html


def test_login_form_logs_in_and_room_page_shows_send_form(user, room):
    client = Client(enforce_csrf_checks=True)
    login_page = client.get("/accounts/login/?next=/rooms/live/")
    token = login_page.cookies["csrftoken"].value

    response = client.post(
        "/accounts/login/",
        {"username": "viewer", "password": "pw-for-tests-only", "next": "/rooms/live/", "csrfmiddlewaretoken": token},
    )

    assert response.status_code == 302
    assert response["Location"] == "/rooms/live/"
    html = client.get("/rooms/live/").content.decode()
    assert 'id="send"' in html
    assert 'id="sendstatus"' in html
    assert "Log out" in html


def test_login_with_a_wrong_password_shows_the_form_again(client, user):
    response = client.post("/accounts/login/", {"username": "viewer", "password": "nope"})

    assert response.status_code == 200
    assert "Content-Security-Policy" in response
    assert 'class="errors"' in response.content.decode()


def test_logout_by_post_ends_the_session(client, user, room):
    client.force_login(user)

    response = client.post("/accounts/logout/", {"next": "/rooms/live/"})

    assert response.status_code == 302
    assert 'id="send"' not in client.get("/rooms/live/").content.decode()


# -- The demo sender behind the demo room (manage.py demo_sender) -------------


@pytest.fixture
def demo_room(db):
    # The model's default slow mode (2 s per user) stays on: the sender must
    # live with it, not bypass it.
    return Room.objects.create(slug="demo", title="Demo room")


def run_demo_sender(*args: str) -> str:
    out = io.StringIO()
    call_command("demo_sender", *args, "--interval-ms", "0", stdout=out)
    return out.getvalue()


def test_demo_sender_sends_through_the_service_from_distinct_users(demo_room):
    out = run_demo_sender("--count", "3")

    rows = Danmaku.objects.filter(room=demo_room)
    assert out.strip() == "demo sender: 3 sent, 0 refused"
    assert rows.count() == 3
    assert len({row.user_id for row in rows}) == 3
    assert all(row.user.username.startswith("demo-") for row in rows)
    assert all(row.status == Danmaku.Status.PUBLISHED for row in rows)


def test_demo_sender_respects_slow_mode(demo_room):
    # Four users, no pause: the 5th and 6th come from users still in slow mode.
    out = run_demo_sender("--count", "6")

    assert out.strip() == "demo sender: 4 sent, 2 refused"
    assert Danmaku.objects.filter(room=demo_room).count() == 4


def test_demo_sender_if_enabled_does_nothing_when_demo_is_off(demo_room, settings):
    settings.DANMAKU_DEMO = False

    assert run_demo_sender("--if-enabled", "--count", "3") == ""
    assert not Danmaku.objects.exists()


def test_demo_sender_stops_after_seconds(demo_room):
    out = run_demo_sender("--seconds", "0.05")

    assert out.startswith("demo sender: ")


def test_demo_sender_needs_the_room(db):
    with pytest.raises(CommandError, match="create_room demo"):
        run_demo_sender("--count", "1")
