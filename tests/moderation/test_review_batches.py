"""The full check in batches: comments sent through the API wait in the
process's review buffer and reach a real broker (a private redis-server) as
one ``moderation.moderate_batch`` task; the broker down means the fast
filter for each; without a broker (eager) the check runs in the request."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest
import redis
from celery.exceptions import SoftTimeLimitExceeded
from django.db import connection
from django.test.utils import CaptureQueriesContext
from prometheus_client import REGISTRY

from danmaku.models import Danmaku, Room
from danmaku.publishing import mark_published
from danmaku.store import redis_store
from harness.services import private_redis
from moderation import hooks, services
from moderation.models import AuditEntry
from moderation.tasks import moderate_batch_task, moderate_task
from tests.infra.test_taskqueue import celery_broker

URL = "/api/v1/rooms/live/danmaku"
NOW_MS = 1_800_000_000_000
# Longest wait for the flusher thread's publish to show in the broker.
WAIT_S = 5.0


def send(client, headers, text: str) -> int:
    response = client.post(URL, json.dumps({"text": text}), content_type="application/json", **headers)
    assert response.status_code == 201, response.content
    return response.json()["id"]


def queued(url: str) -> list[tuple[str, list[int]]]:
    """(task name, ids) of every message waiting in the broker, oldest first."""
    found = []
    for raw in reversed(redis.Redis.from_url(url).lrange("celery", 0, -1)):
        message = json.loads(raw)
        args, _, _ = json.loads(base64.b64decode(message["body"]))
        found.append((message["headers"]["task"], args[0]))
    return found


def fallbacks(where: str) -> float:
    return REGISTRY.get_sample_value("danmaku_fallbacks_total", {"dependency": "broker", "where": where}) or 0.0


@pytest.fixture
def broker(settings):
    """A broker the settings name, so sends are buffered; no worker takes from it."""
    with private_redis() as server, celery_broker(server.url):
        settings.CELERY_BROKER_URL = server.url
        hooks.review_buffer.reset()
        try:
            yield server
        finally:
            # Before the app goes back to eager: nothing left to flush into it.
            hooks.review_buffer.reset()


@pytest.fixture
def flushed_by_test(monkeypatch):
    """The buffer's interval far away: the test flushes it itself."""
    monkeypatch.setattr(hooks, "REVIEW_INTERVAL_S", 60.0)


def test_many_comments_reach_the_broker_as_one_batch_task(client, room, auth_headers, broker, flushed_by_test):
    ids = [send(client, auth_headers, f"comment number {n}") for n in range(30)]

    assert queued(broker.url) == []  # no publish per comment
    assert hooks.review_buffer.get().close() == 30

    assert queued(broker.url) == [("moderation.moderate_batch", ids)]
    # Not decided yet (no worker): the rows say so.
    assert Danmaku.objects.filter(checked=False).count() == 30


def test_a_comment_awaiting_its_verdict_takes_the_waiting_batch_out_early(
    client, room, auth_headers, broker, flushed_by_test
):
    ordinary = send(client, auth_headers, "an ordinary comment")
    time.sleep(0.3)
    assert queued(broker.url) == []  # it waits for the (far) interval

    room.moderation_policy = Room.Policy.PRE
    room.save()
    started = time.monotonic()
    waiting = send(client, auth_headers, "nobody sees this before its verdict")
    assert Danmaku.objects.get(pk=waiting).status == Danmaku.Status.SENDER_ONLY

    while not queued(broker.url) and time.monotonic() - started < WAIT_S:
        time.sleep(0.01)
    assert queued(broker.url) == [("moderation.moderate_batch", [ordinary, waiting])]
    assert time.monotonic() - started < 1.0  # REVIEW_URGENT_INTERVAL_S is 0.1 s


def test_the_flusher_publishes_within_its_interval_and_in_fewer_tasks(client, room, auth_headers, broker):
    ids = [send(client, auth_headers, f"comment number {n}") for n in range(20)]

    deadline = time.monotonic() + WAIT_S
    while sum(len(batch) for _, batch in queued(broker.url)) < len(ids) and time.monotonic() < deadline:
        time.sleep(0.02)

    messages = queued(broker.url)
    assert [danmaku_id for _, batch in messages for danmaku_id in batch] == ids
    assert {name for name, _ in messages} == {"moderation.moderate_batch"}
    assert len(messages) < len(ids)


