"""Replay: a broadcast's comments by playback time, in versioned segments,
and comments sent on its recording. Through the HTTP API, on a host clock
the test moves (sends and broadcasts are stamped by it)."""

from __future__ import annotations

import gzip
import json

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from danmaku import runtime
from danmaku.broadcasts import broadcast_start, broadcast_stop
from danmaku.models import ApiToken, Danmaku, Room
from danmaku.replaycache import replay_cache
from danmaku.segments import SEGMENT_MS, SETTLE_MS
from infra import clock as host_clock

START_MS = 1_700_000_000_000
LIVE_SEND = "/api/v1/rooms/live/danmaku"
MODERATION = "/api/v1/moderation"


class FakeClock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> float:
        return self.now_ms / 1000

    def at(self, ms: int) -> None:
        self.now_ms = ms


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock(START_MS - 60_000)
    monkeypatch.setattr(host_clock, "source", fake)
    replay_cache.clear()
    yield fake
    replay_cache.clear()


@pytest.fixture
def moderator_headers(db) -> dict[str, str]:
    moderator = get_user_model().objects.create_superuser("mod", password="pw-for-tests-only")
    _, raw = ApiToken.issue(moderator)
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def post(client, url: str, headers: dict, **body):
    return client.post(url, json.dumps(body), content_type="application/json", **headers)


def send_live(client, headers, clock, at_ms: int, text: str) -> int:
    clock.at(at_ms)
    response = post(client, LIVE_SEND, headers, text=text)
    assert response.status_code == 201, response.content
    return response.json()["id"]


def record_show(room, client, headers, clock, texts_at: dict[int, str], *, length_ms: int = 20 * 60_000):
    """A broadcast from START_MS, live comments at the given ms into it,
    ended length_ms in and settled; returns (broadcast, {text: id})."""
    clock.at(START_MS)
    broadcast_start(room=room)
    ids = {text: send_live(client, headers, clock, START_MS + at, text) for at, text in sorted(texts_at.items())}
    clock.at(START_MS + length_ms)
    stopped = broadcast_stop(room=room, recording_url="https://video.example/show.webm")
    clock.at(START_MS + length_ms + SETTLE_MS)
    return stopped, ids


def detail(client, broadcast_id: int) -> dict:
    response = client.get(f"/api/v1/broadcasts/{broadcast_id}")
    assert response.status_code == 200, response.content
    return response.json()


def segment(client, broadcast_id: int, index: int, version: int | None = None, **headers):
    query = {"segment": index} if version is None else {"segment": index, "v": version}
    return client.get(f"/api/v1/broadcasts/{broadcast_id}/danmaku", query, **headers)


def texts_and_progress(response) -> list[tuple[str, int]]:
    assert response.status_code == 200, response.content
    items = response.json()["items"]
    return list(zip(items["text"], items["progress_ms"], strict=True))


def new_state_read():
    """The node's state and answer of each broadcast are at most a second old: forget them."""
    replay_cache._states.clear()
    replay_cache._details.clear()


def test_live_comments_play_back_at_their_time_from_the_start(client, room, auth_headers, clock):
    clock.at(START_MS - 5_000)
    post(client, LIVE_SEND, auth_headers, text="before the show")
    broadcast, _ = record_show(
        room, client, auth_headers, clock, {5_000: "at five", 1_000: "at one", SEGMENT_MS + 7_000: "second segment"}
    )
    clock.at(START_MS + 21 * 60_000)
    post(client, LIVE_SEND, auth_headers, text="after the show")

    shown = detail(client, broadcast.pk)
    assert (shown["room"], shown["segment_ms"], len(shown["segments"])) == ("live", SEGMENT_MS, 4)
    assert texts_and_progress(segment(client, broadcast.pk, 0)) == [("at one", 1_000), ("at five", 5_000)]
    assert texts_and_progress(segment(client, broadcast.pk, 1)) == [("second segment", 7_000 + SEGMENT_MS)]
    assert texts_and_progress(segment(client, broadcast.pk, 3)) == []
    body = segment(client, broadcast.pk, 0).json()
    assert set(body) == {"broadcast", "segment", "version", "segment_ms", "items"}
    assert set(body["items"]) == {"id", "progress_ms", "color", "mode", "user", "nick", "avatar", "text"}
    assert body["items"]["nick"] == ["viewer", "viewer"]


