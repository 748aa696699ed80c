"""The sweep for comments whose full check never ran: a review buffer lost
with its process, rows left unchecked, found after the grace and checked."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model

from danmaku.models import Danmaku, Room
from harness.services import private_redis
from infra.jobs import JobLoop, jobs_for
from moderation import hooks, reviewsweep
from moderation.actions import held_approve
from moderation.models import AuditEntry
from moderation.reviewsweep import GRACE_MS, HORIZON_MS, review_sweep
from tests.infra.test_taskqueue import celery_broker
from tests.moderation.test_review_batches import queued

URL = "/api/v1/rooms/live/danmaku"
NOW_MS = 1_800_000_000_000
LINK = "see www.spam-shop.com now"


def comment(room, user, text, *, age_ms: int, status="published", checked=False) -> Danmaku:
    return Danmaku.objects.create(
        room=room, user=user, text=text, ts_ms=NOW_MS - age_ms, status=status, checked=checked
    )


def send(client, headers, text: str) -> int:
    response = client.post(URL, json.dumps({"text": text}), content_type="application/json", **headers)
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_a_lost_buffer_is_found_by_the_sweep_and_checked(client, room, auth_headers, settings, monkeypatch):
    Room.objects.filter(pk=room.pk).update(moderation_policy="pre", pre_deadline_ms=600_000)
    monkeypatch.setattr(hooks, "REVIEW_INTERVAL_S", 60.0)
    with private_redis() as broker, celery_broker(broker.url):
        settings.CELERY_BROKER_URL = broker.url
        hooks.review_buffer.reset()
        fine = send(client, auth_headers, "a fine comment")
        link = send(client, auth_headers, LINK)
        # The process dies with its buffer: nothing was ever published.
        assert hooks.review_buffer.get().discard() == 2
        assert queued(broker.url) == []
    first_ms, last_ms = (Danmaku.objects.get(pk=pk).ts_ms for pk in (fine, link))
    assert Danmaku.objects.get(pk=fine).status == "sender_only"

    # Within the grace the comments may still be on their way: left alone.
    assert review_sweep(now_ms=first_ms + GRACE_MS - 1) == 0
    # Past it, handed to the batch task (inline here: no broker).
    assert review_sweep(now_ms=last_ms + GRACE_MS + 1) == 2

    assert dict(Danmaku.objects.values_list("pk", "status")) == {fine: "published", link: "held"}
    assert not Danmaku.objects.filter(checked=False).exists()
    assert review_sweep(now_ms=last_ms + GRACE_MS + 10_000) == 0


def test_the_sweep_hands_overdue_comments_to_the_broker_as_batches(room, user, settings, monkeypatch):
    monkeypatch.setattr(reviewsweep, "SWEEP_BATCH_SIZE", 2)
    lost = [comment(room, user, f"lost {n}", age_ms=GRACE_MS + 1000 * (5 - n)).pk for n in range(5)]

    with private_redis() as broker, celery_broker(broker.url):
        assert review_sweep(now_ms=NOW_MS) == 5
        messages = queued(broker.url)

    assert messages == [("moderation.moderate_batch", batch) for batch in (lost[0:2], lost[2:4], lost[4:5])]
    assert Danmaku.objects.filter(checked=False).count() == 5  # the worker marks them


def test_what_the_sweep_takes_and_what_it_leaves(room, user):
    moderator = get_user_model().objects.create_superuser("mod", password="pw-for-tests-only")
    pre = Room.objects.create(slug="pre", title="Pre", moderation_policy="pre")
    overdue = GRACE_MS + 5_000
    lost_link = comment(room, user, LINK, age_ms=overdue)
    lost_waiting = comment(pre, user, LINK, age_ms=overdue, status="sender_only")
    recent = comment(room, user, LINK, age_ms=GRACE_MS - 5_000)
    ancient = comment(room, user, LINK, age_ms=HORIZON_MS + 5_000)
    checked = comment(room, user, LINK, age_ms=overdue, checked=True)
    held = comment(room, user, LINK, age_ms=overdue, status="held")
    hidden = comment(room, user, LINK, age_ms=overdue, status="hidden")
    approved = comment(room, user, LINK, age_ms=overdue, status="held")
    held_approve(danmaku_id=approved.pk, actor=moderator, reason="fine by me")
    Danmaku.objects.filter(pk=approved.pk).update(ts_ms=NOW_MS - overdue)

    assert review_sweep(now_ms=NOW_MS) == 2

    rows = {row.pk: (row.status, row.checked) for row in Danmaku.objects.all()}
    assert rows == {
        lost_link.pk: ("hidden", True),  # retracted by the full check
        lost_waiting.pk: ("held", True),  # its verdict, at last
        recent.pk: ("published", False),  # maybe still on its way
        ancient.pk: ("published", False),  # given up on
        checked.pk: ("published", True),
        held.pk: ("held", True),  # a moderator decides: owed no check
        hidden.pk: ("hidden", True),
        approved.pk: ("published", True),  # the check never overrules a moderator
    }
    assert not AuditEntry.objects.filter(target_id__in=[str(approved.pk), str(held.pk)], actor__isnull=True).exists()


def test_each_run_hands_over_a_bounded_number_oldest_first(room, user, monkeypatch):
    monkeypatch.setattr(reviewsweep, "SWEEP_LIMIT", 3)
    lost = [comment(room, user, f"lost {n}", age_ms=GRACE_MS + 1000 * (5 - n)).pk for n in range(5)]

    assert review_sweep(now_ms=NOW_MS) == 3
    assert set(Danmaku.objects.filter(checked=True).values_list("pk", flat=True)) == set(lost[:3])
    assert review_sweep(now_ms=NOW_MS) == 2
    assert review_sweep(now_ms=NOW_MS) == 0


def test_with_the_broker_down_the_sweep_leaves_them_for_its_next_run(room, user):
    lost = comment(room, user, LINK, age_ms=GRACE_MS + 5_000)

    with private_redis() as broker, celery_broker(broker.url):
        broker.stop()
        assert review_sweep(now_ms=NOW_MS) == 0  # nothing raised, no inline fallback

    lost.refresh_from_db()
    assert (lost.status, lost.checked) == ("published", False)
    assert review_sweep(now_ms=NOW_MS) == 1  # the broker back (here: inline)


@pytest.mark.parametrize("role", ["send", "all"])
def test_the_sweep_is_a_background_job_of_sending_nodes(role):
    assert "moderation.review_sweep" in {job.name for job in jobs_for(role)}
    assert "moderation.review_sweep" not in {job.name for job in jobs_for("pull")}


def test_the_job_survives_the_database_going_away(room, user, monkeypatch, caplog):
    from django.db import OperationalError

    def database_down(**_):
        raise OperationalError("connection refused")

    monkeypatch.setattr(reviewsweep.reviews, "unchecked_due", database_down)
    loop = JobLoop([job for job in jobs_for("send") if job.name == "moderation.review_sweep"])

    assert loop.run_due() == ["moderation.review_sweep"]
    assert "sweep for unchecked comments postponed" in caplog.text
