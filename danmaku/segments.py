"""Replay segments: a broadcast's comments by playback time, 6 minutes a
segment, each with a version that grows whenever its comments change.

A live comment's playback time follows from its timestamp (server clock):
``ts_ms - started_at_ms + offset_ms``, at least 0. A comment sent on the
recording carries its own (``Danmaku.progress_ms``). Versions come from the
broadcast's ``revision``: a change takes the next revision and writes it on
the segments it touched; an offset change moves every comment, so it
becomes the floor of every segment's version (``offset_revision``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from django.db import transaction
from django.db.models import F

from danmaku.identity import avatar_url, display_nick
from danmaku.models import Broadcast, Danmaku, ReplaySegment
from danmaku.store import ITEM_FIELDS
from infra import clock

SEGMENT_MS = 360_000
# Comments sent in a broadcast's last moments may commit after its end: a
# segment is kept as built only once the broadcast has been over this long.
SETTLE_MS = 5_000
# The longest playback time a comment on a recording may give.
MAX_PROGRESS_MS = 86_400_000
# A pull item's fields (the room apart) and the playback time of a comment sent on the recording.
SEGMENT_FIELDS = (*(name for name in ITEM_FIELDS if name != "room_id"), "progress_ms")


@dataclass(frozen=True)
class BroadcastState:
    """What serving a broadcast's segments needs to know, read in one go."""

    id: int
    room_id: int
    room_slug: str
    started_at_ms: int
    ended_at_ms: int | None
    offset_ms: int
    recording_url: str
    # versions[N]: segment N's version.
    versions: tuple[int, ...]

    def settled(self, now_ms: int) -> bool:
        return self.ended_at_ms is not None and now_ms >= self.ended_at_ms + SETTLE_MS


def playback_length_ms(broadcast: Broadcast | BroadcastState, now_ms: int) -> int:
    """How far the broadcast's playback reaches: its duration, and more when
    the recording started before the chat."""
    end = now_ms if broadcast.ended_at_ms is None else broadcast.ended_at_ms
    return max(0, end - broadcast.started_at_ms) + max(0, broadcast.offset_ms)


def segment_count(broadcast: Broadcast | BroadcastState, now_ms: int) -> int:
    return playback_length_ms(broadcast, now_ms) // SEGMENT_MS + 1


def live_progress_ms(broadcast: Broadcast | BroadcastState, ts_ms: int) -> int:
    return max(0, ts_ms - broadcast.started_at_ms + broadcast.offset_ms)


def read_state(broadcast_id: int, *, now_ms: int | None = None) -> BroadcastState | None:
    """The broadcast and its segments' versions (two queries); None if there is none."""
    broadcast = Broadcast.objects.select_related("room").filter(pk=broadcast_id).first()
    if broadcast is None:
        return None
    return state_of(broadcast, dict(broadcast.segment_versions.values_list("index", "version")), now_ms=now_ms)


def state_of(broadcast: Broadcast, written: dict[int, int], *, now_ms: int | None = None) -> BroadcastState:
    count = segment_count(broadcast, clock.now_ms() if now_ms is None else now_ms)
    # Comments sent on a recording that runs past the chat's end.
    count = max(count, max(written, default=-1) + 1)
    floor = broadcast.offset_revision
    return BroadcastState(
        id=broadcast.pk,
        room_id=broadcast.room_id,
        room_slug=broadcast.room.slug,
        started_at_ms=broadcast.started_at_ms,
        ended_at_ms=broadcast.ended_at_ms,
        offset_ms=broadcast.offset_ms,
        recording_url=broadcast.recording_url,
        versions=tuple(max(written.get(index, 0), floor) for index in range(count)),
    )


# -- building -------------------------------------------------------------