def test_a_versioned_segment_is_immutable_shared_and_served_without_a_query(client, room, auth_headers, clock):
    broadcast, _ = record_show(room, client, auth_headers, clock, {n * 1000: f"comment {n}" for n in range(50)})
    version = detail(client, broadcast.pk)["segments"][0]

    first = segment(client, broadcast.pk, 0, version, HTTP_ACCEPT_ENCODING="gzip")
    with CaptureQueriesContext(connection) as queries:
        again = segment(client, broadcast.pk, 0, version, HTTP_ACCEPT_ENCODING="gzip")
        plain = segment(client, broadcast.pk, 0, version)
        not_modified = segment(client, broadcast.pk, 0, version, HTTP_IF_NONE_MATCH=first["ETag"])

    assert len(queries) == 0
    assert first["Cache-Control"] == "public, max-age=31536000, immutable"
    assert first["Content-Encoding"] == "gzip"
    assert first["Vary"] == "Accept-Encoding"
    assert first["Access-Control-Allow-Origin"] == "*"
    assert again.content == first.content
    assert json.loads(gzip.decompress(first.content)) == plain.json()
    assert len(first.content) < 0.6 * len(plain.content)
    assert not_modified.status_code == 304
    # Not addressed by its version: the current one, for a short while.
    assert segment(client, broadcast.pk, 0)["Cache-Control"] == "public, max-age=2"


def test_a_hide_and_a_restore_give_the_segment_a_new_version(client, room, auth_headers, moderator_headers, clock):
    broadcast, ids = record_show(room, client, auth_headers, clock, {5_000: "keep", 9_000: "rude", SEGMENT_MS: "later"})
    before = detail(client, broadcast.pk)["segments"]
    old = segment(client, broadcast.pk, 0, before[0])

    hidden = post(client, f"{MODERATION}/danmaku/{ids['rude']}/hide", moderator_headers, reason="insult")
    assert hidden.status_code == 200, hidden.content
    new_state_read()
    after = detail(client, broadcast.pk)["segments"]

    assert after[0] > before[0]
    assert after[1:] == before[1:]
    assert [text for text, _ in texts_and_progress(segment(client, broadcast.pk, 0, after[0]))] == ["keep"]
    assert [text for text, _ in texts_and_progress(segment(client, broadcast.pk, 0))] == ["keep"]
    # The old version's URL still names what it named: a cache keeps it.
    assert segment(client, broadcast.pk, 0, before[0]).content == old.content

    restored = post(client, f"{MODERATION}/danmaku/{ids['rude']}/unhide", moderator_headers, reason="misread")
    assert restored.status_code == 200, restored.content
    new_state_read()
    again = detail(client, broadcast.pk)["segments"]
    assert again[0] > after[0]
    assert [text for text, _ in texts_and_progress(segment(client, broadcast.pk, 0, again[0]))] == ["keep", "rude"]


def test_new_readers_see_a_change_within_the_nodes_second(client, room, auth_headers, moderator_headers, clock):
    broadcast, ids = record_show(room, client, auth_headers, clock, {5_000: "rude"})
    assert texts_and_progress(segment(client, broadcast.pk, 0)) == [("rude", 5_000)]
    post(client, f"{MODERATION}/danmaku/{ids['rude']}/hide", moderator_headers, reason="insult")
    replay_cache._states[broadcast.pk] = (
        replay_cache._states[broadcast.pk][0] - 1.0,
        replay_cache._states[broadcast.pk][1],
    )
    assert texts_and_progress(segment(client, broadcast.pk, 0)) == []


