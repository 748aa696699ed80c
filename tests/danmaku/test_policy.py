"""Room moderation policies through the send API: post, pre (sender only
until the verdict, with a deadline fallback) and manual (held)."""

from __future__ import annotations

import json
import logging

import pytest
from django.contrib.auth import get_user_model
from django.db import DatabaseError

from danmaku import runtime
from danmaku.models import Danmaku, Room
from danmaku.pull.spread import JITTER_SHARE, stretched_ms
from harness.services import private_redis
from infra import clock as host_clock
from infra.jobs import JobLoop, jobs_for
from moderation.deadlines import pre_deadline_sweep
from moderation.models import AuditEntry
from moderation.services import blocked_term_create
from tests.infra.test_taskqueue import celery_broker
from tests.moderation.test_retraction_on_commit import audit_log_refusing_writes

URL = "/api/v1/rooms/live/danmaku"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock(1_700_000_000.0)
    monkeypatch.setattr(host_clock, "source", fake)
    return fake


def send(client, headers, text="hello"):
    return client.post(URL, json.dumps({"text": text}), content_type="application/json", **headers)


def visible_ids(client) -> list[int]:
    runtime.refresher().refresh_once()
    return client.get(URL).json()["items"]["id"]


def set_policy(room: Room, policy: str, **fields) -> None:
    Room.objects.filter(pk=room.pk).update(moderation_policy=policy, **fields)


def test_post_policy_publishes_at_once(client, room, auth_headers):
    response = send(client, auth_headers)

    assert response.status_code == 201
    assert response.json()["status"] == "published"


def test_pre_policy_publishes_after_the_verdict_allows_it(client, room, auth_headers):
    set_policy(room, "pre")

    response = send(client, auth_headers, "a fine comment")

    # No broker in tests: the moderate task ran inline and allowed it.
    assert response.status_code == 201
    assert response.json()["status"] == "sender_only"
    assert Danmaku.objects.get(pk=response.json()["id"]).status == "published"


def test_pre_policy_denies_what_the_full_check_blocks(client, room, auth_headers):
    set_policy(room, "pre")
    # Regex terms run only in the full check, after the send.
    blocked_term_create(term=r"spam\d{3}", kind="regex", action="block")

    response = send(client, auth_headers, "buy at spam123")

    assert response.json()["status"] == "sender_only"
    assert Danmaku.objects.get(pk=response.json()["id"]).status == "hidden"


def test_pre_policy_holds_for_a_moderator_what_the_full_check_holds(client, room, auth_headers):
    set_policy(room, "pre")

    # Links are held by default (DANMAKU_LINK_ACTION).
    response = send(client, auth_headers, "see www.spam-shop.com now")

    assert response.json()["status"] == "sender_only"
    assert Danmaku.objects.get(pk=response.json()["id"]).status == "held"


@pytest.mark.parametrize(("fallback", "final"), [("allow", "published"), ("deny", "hidden")])
def test_pre_policy_with_the_worker_stopped_applies_the_deadline_fallback_and_logs_it(
    client, room, auth_headers, clock, caplog, fallback, final
):
    set_policy(room, "pre", pre_deadline_ms=3000, pre_fallback=fallback)
    # A real broker that takes the task, and no worker to run it.
    with private_redis() as broker, celery_broker(broker.url):
        response = send(client, auth_headers, "waiting for a verdict")
        assert broker_queue_length(broker.url) == 1
    danmaku_id = response.json()["id"]
    assert Danmaku.objects.get(pk=danmaku_id).status == "sender_only"

    clock.now += 2.5
    assert pre_deadline_sweep() == 0
    assert Danmaku.objects.get(pk=danmaku_id).status == "sender_only"
    clock.now += 1.0
    with caplog.at_level(logging.WARNING, logger="moderation.deadlines"):
        assert pre_deadline_sweep() == 1

    assert Danmaku.objects.get(pk=danmaku_id).status == final
    assert f"no moderation verdict within 3000 ms: fallback {fallback}" in caplog.text
    assert pre_deadline_sweep() == 0  # decided once


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fallback", ["allow", "deny"])
def test_a_fallback_whose_audit_row_cannot_be_written_changes_nothing(client, room, auth_headers, clock, fallback):
    set_policy(room, "pre", pre_deadline_ms=1000, pre_fallback=fallback)
    with private_redis() as broker, celery_broker(broker.url):
        waiting = send(client, auth_headers, "late verdict").json()["id"]
    clock.now += 1.5

    with audit_log_refusing_writes(), pytest.raises(DatabaseError):
        pre_deadline_sweep()

    # No effect without its audit row: the next run decides it, once.
    assert Danmaku.objects.get(pk=waiting).status == "sender_only"
    assert pre_deadline_sweep() == 1
    assert Danmaku.objects.get(pk=waiting).status == {"allow": "published", "deny": "hidden"}[fallback]
    assert AuditEntry.objects.filter(action=f"pre.fallback_{fallback}", target_id=str(waiting)).count() == 1


