"""Moderation actions: hide, approve, sanction, purge.

Every function here is one action a moderator (or a task) takes, and writes
exactly one ``AuditEntry`` in the same transaction as its effect, so the log
and the effect cannot disagree. Callers: the moderation API, the Danmaku and
Sanction admins, tasks. ``actor`` is the user acting, or None for the system.

What viewers see:
- hide (and purge, and reject of a held comment): the id is in the
  ``deleted`` list of every viewer's next pull; joiners never get it.
- unhide: the durable record is published again (admin, the recent-comments
  API, exports), and while the comment is inside the pull window every
  viewer's next pull carries it again, its id in ``restored``, so screens
  that removed it show it again (a merged duplicate rejoins its item).
- approve: the held comment is published now, with a fresh timestamp, so it
  reaches every viewer's next pulls like a new comment.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from danmaku.errors import DanmakuError, InvalidInput, NotFound
from danmaku.models import Danmaku, Room
from danmaku.publishing import danmaku_release, danmaku_restore, danmaku_retract
from infra import clock
from moderation.audit import audit_record
from moderation.models import TIMEOUT_MAX_SECONDS, TIMEOUT_MIN_SECONDS, Sanction

logger = logging.getLogger(__name__)

# A purge looks back at most a day: older comments left every screen long ago,
# and an unbounded purge would be one very long transaction.
PURGE_MAX_MINUTES = 24 * 60


class Conflict(DanmakuError):
    """The target is not in a state the action applies to (already hidden, not held, lifted)."""

    status = 409


def _danmaku(danmaku_id: int) -> Danmaku:
    found = Danmaku.objects.select_for_update().filter(pk=danmaku_id).first()
    if found is None:
        raise NotFound("comment not found")
    return found


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("reason: is required", field="reason")
    return reason


# -- comments -----------------------------------------------------------------------


def danmaku_hide(*, danmaku_id: int, actor, reason: str) -> Danmaku:
    """Take a comment off every screen (it goes out in ``deleted``)."""
    reason = _reason(reason)
    with transaction.atomic():
        danmaku = _danmaku(danmaku_id)
        previous = danmaku.status
        if previous == Danmaku.Status.HIDDEN:
            raise Conflict("comment is already hidden")
        if not danmaku_retract(danmaku_id=danmaku.pk, reason=reason, actor=actor):
            raise Conflict("comment is already hidden")
        audit_record(
            actor=actor,
            action="danmaku.hide",
            target_type="danmaku",
            target_id=danmaku.pk,
            room_id=danmaku.room_id,
            reason=reason,
            detail={"previous_status": previous, "user_id": danmaku.user_id},
        )
    danmaku.refresh_from_db()
    return danmaku


def danmaku_unhide(*, danmaku_id: int, actor, reason: str) -> Danmaku:
    """Publish a hidden comment again; screens that removed it get it back while it is in the window."""
    reason = _reason(reason)
    with transaction.atomic():
        danmaku = _danmaku(danmaku_id)
        if danmaku.status != Danmaku.Status.HIDDEN:
            raise Conflict(f"comment is {danmaku.status}, not hidden")
        retracted_at_ms = danmaku.retracted_at_ms
        danmaku_restore(danmaku_id=danmaku.pk, actor=actor)
        audit_record(
            actor=actor,
            action="danmaku.unhide",
            target_type="danmaku",
            target_id=danmaku.pk,
            room_id=danmaku.room_id,
            reason=reason,
            detail={"retracted_at_ms": retracted_at_ms, "user_id": danmaku.user_id},
        )
    danmaku.refresh_from_db()
    return danmaku


def held_approve(*, danmaku_id: int, actor, reason: str) -> Danmaku:
    """Publish a held comment now, as if it had just been sent."""
    reason = _reason(reason)
    with transaction.atomic():
        danmaku = _danmaku(danmaku_id)
        if danmaku.status != Danmaku.Status.HELD:
            raise Conflict(f"comment is {danmaku.status}, not held")
        # Published with a fresh timestamp: the refresher reads rows by time,
        # and the comment's original second left the window while it waited.
        danmaku_release(danmaku_id=danmaku.pk, reason=reason, actor=actor)
        audit_record(
            actor=actor,
            action="held.approve",
            target_type="danmaku",
            target_id=danmaku.pk,
            room_id=danmaku.room_id,
            reason=reason,
            detail={"user_id": danmaku.user_id},
        )
    danmaku.refresh_from_db()
    return danmaku


def held_reject(*, danmaku_id: int, actor, reason: str) -> Danmaku:
    """Refuse a held comment; it was never shown, so no viewer is told."""
    reason = _reason(reason)
    with transaction.atomic():
        danmaku = _danmaku(danmaku_id)
        if danmaku.status != Danmaku.Status.HELD:
            raise Conflict(f"comment is {danmaku.status}, not held")
        danmaku.status = Danmaku.Status.HIDDEN
        danmaku.save(update_fields=["status"])
        audit_record(
            actor=actor,
            action="held.reject",
            target_type="danmaku",
            target_id=danmaku.pk,
            room_id=danmaku.room_id,
            reason=reason,
            detail={"user_id": danmaku.user_id},
        )
    return danmaku


# -- users --------------------------------------------------------------------------


def _target_user(user_id: int):
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None:
        raise NotFound("user not found")
    return user


def _room_or_none(room_id: int | None) -> Room | None:
    if room_id is None:
        return None
    room = Room.objects.filter(pk=room_id).first()
    if room is None:
        raise NotFound("room not found")
    return room


def _sanction(*, kind: str, user_id: int, room_id: int | None, until: datetime | None, actor, reason: str):
    user = _target_user(user_id)
    room = _room_or_none(room_id)
    with transaction.atomic():
        sanction = Sanction.objects.create(
            user=user,
            room=room,
            kind=kind,
            until=until,
            reason=reason[:500],
            created_by=actor if actor is not None and actor.is_authenticated else None,
        )
        audit_record(
            actor=actor,
            action=f"user.{kind}",
            target_type="user",
            target_id=user.pk,
            room_id=room_id,
            reason=reason,
            detail={"sanction_id": sanction.pk, "until": until.isoformat() if until else None},
        )
    return sanction


def user_timeout(*, user_id: int, room_id: int | None, seconds: int, actor, reason: str) -> Sanction:
    """Keep a user from sending for ``seconds`` (10 s to 2 weeks), in one room or everywhere."""
    reason = _reason(reason)
    if not TIMEOUT_MIN_SECONDS <= seconds <= TIMEOUT_MAX_SECONDS:
        raise InvalidInput(
            f"seconds: must be {TIMEOUT_MIN_SECONDS} to {TIMEOUT_MAX_SECONDS} (2 weeks)", field="seconds"
        )
    until = timezone.now() + timedelta(seconds=seconds)
    return _sanction(
        kind=Sanction.Kind.TIMEOUT, user_id=user_id, room_id=room_id, until=until, actor=actor, reason=reason
    )


def user_ban(*, user_id: int, room_id: int | None, actor, reason: str) -> Sanction:
    """Keep a user from sending until lifted, in one room or everywhere."""
    reason = _reason(reason)
    return _sanction(kind=Sanction.Kind.BAN, user_id=user_id, room_id=room_id, until=None, actor=actor, reason=reason)


def sanction_lift(*, sanction_id: int, actor, reason: str) -> Sanction:
    reason = _reason(reason)
    with transaction.atomic():
        sanction = Sanction.objects.select_for_update().filter(pk=sanction_id).first()
        if sanction is None:
            raise NotFound("sanction not found")
        if sanction.lifted_at is not None:
            raise Conflict("sanction is already lifted")
        sanction.lifted_at = timezone.now()
        sanction.save(update_fields=["lifted_at"])
        audit_record(
            actor=actor,
            action="sanction.lift",
            target_type="sanction",
            target_id=sanction.pk,
            room_id=sanction.room_id,
            reason=reason,
            detail={"user_id": sanction.user_id, "kind": sanction.kind},
        )
    return sanction


def user_purge(*, user_id: int, room_id: int, minutes: int, actor, reason: str) -> int:
    """Hide every comment of a user in a room from the last ``minutes``; returns how many.

    One audit row for the whole purge, with the count and the ids.
    """
    reason = _reason(reason)
    if not 1 <= minutes <= PURGE_MAX_MINUTES:
        raise InvalidInput(f"minutes: must be 1 to {PURGE_MAX_MINUTES}", field="minutes")
    user = _target_user(user_id)
    room = _room_or_none(room_id)
    since_ms = clock.now_ms() - minutes * 60_000
    with transaction.atomic():
        ids = list(
            Danmaku.objects.filter(user=user, room=room, ts_ms__gte=since_ms, retracted_at_ms__isnull=True)
            .exclude(status=Danmaku.Status.HIDDEN)
            .order_by("id")
            .values_list("id", flat=True)
        )
        hidden = [pk for pk in ids if danmaku_retract(danmaku_id=pk, reason=f"purge: {reason}", actor=actor)]
        audit_record(
            actor=actor,
            action="user.purge",
            target_type="user",
            target_id=user.pk,
            room_id=room.pk,
            reason=reason,
            detail={"minutes": minutes, "count": len(hidden), "danmaku_ids": hidden},
        )
    return len(hidden)
