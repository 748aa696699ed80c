"""A send process killed between its steps: every state it can leave ends
with the comment stored once and on its stream once.

A send writes the row (``in_stream`` false), publishes it with the answer
for its copies, and later marks the row in a batch. Killed after the write,
the row waits for the republish sweep; killed after the publish, the row is
on its stream but unmarked, and the sweep only marks it. A client retrying
meanwhile gets the first answer.
"""

from __future__ import annotations

from django.db.models import F

from danmaku import limits, publishing, republish
from danmaku.models import Danmaku
from danmaku.store import redis_store
from infra import clock
from tests.danmaku.test_redis_store import send, stream_ids

PAST_THE_GRACE_MS = republish.GRACE_MS + 1000


def _sweep():
    return republish.held_back(redis_store())


def test_killed_after_the_write_the_sweep_publishes_once(redis_mode, room, user, settings):
    # The row as the write leaves it; the process died before publishing.
    danmaku = Danmaku.objects.create(
        room=room, user=user, text="written only", ts_ms=clock.now_ms() - PAST_THE_GRACE_MS, client_id="k-1"
    )

    assert _sweep() == 1
    assert _sweep() == 0

    danmaku.refresh_from_db()
    assert danmaku.in_stream is True
    assert stream_ids(redis_mode, settings.DANMAKU_REDIS_PREFIX, room.id) == [danmaku.id]


def test_killed_after_the_publish_the_sweep_marks_without_publishing_again(
    redis_mode, client, room, auth_headers, settings
):
    response = send(client, auth_headers, "published, not marked", client_id="k-2")
    assert response.status_code == 201
    danmaku_id = response.json()["id"]
    # The process dies with its marks unwritten.
    publishing.stream_marks.discard()
    Danmaku.objects.filter(pk=danmaku_id).update(ts_ms=F("ts_ms") - PAST_THE_GRACE_MS)

    # A retry meanwhile: the first answer, nothing new.
    again = send(client, auth_headers, "published, not marked", client_id="k-2")
    assert again.status_code == 201
    assert again.json()["id"] == danmaku_id

    assert _sweep() == 0  # found on its stream: only marked

    assert Danmaku.objects.get(pk=danmaku_id).in_stream is True
    assert stream_ids(redis_mode, settings.DANMAKU_REDIS_PREFIX, room.id) == [danmaku_id]
    assert Danmaku.objects.filter(client_id="k-2").count() == 1


def test_a_retry_of_a_send_killed_before_its_write_writes_it_once(redis_mode, client, room, auth_headers, settings):
    # The limits took the slot and said "on its way"; the process died there.
    room.user_send_interval_ms = 60_000
    room.save()
    first = send(client, auth_headers, "first copy", client_id="k-3")
    assert first.status_code == 201
    Danmaku.objects.filter(client_id="k-3").delete()
    redis_mode.set(limits.answer_key(room_id=room.id, user_id=first.wsgi_request.user.id, client_id="k-3"), "p")

    retry = send(client, auth_headers, "first copy", client_id="k-3")

    assert retry.status_code == 201  # not 429: the slot was this send's
    assert Danmaku.objects.filter(client_id="k-3").count() == 1
