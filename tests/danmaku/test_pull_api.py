"""GET /api/v1/rooms/{room}/danmaku: the pull path, from the client's side.

Most tests put rows in the table with timestamps a few seconds in the past,
so the first pull (which activates the room and seals every finished second)
already has them. Tests about ordering across seals drive a fake store clock;
only the send -> pull and thread tests wait for the real clock.
"""

from __future__ import annotations

import gzip
import itertools
import json
import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from danmaku import runtime
from danmaku.models import ApiToken, Danmaku, Room, ViewerProfile
from danmaku.publishing import danmaku_retract
from danmaku.pull.cache import GZIP_MIN_BYTES
from danmaku.pull.wire import decode_cursor, encode_cursor
from danmaku.store import FULL_READ_SECONDS, DatabaseStore, RoomRef
from infra import clock as host_clock

URL = "/api/v1/rooms/{}/danmaku"
EPOCH = DatabaseStore.epoch
COLUMNS = ("id", "offset_ms", "color", "mode", "user", "nick", "avatar", "text", "count")


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance_ms(self, ms: int) -> None:
        self.now += ms / 1000

    @property
    def now_ms(self) -> int:
        return int(self.now * 1000)


@pytest.fixture
def clock(monkeypatch):
    """The host clock (infra.clock), which stamps sends and decides what the refresher seals."""
    fake = FakeClock(1_700_000_000.0)
    monkeypatch.setattr(host_clock, "source", fake)
    return fake


def now_ms() -> int:
    return int(time.time() * 1000)


def add(room, user, ts_ms: int, text: str | None = None, **fields) -> Danmaku:
    # Distinct texts by default: equal ones within 5 s merge into one item.
    text = f"hi {next(_texts)}" if text is None else text
    return Danmaku.objects.create(room=room, user=user, ts_ms=ts_ms, text=text, **fields)


_texts = itertools.count()


def pull(client, after: str | None = None, room: str = "live", **headers):
    params = {} if after is None else {"after": after}
    return client.get(URL.format(room), params, **headers)


def ids(response) -> list[int]:
    return response.json()["items"]["id"]


def within(value: int, target: int, share: float = 0.1) -> bool:
    return target * (1 - share) <= value <= target * (1 + share)


# -- errors -------------------------------------------------------------------


def test_pull_unknown_room_is_404_json(client, room):
    response = pull(client, room="nowhere")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "room not found"}


def test_pull_unknown_room_again_costs_no_query(client, room, django_assert_num_queries):
    pull(client, room="nowhere")

    with django_assert_num_queries(0):
        assert pull(client, room="nowhere").status_code == 404


@pytest.mark.parametrize("cursor", ["zz", "!!", "1-", "-1", "1_2", "1-" + "z" * 13, "a" * 100])
def test_pull_malformed_cursor_is_400_about_after(client, room, cursor):
    response = pull(client, cursor)

    assert response.status_code == 400
    assert "after" in response.json()["detail"]


# -- joining ------------------------------------------------------------------


def test_join_returns_only_the_last_few_seconds(client, room, user):
    recent = add(room, user, now_ms() - 2000, "recent")
    add(room, user, now_ms() - 20_000, "old")

    response = pull(client)

    assert response.status_code == 200
    assert ids(response) == [recent.id]


