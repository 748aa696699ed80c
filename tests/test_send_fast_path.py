"""The send fast path (danmaku_site.sendfastpath) answers as the ninja endpoint does.

Each case is sent through the fast path and through Django alone, as WSGI
requests; both answers must match in status, body and headers (a new
comment's id aside). What the fast path leaves to Django must reach it with
its body intact.
"""

from __future__ import annotations

import io
import json
import sys

import pytest
from django.core import signals
from django.db import close_old_connections

from danmaku import changes
from danmaku.models import ApiToken, Danmaku
from danmaku_site import sendfastpath
from danmaku_site.sendfastpath import SendFastPath
from danmaku_site.wsgi import django_application
from moderation.models import Sanction

URL = "/api/v1/rooms/live/danmaku"


@pytest.fixture(autouse=True)
def _keep_the_test_transaction(monkeypatch):
    # As Django's test client does: a request's signals must not close the
    # connection holding the test's transaction (nor the fast path, which
    # closes old connections itself).
    monkeypatch.setattr(sendfastpath, "close_old_connections", lambda: None)
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


class Spy:
    """The app behind the fast path: Django, noting what reached it."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def __call__(self, environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        self.bodies.append(body)
        environ["wsgi.input"] = io.BytesIO(body)
        return django_application(environ, start_response)


def call(app, body, *, token=None, path=URL, query="", cookie=None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(raw),
        "wsgi.errors": sys.stderr,
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(raw)),
    }
    if token:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    if cookie:
        environ["HTTP_COOKIE"] = cookie
    answer = {}

    def start_response(status, headers):
        answer["status"], answer["headers"] = int(status.split()[0]), dict(headers)

    answer["body"] = json.loads(b"".join(app(environ, start_response)) or b"null")
    return answer


@pytest.fixture
def apps(redis_mode, room):
    spy = Spy()
    changes.feed.poll()
    return SendFastPath(spy, served_by=False), spy


def same(fast, slow):
    for answer in (fast, slow):
        if isinstance(answer["body"], dict) and "id" in answer["body"]:
            answer["body"]["id"] = "<id>"
    assert (fast["status"], fast["body"]) == (slow["status"], slow["body"])
    assert fast["headers"] == {name: value for name, value in slow["headers"].items() if name != "Vary"}


def test_an_accepted_send_and_its_retry_answer_as_django_does(apps, token, room):
    fast, spy = apps
    first = call(fast, {"text": "fast", "client_id": "f-1"}, token=token)
    again = call(fast, {"text": "fast", "client_id": "f-1"}, token=token)
    slow = call(django_application, {"text": "slow", "client_id": "s-1"}, token=token)

    assert first["status"] == 201
    assert again["body"] == first["body"]
    assert spy.bodies == []
    assert Danmaku.objects.filter(client_id="f-1").count() == 1
    same(first, slow)


@pytest.mark.parametrize(
    ("case", "status"),
    [("slow_mode", 429), ("room_cap", 202), ("banned", 403), ("unknown_room", 404), ("too_long", 400)],
)
def test_refusals_answer_as_django_does(apps, token, room, user, case, status):
    fast, spy = apps
    room.user_send_interval_ms = 60_000 if case == "slow_mode" else 0
    room.room_send_cap_per_second = 0 if case == "room_cap" else 100
    room.save()
    if case == "banned":
        Sanction.objects.create(user=user, kind=Sanction.Kind.BAN, reason="test")
    changes.feed.poll()
    path = "/api/v1/rooms/nowhere/danmaku" if case == "unknown_room" else URL
    body = {"text": "x" * (room.max_text_length + 1) if case == "too_long" else "hello"}
    if case == "slow_mode":
        assert call(fast, body, token=token)["status"] == 201

    answers = [call(app, body, token=token, path=path) for app in (fast, django_application)]

    assert answers[0]["status"] == status
    if case == "slow_mode":
        assert answers[0]["headers"]["Retry-After"] == "60"
        answers[1]["body"]["retry_after_ms"] = answers[0]["body"]["retry_after_ms"]
    same(*answers)
    assert spy.bodies == []


@pytest.mark.parametrize(
    ("case", "status"),
    [("schema", 400), ("unknown_token", 401), ("no_token", 401), ("query", 201), ("not_json", 400)],
)
def test_what_it_does_not_answer_reaches_django_with_its_body(apps, token, case, status):
    fast, spy = apps
    body = {"text": "hello", "color": "red"} if case == "schema" else {"text": "hello"}
    raw = b"text=hello" if case == "not_json" else json.dumps(body).encode()
    used = {"unknown_token": ApiToken.PREFIX + "nobody", "no_token": None}.get(case, token)

    answer = call(fast, raw, token=used, query="x=1" if case == "query" else "")

    assert answer["status"] == status, answer
    assert spy.bodies == [raw]
    if case == "schema":
        assert answer["body"]["errors"][0]["field"] == "color"
