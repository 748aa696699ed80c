"""Where published danmaku are read from by the refresher.

One interface, one backend per deployment. ``DatabaseStore`` is the
embedded default: the Danmaku table is the store, so publishing is the
durable write itself.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Protocol

from django.conf import settings

from danmaku.models import Danmaku
from danmaku.ringbuffer import Item


class Store(Protocol):
    # Changes when the store loses its history, so old cursors read as gaps.
    epoch: int

    def now_ms(self) -> int: ...

    def publish(self, danmaku: Danmaku) -> None: ...

    def read(self, room_ids: Iterable[int], since_ms: int) -> dict[int, list[Item]]:
        """Items with ``ts_ms >= since_ms`` per room, any order, may repeat."""
        ...


def item_from_row(row: dict, default_avatar: str) -> Item:
    return Item(
        id=row["id"],
        ts_ms=row["ts_ms"],
        color=row["color"],
        mode=row["mode"],
        user=row["user_id"],
        nick=row["user__viewer_profile__nickname"] or row["user__username"],
        avatar=default_avatar,
        text=row["text"],
    )


class DatabaseStore:
    epoch = 1

    def __init__(self, *, clock=time.time) -> None:
        self._clock = clock

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def publish(self, danmaku: Danmaku) -> None:
        # The committed row is what the refresher reads.
        return None

    def read(self, room_ids: Iterable[int], since_ms: int) -> dict[int, list[Item]]:
        room_ids = list(room_ids)
        out: dict[int, list[Item]] = defaultdict(list)
        if not room_ids:
            return out
        rows = (
            Danmaku.objects.filter(room_id__in=room_ids, ts_ms__gte=since_ms, status=Danmaku.Status.PUBLISHED)
            .order_by("ts_ms", "id")
            .values(
                "id",
                "room_id",
                "ts_ms",
                "color",
                "mode",
                "user_id",
                "text",
                "user__username",
                "user__viewer_profile__nickname",
            )
        )
        avatar = settings.DANMAKU_DEFAULT_AVATAR_URL
        for row in rows:
            out[row["room_id"]].append(item_from_row(row, avatar))
        return out


_store: Store | None = None


def get_store() -> Store:
    global _store
    if _store is None:
        _store = DatabaseStore()
    return _store
