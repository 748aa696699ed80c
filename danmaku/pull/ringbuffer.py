"""Per-room ring of one-second slots: one writer, lock-free readers.

Pure Python on purpose (no Django): the pull path reads it on every request
and the tests drive it alone.

The writer (the refresher thread) adds items to open seconds, then seals
every second the store has been read past. Sealing builds an immutable
``Slot`` and publishes a new immutable ``RingView`` by swapping one
reference. A reader takes ``ring.view`` once and works on that snapshot, so
it can never see a half-written slot or a window that moves under it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple


class Item(NamedTuple):
    """One danmaku as viewers see it; ``ts_ms`` is the server timestamp."""

    id: int
    ts_ms: int
    color: int
    mode: int
    user: int
    nick: str
    avatar: str
    text: str


@dataclass(frozen=True, slots=True)
class Slot:
    """Everything sealed for one second of server time."""

    second: int
    items: tuple[Item, ...] = ()
    # Items cut by the room's display cap for this second.
    missed: int = 0
    # Ids retracted while this second was the open one.
    deleted: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class RingView:
    """An immutable snapshot of the sealed window, oldest slot first."""

    slots: tuple[Slot, ...] = ()
    # The newest slot's second that held an item, kept by the writer: the
    # controller asks every room each second, and walking a quiet room's 60
    # empty slots for it took 15-18 ms a second at 10,000 rooms (0.5 ms now).
    last_active: int | None = None

    @property
    def newest(self) -> int | None:
        return self.slots[-1].second if self.slots else None

    @property
    def oldest(self) -> int | None:
        return self.slots[0].second if self.slots else None

    def last_active_second(self) -> int | None:
        """The newest sealed second that held at least one item."""
        return self.last_active

    def read(self, after: int | None, join_seconds: int, max_ahead: int = 5) -> Read:
        """Slots a client holding cursor ``after`` has not seen yet.

        ``after is None`` means the client is joining: it gets the last
        ``join_seconds`` slots. A cursor older than the window cannot be
        answered without a hole, so the reader is told (``gap``) and gets the
        same slots a joining client gets. So does a cursor further ahead than
        ``max_ahead`` seconds: no process could have sealed it, and holding
        it would stall the client until the clock caught up.
        """
        newest = self.newest
        if newest is None:
            return Read(slots=(), gap=after is not None, newest=None)
        if after is None:
            return Read(slots=self.slots[-join_seconds:], gap=False, newest=newest)
        if self.slots[0].second - 1 <= after and after <= newest + max_ahead:
            if after >= newest:
                # Up to date, or a little ahead because another process sealed
                # first: nothing new yet, and the cursor never moves backwards.
                return Read(slots=(), gap=False, newest=after)
        else:
            return Read(slots=self.slots[-join_seconds:], gap=True, newest=newest)
        start = after - self.slots[0].second + 1
        return Read(slots=self.slots[start:], gap=False, newest=newest)


class Read(NamedTuple):
    slots: tuple[Slot, ...]
    gap: bool
    # The cursor second to hand back to the client.
    newest: int | None


@dataclass(slots=True)
class _Pending:
    items: dict[int, Item] = field(default_factory=dict)
    deleted: list[int] = field(default_factory=list)


class RoomRing:
    """The ring for one room.

    Only one thread may call the writer methods (``add``, ``retract``,
    ``seal_through``); any number of threads may read ``view`` at any time.
    """

    def __init__(self, *, size: int = 60, display_cap: int = 0) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        # Items kept per second when sealing; 0 means no cap.
        self.display_cap = display_cap
        self.view = RingView()
        # Items in the sealed window, kept as slots come and go: the ring
        # gauge reads it for every room each tick, and summing 60 slots per
        # room was 30 ms a tick at 10,000 rooms.
        self.item_count = 0
        self._sealed: deque[Slot] = deque(maxlen=size)
        self._last_active: int | None = None
        self._pending: dict[int, _Pending] = {}
        # Ids already placed, so a store read that overlaps an earlier one
        # (to catch out-of-order commits) never places an item twice.
        self._placed: dict[int, int] = {}
        # Ids retracted, by the second their retraction was recorded in (None
        # before anything was sealed); kept while that second is in the window.
        self._retracted: dict[int, int | None] = {}

    @property
    def sealed_through(self) -> int | None:
        return self._sealed[-1].second if self._sealed else None

    def add(self, items: Iterable[Item]) -> int:
        """Place new items in their open second; returns how many were new.

        An item whose second is already sealed arrived late (its commit
        overtook the seal). It goes into the first open second instead, so it
        is shown late rather than never. Items older than the whole window
        are ignored (they are in the durable record, not the live feed).
        """
        sealed = self.sealed_through
        oldest = self._sealed[0].second if self._sealed else None
        added = 0
        for item in items:
            if item.id in self._placed or item.id in self._retracted:
                continue
            second = item.ts_ms // 1000
            if oldest is not None and second < oldest:
                # Older than the window: its id may already be forgotten, so
                # it cannot be told apart from a re-read of something shown.
                continue
            if sealed is not None and second <= sealed:
                second = sealed + 1
            self._pending.setdefault(second, _Pending()).items[item.id] = item
            self._placed[item.id] = second
            added += 1
        return added

    def retract(self, ids: Iterable[int], *, at_ms: Mapping[int, int] | None = None) -> None:
        """Withdraw items: new readers never see them, old ones are told.

        Each id is told once however often its retraction is read again, and
        an id retracted before its item arrived is never placed. ``at_ms``
        gives a retraction's own time: it is told in that second (or the
        first open one, if that is sealed), so every process that reads the
        same store tells it in the same second.
        """
        ids = set(ids) - self._retracted.keys()
        if not ids:
            return
        for pending in self._pending.values():
            for item_id in ids & pending.items.keys():
                del pending.items[item_id]
        rebuilt = False
        for index, slot in enumerate(self._sealed):
            if any(item.id in ids for item in slot.items):
                kept = tuple(item for item in slot.items if item.id not in ids)
                self._sealed[index] = Slot(slot.second, kept, slot.missed, slot.deleted)
                self.item_count -= len(slot.items) - len(kept)
                rebuilt = True
        sealed = self.sealed_through
        open_second = (sealed + 1) if sealed is not None else min(self._pending, default=None)
        for item_id in sorted(ids):
            second = open_second
            if at_ms is not None and item_id in at_ms:
                second = at_ms[item_id] // 1000
                if sealed is not None:
                    second = max(second, sealed + 1)
            self._retracted[item_id] = second
            if second is not None:
                self._pending.setdefault(second, _Pending()).deleted.append(item_id)
        if rebuilt:
            self._last_active = next((slot.second for slot in reversed(self._sealed) if slot.items), None)
            self._publish()

    def seal_through(self, second: int) -> int:
        """Seal every second up to and including ``second``; returns how many.

        Seconds with no items are sealed too: an empty slot is an answer
        ("nothing happened"), and it keeps the window contiguous so a cursor
        maps to exactly one position.
        """
        sealed = self._sealed[-1].second if self._sealed else None
        # A fresh ring starts with a full window of slots, and a jump longer
        # than the ring only needs its last `size` seconds: either way every
        # process holds the same seconds and agrees on what a cursor means.
        first = second - self.size + 1
        if sealed is not None:
            first = max(first, sealed + 1)
        if first > second:
            return 0
        pending = self._pending
        if pending:
            for stale in [s for s in pending if s < first]:
                self._drop_pending(stale)
        sealed_slots = self._sealed
        for sec in range(first, second + 1):
            slot = self._build_slot(sec, pending.pop(sec, None)) if pending else _empty_slot(sec)
            if len(sealed_slots) == self.size:
                # The deque drops its oldest slot on append.
                self.item_count -= len(sealed_slots[0].items)
            sealed_slots.append(slot)
            self.item_count += len(slot.items)
            if slot.items:
                self._last_active = sec
        self._forget_before(self._sealed[0].second)
        self._publish()
        return second - first + 1

    def _publish(self) -> None:
        slots = tuple(self._sealed)
        if self._last_active is not None and (not slots or self._last_active < slots[0].second):
            self._last_active = None  # slid out of the window
        self.view = RingView(slots, self._last_active)

    def _build_slot(self, second: int, pending: _Pending | None) -> Slot:
        if pending is None:
            return _empty_slot(second)
        # Order is (timestamp, id) so every process that seals this second
        # keeps the same items under the cap and returns them in the same order.
        items = sorted(pending.items.values(), key=lambda item: (item.ts_ms, item.id))
        missed = 0
        if self.display_cap and len(items) > self.display_cap:
            missed = len(items) - self.display_cap
            items = items[: self.display_cap]
        return Slot(second, tuple(items), missed, tuple(pending.deleted))

    def _drop_pending(self, second: int) -> None:
        pending = self._pending.pop(second)
        for item_id in pending.items:
            self._placed.pop(item_id, None)

    def _forget_before(self, second: int) -> None:
        if len(self._placed) >= 4 * self.size:
            self._placed = {i: s for i, s in self._placed.items() if s >= second}
        # Retractions are rare: prune exactly, so the window alone decides.
        if self._retracted:
            self._retracted = {i: s for i, s in self._retracted.items() if s is None or s >= second}


# Empty slots of recent seconds, shared by every ring: a slot is immutable, and
# a process with thousands of quiet rooms seals one per room each second. A
# ring activated now seals a whole window at once, so a window's worth of
# seconds is kept (fewer, and 1,000 rooms activated together built 60,000
# slots that every full garbage collection then had to walk).
_EMPTY_SLOTS: dict[int, Slot] = {}
_EMPTY_SLOTS_KEPT = 128


def _empty_slot(second: int) -> Slot:
    slot = _EMPTY_SLOTS.get(second)
    if slot is None:
        if len(_EMPTY_SLOTS) >= _EMPTY_SLOTS_KEPT:
            # Keep the half made last: the seconds rings are sealing now.
            kept = list(_EMPTY_SLOTS.items())[_EMPTY_SLOTS_KEPT // 2 :]
            _EMPTY_SLOTS.clear()
            _EMPTY_SLOTS.update(kept)
        # Two writers racing here (rings of different processes never share
        # this) would at worst build two equal slots: sharing is only a saving.
        slot = _EMPTY_SLOTS[second] = Slot(second)
    return slot
