"""End to end over HTTP: a comment hidden through the moderation API leaves
every other viewer's screen (real gunicorn, two workers, SQLite store)."""

from __future__ import annotations

import time

import pytest
import requests

from harness import local

pytestmark = pytest.mark.slow

ROOM = "modroom"
REQUEST_TIMEOUT_SECONDS = 5
POLL_SECONDS = 0.1
# A comment reaches pulls within a few seconds; so does its retraction.
DELIVERY_LIMIT_SECONDS = 5.0
# One refresher tick (~1 s) plus the seal lag: by then every worker has read
# the retraction, so a joiner on either worker must not get the comment.
SETTLE_SECONDS = 1.5
JOINER_PULLS = 10


@pytest.fixture
def server(tmp_path):
    try:
        with local.gunicorn(
            room=ROOM, users=("sender", "mod"), var_dir=tmp_path, room_fields={"user_send_interval_ms": 0}
        ) as running:
            local.manage(
                local.environment(tmp_path),
                "shell",
                "-c",
                "from django.contrib.auth.models import Group, User; "
                "User.objects.get(username='mod').groups.add(Group.objects.get(name='Moderators'))",
            )
            yield running
            print(running.log_tail())
    except local.LocalServerError as exc:
        pytest.fail(str(exc))


def _pull(server, session: requests.Session, after: str | None = None) -> dict:
    params = {"after": after} if after else {}
    response = session.get(server.danmaku_url(ROOM), params=params, timeout=REQUEST_TIMEOUT_SECONDS)
    assert response.status_code == 200, response.text
    return response.json()


def test_hidden_comment_reaches_deleted_for_a_cursor_holder_and_is_absent_for_a_joiner(server):
    sender_token, moderator_token = server.tokens
    holder = requests.Session()
    cursor = _pull(server, holder)["cursor"]

    sent = requests.post(
        server.danmaku_url(ROOM),
        json={"text": "hide me please"},
        headers={"Authorization": f"Bearer {sender_token}"},
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    assert sent.status_code == 201, sent.text
    comment_id = sent.json()["id"]

    deadline = time.monotonic() + DELIVERY_LIMIT_SECONDS
    shown = False
    while not shown and time.monotonic() < deadline:
        body = _pull(server, holder, cursor)
        cursor = body["cursor"]
        shown = comment_id in body["items"]["id"]
        time.sleep(POLL_SECONDS)
    assert shown, "the comment never reached the cursor holder"

    hidden = requests.post(
        f"{server.base_url}/api/v1/moderation/danmaku/{comment_id}/hide",
        json={"reason": "e2e"},
        headers={"Authorization": f"Bearer {moderator_token}"},
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    assert hidden.status_code == 200, hidden.text
    assert hidden.json()["status"] == "hidden"

    deadline = time.monotonic() + DELIVERY_LIMIT_SECONDS
    deleted = False
    while not deleted and time.monotonic() < deadline:
        body = _pull(server, holder, cursor)
        cursor = body["cursor"]
        assert comment_id not in body["items"]["id"]
        deleted = comment_id in body["deleted"]
        time.sleep(POLL_SECONDS)
    assert deleted, "the retraction never reached the cursor holder's deleted list"

    time.sleep(SETTLE_SECONDS)
    for _ in range(JOINER_PULLS):
        # A new connection each time, so joins land on both workers.
        joiner = requests.get(
            server.danmaku_url(ROOM), headers={"Connection": "close"}, timeout=REQUEST_TIMEOUT_SECONDS
        )
        assert joiner.status_code == 200
        assert comment_id not in joiner.json()["items"]["id"]