def test_join_body_is_columnar_with_every_field(client, room, user):
    first = add(room, user, now_ms() - 2000, "one", color=0x00FF00, mode=Danmaku.Mode.TOP)
    second = add(room, user, first.ts_ms + 5, "two")

    body = pull(client).json()

    assert set(body) == {
        "cursor",
        "next_ms",
        "reason",
        "gap",
        "missed",
        "items",
        "deleted",
        "counts",
        "restored",
        "pinned",
        "viewers",
    }
    epoch, second_of_cursor = decode_cursor(body["cursor"])
    assert epoch == EPOCH
    assert second_of_cursor >= first.ts_ms // 1000
    assert body["reason"] == "normal"
    assert isinstance(body["next_ms"], int)
    assert (body["gap"], body["missed"], body["deleted"]) == (False, 0, [])
    items = body["items"]
    assert set(items) == set(COLUMNS)
    assert {len(items[column]) for column in COLUMNS} == {2}
    assert items["id"] == [first.id, second.id]
    assert items["text"] == ["one", "two"]
    assert items["color"] == [0x00FF00, 0xFFFFFF]
    assert items["mode"] == [1, 0]
    assert items["user"] == [user.id, user.id]
    assert items["nick"] == ["viewer", "viewer"]
    assert items["offset_ms"][1] - items["offset_ms"][0] == 5
    assert all(0 <= offset < 3000 for offset in items["offset_ms"])


def test_pull_leaves_out_unpublished_comments(client, room, user):
    shown = add(room, user, now_ms() - 2000)
    add(room, user, now_ms() - 2000, status=Danmaku.Status.HELD)
    add(room, user, now_ms() - 2000, status=Danmaku.Status.HIDDEN)

    assert ids(pull(client)) == [shown.id]


# -- cursors ------------------------------------------------------------------


