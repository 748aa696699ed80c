"""Viewers' reports: filing one, the room's auto-hide, the moderators' queue,
resolving it, and telling the reporter what came of it.

Filing (``report_file``): one report per (comment, reporter); a repeat
answers with the first report and writes nothing. Never on one's own
comment, never on a comment the reporter cannot see (held, or sender-only).
At most ``reportlimit.REPORTS_PER_MINUTE`` accepted per user in any 60 s.

Good standing, per room (``Room.report_*``), taken when the report is filed:
the account is at least ``report_min_account_age_hours`` old, its owner has
at least ``report_min_published`` published comments (in any room), and at
most ``report_max_dismissed`` of their reports were dismissed in the last
DISMISSED_WINDOW_DAYS days.

A reporter's weight (``Report.weight``, also taken at filing)::

    weight = (1 if in good standing else OUT_OF_STANDING_WEIGHT) / (1 + dismissed in the last 30 days)

so reporters whose reports keep being dismissed count less and less.

A comment's place in the queue::

    queue weight = (sum of its open reports' weights) * (1 + log10(1 + viewers))

where ``viewers`` is the largest viewer estimate of the room seen when its
open reports were filed (``danmaku.audience.room_viewers``; 0 when unknown):
a comment that 100,000 people saw outranks one seen by 50 with as many
reports (factor 6 against 2.7), yet reports still dominate reach.

Auto-hide: when a comment's open reports from distinct reporters in good
standing reach the room's ``report_hide_threshold`` (0: off), it is taken off
every screen (``danmaku.publishing.danmaku_retract``, by the system), one
``report.auto_hide`` audit row records it with the count, and its open
reports are resolved as hidden. A moderator undoes it with the ordinary
unhide. Comments hidden otherwise keep their reports open for a moderator
to resolve.

Resolving (``report_resolve``): hide, dismiss, or sanction (hide, and a
timeout or ban of the sender in the room) resolves every open report of the
comment with one ``report.<action>`` audit row (a sanction also writes its
own ``user.timeout``/``user.ban`` row through ``moderation.actions``). The
reporters learn the outcome from ``report_outcomes_take`` on their next
page load.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Count, ExpressionWrapper, F, FloatField, Max, Min, Q, QuerySet, Sum, Value
from django.db.models.functions import Log
from django.utils import timezone

from danmaku.audience import room_viewers
from danmaku.errors import Conflict, Forbidden, InvalidInput, NotFound, RateLimited
from danmaku.models import Danmaku, Room
from danmaku.publishing import danmaku_retract
from moderation import actions, reportlimit
from moderation.audit import audit_record
from moderation.models import Report, Sanction

logger = logging.getLogger(__name__)

# Dismissed reports older than this no longer weigh on a reporter: a month
# is long enough to see a pattern and short enough to forgive one.
DISMISSED_WINDOW_DAYS = 30
# A reporter out of good standing still tells moderators something, just
# less: four of them weigh as one in good standing. They never auto-hide.
OUT_OF_STANDING_WEIGHT = 0.25
# The moderators' queue: comments per page (one screenful), and the free
# texts shown per comment (the first few say what the rest will).
QUEUE_LIMIT_MAX = 200
QUEUE_NOTES_MAX = 5
# Outcomes handed to a reporter per call; the rest on the next load.
OUTCOMES_MAX = 50
# A sanction's timeout when the moderator picks none: long enough to end a
# raid, short enough to need no second thought.
SANCTION_DEFAULT_SECONDS = 600

RESOLVE_ACTIONS = ("hide", "dismiss", "sanction")
_STATE_OF_ACTION = {
    "hide": Report.State.HIDDEN,
    "dismiss": Report.State.DISMISSED,
    "sanction": Report.State.SANCTIONED,
}


# -- standing -----------------------------------------------------------------------


@dataclass(frozen=True)
class Standing:
    good: bool
    weight: float
    account_age_hours: float
    published: int
    dismissed: int


def reporter_standing(*, user, room: Room, now: datetime) -> Standing:
    """Whether ``user`` is in good standing to report in ``room`` (module notes), and their weight."""
    age_hours = max(0.0, (now - user.date_joined).total_seconds() / 3600)
    # Counted up to what the rule needs: an account with 100,000 comments
    # costs no more than one with 3.
    needed = room.report_min_published
    published = (
        Danmaku.objects.filter(user=user, status=Danmaku.Status.PUBLISHED).values("pk")[:needed].count()
        if needed
        else 0
    )
    dismissed = Report.objects.filter(
        reporter=user, state=Report.State.DISMISSED, resolved_at__gte=now - timedelta(days=DISMISSED_WINDOW_DAYS)
    ).count()
    good = (
        age_hours >= room.report_min_account_age_hours
        and published >= needed
        and dismissed <= room.report_max_dismissed
    )
    weight = (1.0 if good else OUT_OF_STANDING_WEIGHT) / (1 + dismissed)
    return Standing(good=good, weight=weight, account_age_hours=age_hours, published=published, dismissed=dismissed)


def reach_factor(viewers: int) -> float:
    """How much a comment's reach multiplies its reports' weight (module notes)."""
    return 1 + math.log10(1 + max(0, viewers))


# -- filing -------------------------------------------------------------------------


@dataclass(frozen=True)
class Filed:
    report: Report
    # False: a repeat; ``report`` is the first one and nothing was written.
    created: bool
    # This report took the comment off screens (the room's auto-hide).
    hid: bool = False


def report_file(*, room_slug: str, danmaku_id: int, user, reason: str, text: str = "") -> Filed:
    """File ``user``'s report of a comment in a room (module notes)."""
    text = (text or "").strip()
    if reason not in Report.Reason.values:
        raise InvalidInput(f"reason: must be one of {', '.join(Report.Reason.values)}", field="reason")
    if reason == Report.Reason.OTHER and not text:
        raise InvalidInput('text: is required when reason is "other"', field="text")
    room = Room.objects.filter(slug=room_slug).first()
    if room is None:
        raise NotFound("room not found")
    danmaku = Danmaku.objects.filter(pk=danmaku_id, room=room).values("pk", "user_id", "status").first()
    # Held and sender-only comments were never on anyone else's screen.
    if danmaku is None or danmaku["status"] in (Danmaku.Status.HELD, Danmaku.Status.SENDER_ONLY):
        raise NotFound("comment not found in this room")
    if danmaku["user_id"] == user.pk:
        raise Forbidden("id: you cannot report your own comment", field="id")
    first = Report.objects.filter(danmaku_id=danmaku_id, reporter=user).first()
    if first is not None:
        return Filed(report=first, created=False)
    if danmaku["status"] == Danmaku.Status.HIDDEN:
        raise Conflict("comment is already hidden")

    wait_ms = reportlimit.take_redis(user_id=user.pk)
    if wait_ms:
        raise _limited(wait_ms)
    viewers = room_viewers(room_id=room.pk, slug=room.slug) or 0
    try:
        with transaction.atomic():
            now = timezone.now()
            if wait_ms is None:
                wait_ms = reportlimit.take_database(user_id=user.pk, now=now)
                if wait_ms:
                    raise _limited(wait_ms)
            standing = reporter_standing(user=user, room=room, now=now)
            # The comment's row, locked: reports of one comment are counted
            # one at a time, so exactly one of them crosses the threshold,
            # and those that waited behind it find the comment hidden.
            status = Danmaku.objects.select_for_update().filter(pk=danmaku_id).values_list("status", flat=True).first()
            if status == Danmaku.Status.HIDDEN:
                raise Conflict("comment is already hidden")
            report = Report.objects.create(
                danmaku_id=danmaku_id,
                room=room,
                reporter=user,
                reason=reason,
                text=text,
                in_good_standing=standing.good,
                weight=standing.weight,
                viewers=viewers,
            )
            hid = standing.good and _auto_hide(room=room, danmaku_id=danmaku_id)
    except IntegrityError:
        # The same report, filed concurrently, was written first.
        first = Report.objects.filter(danmaku_id=danmaku_id, reporter=user).first()
        if first is None:
            raise
        return Filed(report=first, created=False)
    return Filed(report=report, created=True, hid=hid)


