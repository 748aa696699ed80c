"""A node runs its background jobs from the moment it starts, requests or not.

A send node on the shared Redis, started with the project's gunicorn config
and then never asked anything: rows written behind its back (a comment whose
pre-moderation verdict is late, a comment whose publish to Redis failed)
still get their fallback and reach the stream, because the node's jobs loop
started with its worker, not on a first request.
"""

from __future__ import annotations

import sqlite3
import time
import uuid

import pytest
import redis

from harness import local
from harness.services import require_redis

pytestmark = pytest.mark.slow

# Both jobs run every 1-2 s; a loaded machine gets a generous margin.
WAIT_SECONDS = 15
# Rows as a send would have left them: "waiting" is sender_only in a pre room
# whose 0.5 s deadline passed long ago; "held_back" was accepted 3 s ago while
# Redis could not take it (in_stream false).
ROWS = """
from django.contrib.auth import get_user_model
from danmaku.models import Danmaku, Room
from infra import clock
room = Room.objects.get(slug="live")
Room.objects.filter(pk=room.pk).update(moderation_policy="pre", pre_deadline_ms=500, pre_fallback="allow")
user = get_user_model().objects.get(username="sender")
now = clock.now_ms()
waiting = Danmaku.objects.create(room=room, user=user, text="waiting", status="sender_only", ts_ms=now - 5000)
held = Danmaku.objects.create(room=room, user=user, text="held back", status="published", ts_ms=now - 3000)
print(room.pk, waiting.pk, held.pk)
"""


def test_an_idle_send_node_applies_late_verdicts_and_republishes_without_a_request(tmp_path):
    redis_url = require_redis()
    prefix = f"test-{uuid.uuid4().hex}"
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    env = {"DANMAKU_ROLE": "send", "REDIS_URL": redis_url, "DANMAKU_REDIS_PREFIX": prefix}
    try:
        with local.gunicorn(room="live", workers=1, var_dir=tmp_path, extra_env=env) as server:
            printed = server.manage("shell", "-c", ROWS).strip().splitlines()[-1]
            room_id, waiting, held = (int(n) for n in printed.split())
            database = sqlite3.connect(tmp_path / "db.sqlite3", timeout=10)
            deadline = time.monotonic() + WAIT_SECONDS
            while time.monotonic() < deadline:
                rows = dict(
                    database.execute(
                        "SELECT id, status || ':' || in_stream FROM danmaku_danmaku WHERE id IN (?, ?)",
                        (waiting, held),
                    ).fetchall()
                )
                streamed = {int(fields[b"id"]) for _, fields in client.xrange(f"{prefix}:s:{room_id}")}
                if rows == {waiting: "published:1", held: "published:1"} and streamed == {waiting, held}:
                    break
                time.sleep(0.2)
            audited = database.execute(
                "SELECT action FROM moderation_auditentry WHERE target_id = ?", (str(waiting),)
            ).fetchall()
            database.close()
            log = server.log_tail()
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)

    assert rows == {waiting: "published:1", held: "published:1"}, log
    assert streamed == {waiting, held}
    assert audited == [("pre.fallback_allow",)]
    assert "background jobs started" in log