def test_an_offset_change_in_the_admin_moves_every_comment_and_every_version(
    admin_client, client, room, auth_headers, clock
):
    broadcast, _ = record_show(room, client, auth_headers, clock, {5_000: "early", SEGMENT_MS - 1_000: "edge"})
    before = detail(client, broadcast.pk)["segments"]

    form = {"recording_url": broadcast.recording_url, "offset_ms": "2000"}
    saved = admin_client.post(f"/admin/danmaku/broadcast/{broadcast.pk}/change/", form)
    assert saved.status_code == 302, saved.content
    new_state_read()
    after = detail(client, broadcast.pk)["segments"]

    assert all(new > old for new, old in zip(after, before, strict=False))
    assert texts_and_progress(segment(client, broadcast.pk, 0, after[0])) == [("early", 7_000)]
    assert texts_and_progress(segment(client, broadcast.pk, 1, after[1])) == [("edge", SEGMENT_MS + 1_000)]


def test_unknown_broadcasts_segments_and_versions_are_404(client, room, auth_headers, clock):
    broadcast, _ = record_show(room, client, auth_headers, clock, {})
    count = len(detail(client, broadcast.pk)["segments"])
    current = detail(client, broadcast.pk)["segments"][0]

    assert segment(client, broadcast.pk + 1, 0).status_code == 404
    beyond = segment(client, broadcast.pk, count)
    assert beyond.status_code == 404
    assert beyond.json()["errors"][0]["field"] == "segment"
    newer = segment(client, broadcast.pk, 0, current + 5)
    assert newer.status_code == 404
    assert newer.json()["errors"][0]["field"] == "v"
    for bad in ({"segment": "x"}, {"segment": -1}, {}, {"segment": 0, "v": "new"}):
        assert client.get(f"/api/v1/broadcasts/{broadcast.pk}/danmaku", bad).status_code in (400, 422)


# -- comments on a recording ----------------------------------------------


def recording_send(client, broadcast_id: int, headers: dict, **body):
    return post(client, f"/api/v1/broadcasts/{broadcast_id}/danmaku", headers, **body)


@pytest.mark.parametrize("store", ["database", "redis"])
def test_a_comment_on_the_recording_joins_its_segment_and_never_the_live_room(
    request, store, client, room, auth_headers, clock
):
    if store == "redis":
        request.getfixturevalue("redis_mode")
    broadcast, _ = record_show(room, client, auth_headers, clock, {5_000: "live one"})
    before = detail(client, broadcast.pk)["segments"]

    sent = recording_send(client, broadcast.pk, auth_headers, text="on the tape", progress_ms=SEGMENT_MS + 4_000)
    assert sent.status_code == 201, sent.content
    assert sent.json()["status"] == "published"
    row = Danmaku.objects.get(pk=sent.json()["id"])
    assert (row.broadcast_id, row.progress_ms, row.room_id) == (broadcast.pk, SEGMENT_MS + 4_000, room.pk)

    new_state_read()
    after = detail(client, broadcast.pk)["segments"]
    assert after[0] == before[0]
    assert after[1] > before[1]
    assert texts_and_progress(segment(client, broadcast.pk, 1, after[1])) == [("on the tape", SEGMENT_MS + 4_000)]
    # The live room: the refresher reads what the store holds, which lacks it.
    clock.at(clock.now_ms + 5_000)
    runtime.refresher().refresh_once()
    pulled = client.get(LIVE_SEND).json()
    assert "on the tape" not in pulled["items"]["text"]
    assert Room.objects.get(pk=room.pk).danmaku.filter(in_stream=False).count() == 0


def test_a_comment_on_the_recording_is_moderated_as_a_live_one(client, room, auth_headers, moderator_headers, clock):
    room.moderation_policy = Room.Policy.MANUAL
    room.save()
    broadcast, _ = record_show(room, client, auth_headers, clock, {})

    sent = recording_send(client, broadcast.pk, auth_headers, text="wait for me", progress_ms=3_000)
    assert sent.json()["status"] == "held"
    assert texts_and_progress(segment(client, broadcast.pk, 0)) == []

    approved = post(client, f"{MODERATION}/held/{sent.json()['id']}/approve", moderator_headers, reason="fine")
    assert approved.status_code == 200, approved.content
    new_state_read()
    assert texts_and_progress(segment(client, broadcast.pk, 0)) == [("wait for me", 3_000)]
    assert Danmaku.objects.get(pk=sent.json()["id"]).in_stream is True


