"""Player tokens: fit to sit in a third party's page. They send (where their
room or broadcast says) and do nothing else; they expire."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from danmaku.broadcasts import broadcast_start, broadcast_stop
from danmaku.models import ApiToken, Room
from danmaku_site import sendfastpath
from danmaku_site.sendfastpath import SendFastPath
from infra import clock as host_clock
from tests.test_send_fast_path import Spy, call


def issue(*args: str) -> str:
    out = StringIO()
    call_command("issue_token", "player1", *args, stdout=out, stderr=StringIO())
    return out.getvalue().strip()


def bearer(raw: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def send(client, raw: str, url: str = "/api/v1/rooms/live/danmaku", **body):
    return client.post(url, json.dumps({"text": "hello", **body}), content_type="application/json", **bearer(raw))


@pytest.fixture
def other_room(db):
    return Room.objects.create(slug="other", title="Other", user_send_interval_ms=0)


@pytest.fixture
def ended(room):
    broadcast_start(room=room)
    return broadcast_stop(room=room)


def test_a_room_player_token_sends_there_and_nowhere_else(client, room, other_room, ended):
    raw = issue("--scope", "player", "--room", "live")
    token = ApiToken.objects.get(key_hash=ApiToken.hash(raw))
    assert token.scope == "player"
    assert token.expires_at is not None  # a player token always expires

    assert send(client, raw).status_code == 201
    assert send(client, raw, f"/api/v1/broadcasts/{ended.pk}/danmaku", progress_ms=0).status_code == 201
    refused = send(client, raw, "/api/v1/rooms/other/danmaku")
    assert refused.status_code == 403
    assert refused.json()["detail"] == "this token may not send here"


def test_a_broadcast_player_token_sends_only_on_that_recording(client, room, ended):
    raw = issue("--scope", "player", "--broadcast", str(ended.pk))
    broadcast_start(room=room)
    other = broadcast_stop(room=room)

    assert send(client, raw, f"/api/v1/broadcasts/{ended.pk}/danmaku", progress_ms=0).status_code == 201
    assert send(client, raw, f"/api/v1/broadcasts/{other.pk}/danmaku", progress_ms=0).status_code == 403
    assert send(client, raw).status_code == 403


def test_a_player_token_cannot_moderate_even_a_superusers(client, room, admin_user):
    _, raw = ApiToken.issue(admin_user, scope=ApiToken.Scope.PLAYER)
    _, full = ApiToken.issue(admin_user)
    url = "/api/v1/moderation/rooms/live/held"
    assert client.get(url, **bearer(full)).status_code == 200
    assert client.get(url, **bearer(raw)).status_code == 401


def test_a_token_stops_working_when_it_expires_even_while_cached(client, room, redis_mode, monkeypatch):
    raw = issue("--scope", "player", "--expires-in", "60")
    assert send(client, raw).status_code == 201
    real = host_clock.source
    monkeypatch.setattr(host_clock, "source", lambda: real() + 61)
    assert send(client, raw).status_code == 401


def test_the_send_fast_path_keeps_a_player_token_to_its_room(room, other_room, redis_mode, monkeypatch):
    monkeypatch.setattr(sendfastpath, "close_old_connections", lambda: None)
    spy = Spy()
    fast = SendFastPath(spy, served_by=False)
    raw = issue("--scope", "player", "--room", "live")

    assert call(fast, {"text": "here"}, token=raw)["status"] == 201
    refused = call(fast, {"text": "there"}, token=raw, path="/api/v1/rooms/other/danmaku")
    assert (refused["status"], refused["body"]["detail"]) == (403, "this token may not send here")
    assert spy.bodies == []  # both answered by the fast path itself


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--room", "live"), "only a player token"),
        (("--scope", "player", "--room", "nowhere"), "no room nowhere"),
        (("--scope", "player", "--broadcast", "999"), "no broadcast 999"),
        (("--scope", "player", "--expires-in", "0"), "positive"),
    ],
)
def test_the_command_refuses_what_makes_no_sense(room, args, message):
    with pytest.raises(CommandError, match=message):
        issue(*args)
    assert ApiToken.objects.count() == 0


def test_staff_issue_a_player_token_in_the_admin_and_see_it_once(admin_client, room, admin_user):
    form = {"user": admin_user.pk, "label": "embed", "scope": "player", "room": room.pk, "broadcast": "", "revoked": ""}
    response = admin_client.post("/admin/danmaku/apitoken/add/", form, follow=True)
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    assert len(shown) >= 1
    raw = next(m for m in shown if "dmk_" in m).rsplit(" ", 1)[-1]
    token = ApiToken.objects.get(label="embed")
    assert token.key_hash == ApiToken.hash(raw)
    assert (token.scope, token.room_id) == ("player", room.pk)
