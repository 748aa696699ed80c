"""Rooms as staff edit them: creating, saving, the emergency preset, and
spreading a room's settings to every process."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Subquery
from django.utils import timezone

from danmaku.models import Danmaku, Room
from danmaku.store import StoreUnavailable, redis_store, room_row_from_model
from infra.ratelimitlog import RateLimitedLog

logger = logging.getLogger(__name__)
fallback_log = RateLimitedLog(logger, every_seconds=10)

# The emergency preset: what a room switches to during a spike (slow mode,
# slower polling, a tighter screen, comments checked before anyone sees them).
# Slower polling is the staff multiplier, which answers report as "busy",
# as delivery control's own stretching is.
EMERGENCY_FIELDS = ("user_send_interval_ms", "poll_multiplier", "display_cap_per_second", "moderation_policy")
EMERGENCY_POLL_MULTIPLIER = 2.0


def room_create(*, slug: str, title: str = "") -> tuple[Room, bool]:
    room, created = Room.objects.get_or_create(slug=slug, defaults={"title": title or slug})
    if not created and title and room.title != title:
        room.title = title
        room.save(update_fields=["title", "updated_at"])
    room_settings_publish(room=room)
    return room, created


# Written only by moderators' pins (moderation.pins) and hides: a staff
# edit saved from a form loaded before a pin must not take the pin down.
PINNED_FIELDS = ("pinned_text", "pinned_nick", "pinned_danmaku_id", "pinned_until_ms")


def room_save(*, room: Room) -> Room:
    """Save a room edited by staff and spread its settings to every process."""
    room.full_clean()
    if room.pk is None:
        room.save()
    else:
        room.save(
            update_fields=[
                f.name for f in Room._meta.concrete_fields if not f.primary_key and f.name not in PINNED_FIELDS
            ]
        )
        # What every process is told is the row as it is now, pin included.
        room.refresh_from_db(fields=PINNED_FIELDS)
    room_settings_publish(room=room)
    return room


def room_settings_publish(*, room: Room) -> None:
    """Tell every process about a room's settings (Redis mode); the room
    settings sweep repeats it, so a failure here only delays the change."""
    stream = redis_store()
    if stream is None:
        return
    try:
        stream.publish_room(room_row_from_model(room))
    except StoreUnavailable as exc:
        fallback_log.warning("room settings not published yet, store unavailable: %s", exc)


def room_pin_clear_for(*, danmaku_id: int) -> bool:
    """Take down the pin showing comment ``danmaku_id`` (hiding it unpins it);
    False if it was not pinned. Every process learns it after commit."""
    # A pinned comment is one of its own room's: the room is found by the
    # comment's id, one indexed UPDATE, and rooms without that pin untouched.
    room_of = Danmaku.objects.filter(pk=danmaku_id).values("room_id")[:1]
    cleared = Room.objects.filter(pk=Subquery(room_of), pinned_danmaku_id=danmaku_id).update(
        pinned_text="",
        pinned_nick="",
        pinned_danmaku_id=None,
        pinned_until_ms=None,
        # update() skips auto_now; the embedded store's refreshers read
        # rooms whose updated_at moved.
        updated_at=timezone.now(),
    )
    if not cleared:
        return False

    def publish() -> None:
        room = Room.objects.filter(pk=Subquery(room_of)).first()
        if room is not None:
            room_settings_publish(room=room)

    transaction.on_commit(publish)
    return True


def _emergency_values(room: Room) -> dict:
    return {
        "user_send_interval_ms": max(room.user_send_interval_ms, 10_000),
        "poll_multiplier": max(room.poll_multiplier, EMERGENCY_POLL_MULTIPLIER),
        "display_cap_per_second": min(room.display_cap_per_second, 10),
        "moderation_policy": Room.Policy.PRE,
    }


def room_emergency_apply(*, room: Room) -> bool:
    """Switch a room to the emergency preset, remembering what it replaced.
    False if the preset is already on."""
    if room.emergency_backup is not None:
        return False
    room.emergency_backup = {field: getattr(room, field) for field in EMERGENCY_FIELDS}
    for field, value in _emergency_values(room).items():
        setattr(room, field, value)
    room_save(room=room)
    return True


def room_emergency_undo(*, room: Room) -> bool:
    """Restore the settings the preset replaced. False if it is not on."""
    if room.emergency_backup is None:
        return False
    for field, value in room.emergency_backup.items():
        setattr(room, field, value)
    room.emergency_backup = None
    room_save(room=room)
    return True
