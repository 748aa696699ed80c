"""What goes over the wire for a pull: the cursor codec and the body encoder.

Pure Python (no Django) so the pull path stays cheap and the tests can
drive it alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import orjson

from danmaku.pull.ringbuffer import Slot

# Cursor: "<epoch>-<second>", both lower-case base 36. Opaque to clients; it is
# short because it rides in every pull URL. No leading zeros: one spelling per
# cursor, so a proxy keyed on the URL never caches the same answer twice.
CURSOR_RE = re.compile(r"(0|[1-9a-z][0-9a-z]{0,12})-(0|[1-9a-z][0-9a-z]{0,12})")
# Seconds beyond this are not a server time we could ever have handed out.
MAX_SECOND = 2**40

MODES = ("scroll", "top", "bottom")
MODE_CODES = {name: code for code, name in enumerate(MODES)}


class CursorError(ValueError):
    """The cursor is not one this service could have issued."""


def _b36(number: int) -> str:
    if number < 0:
        # divmod never reaches 0 from below: this would loop forever.
        raise ValueError("cursor parts must be non-negative")
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rem = divmod(number, 36)
        out = digits[rem] + out
        if not number:
            return out


def encode_cursor(epoch: int, second: int) -> str:
    return f"{_b36(epoch)}-{_b36(second)}"


def decode_cursor(cursor: str) -> tuple[int, int]:
    """Return ``(epoch, second)``; raise ``CursorError`` for anything else."""
    match = CURSOR_RE.fullmatch(cursor)
    if match is None:
        raise CursorError("cursor must be a value returned by a previous pull")
    epoch, second = (int(part, 36) for part in match.groups())
    if second > MAX_SECOND:
        raise CursorError("cursor is out of range")
    return epoch, second


def encode_pull(
    *,
    cursor: str,
    next_ms: int,
    reason: str,
    gap: bool,
    slots: Iterable[Slot],
    viewers: int = 0,
    pinned: dict | None = None,
) -> bytes:
    """The JSON body of a pull answer, items as columns.

    Columns keep like values together (all numbers, then all strings), which
    gzip compresses far better than an array of objects repeating every key.
    ``offset_ms`` counts from the start of the first second in the answer so
    a client can replay the comments with the spacing they were sent with.
    """
    slots = tuple(slots)
    base_ms = slots[0].second * 1000 if slots else 0
    ids: list[int] = []
    offsets: list[int] = []
    colors: list[int] = []
    modes: list[int] = []
    users: list[int] = []
    nicks: list[str] = []
    avatars: list[str] = []
    texts: list[str] = []
    item_counts: list[int] = []
    deleted: list[int] = []
    # New totals of merged items, by id as a JSON key: the newest slot's wins.
    counts: dict[str, int] = {}
    restored: list[int] = []
    missed = 0
    for slot in slots:
        # A late item sits in a later slot than its timestamp; it plays at
        # the start of that slot rather than before the answer begins.
        slot_start_ms = slot.second * 1000
        missed += slot.missed
        if slot.deleted:
            deleted.extend(slot.deleted)
        if slot.counts:
            for item_id, count in slot.counts:
                counts[str(item_id)] = count
        if slot.restored:
            restored.extend(slot.restored)
        for item in slot.items:
            ids.append(item.id)
            offsets.append(max(item.ts_ms, slot_start_ms) - base_ms)
            colors.append(item.color)
            modes.append(item.mode)
            users.append(item.user)
            nicks.append(item.nick)
            avatars.append(item.avatar)
            texts.append(item.text)
            item_counts.append(item.count)
    return orjson.dumps(
        {
            "cursor": cursor,
            "next_ms": next_ms,
            "reason": reason,
            "gap": gap,
            "missed": missed,
            "items": {
                "id": ids,
                "offset_ms": offsets,
                "color": colors,
                "mode": modes,
                "user": users,
                "nick": nicks,
                "avatar": avatars,
                "text": texts,
                "count": item_counts,
            },
            "deleted": deleted,
            "counts": counts,
            "restored": restored,
            "pinned": pinned,
            "viewers": viewers,
        }
    )
