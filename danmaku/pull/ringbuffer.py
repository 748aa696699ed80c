"""Per-room ring of one-second slots: one writer, lock-free readers.

Pure Python on purpose (no Django): the pull path reads it on every request
and the tests drive it alone.

The writer (the refresher thread) adds items to open seconds, then seals
every second the store has been read past. Sealing builds an immutable
``Slot`` and publishes a new immutable ``RingView`` by swapping one
reference. A reader takes ``ring.view`` once and works on that snapshot, so
it can never see a half-written slot or a window that moves under it.

Identical comments merge here, once per room, when a ``merge_key`` is set:
a comment whose key equals that of a comment placed less than
``MERGE_WINDOW_MS`` before it joins that comment's item, whose ``count``
grows. The item keeps its first comment's id. While the item waits in an
open second its count is simply raised; once it is sealed (slots are
immutable, and a pull carries only what follows its cursor) the new total
travels in the open second's ``counts``, as a retraction travels in its
``deleted``. Hiding a merged comment lowers the count; hiding all of them
retracts the item.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
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
    # How many comments this item stands for (merged duplicates).
    count: int = 1


# Comments with equal keys this close to the first of them are one item.
MERGE_WINDOW_MS = 5000
# Most comments one merged item gathers; a longer burst starts a new item,
# so a group's bookkeeping stays bounded however a room is flooded.
MERGE_MAX_COUNT = 10_000


@dataclass(frozen=True, slots=True)
class Slot:
    """Everything sealed for one second of server time."""

    second: int
    items: tuple[Item, ...] = ()
    # Items cut by the room's display cap for this second.
    missed: int = 0
    # Ids retracted while this second was the open one.
    deleted: tuple[int, ...] = ()
    # (item id, its new count): merged items sealed earlier that grew or
    # shrank while this second was open.
    counts: tuple[tuple[int, int], ...] = ()
    # Ids unhidden while this second was open; their items are in ``items``.
    restored: tuple[int, ...] = ()


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
            return Read(slots=self._joining(join_seconds), gap=False, newest=newest)
        if self.slots[0].second - 1 <= after and after <= newest + max_ahead:
            if after >= newest:
                # Up to date, or a little ahead because another process sealed
                # first: nothing new yet, and the cursor never moves backwards.
                return Read(slots=(), gap=False, newest=after)
        else:
            return Read(slots=self._joining(join_seconds), gap=True, newest=newest)
        start = after - self.slots[0].second + 1
        return Read(slots=self.slots[start:], gap=False, newest=newest)

    def _joining(self, join_seconds: int) -> tuple[Slot, ...]:
        """The last ``join_seconds`` slots, and the merged items sealed before
        them that grew within them: a joiner is told their new counts, so it
        gets them too (at the start of its first slot), as it would have got
        the duplicates themselves had they not been merged."""
        slots = self.slots[-join_seconds:]
        grown = {item_id for slot in slots for item_id, _ in slot.counts}
        if not grown:
            return slots
        grown -= {item.id for slot in slots for item in slot.items}
        carried = tuple(item for slot in self.slots[:-join_seconds] for item in slot.items if item.id in grown)
        if not carried:
            return slots
        first = slots[0]
        return (replace(first, items=carried + first.items), *slots[1:])


class Read(NamedTuple):
    slots: tuple[Slot, ...]
    gap: bool
    # The cursor second to hand back to the client.
    newest: int | None


@dataclass(slots=True)
class _Pending:
    items: dict[int, Item] = field(default_factory=dict)
    deleted: list[int] = field(default_factory=list)
    counts: dict[int, int] = field(default_factory=dict)
    restored: list[int] = field(default_factory=list)


@dataclass(slots=True)
class _Group:
    """Comments merged into one item: the item is its first member's."""

    key: str
    # The item's id, and the second it sits in (open or sealed).
    item_id: int
    second: int
    first_ms: int
    # Members still shown, by id, the first one included until it is hidden.
    members: dict[int, Item] = field(default_factory=dict)