def test_released_comment_reaches_pulls_and_denied_never_does(client, room, auth_headers, clock):
    set_policy(room, "pre", pre_deadline_ms=1000, pre_fallback="allow")
    client.get(URL)  # viewers are watching
    with private_redis() as broker, celery_broker(broker.url):
        waiting = send(client, auth_headers, "late verdict").json()["id"]
    assert waiting not in visible_ids(client)

    clock.now += 1.5
    JobLoop(jobs_for("all")).run_due()  # a background job applies the deadline
    clock.now += 1.5

    assert waiting in visible_ids(client)


def test_manual_policy_holds_every_comment(client, room, auth_headers):
    set_policy(room, "manual")

    response = send(client, auth_headers)

    assert response.status_code == 201
    assert response.json()["status"] == "held"
    assert Danmaku.objects.get(pk=response.json()["id"]).status == "held"


def test_hold_term_holds_a_comment_even_in_a_post_room(client, room, auth_headers, admin_user):
    blocked_term_create(term="suspicious", action="hold", actor=admin_user)

    response = send(client, auth_headers, "something suspicious here")

    assert response.json()["status"] == "held"


def broker_queue_length(url: str) -> int:
    import redis

    return redis.Redis.from_url(url).llen("celery")


def test_emergency_preset_applies_through_the_admin_and_undoes(admin_client, room, client):
    Room.objects.filter(pk=room.pk).update(user_send_interval_ms=1000, poll_interval_ms=3000, display_cap_per_second=30)
    changelist = "/admin/danmaku/room/"
    client.get(URL)  # the room is live in this process

    response = admin_client.post(changelist, {"action": "emergency_apply", "_selected_action": [room.pk]})
    assert response.status_code == 302
    room.refresh_from_db()
    assert (room.user_send_interval_ms, room.poll_multiplier, room.display_cap_per_second) == (10_000, 2.0, 10)
    assert room.poll_interval_ms == 3000
    assert room.moderation_policy == "pre"
    runtime.refresher().refresh_once()
    # Slower polling is the staff multiplier: viewers are told why.
    answer = client.get(URL).json()
    assert answer["reason"] == "busy"
    # Twice the 3 s. A viewer joining a room just stretched waits as one
    # arriving from the normal interval does (danmaku.pull.spread), +/- jitter.
    earliest = stretched_ms(0, 3000, 2.0, 0.0, arriving=True) * (1 - JITTER_SHARE)
    assert earliest <= answer["next_ms"] <= stretched_ms(0, 3000, 2.0, 1.0, arriving=True) * (1 + JITTER_SHARE)

    # Applying twice keeps the first backup.
    admin_client.post(changelist, {"action": "emergency_apply", "_selected_action": [room.pk]})
    admin_client.post(changelist, {"action": "emergency_undo", "_selected_action": [room.pk]})
    room.refresh_from_db()

    assert (room.user_send_interval_ms, room.poll_multiplier, room.display_cap_per_second) == (1000, 1.0, 30)
    assert room.moderation_policy == "post"
    assert room.emergency_backup is None
    runtime.refresher().refresh_once()
    assert client.get(URL).json()["reason"] != "busy"


def test_full_check_retraction_writes_one_audit_row(client, room, auth_headers):
    from moderation.models import AuditEntry

    danmaku_id = send(client, auth_headers, "buy at www.spam-shop.com").json()["id"]

    assert Danmaku.objects.get(pk=danmaku_id).status == "hidden"
    rows = AuditEntry.objects.filter(target_id=str(danmaku_id))
    assert [(row.action, row.actor_id) for row in rows] == [("moderate.retract", None)]


def test_deadline_fallback_writes_one_audit_row(client, room, auth_headers, clock):
    from moderation.models import AuditEntry

    set_policy(room, "pre", pre_deadline_ms=1000, pre_fallback="deny")
    with private_redis() as broker, celery_broker(broker.url):
        danmaku_id = send(client, auth_headers, "no verdict").json()["id"]
    clock.now += 2
    pre_deadline_sweep()
    pre_deadline_sweep()

    assert list(AuditEntry.objects.filter(target_id=str(danmaku_id)).values_list("action", flat=True)) == [
        "pre.fallback_deny"
    ]


def test_comment_list_filters_by_sender_status_and_room(admin_client, room, user):
    other = get_user_model().objects.create_user("someone-else")
    mine = Danmaku.objects.create(room=room, user=user, text="mine", ts_ms=1)
    theirs = Danmaku.objects.create(room=room, user=other, text="theirs", ts_ms=2, status="held")

    by_sender = admin_client.get("/admin/danmaku/danmaku/", {"sender": user.id})
    held = admin_client.get("/admin/danmaku/danmaku/", {"status__exact": "held", "room__id__exact": room.id})

    assert [row.pk for row in by_sender.context["cl"].result_list] == [mine.pk]
    assert [row.pk for row in held.context["cl"].result_list] == [theirs.pk]
