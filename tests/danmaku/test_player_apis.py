"""Other players' APIs over HTTP: DPlayer's v3 read and send, Bilibili's
XML, and the CORS that lets other sites' pages use them."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from danmaku.broadcasts import broadcast_start
from danmaku.models import Danmaku
from danmaku.segments import SEGMENT_MS
from tests.danmaku import test_replay
from tests.danmaku.test_replay import START_MS, record_show

DPLAYER = "/api/dplayer/v3/"
# The host clock the sends and broadcasts are stamped by.
clock = test_replay.clock
ORIGIN = "https://player.example"


def player_token(*args: str) -> str:
    out = StringIO()
    call_command("issue_token", "embedder", "--scope", "player", *args, stdout=out, stderr=StringIO())
    return out.getvalue().strip()


def dplayer_send(client, origin: str | None = None, **body):
    headers = {"HTTP_ORIGIN": origin} if origin else {}
    return client.post(DPLAYER, json.dumps(body), content_type="application/json", **headers)


@pytest.fixture
def show(client, room, auth_headers, clock):
    texts = {1_000: "first", 2_500: "<b>bold & bad</b>", SEGMENT_MS + 500: "later"}
    broadcast, ids = record_show(room, client, auth_headers, clock, texts)
    Danmaku.objects.filter(pk=ids["later"]).update(mode=1, color=0xFF0000)  # top, red
    return broadcast, ids


def test_dplayer_reads_a_broadcast_in_its_own_shape(client, show):
    broadcast, _ = show
    answer = client.get(DPLAYER, {"id": broadcast.pk})
    assert answer.status_code == 200
    assert answer["Access-Control-Allow-Origin"] == "*"
    assert "Origin" not in answer.get("Vary", "")
    body = answer.json()
    assert body["code"] == 0
    assert body["data"] == [
        [1.0, 0, 0xFFFFFF, "viewer", "first"],
        # DPlayer renders text with innerHTML: ours goes out escaped.
        [2.5, 0, 0xFFFFFF, "viewer", "&lt;b&gt;bold &amp; bad&lt;/b&gt;"],
        [(SEGMENT_MS + 500) / 1000, 1, 0xFF0000, "viewer", "later"],
    ]


def test_max_and_limit_keep_the_most_recent_in_playback_order(client, show):
    broadcast, _ = show
    latest = [row[4] for row in client.get(DPLAYER, {"id": broadcast.pk, "max": 2}).json()["data"]]
    assert latest == ["&lt;b&gt;bold &amp; bad&lt;/b&gt;", "later"]
    assert client.get(DPLAYER, {"id": broadcast.pk, "limit": 1}).json()["data"][0][4] == "later"


def test_a_warm_dplayer_read_runs_no_query(client, show):
    broadcast, _ = show
    first = client.get(DPLAYER, {"id": broadcast.pk, "max": 50})
    with CaptureQueriesContext(connection) as queries:
        again = client.get(DPLAYER, {"id": broadcast.pk, "max": 50})
    assert len(queries) == 0
    assert again.content == first.content


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ({}, 400, "id: must be a broadcast id"),
        ({"id": "abc"}, 400, "id: must be a broadcast id"),
        ({"id": "999"}, 404, "no such broadcast"),
    ],
)
def test_a_bad_dplayer_read_says_why_in_dplayers_shape(client, db, query, status, message):
    answer = client.get(DPLAYER, query)
    assert answer.status_code == status
    assert answer.json() == {"code": 1, "msg": message}


def test_dplayer_sends_as_the_tokens_user_at_the_playback_time(client, show, clock):
    broadcast, _ = show
    token = player_token("--broadcast", str(broadcast.pk))
    sent = dplayer_send(
        client,
        token=token,
        id=str(broadcast.pk),
        author="someone else",
        time=12.3456,
        text="from dplayer",
        color=0x00FF00,
        type=2,
    )
    assert sent.status_code == 201, sent.content
    assert sent.json()["code"] == 0
    row = Danmaku.objects.get(pk=sent.json()["data"]["id"])
    assert (row.user.username, row.progress_ms, row.color, row.mode) == ("embedder", 12_345, 0x00FF00, 2)
    segment = client.get(f"/api/v1/broadcasts/{broadcast.pk}/danmaku", {"segment": 0}).json()["items"]
    assert "from dplayer" in segment["text"]


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"token": "dmk_nope"}, 401, "token: not a valid token (expired, revoked or unknown)"),
        ({"color": 0x1000000}, 400, "color: must be 0 to 16777215 (0xRRGGBB)"),
        ({"color": "red"}, 400, "color: must be a colour like #rrggbb"),
        ({"type": 7}, 400, "type: must be 0 (right to left), 1 (top) or 2 (bottom)"),
        ({"time": -1}, 400, "time: Input should be greater than or equal to 0"),
        ({"text": ""}, 400, "text: String should have at least 1 character"),
        ({"text": "a\u202eb"}, 400, "text: must not contain bidirectional control characters"),
        ({"id": "x"}, 400, "id: must be a broadcast id"),
        ({"id": 999}, 404, "no such broadcast"),
        ({"time": 99_999}, 400, "time: Input should be less than or equal to 86400"),
    ],
)
def test_a_bad_dplayer_send_says_why_and_writes_nothing(client, show, change, status, message):
    broadcast, _ = show
    before = Danmaku.objects.count()
    body = {"token": player_token(), "id": broadcast.pk, "time": 1, "text": "hi", "color": 0, "type": 0, **change}
    answer = dplayer_send(client, **body)
    assert answer.status_code == status, answer.content
    assert answer.json()["code"] == 1
    assert answer.json()["msg"].startswith(message.split(":")[0])
    assert answer.json()["msg"] == message or (status == 400 and message.split(": ")[0] in answer.json()["msg"])
    assert Danmaku.objects.count() == before


def test_dplayer_sends_on_a_live_broadcast_are_refused_until_it_ends(client, room, clock):
    clock.at(START_MS)
    live = broadcast_start(room=room)
    answer = dplayer_send(client, token=player_token(), id=live.pk, time=1, text="hi", color=0, type=0)
    assert answer.status_code == 409
    assert answer.json() == {"code": 1, "msg": "the broadcast is live: send to its room"}


@given(
    body=st.one_of(
        st.dictionaries(
            st.sampled_from(["token", "id", "time", "text", "color", "type", "author", "extra"]),
            st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
        ),
        st.text(max_size=50),
        st.lists(st.integers(), max_size=3),
    )
)
@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_dplayer_body_gets_a_server_error(client, show, body):
    answer = client.post(DPLAYER, json.dumps(body), content_type="application/json")
    assert answer.status_code < 500, answer.content
    if answer.status_code >= 400:
        assert answer.json()["code"] == 1
        assert answer.json()["msg"]


# -- Bilibili XML -------------------------------------------------------------


def test_the_xml_is_bilibilis_and_escapes_every_text(client, show):
    broadcast, ids = show
    answer = client.get(f"/api/v1/broadcasts/{broadcast.pk}/danmaku.xml", HTTP_ACCEPT_ENCODING="gzip")
    assert answer.status_code == 200
    assert answer["Content-Type"] == "application/xml; charset=utf-8"
    assert answer["Access-Control-Allow-Origin"] == "*"
    import gzip

    root = ET.fromstring(gzip.decompress(answer.content))
    rows = [(d.get("p").split(","), d.text) for d in root.iter("d")]
    assert [text for _, text in rows] == ["first", "<b>bold & bad</b>", "later"]
    time_s, mode, size, color, ts, pool, uid, danmaku_id = rows[2][0]
    assert (float(time_s), mode, size, int(color), pool, int(danmaku_id)) == (
        (SEGMENT_MS + 500) / 1000,
        "5",
        "25",
        0xFF0000,
        "0",
        ids["later"],
    )
    assert int(ts) == (START_MS + SEGMENT_MS + 500) // 1000
    assert int(uid) == Danmaku.objects.get(pk=ids["later"]).user_id
    assert rows[0][0][1] == "1"  # scroll


def test_the_xml_follows_a_hide(client, show, moderator_headers):
    broadcast, ids = show
    url = f"/api/v1/broadcasts/{broadcast.pk}/danmaku.xml"
    assert b"first" in client.get(url).content
    hidden = client.post(
        f"/api/v1/moderation/danmaku/{ids['first']}/hide",
        {"reason": "no"},
        content_type="application/json",
        **moderator_headers,
    )
    assert hidden.status_code == 200
    from danmaku.replaycache import replay_cache

    replay_cache._states.clear()
    assert b"first" not in client.get(url).content


# -- CORS -----------------------------------------------------------------------


@pytest.fixture
def moderator_headers(db):
    from django.contrib.auth import get_user_model

    from danmaku.models import ApiToken

    moderator = get_user_model().objects.create_superuser("mod", password="pw-for-tests-only")
    _, raw = ApiToken.issue(moderator)
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


@pytest.mark.parametrize("path", [DPLAYER, "/api/v1/rooms/live/danmaku", "/api/v1/broadcasts/1/danmaku"])
def test_listed_origins_pass_the_preflight_and_others_do_not(client, settings, room, path):
    settings.DANMAKU_CORS_ORIGINS = [ORIGIN]
    asked = {"HTTP_ORIGIN": ORIGIN, "HTTP_ACCESS_CONTROL_REQUEST_METHOD": "POST"}
    yes = client.options(path, **asked, HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type")
    assert yes.status_code == 204
    assert yes["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in yes["Access-Control-Allow-Methods"]
    assert "Content-Type" in yes["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in yes
    no = client.options(path, **{**asked, "HTTP_ORIGIN": "https://elsewhere.example"})
    assert no.status_code == 403
    assert "Access-Control-Allow-Origin" not in no


def test_a_send_from_a_listed_origin_is_readable_there(client, settings, show):
    broadcast, _ = show
    settings.DANMAKU_CORS_ORIGINS = [ORIGIN]
    body = {"token": player_token(), "id": broadcast.pk, "time": 1, "text": "hi", "color": 0, "type": 0}
    sent = dplayer_send(client, origin=ORIGIN, **body)
    assert sent.status_code == 201
    assert sent["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in sent["Vary"]
    elsewhere = dplayer_send(client, origin="https://elsewhere.example", **{**body, "text": "again"})
    assert "Access-Control-Allow-Origin" not in elsewhere


def test_pulls_are_readable_from_any_origin_with_the_same_bytes(client, room):
    plain = client.get("/api/v1/rooms/live/danmaku")
    from_elsewhere = client.get("/api/v1/rooms/live/danmaku", HTTP_ORIGIN="https://elsewhere.example")
    assert plain["Access-Control-Allow-Origin"] == from_elsewhere["Access-Control-Allow-Origin"] == "*"
    assert "Origin" not in plain["Vary"]
    assert "Access-Control-Allow-Credentials" not in plain
