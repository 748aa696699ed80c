"""Production mode in one process: sends go to Redis streams, the refresher
reads them back, and a Redis that is frozen, stopped or restarted empty
never costs an accepted comment.

Against the real shared Redis (own key prefix) or a private redis-server.
"""

from __future__ import annotations

import json
import time

from django.test import Client
from prometheus_client import REGISTRY

from danmaku import publishing, runtime
from danmaku.models import Danmaku, Room, ViewerProfile
from danmaku.publishing import danmaku_restore, danmaku_retract
from danmaku.pull.cache import PullCache, PullConfig
from danmaku.refresher import Refresher
from danmaku.rooms import room_save
from danmaku.store import DatabaseStore, RedisStore
from infra.jobs import JobLoop, jobs_for
from infra.redis import get_redis

URL = "/api/v1/rooms/live/danmaku"
SEAL_LAG_MS = 400


def send(client: Client, headers: dict, text: str, **fields):
    body = json.dumps({"text": text, **fields})
    return client.post(URL, body, content_type="application/json", **headers)


def pull(client: Client, after: str | None = None) -> dict:
    response = client.get(URL, {"after": after} if after else {})
    assert response.status_code == 200, response.content
    return response.json()


def wait_until_sealable(redis_client) -> None:
    """Sleep until the current Redis second can be sealed."""
    seconds, micros = redis_client.time()
    now_ms = seconds * 1000 + micros // 1000
    target = (now_ms // 1000 + 1) * 1000 + SEAL_LAG_MS + 30
    time.sleep((target - now_ms) / 1000)


def refresh() -> None:
    runtime.refresher().refresh_once()


def stream_ids(redis_client, prefix: str, room_id: int) -> list[int]:
    entries = redis_client.xrange(f"{prefix}:s:{room_id}")
    return [int(fields[b"id"]) for _, fields in entries if fields[b"k"] == b"m"]


def second_process(prefix: str) -> tuple[PullCache, Refresher]:
    """Another process's rings and refresher over the same Redis, joined to the room."""
    cache = PullCache(PullConfig(epoch=0, window_seconds=60))
    store = RedisStore(get_redis, prefix=prefix, window_seconds=60)
    refresher = Refresher(cache=cache, store=store, fallback=DatabaseStore(), seal_lag_ms=SEAL_LAG_MS)
    cache.set_activator(refresher.activate)
    cache.pull("live", None)
    return cache, refresher


def fallbacks(where: str) -> float:
    return REGISTRY.get_sample_value("danmaku_fallbacks_total", {"dependency": "redis", "where": where}) or 0.0


def test_runtime_uses_the_redis_store_with_the_database_as_fallback(redis_mode, room):
    refresher = runtime.refresher()

    assert isinstance(refresher.store, RedisStore)
    assert isinstance(refresher.fallback, DatabaseStore)


def test_sent_comment_goes_through_the_stream_to_a_pull(redis_mode, client, room, auth_headers, settings):
    joined = pull(client)

    response = send(client, auth_headers, "hello redis")
    assert response.status_code == 201
    danmaku = Danmaku.objects.get(pk=response.json()["id"])
    wait_until_sealable(redis_mode)
    refresh()
    body = pull(client, joined["cursor"])

    assert body["items"]["text"] == ["hello redis"]
    assert body["reason"] in ("normal", "quiet")
    assert stream_ids(redis_mode, settings.DANMAKU_REDIS_PREFIX, room.id) == [danmaku.id]
    # The entry carries the record's time, the Redis time the limits counted
    # it in. The row is marked by the full check's UPDATE (a worker's; here,
    # eager, the request's), which finds it on the stream; this process's
    # own marks (a background job, every second) then write nothing.
    assert danmaku.in_stream is True
    assert publishing.stream_marks.flush() == 1
    assert publishing.mark_published([danmaku.id]) == 0
    danmaku.refresh_from_db()
    entry_id, fields = redis_mode.xrange(f"{settings.DANMAKU_REDIS_PREFIX}:s:{room.id}")[0]
    assert danmaku.in_stream is True
    assert int(fields[b"ts"]) == danmaku.ts_ms <= int(entry_id.split(b"-")[0])


def test_publishing_the_same_comment_twice_adds_it_once(redis_mode, room, user, settings):
    danmaku = Danmaku.objects.create(room=room, user=user, text="once", ts_ms=int(time.time() * 1000))
    store = runtime.refresher().store

    first = store.publish(danmaku, nick="n", avatar="a")
    second = store.publish(danmaku, nick="n", avatar="a", original_ts=True)

    assert first == second
    assert stream_ids(redis_mode, settings.DANMAKU_REDIS_PREFIX, room.id) == [danmaku.id]


def test_published_time_is_the_stream_entry_id_even_when_the_stream_is_ahead(redis_mode, room, user, settings):
    # XADD never goes below the stream's last id (and reads the clock again
    # after the script's TIME): the time returned, which the record keeps,
    # must be the entry's own id, or the record and the ring disagree on its second.
    stream = f"{settings.DANMAKU_REDIS_PREFIX}:s:{room.id}"
    ahead_ms = int(time.time() * 1000) + 3000
    redis_mode.xadd(stream, {"k": "x"}, id=f"{ahead_ms}-0")
    danmaku = Danmaku.objects.create(room=room, user=user, text="late clock", ts_ms=int(time.time() * 1000))

    published_ms = runtime.refresher().store.publish(danmaku, nick="n", avatar="a")

    entry_id = redis_mode.xrange(stream)[-1][0]
    assert published_ms == int(entry_id.split(b"-")[0]) == ahead_ms


def test_retraction_reaches_cursor_pulls_and_hides_it_from_joiners(
    redis_mode, client, room, auth_headers, django_capture_on_commit_callbacks
):
    joined = pull(client)
    danmaku_id = send(client, auth_headers, "regrettable").json()["id"]
    wait_until_sealable(redis_mode)
    refresh()
    seen = pull(client, joined["cursor"])
    assert seen["items"]["id"] == [danmaku_id]

    with django_capture_on_commit_callbacks(execute=True):
        assert danmaku_retract(danmaku_id=danmaku_id, reason="test") is True
        assert danmaku_retract(danmaku_id=danmaku_id, reason="test again") is False
    wait_until_sealable(redis_mode)
    refresh()

    assert pull(client, seen["cursor"])["deleted"] == [danmaku_id]
    assert danmaku_id not in pull(client)["items"]["id"]
    assert Danmaku.objects.get(pk=danmaku_id).retraction_in_stream is True


def test_room_settings_saved_by_staff_reach_pulls_through_redis(redis_mode, client, room, settings):
    pull(client)
    room.poll_interval_ms = 7000
    room_save(room=room)
    # Change the database behind Redis's back: the refresher must be reading
    # the settings Redis carries, not querying the table.
    Room.objects.filter(pk=room.pk).update(poll_interval_ms=9000)
    refresh()

    entry = runtime.pull_cache().rooms["live"]
    assert entry.settings.poll_interval_ms == 7000


def test_two_processes_give_identical_answers_for_the_same_cursor(redis_mode, client, room, auth_headers, settings):
    joined = pull(client)
    for text in ("a", "b", "c"):
        assert send(client, auth_headers, text).status_code == 201
    other_cache, other = second_process(settings.DANMAKU_REDIS_PREFIX)
    wait_until_sealable(redis_mode)
    refresh()
    other.refresh_once()

    here = runtime.pull_cache().pull("live", joined["cursor"])
    there = other_cache.pull("live", joined["cursor"])

    assert json.loads(here.body)["items"]["text"] == ["a", "b", "c"]
    # Same cursor, same moment: the same bytes, jitter and ETag included.
    assert here.body == there.body
    assert here.etag == there.etag


def test_a_retraction_is_told_in_the_same_second_by_every_process(
    redis_mode, client, room, auth_headers, settings, django_capture_on_commit_callbacks
):
    joined = pull(client)
    danmaku_id = send(client, auth_headers, "to be withdrawn").json()["id"]
    other_cache, other = second_process(settings.DANMAKU_REDIS_PREFIX)
    wait_until_sealable(redis_mode)
    refresh()
    other.refresh_once()

    with django_capture_on_commit_callbacks(execute=True):
        danmaku_retract(danmaku_id=danmaku_id, reason="test")
    refresh()  # this process reads the retraction at once...
    time.sleep(1.2)
    wait_until_sealable(redis_mode)
    other.refresh_once()  # ...the other one a second or two later
    refresh()

    def deleted_by_second(cache: PullCache) -> dict[int, tuple[int, ...]]:
        return {slot.second: slot.deleted for slot in cache.rooms["live"].ring.view.slots if slot.deleted}

    assert deleted_by_second(runtime.pull_cache()) == deleted_by_second(other_cache)
    assert list(deleted_by_second(other_cache).values()) == [(danmaku_id,)]
    # Either process tells a viewer who joined before it exactly once.
    for cache in (runtime.pull_cache(), other_cache):
        answer = json.loads(cache.pull("live", joined["cursor"]).body)
        assert answer["items"]["id"] == []
        assert answer["deleted"] == [danmaku_id]


def test_redis_restarted_empty_turns_old_cursors_into_gaps(private_redis_mode, client, room, auth_headers):
    joined = pull(client)
    assert send(client, auth_headers, "before the restart").status_code == 201
    wait_until_sealable(get_redis())
    refresh()
    before = pull(client, joined["cursor"])
    assert before["items"]["text"] == ["before the restart"]

    private_redis_mode.stop()
    private_redis_mode.start()
    time.sleep(1.1)  # past the breaker
    refresh()
    after = pull(client, before["cursor"])

    assert after["gap"] is True
    assert after["cursor"].split("-")[0] != before["cursor"].split("-")[0]
    # This process's ring lived through the restart: it continues exactly
    # after the old cursor instead of replaying the join window.
    assert "before the restart" not in after["items"]["text"]
    # The new cursor works normally from then on.
    assert pull(client, after["cursor"])["gap"] is False


def test_a_process_started_after_the_restart_cannot_continue_old_cursors(private_redis_mode, client, room):
    old = pull(client)["cursor"]
    private_redis_mode.stop()
    private_redis_mode.start()
    time.sleep(1.1)  # past the breaker
    runtime.reset()  # a fresh process: its ring never saw the old epoch

    answer = pull(client, old)

    assert answer["gap"] is True
    assert answer["cursor"].split("-")[0] != old.split("-")[0]


def test_frozen_redis_degrades_pulls_keeps_sends_and_republishes_once(private_redis_mode, client, room, auth_headers):
    joined = pull(client)
    accepted = [send(client, auth_headers, "before").json()["id"]]
    redis_client = get_redis()
    published_before = fallbacks("send")

    private_redis_mode.freeze()
    try:
        started = time.monotonic()
        response = send(client, auth_headers, "while frozen")
        elapsed = time.monotonic() - started
        assert response.status_code == 201
        assert elapsed < 1.0
        accepted.append(response.json()["id"])
        assert Danmaku.objects.get(pk=accepted[-1]).in_stream is False
        assert fallbacks("send") == published_before + 1

        time.sleep(1.5)
        started = time.monotonic()
        refresh()  # reads the database instead
        assert time.monotonic() - started < 1.0
        during = pull(client, joined["cursor"])
        assert during["reason"] == "degraded"
        assert during["items"]["id"] == accepted
    finally:
        private_redis_mode.thaw()

    # The sweep leaves rows younger than its grace to the sends publishing them.
    time.sleep(2.1)
    JobLoop(jobs_for("all")).run_due()
    refresh()
    wait_until_sealable(redis_client)
    refresh()
    after = pull(client, during["cursor"])

    assert after["reason"] != "degraded"
    assert after["items"]["id"] == []  # already shown: never twice
    assert sorted(stream_ids(redis_client, "dm", room.id)) == sorted(accepted)
    assert Danmaku.objects.filter(pk__in=accepted, in_stream=False).count() == 0


def test_stopped_redis_costs_a_send_no_time_and_loses_nothing(private_redis_mode, client, room, auth_headers):
    joined = pull(client)
    private_redis_mode.stop()

    durations = []
    ids = []
    for n in range(5):
        started = time.monotonic()
        response = send(client, auth_headers, f"while stopped {n}")
        durations.append(time.monotonic() - started)
        assert response.status_code == 201
        ids.append(response.json()["id"])
    time.sleep(1.5)
    refresh()
    during = pull(client, joined["cursor"])

    assert max(durations) < 1.0
    assert during["reason"] == "degraded"
    assert during["items"]["id"] == ids


def test_stream_entries_carry_the_senders_nick_and_avatar_thumbnail(redis_mode, client, room, user, auth_headers):
    ViewerProfile.objects.create(user=user, nickname="Streamer", avatar_thumb="avatars/s.png")
    joined = pull(client)
    assert send(client, auth_headers, "with a face").status_code == 201
    wait_until_sealable(redis_mode)
    refresh()

    items = pull(client, joined["cursor"])["items"]

    assert items["nick"] == ["Streamer"]
    assert items["avatar"] == ["/media/avatars/s.png"]


def test_comment_committed_after_the_last_database_read_shows_on_the_first_tick_after_redis_returns(
    private_redis_mode, client, room, auth_headers
):
    joined = pull(client)
    private_redis_mode.stop()
    time.sleep(1.1)
    refresh()  # degraded: reads the database
    response = send(client, auth_headers, "sent after the last database read")
    assert response.status_code == 201
    assert Danmaku.objects.get(pk=response.json()["id"]).in_stream is False

    private_redis_mode.start()
    time.sleep(1.1)  # past the breaker
    # No sweep runs (the tests start no jobs loop): the recovery read must carry it.
    wait_until_sealable(get_redis())
    refresh()
    body = pull(client, joined["cursor"])

    assert body["reason"] != "degraded"
    assert "sent after the last database read" in body["items"]["text"]


def test_a_restore_redis_missed_is_published_by_the_sweep_once(
    private_redis_mode, client, room, auth_headers, django_capture_on_commit_callbacks
):
    joined = pull(client)
    danmaku_id = send(client, auth_headers, "worth keeping").json()["id"]
    redis_client = get_redis()
    wait_until_sealable(redis_client)
    refresh()
    seen = pull(client, joined["cursor"])
    with django_capture_on_commit_callbacks(execute=True):
        danmaku_retract(danmaku_id=danmaku_id, reason="test")
    wait_until_sealable(redis_client)
    refresh()
    gone = pull(client, seen["cursor"])
    assert gone["deleted"] == [danmaku_id]
    missed_before = fallbacks("restore")

    private_redis_mode.stop()
    try:
        with django_capture_on_commit_callbacks(execute=True):
            assert danmaku_restore(danmaku_id=danmaku_id) is True
        assert fallbacks("restore") == missed_before + 1
    finally:
        private_redis_mode.start()
    # Past the sweep's grace, twice: the stream gets the restore once.
    time.sleep(2.1)
    JobLoop(jobs_for("all")).run_due()
    JobLoop(jobs_for("all")).run_due()
    wait_until_sealable(redis_client)
    refresh()
    back = pull(client, gone["cursor"])

    assert back["restored"] == [danmaku_id]
    assert back["items"]["id"] == [danmaku_id]
    entries = redis_client.xrange(f"dm:s:{room.id}")
    assert [fields[b"k"] for _, fields in entries].count(b"r") == 1
