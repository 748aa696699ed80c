"""Reads for moderators: the held queue, a room's recent comments, its
summary, who moderates; and the send path's sanction look-up."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from danmaku.errors import NotFound
from danmaku.models import Danmaku, Room
from moderation.models import Sanction
from moderation.sanctioncache import active_sanctions

MODERATORS_GROUP = "Moderators"
PRODUCT_STAFF_GROUP = "Product staff"
# A moderation console shows one screenful; more is paging, not a live view.
LIST_LIMIT_MAX = 200
# The console's counters: "how busy is it right now" wants a short window;
# "how much did we take down" wants the span of one moderation shift's glance.
SUMMARY_RECENT_SECONDS = 60
SUMMARY_HIDDEN_SECONDS = 3600


def user_is_moderator(*, user) -> bool:
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    return user.is_superuser or user.groups.filter(name=MODERATORS_GROUP).exists()


def room_by_slug(*, slug: str) -> Room:
    room = Room.objects.filter(slug=slug).first()
    if room is None:
        raise NotFound("room not found")
    return room


def held_queue(*, room: Room, limit: int = 50) -> QuerySet[Danmaku]:
    """Held comments, oldest first (first come, first reviewed)."""
    return (
        Danmaku.objects.filter(room=room, status=Danmaku.Status.HELD)
        .select_related("user")
        .order_by("ts_ms", "id")[: min(limit, LIST_LIMIT_MAX)]
    )


def recent_comments(*, room: Room, limit: int = 50) -> QuerySet[Danmaku]:
    """A room's newest comments in every status, newest first."""
    return (
        Danmaku.objects.filter(room=room).select_related("user").order_by("-ts_ms", "-id")[: min(limit, LIST_LIMIT_MAX)]
    )


@dataclass(frozen=True)
class RoomSummary:
    """What the moderation console's header shows about one room."""

    room: Room
    now_ms: int
    # Comments received in the last SUMMARY_RECENT_SECONDS, whatever their status.
    recent: int
    # Comments waiting for a moderator now, however old.
    held: int
    # Comments received in the last SUMMARY_HIDDEN_SECONDS that are hidden now
    # (hidden by a moderator or a check, or rejected from the held queue).
    hidden: int

    @property
    def emergency(self) -> bool:
        # The preset keeps what it replaced until it is undone (danmaku.rooms).
        return self.room.emergency_backup is not None


def room_summary(*, room: Room, now_ms: int) -> RoomSummary:
    """Counts for the console, in two queries: one index range over the room's
    last hour (room, ts_ms) for both windowed counts, and the held count,
    which has no window because a held comment waits until someone acts."""
    recent_since = now_ms - SUMMARY_RECENT_SECONDS * 1000
    window = Danmaku.objects.filter(room=room, ts_ms__gte=now_ms - SUMMARY_HIDDEN_SECONDS * 1000).aggregate(
        recent=Count("id", filter=Q(ts_ms__gte=recent_since)),
        hidden=Count("id", filter=Q(status=Danmaku.Status.HIDDEN)),
    )
    held = Danmaku.objects.filter(room=room, status=Danmaku.Status.HELD).count()
    return RoomSummary(room=room, now_ms=now_ms, recent=window["recent"], held=held, hidden=window["hidden"])


def sender_block_reason(*, user, room: Room) -> str | None:
    """Why ``user`` may not send in ``room`` now, or None. No query with a
    warm cache (``moderation.sanctioncache``).

    A ban (here or everywhere) wins over timeouts; of several timeouts the
    latest end is reported.
    """
    latest: datetime | None = None
    for kind, until in active_sanctions(user_id=user.pk, room_id=room.pk, now=timezone.now()):
        if kind == Sanction.Kind.BAN:
            return "banned"
        if until is not None and (latest is None or until > latest):
            latest = until
    if latest is None:
        return None
    return f"timed out until {latest.isoformat(timespec='seconds')}"
