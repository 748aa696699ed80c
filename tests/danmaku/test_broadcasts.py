"""Broadcasts: started and stopped by staff (command and admin), listed
through the API with the comments sent while each was live."""

from __future__ import annotations

import json
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from danmaku.models import Broadcast, Danmaku, Room

SEND_URL = "/api/v1/rooms/live/danmaku"
LIST_URL = "/api/v1/rooms/live/broadcasts"
# Between phases, so no comment shares a millisecond with a start or a stop.
STEP_S = 0.01


def send(client, headers, text: str) -> int:
    response = client.post(SEND_URL, json.dumps({"text": text}), content_type="application/json", **headers)
    assert response.status_code == 201, response.content
    time.sleep(STEP_S)
    return response.json()["id"]


def broadcast(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("broadcast", *args, stdout=out)
    time.sleep(STEP_S)
    return out.getvalue()


def test_the_listing_counts_the_comments_sent_while_each_broadcast_was_live(client, room, auth_headers):
    send(client, auth_headers, "before the show")
    assert "live" in broadcast("start", "live")
    for n in range(3):
        send(client, auth_headers, f"first show {n}")
    assert "ended" in broadcast("stop", "live", "--recording-url", "https://video.example/first.webm")
    send(client, auth_headers, "between the shows")
    broadcast("start", "live")
    send(client, auth_headers, "second show, still live")
    hidden = send(client, auth_headers, "hidden by a moderator")
    Danmaku.objects.filter(pk=hidden).update(status=Danmaku.Status.HIDDEN)
    other = Room.objects.create(slug="other", title="Other")
    Danmaku.objects.create(room=other, user_id=Danmaku.objects.get(pk=hidden).user_id, text="elsewhere", ts_ms=0)

    response = client.get(LIST_URL)

    assert response.status_code == 200, response.content
    second, first = response.json()
    assert (first["ended_at_ms"] is not None, first["recording_url"], first["comment_count"]) == (
        True,
        "https://video.example/first.webm",
        3,
    )
    assert first["offset_ms"] == 0
    assert first["started_at_ms"] < first["ended_at_ms"] < second["started_at_ms"]
    # Live: counted up to now; a hidden comment is not one a replay shows.
    assert (second["ended_at_ms"], second["recording_url"], second["comment_count"]) == (None, "", 1)


def test_the_listing_costs_four_queries_however_many_broadcasts(client, room, auth_headers):
    for n in range(5):
        broadcast("start", "live")
        send(client, auth_headers, f"show {n}")
        broadcast("stop", "live")

    with CaptureQueriesContext(connection) as queries:
        response = client.get(LIST_URL)

    assert [row["comment_count"] for row in response.json()] == [1] * 5
    assert len(queries) == 4  # the room, its broadcasts, their counts, their segments' versions


def test_an_unknown_room_is_404_and_a_room_never_broadcast_lists_none(client, room):
    missing = client.get("/api/v1/rooms/nowhere/broadcasts")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no such room"
    assert client.get(LIST_URL).json() == []


def test_the_command_refuses_what_makes_no_sense(room):
    with pytest.raises(CommandError, match="not broadcasting"):
        broadcast("stop", "live")
    with pytest.raises(CommandError, match="no room 'nowhere'"):
        broadcast("start", "nowhere")
    with pytest.raises(CommandError, match="goes with stop"):
        broadcast("start", "live", "--recording-url", "https://video.example/a.webm")
    broadcast("start", "live")
    with pytest.raises(CommandError, match="already broadcasting"):
        broadcast("start", "live")
    # https only: the broadcast stays live, nothing half-saved.
    with pytest.raises(CommandError, match="recording_url"):
        broadcast("stop", "live", "--recording-url", "http://video.example/a.webm")
    assert Broadcast.objects.get().live
    assert "ended" in broadcast("stop", "live", "--recording-url", "https://video.example/a.webm")


def test_staff_start_and_stop_from_the_room_admin_and_edit_the_recording_later(admin_client, room):
    changelist = "/admin/danmaku/room/"
    admin_client.post(changelist, {"action": "start_broadcast", "_selected_action": [room.pk]})
    again = admin_client.post(changelist, {"action": "start_broadcast", "_selected_action": [room.pk]}, follow=True)
    assert "already broadcasting" in again.content.decode()
    assert Broadcast.objects.get().live
    time.sleep(STEP_S)
    admin_client.post(changelist, {"action": "stop_broadcast", "_selected_action": [room.pk]})
    stopped = Broadcast.objects.get()
    assert not stopped.live

    change = f"/admin/danmaku/broadcast/{stopped.pk}/change/"
    refused = admin_client.post(change, {"recording_url": "http://video.example/a.webm", "offset_ms": "0"})
    assert refused.status_code == 200  # the form again, with its error
    assert Broadcast.objects.get().recording_url == ""
    saved = admin_client.post(change, {"recording_url": "https://video.example/a.webm", "offset_ms": "-1500"})
    assert saved.status_code == 302
    stopped.refresh_from_db()
    assert (stopped.recording_url, stopped.offset_ms) == ("https://video.example/a.webm", -1500)
    assert admin_client.get("/admin/danmaku/broadcast/add/").status_code == 403
