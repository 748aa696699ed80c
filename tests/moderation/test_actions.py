"""moderation.actions: each action's effect, and exactly one audit row per action."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from danmaku import changes
from danmaku.errors import InvalidInput, NotFound
from danmaku.models import Danmaku, Room
from moderation import actions, selectors
from moderation.models import AuditEntry, Sanction
from moderation.selectors import MODERATORS_GROUP


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
def moderator(db):
    user = get_user_model().objects.create_user("mod", password="pw-for-tests-only", is_staff=True)
    user.groups.add(Group.objects.get(name=MODERATORS_GROUP))
    return user


@pytest.fixture
def other_room(db):
    return Room.objects.create(slug="other", title="Other")


def comment(room, user, *, status=Danmaku.Status.PUBLISHED, age_ms=0, text="hello") -> Danmaku:
    return Danmaku.objects.create(
        room=room, user=user, text=text, ts_ms=now_ms() - age_ms, status=status, in_stream=True
    )


def only_audit_row() -> AuditEntry:
    rows = list(AuditEntry.objects.all())
    assert len(rows) == 1, rows
    return rows[0]


# -- comments -----------------------------------------------------------------------


def test_hide_retracts_and_audits_once(room, user, moderator):
    target = comment(room, user)
    hidden = actions.danmaku_hide(danmaku_id=target.pk, actor=moderator, reason="spam")
    assert hidden.status == Danmaku.Status.HIDDEN
    assert hidden.retracted_at_ms is not None
    row = only_audit_row()
    assert (row.actor, row.action, row.target_type, row.target_id, row.room_id, row.reason) == (
        moderator,
        "danmaku.hide",
        "danmaku",
        str(target.pk),
        room.pk,
        "spam",
    )
    assert row.detail["previous_status"] == "published"


def test_hide_twice_is_a_conflict_without_a_second_audit_row(room, user, moderator):
    target = comment(room, user)
    actions.danmaku_hide(danmaku_id=target.pk, actor=moderator, reason="spam")
    with pytest.raises(actions.Conflict):
        actions.danmaku_hide(danmaku_id=target.pk, actor=moderator, reason="again")
    assert AuditEntry.objects.count() == 1


def test_unhide_restores_the_record_and_audits_once(room, user, moderator):
    target = comment(room, user)
    actions.danmaku_hide(danmaku_id=target.pk, actor=moderator, reason="spam")
    AuditEntry.objects.all().delete()
    restored = actions.danmaku_unhide(danmaku_id=target.pk, actor=moderator, reason="false alarm")
    assert (restored.status, restored.retracted_at_ms, restored.retraction_in_stream) == ("published", None, False)
    assert only_audit_row().action == "danmaku.unhide"


def test_unhide_of_a_visible_comment_is_a_conflict(room, user, moderator):
    target = comment(room, user)
    with pytest.raises(actions.Conflict):
        actions.danmaku_unhide(danmaku_id=target.pk, actor=moderator, reason="x")
    assert AuditEntry.objects.count() == 0


def test_approve_publishes_a_held_comment_with_a_fresh_timestamp(room, user, moderator):
    target = comment(room, user, status=Danmaku.Status.HELD, age_ms=60_000)
    before = now_ms()
    approved = actions.held_approve(danmaku_id=target.pk, actor=moderator, reason="fine")
    approved.refresh_from_db()
    assert approved.status == Danmaku.Status.PUBLISHED
    assert approved.ts_ms >= before
    assert approved.in_stream  # no Redis: the row is the store
    assert only_audit_row().action == "held.approve"


def test_reject_hides_a_held_comment_without_a_retraction(room, user, moderator):
    target = comment(room, user, status=Danmaku.Status.HELD)
    rejected = actions.held_reject(danmaku_id=target.pk, actor=moderator, reason="rude")
    rejected.refresh_from_db()
    assert (rejected.status, rejected.retracted_at_ms) == ("hidden", None)
    assert only_audit_row().action == "held.reject"


@pytest.mark.parametrize("action", [actions.held_approve, actions.held_reject])
def test_held_actions_refuse_a_comment_that_is_not_held(room, user, moderator, action):
    target = comment(room, user)
    with pytest.raises(actions.Conflict):
        action(danmaku_id=target.pk, actor=moderator, reason="x")
    assert AuditEntry.objects.count() == 0


def test_actions_on_a_missing_comment_are_not_found(db, moderator):
    with pytest.raises(NotFound):
        actions.danmaku_hide(danmaku_id=999_999, actor=moderator, reason="x")
    assert AuditEntry.objects.count() == 0


def test_blank_reason_is_refused(room, user, moderator):
    target = comment(room, user)
    with pytest.raises(InvalidInput):
        actions.danmaku_hide(danmaku_id=target.pk, actor=moderator, reason="  ")
    assert AuditEntry.objects.count() == 0


def test_system_actor_is_recorded_as_null(room, user):
    target = comment(room, user)
    actions.danmaku_hide(danmaku_id=target.pk, actor=None, reason="moderation task")
    assert only_audit_row().actor is None


# -- exactly one audit row per action (table-driven) ----------------------------------


def _run(name, room, user, moderator):
    if name == "hide":
        actions.danmaku_hide(danmaku_id=comment(room, user).pk, actor=moderator, reason="r")
    elif name == "unhide":
        target = comment(room, user, status=Danmaku.Status.HIDDEN)
        actions.danmaku_unhide(danmaku_id=target.pk, actor=moderator, reason="r")
    elif name == "approve":
        target = comment(room, user, status=Danmaku.Status.HELD)
        actions.held_approve(danmaku_id=target.pk, actor=moderator, reason="r")
    elif name == "reject":
        target = comment(room, user, status=Danmaku.Status.HELD)
        actions.held_reject(danmaku_id=target.pk, actor=moderator, reason="r")
    elif name == "timeout":
        actions.user_timeout(user_id=user.pk, room_id=room.pk, seconds=60, actor=moderator, reason="r")
    elif name == "ban":
        actions.user_ban(user_id=user.pk, room_id=None, actor=moderator, reason="r")
    elif name == "lift":
        sanction = Sanction.objects.create(user=user, kind="ban", reason="old")
        actions.sanction_lift(sanction_id=sanction.pk, actor=moderator, reason="r")
    elif name == "purge":
        for _ in range(3):
            comment(room, user)
        actions.user_purge(user_id=user.pk, room_id=room.pk, minutes=5, actor=moderator, reason="r")


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("hide", "danmaku.hide"),
        ("unhide", "danmaku.unhide"),
        ("approve", "held.approve"),
        ("reject", "held.reject"),
        ("timeout", "user.timeout"),
        ("ban", "user.ban"),
        ("lift", "sanction.lift"),
        ("purge", "user.purge"),
    ],
)
def test_every_action_writes_exactly_one_audit_row(room, user, moderator, name, code):
    _run(name, room, user, moderator)
    row = only_audit_row()
    assert (row.action, row.actor, row.reason) == (code, moderator, "r")


# -- sanctions ----------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "ok"), [(9, False), (10, True), (14 * 86400, True), (14 * 86400 + 1, False)])
def test_timeout_duration_is_10_seconds_to_2_weeks(room, user, moderator, seconds, ok):
    if ok:
        sanction = actions.user_timeout(user_id=user.pk, room_id=room.pk, seconds=seconds, actor=moderator, reason="r")
        assert sanction.kind == "timeout"
        assert sanction.until - sanction.created_at == pytest.approx(timedelta(seconds=seconds), abs=timedelta(1))
    else:
        with pytest.raises(InvalidInput):
            actions.user_timeout(user_id=user.pk, room_id=room.pk, seconds=seconds, actor=moderator, reason="r")
        assert AuditEntry.objects.count() == Sanction.objects.count() == 0


def test_lift_twice_is_a_conflict(user, moderator):
    sanction = actions.user_ban(user_id=user.pk, room_id=None, actor=moderator, reason="r")
    actions.sanction_lift(sanction_id=sanction.pk, actor=moderator, reason="appeal")
    with pytest.raises(actions.Conflict):
        actions.sanction_lift(sanction_id=sanction.pk, actor=moderator, reason="again")
    assert AuditEntry.objects.count() == 2


def test_sender_block_reason_is_none_without_sanctions(room, user):
    assert selectors.sender_block_reason(user=user, room=room) is None


def test_timed_out_sender_is_told_until_when(room, user, moderator):
    sanction = actions.user_timeout(user_id=user.pk, room_id=room.pk, seconds=600, actor=moderator, reason="r")
    reason = selectors.sender_block_reason(user=user, room=room)
    assert reason == f"timed out until {sanction.until.isoformat(timespec='seconds')}"


def test_longest_timeout_is_reported(room, user, moderator):
    actions.user_timeout(user_id=user.pk, room_id=room.pk, seconds=60, actor=moderator, reason="r")
    longer = actions.user_timeout(user_id=user.pk, room_id=None, seconds=3600, actor=moderator, reason="r")
    assert selectors.sender_block_reason(user=user, room=room).endswith(longer.until.isoformat(timespec="seconds"))


def test_ban_wins_over_a_timeout(room, user, moderator):
    actions.user_timeout(user_id=user.pk, room_id=room.pk, seconds=60, actor=moderator, reason="r")
    actions.user_ban(user_id=user.pk, room_id=room.pk, actor=moderator, reason="r")
    assert selectors.sender_block_reason(user=user, room=room) == "banned"


def test_room_sanction_applies_to_that_room_only(room, other_room, user, moderator):
    actions.user_ban(user_id=user.pk, room_id=other_room.pk, actor=moderator, reason="r")
    assert selectors.sender_block_reason(user=user, room=room) is None
    assert selectors.sender_block_reason(user=user, room=other_room) == "banned"


def test_global_sanction_applies_everywhere(room, other_room, user, moderator):
    actions.user_ban(user_id=user.pk, room_id=None, actor=moderator, reason="r")
    assert selectors.sender_block_reason(user=user, room=room) == "banned"
    assert selectors.sender_block_reason(user=user, room=other_room) == "banned"


def test_lifted_and_expired_sanctions_do_not_block(room, user, moderator):
    ban = actions.user_ban(user_id=user.pk, room_id=None, actor=moderator, reason="r")
    actions.sanction_lift(sanction_id=ban.pk, actor=moderator, reason="appeal")
    Sanction.objects.create(user=user, kind="timeout", until=timezone.now() - timedelta(seconds=1), reason="old")
    assert selectors.sender_block_reason(user=user, room=room) is None


def test_sender_block_reason_costs_no_query_once_cached_and_sees_a_ban_at_once(
    room, user, moderator, django_assert_num_queries, django_capture_on_commit_callbacks
):
    changes.feed.poll()  # the background job, which the tests do not run
    assert selectors.sender_block_reason(user=user, room=room) is None
    with django_assert_num_queries(0):
        assert selectors.sender_block_reason(user=user, room=room) is None

    with django_capture_on_commit_callbacks(execute=True):
        actions.user_ban(user_id=user.pk, room_id=room.pk, actor=moderator, reason="spam")

    assert selectors.sender_block_reason(user=user, room=room) == "banned"


# -- purge --------------------------------------------------------------------------


def test_purge_hides_the_users_recent_comments_in_the_room_only(room, other_room, user, moderator):
    other_user = get_user_model().objects.create_user("bystander")
    recent = [comment(room, user, age_ms=age) for age in (0, 60_000, 119_000)]
    old = comment(room, user, age_ms=10 * 60_000)
    elsewhere = comment(other_room, user)
    someone_else = comment(room, other_user)
    already = comment(room, user, status=Danmaku.Status.HIDDEN)

    assert actions.user_purge(user_id=user.pk, room_id=room.pk, minutes=2, actor=moderator, reason="flood") == 3

    statuses = dict(Danmaku.objects.values_list("pk", "status"))
    assert {statuses[d.pk] for d in recent} == {"hidden"}
    assert [statuses[d.pk] for d in (old, elsewhere, someone_else)] == ["published"] * 3
    assert statuses[already.pk] == "hidden"
    row = only_audit_row()
    assert (row.action, row.detail["count"], row.detail["minutes"]) == ("user.purge", 3, 2)
    assert sorted(row.detail["danmaku_ids"]) == sorted(d.pk for d in recent)


@pytest.mark.parametrize("minutes", [0, 24 * 60 + 1])
def test_purge_window_is_bounded(room, user, moderator, minutes):
    with pytest.raises(InvalidInput):
        actions.user_purge(user_id=user.pk, room_id=room.pk, minutes=minutes, actor=moderator, reason="r")


# -- production mode (Redis store) --------------------------------------------------


def _stream(redis_client, settings, room) -> list[tuple[bytes, int]]:
    entries = redis_client.xrange(f"{settings.DANMAKU_REDIS_PREFIX}:s:{room.pk}")
    return [(fields[b"k"], int(fields[b"id"])) for _, fields in entries]


def test_approve_in_redis_mode_publishes_after_commit(
    redis_mode, settings, room, user, moderator, django_capture_on_commit_callbacks
):
    target = comment(room, user, status=Danmaku.Status.HELD)
    Danmaku.objects.filter(pk=target.pk).update(in_stream=False)
    with django_capture_on_commit_callbacks(execute=True):
        actions.held_approve(danmaku_id=target.pk, actor=moderator, reason="fine")
    target.refresh_from_db()
    assert (target.status, target.in_stream) == ("published", True)
    assert _stream(redis_mode, settings, room) == [(b"m", target.pk)]


def test_hide_in_redis_mode_puts_the_retraction_on_the_stream_after_commit(
    redis_mode, settings, room, user, moderator, django_capture_on_commit_callbacks
):
    target = comment(room, user)
    with django_capture_on_commit_callbacks(execute=True):
        actions.danmaku_hide(danmaku_id=target.pk, actor=moderator, reason="spam")
    target.refresh_from_db()
    assert target.retraction_in_stream
    assert _stream(redis_mode, settings, room) == [(b"d", target.pk)]