def test_cursor_pull_returns_what_came_after_the_cursor(client, room, user):
    older = add(room, user, now_ms() - 8000)
    newer = add(room, user, now_ms() - 5000)

    response = pull(client, encode_cursor(EPOCH, older.ts_ms // 1000))

    assert ids(response) == [newer.id]
    assert response.json()["gap"] is False


def test_up_to_date_cursor_gets_nothing_and_keeps_its_cursor(client, room, user):
    add(room, user, now_ms() - 2000)
    cursor = pull(client).json()["cursor"]

    body = pull(client, cursor).json()

    assert body["items"]["id"] == []
    assert body["cursor"] == cursor
    assert body["gap"] is False


def test_cursor_older_than_the_window_reports_gap_with_the_newest_seconds(client, room, user):
    recent = add(room, user, now_ms() - 2000)

    body = pull(client, encode_cursor(EPOCH, now_ms() // 1000 - 1000)).json()

    assert body["gap"] is True
    assert body["items"]["id"] == [recent.id]
    assert decode_cursor(body["cursor"])[1] >= recent.ts_ms // 1000


def test_cursor_from_another_epoch_reports_gap(client, room, user):
    recent = add(room, user, now_ms() - 2000)

    body = pull(client, encode_cursor(EPOCH + 1, now_ms() // 1000 - 3)).json()

    assert body["gap"] is True
    assert body["items"]["id"] == [recent.id]
    assert decode_cursor(body["cursor"])[0] == EPOCH


def test_cursor_slightly_ahead_waits_without_gap_but_far_ahead_is_a_gap(client, room, user):
    newest = decode_cursor(pull(client).json()["cursor"])[1]

    near = pull(client, encode_cursor(EPOCH, newest + 2)).json()
    far = pull(client, encode_cursor(EPOCH, newest + 3600)).json()

    assert (near["gap"], near["cursor"]) == (False, encode_cursor(EPOCH, newest + 2))
    assert far["gap"] is True
    assert decode_cursor(far["cursor"])[1] == newest


def test_cursor_chain_delivers_every_comment_exactly_once(client, room, user, clock):
    """Comments keep arriving, some stamped in seconds that were already sealed
    (their commit overtook the seal); a client following the cursor chain
    gets each of them once, whatever the timing of its pulls."""
    cursor = pull(client).json()["cursor"]
    written: list[int] = []
    received: list[int] = []
    # (ms to advance before the refresh, timestamps to write relative to now, pulls after the refresh)
    rounds = [
        (0, (-1500, -300, 0), 1),
        (1000, (-200,), 2),
        (300, (0, 10, 20), 1),
        (700, (-2500, -900), 1),
        (1300, (), 1),
        (2500, (-50, 0), 0),
        (400, (-9000,), 1),
        (1000, (0,), 2),
    ]
    for advance, offsets, pulls in rounds:
        written += [add(room, user, clock.now_ms + offset).id for offset in offsets]
        clock.advance_ms(advance)
        runtime.refresher().refresh_once()
        for _ in range(pulls):
            body = pull(client, cursor).json()
            assert body["gap"] is False
            received += body["items"]["id"]
            cursor = body["cursor"]
    clock.advance_ms(2000)
    runtime.refresher().refresh_once()
    received += ids(pull(client, cursor))

    assert len(received) == len(set(received)), "a comment was delivered twice"
    assert sorted(received) == sorted(written)


def test_comment_committed_after_its_second_was_sealed_is_delivered_late_once(client, room, user, clock):
    cursor = pull(client).json()["cursor"]
    sealed = decode_cursor(cursor)[1]
    late = add(room, user, sealed * 1000 + 500, "late")  # stamped in a sealed second, committed now
    on_time = add(room, user, (sealed + 1) * 1000 + 100, "on time")

    clock.advance_ms(1000)
    runtime.refresher().refresh_once()
    first = pull(client, cursor).json()
    clock.advance_ms(1000)
    runtime.refresher().refresh_once()  # reads the overlap again: both rows come back from the store
    second = pull(client, first["cursor"]).json()

    assert sorted(first["items"]["id"]) == sorted([late.id, on_time.id])
    assert second["items"]["id"] == []
    assert decode_cursor(second["cursor"])[1] > decode_cursor(first["cursor"])[1]


def test_sent_comment_reaches_a_cursor_pull_once_its_second_is_sealed(client, room, auth_headers):
    cursor = pull(client).json()["cursor"]
    sent = client.post(URL.format("live"), {"text": "hello"}, content_type="application/json", **auth_headers)
    assert sent.status_code == 201
    ts_ms = Danmaku.objects.get().ts_ms

    runtime.refresher().refresh_once()
    too_early = pull(client, cursor).json()
    seal_at_ms = (ts_ms // 1000 + 1) * 1000 + runtime.refresher().seal_lag_ms
    time.sleep(max(0, seal_at_ms - now_ms() + 20) / 1000)
    runtime.refresher().refresh_once()
    body = pull(client, too_early["cursor"]).json()

    assert too_early["items"]["id"] == []
    assert body["items"]["id"] == [sent.json()["id"]]
    assert body["items"]["text"] == ["hello"]
    assert ids(pull(client, body["cursor"])) == []


# -- shared bytes and HTTP caching ----------------------------------------------


def test_gzip_answer_decompresses_to_the_plain_answer(client, room, user):
    for n in range(3):
        add(room, user, now_ms() - 2000 + n, "a fairly long comment to pass the gzip threshold " * 2)

    plain = pull(client)
    zipped = pull(client, HTTP_ACCEPT_ENCODING="gzip, deflate")

    assert len(plain.content) > 200
    assert "Content-Encoding" not in plain
    assert zipped["Content-Encoding"] == "gzip"
    assert len(zipped.content) < len(plain.content)
    assert gzip.decompress(zipped.content) == plain.content
    assert "Accept-Encoding" in zipped["Vary"]


def test_an_answer_is_gzipped_only_where_that_saves_bytes(client, room):
    identity = pull(client)
    gzipped = pull(client, HTTP_ACCEPT_ENCODING="gzip")

    assert json.loads(identity.content)["items"]["id"] == []
    if len(identity.content) < GZIP_MIN_BYTES:
        assert "Content-Encoding" not in gzipped
    else:
        # An empty answer (about 250 bytes with every field) saves about 60.
        assert gzipped["Content-Encoding"] == "gzip"
        assert len(gzipped.content) + len("Content-Encoding: gzip\r\n") < len(identity.content)


def test_pull_is_cacheable_and_revalidates_with_etag(client, room, user):
    add(room, user, now_ms() - 2000)
    first = pull(client)

    again = pull(client, HTTP_IF_NONE_MATCH=first["ETag"])

    assert "max-age=" in first["Cache-Control"]
    assert first["ETag"].startswith('"')
    assert again.status_code == 304
    assert again.content == b""
    assert again["ETag"] == first["ETag"]
    assert pull(client, HTTP_IF_NONE_MATCH='"something-else"').status_code == 200


def test_retraction_within_the_second_changes_the_etag_with_the_body(client, room, user, clock):
    # The clock stands still: the refresher reads the retraction without
    # sealing a new second, so only the rebuilt slot tells the answers apart.
    gone = add(room, user, clock.now_ms - 2000, "regrettable")
    kept = add(room, user, clock.now_ms - 1500, "fine")
    first = pull(client)
    assert ids(first) == [gone.id, kept.id]

    assert danmaku_retract(danmaku_id=gone.id, reason="test") is True
    runtime.refresher().refresh_once()
    again = pull(client, HTTP_IF_NONE_MATCH=first["ETag"])

    assert again.status_code == 200
    assert ids(again) == [kept.id]
    assert again.json()["cursor"] == first.json()["cursor"]
    assert again["ETag"] != first["ETag"]
    # The same body still revalidates, in either encoding.
    assert pull(client, HTTP_IF_NONE_MATCH=again["ETag"]).status_code == 304
    assert pull(client, HTTP_IF_NONE_MATCH=again["ETag"], HTTP_ACCEPT_ENCODING="gzip").status_code == 304


def test_identical_pulls_share_one_answer_object(client, room, user):
    add(room, user, now_ms() - 2000)
    cache = runtime.pull_cache()
    cursor = pull(client).json()["cursor"]

    assert cache.pull("live", None) is cache.pull("live", None)
    assert cache.pull("live", cursor) is cache.pull("live", cursor)
    assert cache.pull("live", None) is not cache.pull("live", cursor)
    assert pull(client).content == pull(client).content


def test_warm_pull_touches_no_database(client, room, user, django_assert_num_queries):
    add(room, user, now_ms() - 2000)
    cursor = pull(client).json()["cursor"]

    with django_assert_num_queries(0):
        assert pull(client).status_code == 200
        assert pull(client, cursor).status_code == 200
        assert pull(client, encode_cursor(EPOCH, 1)).status_code == 200


def test_first_pull_of_a_room_activates_it_with_bounded_queries(client, room, django_assert_max_num_queries):
    # The room, its comments and its retractions in the window.
    with django_assert_max_num_queries(3):
        assert pull(client).status_code == 200


# -- next_ms and reason ---------------------------------------------------------


def test_room_quiet_for_longer_than_quiet_after_seconds_polls_at_its_quiet_interval(client, room, user):
    Room.objects.filter(pk=room.pk).update(quiet_after_seconds=5, quiet_interval_ms=12_000)
    add(room, user, now_ms() - 20_000)
    cursor = pull(client).json()["cursor"]

    body = pull(client, cursor).json()

    assert body["reason"] == "quiet"
    assert within(body["next_ms"], 12_000)


def test_a_viewer_joining_a_quiet_room_gets_its_normal_interval(client, room, user):
    Room.objects.filter(pk=room.pk).update(quiet_after_seconds=5)
    add(room, user, now_ms() - 20_000)

    body = pull(client).json()

    assert body["reason"] == "normal"
    assert within(body["next_ms"], 3000)


def test_a_new_rooms_interval_grows_gradually_from_its_first_viewer(client, room, clock):
    """No comment ever: the room is quiet since its first viewer came, and
    its interval grows from the normal 3 s to the quiet 10 s at its
    quiet_after_seconds (30), not at once."""
    first = pull(client).json()
    assert (first["reason"], within(first["next_ms"], 3000)) == ("normal", True)
    cursor = first["cursor"]
    seen = []
    for _ in range(8):
        clock.advance_ms(5000)
        runtime.refresher().refresh_once()
        body = pull(client, cursor).json()
        cursor = body["cursor"]
        seen.append((body["reason"], body["next_ms"]))

    intervals = [next_ms for _, next_ms in seen]
    # 5 s quiet: still about the normal interval; then growing; 10 s from 30 s on.
    assert intervals[0] <= 3000 * 1.3 * 1.1
    assert intervals[1] < intervals[3] < intervals[5]
    assert all(within(next_ms, 10_000) for next_ms in intervals[6:])
    assert {reason for reason, _ in seen} == {"quiet"}


def test_a_comment_ends_the_quiet_at_once(client, room, user, clock):
    Room.objects.filter(pk=room.pk).update(quiet_after_seconds=5)
    cursor = pull(client).json()["cursor"]
    clock.advance_ms(10_000)
    runtime.refresher().refresh_once()
    body = pull(client, cursor).json()
    assert body["reason"] == "quiet"

    add(room, user, clock.now_ms)
    clock.advance_ms(2000)
    runtime.refresher().refresh_once()
    body = pull(client, body["cursor"]).json()

    assert len(body["items"]["id"]) == 1
    assert (body["reason"], within(body["next_ms"], 3000)) == ("normal", True)


def test_active_room_polls_at_the_poll_interval(client, room, user):
    add(room, user, now_ms() - 20_000)  # within quiet_after_seconds (30)

    body = pull(client).json()

    assert body["reason"] == "normal"
    assert within(body["next_ms"], 3000)


def test_display_cap_shows_the_first_comments_and_counts_the_rest_as_missed(client, room, user):
    Room.objects.filter(pk=room.pk).update(display_cap_per_second=2)
    second = now_ms() // 1000 - 3
    rows = [add(room, user, second * 1000 + 100 * n, f"c{n}") for n in range(5)]

    body = pull(client, encode_cursor(EPOCH, second - 1)).json()

    assert body["items"]["id"] == [rows[0].id, rows[1].id]
    assert body["missed"] == 3


def test_room_setting_change_reaches_the_next_pull_after_a_refresh(client, room, user):
    add(room, user, now_ms() - 2000)
    assert within(pull(client).json()["next_ms"], 3000)

    Room.objects.filter(pk=room.pk).update(poll_interval_ms=6000, updated_at=timezone.now())
    runtime.refresher().refresh_once()

    assert within(pull(client).json()["next_ms"], 6000)


def test_room_setting_saved_in_admin_style_reaches_the_next_pull(client, room):
    pull(client)
    # A tick that reads every room's settings, then ticks that read only
    # rooms saved since: the save must reach the pulls through the latter.
    runtime.refresher().refresh_once()
    room.poll_interval_ms = 5000
    room.save()
    runtime.refresher().refresh_once()

    assert within(pull(client).json()["next_ms"], 5000)


def test_deleted_room_stops_answering_after_the_next_full_settings_read(client, room, monkeypatch):
    assert pull(client).status_code == 200
    refresher = runtime.refresher()
    refresher.refresh_once()
    store = refresher.store
    now = time.monotonic()

    room.delete()
    refresher.refresh_once()
    # Between full reads only saved rooms are read: a deleted one is not
    # among them and keeps answering from its ring (at most FULL_READ_SECONDS).
    assert pull(client).status_code == 200

    monkeypatch.setattr(store, "_monotonic", lambda: now + FULL_READ_SECONDS + 1)
    refresher.refresh_once()
    assert pull(client).status_code == 404


# -- the refresher ----------------------------------------------------------------


def test_failed_refresh_marks_pulls_degraded_until_the_next_success(client, room, user, monkeypatch):
    add(room, user, now_ms() - 2000)
    cursor = pull(client).json()["cursor"]
    before = pull(client, cursor).json()
    refresher = runtime.refresher()

    def store_down(room_ids, since_ms):
        raise ConnectionError("store down")

    monkeypatch.setattr(refresher.store, "read", store_down)
    with pytest.raises(ConnectionError):
        refresher.refresh_once()
    during = pull(client, cursor).json()
    monkeypatch.undo()
    refresher.refresh_once()
    after = pull(client, cursor).json()

    assert before["reason"] == "normal"
    assert during["reason"] == "degraded"
    assert within(during["next_ms"], 6000)  # poll interval x DANMAKU_DEGRADED_MULTIPLIER
    assert after["reason"] == "normal"
    assert within(after["next_ms"], 3000)


def test_degraded_answer_is_not_revalidated_as_the_healthy_one(client, room, monkeypatch):
    healthy = pull(client)
    refresher = runtime.refresher()
    monkeypatch.setattr(refresher.store, "read", lambda *args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        refresher.refresh_once()

    response = pull(client, HTTP_IF_NONE_MATCH=healthy["ETag"])

    assert response.status_code == 200
    assert response.json()["reason"] == "degraded"


def refresher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "danmaku-refresher" and t.is_alive()]


def test_refresher_thread_delivers_a_sent_comment_and_stops_cleanly(client, transactional_db):
    Room.objects.create(slug="live", title="Live", user_send_interval_ms=0)
    sender = get_user_model().objects.create_user("sender")
    _, raw = ApiToken.issue(sender)
    refresher = runtime.refresher()
    refresher.ensure_started()
    refresher.ensure_started()
    assert len(refresher_threads()) == 1
    cursor = pull(client).json()["cursor"]

    sent = client.post(
        URL.format("live"), {"text": "via thread"}, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw}"
    )
    assert sent.status_code == 201
    received: list[int] = []
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:
        time.sleep(0.1)
        body = pull(client, cursor).json()
        received += body["items"]["id"]
        cursor = body["cursor"]
    refresher.stop()

    assert received == [sent.json()["id"]]
    assert refresher_threads() == []


def test_pull_carries_each_senders_avatar_thumbnail_or_the_default(client, room, user, settings):
    other = get_user_model().objects.create_user("no-avatar")
    ViewerProfile.objects.create(user=user, nickname="Nick", avatar_thumb="avatars/abc.png")
    add(room, user, now_ms() - 2000, "with avatar")
    add(room, other, now_ms() - 1900, "without")

    items = pull(client).json()["items"]

    assert items["text"] == ["with avatar", "without"]
    assert items["nick"] == ["Nick", "no-avatar"]
    assert items["avatar"] == [settings.MEDIA_URL + "avatars/abc.png", settings.DANMAKU_DEFAULT_AVATAR_URL]


def test_database_store_reads_only_saved_rooms_between_full_settings_reads(room):
    other = Room.objects.create(slug="other", title="Other")
    Room.objects.update(updated_at=timezone.now() - timedelta(minutes=5))
    clock = [1000.0]
    store = DatabaseStore(monotonic=lambda: clock[0])
    refs = [RoomRef(room.id, room.slug), RoomRef(other.id, other.slug)]

    first = store.read(refs, 0)
    assert (first.all_rooms, sorted(first.rooms)) == (True, sorted([room.id, other.id]))
    nothing_saved = store.read(refs, 0)
    assert (nothing_saved.all_rooms, nothing_saved.rooms) == (False, {})

    room.poll_interval_ms = 1500
    room.save()
    Room.objects.create(slug="not-active-here", title="Not asked for")
    saved = store.read(refs, 0)
    assert (saved.all_rooms, list(saved.rooms)) == (False, [room.id])
    assert saved.rooms[room.id]["poll_interval_ms"] == 1500

    clock[0] += FULL_READ_SECONDS
    again = store.read(refs, 0)
    assert (again.all_rooms, sorted(again.rooms)) == (True, sorted([room.id, other.id]))
