"""Each process's copy of who is sanctioned, for the send path.

Every send asks whether its sender is banned or timed out; the answer
changes when a moderator acts, and when a timeout runs out. Each user's
unlifted sanctions are cached (``infra.changefeed``); a sanction saved or
deleted anywhere (the console, the admin) is recorded on the channel in its
own transaction, and reaches every process within the channel's lease, at
once the one that saved it. Expiry needs no change: ``until`` is compared
with the clock at every send.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from danmaku import changes
from infra.changefeed import LookupCache
from moderation.models import Sanction

KIND = "sanctions"


def _load(user_id: int) -> tuple[tuple[str, int | None, datetime | None], ...]:
    rows = (
        Sanction.objects.filter(user_id=user_id, lifted_at__isnull=True)
        .filter(Q(until__isnull=True) | Q(until__gt=timezone.now()))
        .values_list("kind", "room_id", "until")
    )
    return tuple(rows)


sanctions: LookupCache[int, tuple] = LookupCache(changes.feed, KIND, _load)


def active_sanctions(*, user_id: int, room_id: int, now: datetime) -> list[tuple[str, datetime | None]]:
    """(kind, until) of the user's sanctions in force in the room (or everywhere) at ``now``."""
    return [
        (kind, until)
        for kind, sanction_room, until in sanctions.get(user_id)
        if (sanction_room is None or sanction_room == room_id) and (until is None or until > now)
    ]


@receiver(post_save, sender=Sanction, dispatch_uid="moderation.sanctioncache.save")
@receiver(post_delete, sender=Sanction, dispatch_uid="moderation.sanctioncache.delete")
def _sanction_changed(sender, instance, **kwargs) -> None:
    changes.record(KIND, instance.user_id)