def build_segment(state: BroadcastState, index: int, version: int) -> bytes:
    """Segment ``index``'s JSON body: its published comments as the pull's
    columns, with ``progress_ms`` (absolute playback time) for
    ``offset_ms``, ordered by playback time. Two queries: the live comments
    of the stretch of the room's (room, ts) index the segment covers, and
    the comments sent on the recording into it."""
    low, high = index * SEGMENT_MS, (index + 1) * SEGMENT_MS
    # Playback time p = ts - start + offset, so p in [low, high) means ts in
    # [low + start - offset, high + start - offset); the first segment also
    # takes the comments clamped to 0.
    ts_low = state.started_at_ms if index == 0 else low + state.started_at_ms - state.offset_ms
    ts_high = high + state.started_at_ms - state.offset_ms
    live = Danmaku.objects.filter(
        room_id=state.room_id,
        status=Danmaku.Status.PUBLISHED,
        broadcast__isnull=True,
        ts_ms__gte=max(ts_low, state.started_at_ms),
        ts_ms__lt=ts_high,
    )
    if state.ended_at_ms is not None:
        live = live.filter(ts_ms__lte=state.ended_at_ms)
    recorded = Danmaku.objects.filter(
        broadcast_id=state.id, status=Danmaku.Status.PUBLISHED, progress_ms__gte=low, progress_ms__lt=high
    )
    rows = [(live_progress_ms(state, row["ts_ms"]), row) for row in live.values(*SEGMENT_FIELDS)]
    rows += [(row["progress_ms"], row) for row in recorded.values(*SEGMENT_FIELDS)]
    rows.sort(key=lambda pair: (pair[0], pair[1]["id"]))
    return orjson.dumps(
        {
            "broadcast": state.id,
            "segment": index,
            "version": version,
            "segment_ms": SEGMENT_MS,
            "items": {
                "id": [row["id"] for _, row in rows],
                "progress_ms": [progress for progress, _ in rows],
                "color": [row["color"] for _, row in rows],
                "mode": [row["mode"] for _, row in rows],
                "user": [row["user_id"] for _, row in rows],
                "nick": [display_nick(row["user__viewer_profile__nickname"], row["user__username"]) for _, row in rows],
                "avatar": [avatar_url(row["user__viewer_profile__avatar_thumb"]) for _, row in rows],
                "text": [row["text"] for _, row in rows],
            },
        }
    )


# -- versions -------------------------------------------------------------


def touch(broadcast_id: int, indexes: Iterable[int]) -> int:
    """Give these segments of the broadcast a new version; returns it."""
    with transaction.atomic():
        Broadcast.objects.filter(pk=broadcast_id).update(revision=F("revision") + 1)
        # The UPDATE holds the broadcast's row until commit: no other change
        # takes the same revision.
        revision = Broadcast.objects.filter(pk=broadcast_id).values_list("revision", flat=True).first()
        if revision is None:
            return 0
        for index in set(indexes):
            ReplaySegment.objects.update_or_create(
                broadcast_id=broadcast_id, index=index, defaults={"version": revision}
            )
    return revision


def offset_changed(broadcast_id: int) -> int:
    """Every segment of the broadcast changes: call in the transaction that saves the new offset."""
    with transaction.atomic():
        Broadcast.objects.filter(pk=broadcast_id).update(revision=F("revision") + 1)
        Broadcast.objects.filter(pk=broadcast_id).update(offset_revision=F("revision"))
        return Broadcast.objects.filter(pk=broadcast_id).values_list("revision", flat=True).first() or 0


def comments_changed(danmaku_ids: Iterable[int]) -> None:
    """These comments were published, hidden or restored: new versions for
    the segments they play in, if an ended broadcast holds them. A live
    broadcast's segments are rebuilt every second until it has settled
    (``replaycache.UNSETTLED``) and cached for good only after: versions
    would only make every released or hidden comment of a live show write
    the broadcast's row."""
    rows = list(
        Danmaku.objects.filter(pk__in=list(danmaku_ids)).values_list("room_id", "ts_ms", "broadcast_id", "progress_ms")
    )
    touched: dict[int, set[int]] = defaultdict(set)
    live: dict[int, list[int]] = defaultdict(list)
    for room_id, ts_ms, broadcast_id, progress_ms in rows:
        if broadcast_id is not None:
            touched[broadcast_id].add(progress_ms // SEGMENT_MS)
        else:
            live[room_id].append(ts_ms)
    for room_id, stamps in live.items():
        low, high = min(stamps), max(stamps)
        spans = Broadcast.objects.filter(room_id=room_id, started_at_ms__lte=high, ended_at_ms__gte=low)
        for broadcast in spans:
            for ts_ms in stamps:
                if broadcast.started_at_ms <= ts_ms <= broadcast.ended_at_ms:
                    touched[broadcast.pk].add(live_progress_ms(broadcast, ts_ms) // SEGMENT_MS)
    for broadcast_id, indexes in touched.items():
        touch(broadcast_id, indexes)
