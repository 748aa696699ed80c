"""Send limits: slow mode per (room, user) and a cap per room and second.

Counters live in the database (``SendWindow``) and move with conditional
UPDATEs, so every worker process sees the same counts and two concurrent
sends cannot both take the last place.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import F

from danmaku.models import SendWindow

# SendWindow.user_id for the room-wide counter; real user ids start at 1.
ROOM_ROW = 0


def take_user_slot(*, room_id: int, user_id: int, interval_ms: int, now_ms: int) -> int:
    """Claim the user's next send; return 0, or the ms to wait before retrying."""
    if interval_ms <= 0:
        return 0
    rows = SendWindow.objects.filter(room_id=room_id, user_id=user_id)
    for _ in range(2):
        if rows.filter(mark__lte=now_ms).update(mark=now_ms + interval_ms):
            return 0
        if _create(room_id=room_id, user_id=user_id, mark=now_ms + interval_ms, count=0):
            return 0
        mark = rows.values_list("mark", flat=True).first()
        if mark is not None and mark > now_ms:
            return mark - now_ms
    return interval_ms


def take_room_slot(*, room_id: int, cap_per_second: int, now_ms: int) -> bool:
    """Count one send against the room's cap for this second; False if full."""
    second = now_ms // 1000
    rows = SendWindow.objects.filter(room_id=room_id, user_id=ROOM_ROW)
    for _ in range(2):
        if rows.filter(mark=second, count__lt=cap_per_second).update(count=F("count") + 1):
            return True
        if rows.filter(mark__lt=second).update(mark=second, count=1):
            return True
        if _create(room_id=room_id, user_id=ROOM_ROW, mark=second, count=1):
            return True
        if rows.filter(mark=second, count__gte=cap_per_second).exists():
            return False
    return False


def _create(**fields) -> bool:
    try:
        with transaction.atomic():
            SendWindow.objects.create(**fields)
    except IntegrityError:
        return False
    return True
