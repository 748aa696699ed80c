"""What viewers' pulls carry of merged duplicates, hides, restores and pins,
through HTTP as clients and moderators use it, in both store modes."""

from __future__ import annotations

import json
import time

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from danmaku import runtime
from danmaku.models import ApiToken, Room
from danmaku.rooms import room_settings_publish
from infra import clock
from moderation.selectors import MODERATORS_GROUP

PULL = "/api/v1/rooms/live/danmaku"
# A refresher tick seals a second once its end is this far behind.
SETTLE_LIMIT_SECONDS = 5.0


@pytest.fixture(params=["database", "redis"])
def store_mode(request):
    if request.param == "redis":
        request.getfixturevalue("redis_mode")
    return request.param


def bearer(username: str, *, moderator: bool = False) -> dict[str, str]:
    user = get_user_model().objects.create_user(username, password="pw")
    if moderator:
        # (A transactional test's flush drops the migration's groups.)
        user.groups.add(Group.objects.get_or_create(name=MODERATORS_GROUP)[0])
    _, raw = ApiToken.issue(user)
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def send(headers: dict, text: str) -> int:
    answer = Client().post(PULL, json.dumps({"text": text}), content_type="application/json", **headers)
    assert answer.status_code == 201, answer.content
    return answer.json()["id"]


def moderate(headers: dict, danmaku_id: int, action: str) -> None:
    answer = Client().post(
        f"/api/v1/moderation/danmaku/{danmaku_id}/{action}",
        json.dumps({"reason": "test"}),
        content_type="application/json",
        **headers,
    )
    assert answer.status_code == 200, answer.content


def settle() -> None:
    """Let the refresher seal the second now running, as its thread would."""
    target = clock.now_ms() // 1000
    deadline = time.monotonic() + SETTLE_LIMIT_SECONDS
    refresher = runtime.refresher()
    while True:
        refresher.refresh_once()
        entry = runtime.pull_cache().rooms.get("live")
        if entry is None or (entry.ring.sealed_through or 0) >= target:
            return  # (not active yet: its first pull reads what it holds)
        assert time.monotonic() < deadline, "the refresher did not seal the second in time"
        time.sleep(0.05)


class Viewer:
    """A client following the pulls: deleted first, then items, then counts."""

    def __init__(self) -> None:
        self.cursor: str | None = None
        self.shown: dict[int, tuple[str, int]] = {}
        self.answers: list[dict] = []

    def pull(self) -> dict:
        params = {} if self.cursor is None else {"after": self.cursor}
        answer = Client().get(PULL, params)
        assert answer.status_code == 200
        body = answer.json()
        self.cursor = body["cursor"]
        self.answers.append(body)
        for item_id in body["deleted"]:
            self.shown.pop(item_id, None)
        items = body["items"]
        for item_id, text, count in zip(items["id"], items["text"], items["count"], strict=True):
            self.shown[item_id] = (text, count)
        for item_id, count in body["counts"].items():
            if int(item_id) in self.shown:
                self.shown[int(item_id)] = (self.shown[int(item_id)][0], count)
        return body


@pytest.mark.django_db(transaction=True)
def test_forty_viewers_sending_one_text_are_one_item_of_forty_and_hiding_ten_leaves_thirty(room, store_mode):
    moderator = bearer("mod", moderator=True)
    senders = [bearer(f"fan{n}") for n in range(40)]
    viewer = Viewer()
    settle()
    viewer.pull()

    ids = []
    for n, headers in enumerate(senders):
        ids.append(send(headers, "233333"))
        if n == 19:
            settle()
            viewer.pull()
    settle()
    viewer.pull()

    assert list(viewer.shown.values()) == [("233333", 40)]
    # At most one item per second of the burst, and the answers' counts add up.
    delivered = [body["items"]["text"].count("233333") for body in viewer.answers]
    assert sum(delivered) == 1 or all(n <= 1 for n in delivered)
    joiner = Viewer()
    joiner.pull()
    assert list(joiner.shown.values()) == [("233333", 40)]

    for danmaku_id in ids[-10:]:
        moderate(moderator, danmaku_id, "hide")
    settle()
    viewer.pull()
    assert list(viewer.shown.values()) == [("233333", 30)]

    for danmaku_id in ids[:-10]:
        moderate(moderator, danmaku_id, "hide")
    settle()
    body = viewer.pull()
    assert viewer.shown == {}
    assert body["deleted"] == [ids[0]]


@pytest.mark.django_db(transaction=True)
def test_an_unhidden_comment_comes_back_to_the_screens_that_removed_it(room, store_mode):
    moderator = bearer("mod", moderator=True)
    sender = bearer("sender")
    viewer = Viewer()
    settle()
    viewer.pull()
    danmaku_id = send(sender, "worth keeping")
    settle()
    viewer.pull()
    moderate(moderator, danmaku_id, "hide")
    settle()
    viewer.pull()
    assert viewer.shown == {}

    moderate(moderator, danmaku_id, "unhide")
    settle()
    body = viewer.pull()

    assert body["restored"] == [danmaku_id]
    assert viewer.shown == {danmaku_id: ("worth keeping", 1)}
    joiner = Viewer()
    joiner.pull()
    assert joiner.shown == {danmaku_id: ("worth keeping", 1)}


@pytest.mark.django_db(transaction=True)
def test_a_room_with_merging_off_delivers_every_duplicate(room, store_mode):
    Room.objects.filter(pk=room.pk).update(merge_duplicates=False)
    room.refresh_from_db()
    room_settings_publish(room=room)
    viewer = Viewer()
    settle()
    viewer.pull()
    for n in range(3):
        send(bearer(f"fan{n}"), "233333")
    settle()
    viewer.pull()

    assert sorted(viewer.shown.values()) == [("233333", 1)] * 3


@pytest.mark.django_db(transaction=True)
def test_a_pin_reaches_every_pull_until_it_expires_with_no_query(room, store_mode, django_assert_num_queries):
    viewer = Viewer()
    settle()
    viewer.pull()
    room.pinned_text = "Giveaway at 20:00"
    room.pinned_nick = ""
    room.pinned_until_ms = clock.now_ms() + 2500
    room.save()
    room_settings_publish(room=room)
    settle()

    with django_assert_num_queries(0):
        body = viewer.pull()
        joined = Client().get(PULL).json()

    for answer in (body, joined):
        assert answer["pinned"]["text"] == "Giveaway at 20:00"
        assert answer["pinned"]["id"] is None
        assert 0 < answer["pinned"]["expires_in_ms"] <= 2500
    deadline = time.monotonic() + SETTLE_LIMIT_SECONDS
    while viewer.pull()["pinned"] is not None:
        assert time.monotonic() < deadline, "the pin outlived its expiry"
        time.sleep(0.2)
        settle()