def test_a_comment_on_the_recording_is_refused_clearly(client, room, auth_headers, clock):
    clock.at(START_MS)
    live = broadcast_start(room=room)
    refused = recording_send(client, live.pk, auth_headers, text="too soon", progress_ms=1_000)
    assert refused.status_code == 409
    assert "live" in refused.json()["detail"]
    clock.at(START_MS + 60_000)
    broadcast_stop(room=room)

    beyond = recording_send(client, live.pk, auth_headers, text="past a day", progress_ms=86_400_001)
    assert beyond.status_code == 400
    assert beyond.json()["errors"][0]["field"] == "progress_ms"
    for body in ({"text": "no time"}, {"text": "negative", "progress_ms": -1}, {"text": "x", "progress_ms": "soon"}):
        answer = recording_send(client, live.pk, auth_headers, **body)
        assert answer.status_code == 400, answer.content
        assert "progress_ms" in json.dumps(answer.json())
    assert recording_send(client, live.pk + 1, auth_headers, text="nowhere", progress_ms=0).status_code == 404
    assert recording_send(client, live.pk, {}, text="anonymous", progress_ms=0).status_code == 401
    assert Danmaku.objects.count() == 0


def test_a_repeated_client_id_on_a_recording_is_answered_as_the_first(client, room, auth_headers, clock):
    broadcast, _ = record_show(room, client, auth_headers, clock, {})
    first = recording_send(client, broadcast.pk, auth_headers, text="once", progress_ms=1_000, client_id="c-1")
    again = recording_send(client, broadcast.pk, auth_headers, text="once", progress_ms=1_000, client_id="c-1")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert Danmaku.objects.filter(broadcast=broadcast).count() == 1


@pytest.mark.parametrize(
    ("loopback_http", "url", "accepted"),
    [
        (False, "http://127.0.0.1:8123/show.webm", False),
        (True, "http://127.0.0.1:8123/show.webm", True),
        (True, "http://localhost/show.webm", True),
        (True, "http://video.example/show.webm", False),
        (False, "https://video.example/show.webm", True),
    ],
)
def test_recording_urls_are_https_unless_tests_allow_http_on_this_host(settings, room, loopback_http, url, accepted):
    from danmaku.errors import InvalidInput

    settings.DANMAKU_RECORDING_LOOPBACK_HTTP = loopback_http
    broadcast_start(room=room)
    if accepted:
        assert broadcast_stop(room=room, recording_url=url).recording_url == url
    else:
        with pytest.raises(InvalidInput, match="recording_url"):
            broadcast_stop(room=room, recording_url=url)


def test_a_recording_longer_than_the_chat_takes_comments_past_its_end(client, room, auth_headers, clock):
    broadcast, _ = record_show(room, client, auth_headers, clock, {}, length_ms=60_000)
    assert len(detail(client, broadcast.pk)["segments"]) == 1
    late = 2 * SEGMENT_MS + 61_000
    sent = recording_send(client, broadcast.pk, auth_headers, text="the encore", progress_ms=late)
    assert sent.status_code == 201, sent.content
    new_state_read()
    versions = detail(client, broadcast.pk)["segments"]
    assert len(versions) == 3
    assert texts_and_progress(segment(client, broadcast.pk, 2, versions[2])) == [("the encore", late)]


def test_a_hide_during_the_show_writes_no_version_and_the_replay_has_it_hidden(
    client, room, auth_headers, moderator_headers, clock
):
    from danmaku.models import Broadcast, ReplaySegment

    clock.at(START_MS)
    broadcast_start(room=room)
    rude = send_live(client, auth_headers, clock, START_MS + 2_000, "rude")
    send_live(client, auth_headers, clock, START_MS + 3_000, "fine")
    hidden = post(client, f"{MODERATION}/danmaku/{rude}/hide", moderator_headers, reason="insult")
    assert hidden.status_code == 200, hidden.content
    live = Broadcast.objects.get(room=room)
    assert (live.revision, ReplaySegment.objects.count()) == (0, 0)

    clock.at(START_MS + 60_000)
    broadcast_stop(room=room)
    clock.at(START_MS + 60_000 + SETTLE_MS)
    assert texts_and_progress(segment(client, live.pk, 0)) == [("fine", 3_000)]