def test_a_full_buffer_leaves_comments_to_the_sweep(client, room, auth_headers, broker, monkeypatch):
    monkeypatch.setattr(hooks, "REVIEW_INTERVAL_S", 60.0)
    monkeypatch.setattr(hooks, "REVIEW_BATCH_SIZE", 5)
    monkeypatch.setattr(hooks, "REVIEW_MAX_PENDING", 5)
    # A flush that does not return (a broker slower than the sends, and
    # their fallbacks): the flusher holds the first batch meanwhile.
    taken, release = threading.Event(), threading.Event()
    flushed: list[list[int]] = []

    def stuck_flush(ids):
        flushed.append(ids)
        taken.set()
        release.wait(WAIT_S)

    monkeypatch.setattr(hooks, "_flush_batch", stuck_flush)
    before = fallbacks("moderation.review_buffer")
    try:
        ids = [send(client, auth_headers, f"comment number {n}") for n in range(5)]
        assert taken.wait(WAIT_S)
        ids += [send(client, auth_headers, f"comment number {n}") for n in range(5, 14)]
        # Every send answered; 5 on their way, 5 waiting, 4 refused.
        assert len(hooks.review_buffer.get()) == 5
        assert fallbacks("moderation.review_buffer") - before == 4
    finally:
        release.set()
    hooks.review_buffer.get().close()
    assert flushed == [ids[:5], ids[5:10]]
    # Left unchecked: the sweep's.
    assert Danmaku.objects.filter(pk__in=ids[10:], checked=False).count() == 4


@pytest.mark.django_db(transaction=True)
def test_broker_down_runs_the_fast_filter_for_each_comment_of_the_batch(
    client, room, auth_headers, broker, flushed_by_test
):
    pre_room = Room.objects.create(slug="pre", title="Pre", user_send_interval_ms=0, moderation_policy="pre")
    published = [send(client, auth_headers, f"one spamword here {n}") for n in range(3)]
    waiting = send_to(client, auth_headers, pre_room, "a fine comment")
    # A term saved after the sends: only a check after them finds it.
    services.blocked_term_create(term="spamword")
    broker.stop()
    before = fallbacks("moderation.moderate_batch")

    assert hooks.review_buffer.get().close() == 4  # nothing raised

    assert fallbacks("moderation.moderate_batch") - before == 1  # one batch, one fallback
    assert set(Danmaku.objects.filter(pk__in=published).values_list("status", flat=True)) == {"hidden"}
    assert Danmaku.objects.get(pk=waiting).status == "published"  # pre: released by the fast filter
    # The full check has not run on them: the sweep brings them back later.
    assert Danmaku.objects.filter(checked=False).count() == 4


