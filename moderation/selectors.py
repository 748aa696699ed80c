"""Reads for moderators: the held queue, a room's recent comments, who moderates."""

from __future__ import annotations

from django.db.models import QuerySet

from danmaku.errors import NotFound
from danmaku.models import Danmaku, Room

MODERATORS_GROUP = "Moderators"
PRODUCT_STAFF_GROUP = "Product staff"
# A moderation console shows one screenful; more is paging, not a live view.
LIST_LIMIT_MAX = 200


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