class RoomRing:
    """The ring for one room.

    Only one thread may call the writer methods (``add``, ``retract``,
    ``seal_through``); any number of threads may read ``view`` at any time.
    """

    def __init__(self, *, size: int = 60, display_cap: int = 0, merge_key: Callable[[str], str] | None = None) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        # Items kept per second when sealing; 0 means no cap.
        self.display_cap = display_cap
        # text -> the form duplicates are compared in; None: no merging.
        self.merge_key = merge_key
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
        # The newest group per key, and every merged member's group.
        self._groups: dict[str, _Group] = {}
        self._member_group: dict[int, _Group] = {}

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
            second = self._open_second_for(item, sealed, oldest)
            if second is None:
                # Older than the window: its id may already be forgotten, so
                # it cannot be told apart from a re-read of something shown.
                continue
            self._place(item, second, sealed)
            added += 1
        return added

    def restore(self, items: Iterable[Item]) -> int:
        """Put unhidden comments back on screens; returns how many.

        Each goes into the open second as a new item (or back into its
        merged item, whose count grows), listed in that second's
        ``restored`` so a client that removed it shows it again. Reading
        the same restore again changes nothing; one older than the window
        is left to the durable record.
        """
        sealed = self.sealed_through
        oldest = self._sealed[0].second if self._sealed else None
        restored = 0
        for item in items:
            if item.id in self._placed and item.id not in self._retracted:
                continue  # never hidden here, or already put back
            second = self._open_second_for(item, sealed, oldest)
            if second is None:
                continue
            self._retracted.pop(item.id, None)
            if not self._place(item, second, sealed):
                self._pending.setdefault(second, _Pending()).restored.append(item.id)
            restored += 1
        return restored

    def _open_second_for(self, item: Item, sealed: int | None, oldest: int | None) -> int | None:
        second = item.ts_ms // 1000
        if oldest is not None and second < oldest:
            return None
        if sealed is not None and second <= sealed:
            return sealed + 1
        return second

    def _place(self, item: Item, second: int, sealed: int | None) -> bool:
        """Place one item; True if it joined an existing merged item."""
        if self.merge_key is not None:
            key = self.merge_key(item.text)
            group = self._groups.get(key)
            if (
                group is not None
                and abs(item.ts_ms - group.first_ms) <= MERGE_WINDOW_MS
                and len(group.members) < MERGE_MAX_COUNT
            ):
                group.members[item.id] = item
                self._member_group[item.id] = group
                self._placed[item.id] = group.second
                self._recount(group, None if sealed is None else sealed + 1)
                return True
            group = self._groups[key] = _Group(key, item.id, second, item.ts_ms, {item.id: item})
            self._member_group[item.id] = group
        self._pending.setdefault(second, _Pending()).items[item.id] = item
        self._placed[item.id] = second
        return False

    def _recount(self, group: _Group, told_in: int | None) -> None:
        """Give a merged item its new count: in place while it is open, else
        in ``counts`` of second ``told_in``."""
        count = len(group.members)
        pending = self._pending.get(group.second)
        item = pending.items.get(group.item_id) if pending is not None else None
        if item is not None:
            pending.items[group.item_id] = item._replace(count=count)
        elif told_in is not None:
            self._pending.setdefault(told_in, _Pending()).counts[group.item_id] = count

    def retract(self, ids: Iterable[int], *, at_ms: Mapping[int, int] | None = None) -> None:
        """Withdraw items: new readers never see them, old ones are told.

        Each id is told once however often its retraction is read again, and
        an id retracted before its item arrived is never placed. ``at_ms``
        gives a retraction's own time: it is told in that second (or the
        first open one, if that is sealed), so every process that reads the
        same store tells it in the same second. A merged comment lowers its
        item's count instead, until the last of them is withdrawn.
        """
        ids = sorted(set(ids) - self._retracted.keys())
        if not ids:
            return
        sealed = self.sealed_through
        open_second = (sealed + 1) if sealed is not None else min(self._pending, default=None)

        def told_in(item_id: int) -> int | None:
            if at_ms is None or item_id not in at_ms:
                return open_second
            second = at_ms[item_id] // 1000
            return second if sealed is None else max(second, sealed + 1)

        # Items that leave screens (by the id whose retraction took them),
        # and merged items that only shrink.
        gone: dict[int, int] = {}
        shrunk: dict[int, tuple[_Group, int]] = {}
        for item_id in ids:
            group = self._member_group.pop(item_id, None)
            if group is None:
                gone[item_id] = item_id
                continue
            group.members.pop(item_id, None)
            if group.members:
                shrunk[group.item_id] = (group, item_id)
                continue
            shrunk.pop(group.item_id, None)
            gone[group.item_id] = item_id
            if self._groups.get(group.key) is group:
                del self._groups[group.key]
        for pending in self._pending.values():
            for item_id in gone.keys() & pending.items.keys():
                del pending.items[item_id]
        rebuilt = False
        for index, slot in enumerate(self._sealed):
            if any(item.id in gone for item in slot.items):
                kept = tuple(item for item in slot.items if item.id not in gone)
                self._sealed[index] = replace(slot, items=kept)
                self.item_count -= len(slot.items) - len(kept)
                rebuilt = True
        for item_id in ids:
            self._retracted[item_id] = told_in(item_id)
        for item_id, by in gone.items():
            second = told_in(by)
            if second is not None:
                self._pending.setdefault(second, _Pending()).deleted.append(item_id)
        for group, by in shrunk.values():
            self._recount(group, told_in(by))
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
            cut = items[self.display_cap :]
            # A merged item counts once against the cap, and as all it
            # stands for among the missed.
            missed = sum(item.count for item in cut)
            for item in cut:
                self._ungroup(item.id)
            items = items[: self.display_cap]
        return Slot(
            second,
            tuple(items),
            missed,
            tuple(pending.deleted),
            tuple(sorted(pending.counts.items())),
            tuple(pending.restored),
        )

    def _ungroup(self, item_id: int) -> None:
        """Stop merging into this item (it was cut or dropped): the next
        duplicate starts an item of its own."""
        group = self._member_group.get(item_id)
        if group is not None and group.item_id == item_id and self._groups.get(group.key) is group:
            del self._groups[group.key]

    def _drop_pending(self, second: int) -> None:
        pending = self._pending.pop(second)
        for item_id in pending.items:
            self._ungroup(item_id)
            self._placed.pop(item_id, None)

    def _forget_before(self, second: int) -> None:
        if len(self._placed) >= 4 * self.size:
            self._placed = {i: s for i, s in self._placed.items() if s >= second}
        # Groups live while their item is in the window; pruned in bulk, as
        # above, so a quiet second costs nothing.
        if len(self._member_group) >= 4 * self.size:
            self._member_group = {i: g for i, g in self._member_group.items() if g.second >= second}
        if len(self._groups) >= 4 * self.size:
            self._groups = {k: g for k, g in self._groups.items() if g.second >= second}
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