def send_to(client, headers, room: Room, text: str) -> int:
    response = client.post(
        f"/api/v1/rooms/{room.slug}/danmaku", json.dumps({"text": text}), content_type="application/json", **headers
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_without_a_broker_the_check_runs_in_the_request_and_marks_it(client, room, auth_headers):
    Room.objects.filter(pk=room.pk).update(moderation_policy="pre")

    fine = send(client, auth_headers, "a fine comment")
    link = send(client, auth_headers, "see www.spam-shop.com now")

    assert Danmaku.objects.get(pk=fine).status == "published"
    assert Danmaku.objects.get(pk=link).status == "held"
    assert Danmaku.objects.filter(pk__in=[fine, link], checked=True).count() == 2
    assert len(hooks.review_buffer.get()) == 0


# -- the batch task --------------------------------------------------------------------
# Run as ``enqueue`` runs them without a broker (``Task.apply``): ``delay``
# would take a producer from kombu's process-wide pool, which the tests'
# broker switching closes under it.


def comment(room, user, text, *, status="published", checked=False, ts_ms=NOW_MS) -> Danmaku:
    return Danmaku.objects.create(room=room, user=user, text=text, ts_ms=ts_ms, status=status, checked=checked)


def test_the_batch_decides_each_comment_and_marks_them_in_one_update(room, user):
    pre = Room.objects.create(slug="pre", title="Pre", moderation_policy="pre")
    fine = comment(room, user, "hello there")
    link = comment(room, user, "see www.spam-shop.com now")
    waiting = comment(pre, user, "a fine comment", status="sender_only")
    held_link = comment(pre, user, "visit www.spam-shop.com", status="sender_only")

    with CaptureQueriesContext(connection) as queries:
        moderate_batch_task.apply(([fine.pk, link.pk, waiting.pk, held_link.pk],))

    statuses = dict(Danmaku.objects.values_list("pk", "status"))
    assert statuses == {fine.pk: "published", link.pk: "hidden", waiting.pk: "published", held_link.pk: "held"}
    assert not Danmaku.objects.filter(checked=False).exists()
    marks = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE") and '"checked"' in q["sql"]]
    assert len(marks) == 1


def test_the_batch_marks_the_comments_on_their_stream_in_the_same_update(room, user, redis_mode):
    on_stream = [comment(room, user, f"published {n}", ts_ms=int(time.time() * 1000)) for n in range(2)]
    not_yet = comment(room, user, "its publish failed", ts_ms=int(time.time() * 1000))
    for danmaku in on_stream:
        redis_store().publish(danmaku, nick="viewer", avatar="", original_ts=True)

    with CaptureQueriesContext(connection) as queries:
        moderate_batch_task.apply(([d.pk for d in [*on_stream, not_yet]],))

    rows = dict(Danmaku.objects.values_list("pk", "in_stream"))
    assert rows == {on_stream[0].pk: True, on_stream[1].pk: True, not_yet.pk: False}
    assert not Danmaku.objects.filter(checked=False).exists()
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 1
    # The send process's own mark, a moment later, writes only the row
    # still unmarked (here: as the republish sweep would find it published).
    assert mark_published([d.pk for d in [*on_stream, not_yet]]) == 1


def test_comments_waiting_for_their_verdict_are_decided_first(room, user):
    pre = Room.objects.create(slug="pre", title="Pre", moderation_policy="pre")
    published = comment(room, user, "see www.spam-shop.com now")
    waiting = comment(pre, user, "visit www.spam-shop.com", status="sender_only")

    moderate_batch_task.apply(([published.pk, waiting.pk],))

    decided = AuditEntry.objects.order_by("pk").values_list("target_id", "action")
    assert list(decided) == [(str(waiting.pk), "moderate.hold"), (str(published.pk), "moderate.retract")]


def test_a_batch_of_checked_comments_costs_one_query(room, user, django_assert_num_queries):
    done = [comment(room, user, f"already checked {n}", checked=True).pk for n in range(5)]

    with django_assert_num_queries(1):
        moderate_batch_task.apply((done,))


def test_deciding_again_changes_nothing_and_writes_no_second_audit_row(room, user):
    pre = Room.objects.create(slug="pre", title="Pre", moderation_policy="pre")
    link = comment(room, user, "see www.spam-shop.com now")
    waiting = comment(pre, user, "visit www.spam-shop.com", status="sender_only")
    fine = comment(pre, user, "a fine comment", status="sender_only")
    ids = [link.pk, waiting.pk, fine.pk]

    moderate_batch_task.apply((ids,))
    # As if the sweep, or a redelivery, handed them over again before the mark.
    Danmaku.objects.filter(pk__in=ids).update(checked=False)
    moderate_batch_task.apply((ids,))
    moderate_task.apply((link.pk,))

    audit = sorted(AuditEntry.objects.values_list("target_id", "action"))
    assert audit == sorted(
        [(str(link.pk), "moderate.retract"), (str(waiting.pk), "moderate.hold"), (str(fine.pk), "moderate.release")]
    )


def test_a_comment_whose_verdict_cannot_be_written_stays_unchecked_and_the_rest_go_on(room, user):
    from tests.moderation.test_retraction_on_commit import audit_log_refusing_writes

    link = comment(room, user, "see www.spam-shop.com now")
    fine = comment(room, user, "hello there")

    with audit_log_refusing_writes():
        moderate_batch_task.apply(([link.pk, fine.pk],))

    assert Danmaku.objects.get(pk=link.pk).status == "published"  # its retraction rolled back
    assert dict(Danmaku.objects.values_list("pk", "checked")) == {link.pk: False, fine.pk: True}


def test_a_batch_out_of_time_gives_the_rest_the_fast_filter_and_leaves_them_unchecked(room, user, monkeypatch):
    first, second, third = (comment(room, user, f"comment {word}") for word in ("one", "two", "three"))
    services.blocked_term_create(term="three")
    full_check = services.moderate_full

    def running_out(*, danmaku_id, **batch):
        if danmaku_id == second.pk:
            raise SoftTimeLimitExceeded()
        return full_check(danmaku_id=danmaku_id, **batch)

    monkeypatch.setattr(services, "moderate_full", running_out)

    moderate_batch_task.apply(([first.pk, second.pk, third.pk],))

    assert dict(Danmaku.objects.values_list("pk", "checked")) == {first.pk: True, second.pk: False, third.pk: False}
    assert Danmaku.objects.get(pk=third.pk).status == "hidden"  # the fast filter ran on it


def test_the_single_comment_task_still_runs_and_marks_its_comment(room, user):
    link = comment(room, user, "see www.spam-shop.com now")

    moderate_task.apply((link.pk,))

    link.refresh_from_db()
    assert (link.status, link.checked) == ("hidden", True)


def test_batch_task_options():
    assert moderate_batch_task.name == "moderation.moderate_batch"
    assert moderate_batch_task.acks_late is True
    assert moderate_batch_task.reject_on_worker_lost is True
    assert moderate_batch_task.ignore_result is True
    assert (moderate_batch_task.soft_time_limit, moderate_batch_task.time_limit) == (10, 15)
    assert moderate_batch_task.autoretry_for == moderate_task.autoretry_for


def test_a_new_row_written_without_the_column_is_unchecked(room, user):
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO danmaku_danmaku (room_id, user_id, text, color, mode, ts_ms, status, client_id, created_at,"
            " in_stream, retraction_in_stream) VALUES (%s, %s, 'raw', 0, 0, 1, 'published', '', %s, true, false)",
            [room.pk, user.pk, "2026-01-01 00:00:00"],
        )
    assert Danmaku.objects.get(text="raw").checked is False