def _limited(wait_ms: int) -> RateLimited:
    return RateLimited(
        f"at most {reportlimit.REPORTS_PER_MINUTE} reports a minute; try again later", retry_after_ms=wait_ms
    )


def _auto_hide(*, room: Room, danmaku_id: int) -> bool:
    threshold = room.report_hide_threshold
    if threshold <= 0:
        return False
    open_reports = Report.objects.filter(danmaku_id=danmaku_id, state=Report.State.OPEN)
    reporters = open_reports.filter(in_good_standing=True).count()
    if reporters < threshold:
        return False
    if not danmaku_retract(danmaku_id=danmaku_id, reason=f"reported by {reporters} viewers", actor=None):
        return False  # hidden meanwhile by a moderator; their reports stay for the queue
    audit_record(
        actor=None,
        action="report.auto_hide",
        target_type="danmaku",
        target_id=danmaku_id,
        room_id=room.pk,
        reason=f"{reporters} reporters in good standing (threshold {threshold})",
        detail={"reporters": reporters, "threshold": threshold},
    )
    open_reports.update(state=Report.State.HIDDEN, resolved_at=timezone.now(), resolved_by=None)
    return True


# -- the moderators' queue ----------------------------------------------------------


@dataclass(frozen=True)
class QueueEntry:
    """One reported comment with its open reports summed up."""

    danmaku: Danmaku
    reporters: int
    good_standing: int
    weight: float
    viewers: int
    reasons: dict[str, int]
    notes: list[str]
    first_reported_at: datetime
    last_reported_at: datetime


def open_reports_of(*, room: Room) -> QuerySet[Report]:
    return Report.objects.filter(room=room, state=Report.State.OPEN)


def report_queue(*, room: Room, limit: int = 50) -> list[QueueEntry]:
    """A room's reported comments with open reports, heaviest first (module notes)."""
    groups = (
        open_reports_of(room=room)
        .values("danmaku_id")
        .annotate(
            reporters=Count("id"),
            good_standing=Count("id", filter=Q(in_good_standing=True)),
            weights=Sum("weight"),
            viewers=Max("viewers"),
            first=Min("created_at"),
            last=Max("created_at"),
        )
        .annotate(
            queue_weight=ExpressionWrapper(
                F("weights") * (Value(1.0) + Log(Value(10.0), F("viewers") + Value(1.0))), output_field=FloatField()
            ),
        )
        .order_by("-queue_weight", "-reporters", "first")[: min(limit, QUEUE_LIMIT_MAX)]
    )
    groups = list(groups)
    ids = [group["danmaku_id"] for group in groups]
    comments = Danmaku.objects.select_related("user").in_bulk(ids)
    reasons: dict[int, dict[str, int]] = {pk: {} for pk in ids}
    for row in (
        open_reports_of(room=room).filter(danmaku_id__in=ids).values("danmaku_id", "reason").annotate(n=Count("id"))
    ):
        reasons[row["danmaku_id"]][row["reason"]] = row["n"]
    notes: dict[int, list[str]] = {pk: [] for pk in ids}
    for danmaku_id, text in (
        open_reports_of(room=room).filter(danmaku_id__in=ids).exclude(text="").order_by("created_at", "id")
        .values_list("danmaku_id", "text")
    ):  # fmt: skip
        if len(notes[danmaku_id]) < QUEUE_NOTES_MAX:
            notes[danmaku_id].append(text)
    return [
        QueueEntry(
            danmaku=comments[group["danmaku_id"]],
            reporters=group["reporters"],
            good_standing=group["good_standing"],
            weight=round(float(group["weights"]) * reach_factor(group["viewers"]), 3),
            viewers=group["viewers"],
            reasons=reasons[group["danmaku_id"]],
            notes=notes[group["danmaku_id"]],
            first_reported_at=group["first"],
            last_reported_at=group["last"],
        )
        for group in groups
        if group["danmaku_id"] in comments
    ]


# -- resolving ----------------------------------------------------------------------


def report_resolve(
    *,
    danmaku_id: int,
    action: str,
    actor,
    reason: str,
    sanction: str = Sanction.Kind.TIMEOUT,
    seconds: int = SANCTION_DEFAULT_SECONDS,
) -> int:
    """Resolve every open report of a comment: hide it, dismiss them, or
    sanction its sender (hide, and a timeout or ban in the room). Returns
    how many reports were resolved."""
    if action not in RESOLVE_ACTIONS:
        raise InvalidInput(f"action: must be one of {', '.join(RESOLVE_ACTIONS)}", field="action")
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("reason: is required", field="reason")
    with transaction.atomic():
        danmaku = Danmaku.objects.select_for_update().filter(pk=danmaku_id).first()
        if danmaku is None:
            raise NotFound("comment not found")
        reports = Report.objects.filter(danmaku=danmaku, state=Report.State.OPEN)
        count = reports.count()
        if not count:
            raise Conflict("comment has no open reports")
        hid = False
        if action in ("hide", "sanction"):
            hid = danmaku_retract(danmaku_id=danmaku.pk, reason=f"reports: {reason}", actor=actor)
        sanction_id = None
        if action == "sanction":
            sanction_id = _sanction_sender(danmaku=danmaku, kind=sanction, seconds=seconds, actor=actor, reason=reason)
        reports.update(state=_STATE_OF_ACTION[action], resolved_by=actor, resolved_at=timezone.now())
        audit_record(
            actor=actor,
            action=f"report.{action}",
            target_type="danmaku",
            target_id=danmaku.pk,
            room_id=danmaku.room_id,
            reason=reason,
            detail={"reports": count, "hidden": hid, "user_id": danmaku.user_id, "sanction_id": sanction_id},
        )
    return count


def _sanction_sender(*, danmaku: Danmaku, kind: str, seconds: int, actor, reason: str) -> int:
    if kind == Sanction.Kind.BAN:
        return actions.user_ban(user_id=danmaku.user_id, room_id=danmaku.room_id, actor=actor, reason=reason).pk
    if kind != Sanction.Kind.TIMEOUT:
        raise InvalidInput("sanction: must be timeout or ban", field="sanction")
    return actions.user_timeout(
        user_id=danmaku.user_id, room_id=danmaku.room_id, seconds=seconds, actor=actor, reason=reason
    ).pk


# -- telling the reporter -----------------------------------------------------------


def report_outcomes_take(*, user) -> list[Report]:
    """The outcomes of ``user``'s resolved reports not yet seen, oldest first;
    marked seen, so each is told once."""
    with transaction.atomic():
        found = list(
            Report.objects.filter(reporter=user, outcome_seen=False)
            .exclude(state=Report.State.OPEN)
            .select_related("danmaku")
            .order_by("resolved_at", "id")[:OUTCOMES_MAX]
        )
        Report.objects.filter(pk__in=[report.pk for report in found]).update(outcome_seen=True)
    return found
