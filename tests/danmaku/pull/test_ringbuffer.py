"""The per-room ring alone: no Django, no store, synthetic seconds."""

from __future__ import annotations

import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from danmaku.pull.ringbuffer import Item, RingView, RoomRing, Slot

MAX_AHEAD = 5


def make_item(item_id: int, ts_ms: int, text: str = "hi") -> Item:
    return Item(id=item_id, ts_ms=ts_ms, color=0xFFFFFF, mode=0, user=7, nick="nick", avatar="", text=text)


def ids(slots: tuple[Slot, ...]) -> list[int]:
    return [item.id for slot in slots for item in slot.items]


def seconds(slots: tuple[Slot, ...]) -> list[int]:
    return [slot.second for slot in slots]


@pytest.fixture
def ring() -> RoomRing:
    """A ten-second ring sealed through second 109 (window 100..109), one item in each of 105 and 108."""
    ring = RoomRing(size=10)
    ring.add([make_item(1, 105_250), make_item(2, 108_900)])
    ring.seal_through(109)
    return ring


# -- construction -----------------------------------------------------------


@pytest.mark.parametrize("size", [0, -1, -60])
def test_size_below_one_is_rejected(size):
    with pytest.raises(ValueError, match="size"):
        RoomRing(size=size)


def test_size_one_ring_holds_only_the_newest_second():
    ring = RoomRing(size=1)
    ring.add([make_item(1, 5_000), make_item(2, 6_000)])
    ring.seal_through(6)

    assert seconds(ring.view.slots) == [6]
    assert ids(ring.view.slots) == [2]


def test_fresh_ring_has_an_empty_view():
    ring = RoomRing()

    assert ring.view.slots == ()
    assert ring.view.newest is None
    assert ring.view.oldest is None
    assert ring.sealed_through is None


# -- sealing ----------------------------------------------------------------


def test_first_seal_fills_a_whole_window_ending_at_the_sealed_second():
    ring = RoomRing(size=10)

    assert ring.seal_through(109) == 10
    assert seconds(ring.view.slots) == list(range(100, 110))
    assert ring.sealed_through == 109


def test_empty_seconds_are_sealed_as_empty_slots_so_the_window_is_contiguous(ring):
    ring.add([make_item(3, 113_000)])

    assert ring.seal_through(115) == 6
    assert seconds(ring.view.slots) == list(range(106, 116))
    assert [len(slot.items) for slot in ring.view.slots] == [0, 0, 1, 0, 0, 0, 0, 1, 0, 0]


def test_item_lands_in_the_slot_of_its_timestamp_second(ring):
    by_second = {slot.second: ids((slot,)) for slot in ring.view.slots}

    assert by_second[105] == [1]
    assert by_second[108] == [2]
    assert sum(len(v) for v in by_second.values()) == 2


def test_items_for_open_seconds_wait_until_their_second_is_sealed(ring):
    ring.add([make_item(3, 111_000)])
    ring.seal_through(110)
    assert 3 not in ids(ring.view.slots)

    ring.seal_through(111)
    assert ring.view.slots[-1].second == 111
    assert ids(ring.view.slots[-1:]) == [3]


def test_seal_through_an_already_sealed_second_changes_nothing(ring):
    view = ring.view

    assert ring.seal_through(109) == 0
    assert ring.seal_through(50) == 0
    assert ring.view is view


def test_seal_returns_how_many_seconds_it_sealed(ring):
    assert ring.seal_through(110) == 1
    assert ring.seal_through(113) == 3


def test_seal_jump_longer_than_the_ring_keeps_only_the_last_size_seconds(ring):
    ring.add([make_item(3, 112_000), make_item(4, 195_000), make_item(5, 199_500)])

    assert ring.seal_through(199) == 10
    assert seconds(ring.view.slots) == list(range(190, 200))
    # Item 3 sat in a second the jump skipped; it is outside every window now.
    assert ids(ring.view.slots) == [4, 5]


def test_item_older_than_the_window_is_ignored_when_read_again(ring):
    # Its id may be forgotten by then, so placing it would risk showing a
    # comment twice; it stays in the durable record, not the live feed.
    ring.add([make_item(3, 112_000)])
    ring.seal_through(199)

    assert ring.add([make_item(3, 112_000)]) == 0
    ring.seal_through(200)

    assert 3 not in ids(ring.view.slots)


def test_shown_item_read_again_after_its_id_is_forgotten_is_not_shown_twice():
    ring = RoomRing(size=5)
    ring.add([make_item(1, 100_000)])
    ring.seal_through(100)
    for second in range(101, 120):
        ring.add([make_item(second, second * 1000)])
        ring.seal_through(second)

    assert ring.add([make_item(1, 100_000)]) == 0
    ring.seal_through(120)

    assert ids(ring.view.slots).count(1) == 0


def test_sealing_publishes_a_new_view_and_leaves_the_old_one_untouched(ring):
    old = ring.view
    ring.add([make_item(3, 110_000)])

    ring.seal_through(110)

    assert ring.view is not old
    assert seconds(old.slots) == list(range(100, 110))
    assert ids(old.slots) == [1, 2]
    assert seconds(ring.view.slots) == list(range(101, 111))


# -- reading ----------------------------------------------------------------


@pytest.mark.parametrize("join_seconds", [1, 3, 9, 10, 60])
def test_join_read_returns_the_last_join_seconds_slots(ring, join_seconds):
    read = ring.view.read(None, join_seconds, MAX_AHEAD)

    assert seconds(read.slots) == list(range(max(100, 110 - join_seconds), 110))
    assert read.gap is False
    assert read.newest == 109


@pytest.mark.parametrize("after", [99, 100, 104, 105, 107, 108])
def test_cursor_read_returns_exactly_the_slots_after_it(ring, after):
    read = ring.view.read(after, 3, MAX_AHEAD)

    assert seconds(read.slots) == list(range(after + 1, 110))
    assert ids(read.slots) == [i for i, sec in ((1, 105), (2, 108)) if sec > after]
    assert read.gap is False
    assert read.newest == 109


def test_cursor_just_before_the_oldest_slot_gets_the_whole_window_without_gap(ring):
    read = ring.view.read(99, 3, MAX_AHEAD)

    assert read.slots == ring.view.slots
    assert read.gap is False


def test_cursor_at_newest_returns_nothing_and_keeps_the_cursor(ring):
    read = ring.view.read(109, 3, MAX_AHEAD)

    assert read.slots == ()
    assert read.gap is False
    assert read.newest == 109


@pytest.mark.parametrize("ahead", [1, 2, MAX_AHEAD])
def test_cursor_slightly_ahead_returns_nothing_and_never_moves_backwards(ring, ahead):
    read = ring.view.read(109 + ahead, 3, MAX_AHEAD)

    assert read.slots == ()
    assert read.gap is False
    assert read.newest == 109 + ahead


@pytest.mark.parametrize("after", [98, 50, 0, -1])
def test_cursor_older_than_window_reports_gap_with_the_join_slots(ring, after):
    read = ring.view.read(after, 3, MAX_AHEAD)

    assert read.gap is True
    assert seconds(read.slots) == [107, 108, 109]
    assert read.newest == 109


@pytest.mark.parametrize("after", [109 + MAX_AHEAD + 1, 10_000])
def test_cursor_far_ahead_reports_gap_with_the_join_slots(ring, after):
    read = ring.view.read(after, 3, MAX_AHEAD)

    assert read.gap is True
    assert seconds(read.slots) == [107, 108, 109]
    assert read.newest == 109


def test_max_ahead_zero_treats_any_cursor_past_newest_as_gap(ring):
    assert ring.view.read(110, 3, 0).gap is True
    assert ring.view.read(109, 3, 0).gap is False


def test_read_on_an_empty_view_joins_with_nothing_and_reports_gap_for_a_cursor():
    view = RingView()

    assert view.read(None, 3) == ((), False, None)
    assert view.read(5, 3) == ((), True, None)


def test_reader_following_its_cursor_sees_each_item_once(ring):
    cursor = ring.view.read(None, 3, MAX_AHEAD).newest
    seen = []
    for second in range(110, 130):
        ring.add([make_item(1000 + second, second * 1000 + 10)])
        ring.seal_through(second)
        if second % 3 == 0:  # the reader polls every few seconds
            read = ring.view.read(cursor, 3, MAX_AHEAD)
            assert read.gap is False
            seen.extend(ids(read.slots))
            cursor = read.newest
    seen.extend(ids(ring.view.read(cursor, 3, MAX_AHEAD).slots))

    assert seen == [1000 + s for s in range(110, 130)]


def test_last_active_second_is_the_newest_slot_with_items(ring):
    assert ring.view.last_active_second() == 108
    ring.seal_through(115)
    assert ring.view.last_active_second() == 108
    ring.seal_through(130)
    assert ring.view.last_active_second() is None


def test_last_active_second_steps_back_when_its_only_item_is_retracted(ring):
    ring.retract([2])
    assert ring.view.last_active_second() == 105
    ring.retract([1])
    assert ring.view.last_active_second() is None
    ring.add([make_item(3, 110_100)])
    ring.seal_through(111)
    assert ring.view.last_active_second() == 110


# -- late and duplicate items -----------------------------------------------


def test_late_item_goes_into_the_first_open_second(ring):
    assert ring.add([make_item(3, 104_500)]) == 1
    ring.seal_through(110)

    assert ids(ring.view.slots[-1:]) == [3]
    assert ring.view.slots[-1].items[0].ts_ms == 104_500
    assert ids(ring.view.slots).count(3) == 1


def test_late_item_reaches_a_reader_whose_cursor_passed_its_second(ring):
    cursor = ring.view.read(None, 3, MAX_AHEAD).newest
    ring.add([make_item(3, 109_999)])
    ring.seal_through(111)

    read = ring.view.read(cursor, 3, MAX_AHEAD)

    assert ids(read.slots) == [3]


def test_late_item_sorts_before_the_open_seconds_own_items(ring):
    ring.add([make_item(3, 110_100)])
    ring.add([make_item(4, 103_000)])
    ring.seal_through(110)

    assert ids(ring.view.slots[-1:]) == [4, 3]


def test_duplicate_ids_across_overlapping_adds_are_placed_once(ring):
    first = [make_item(3, 110_100), make_item(4, 110_200)]
    assert ring.add(first) == 2
    # A re-read that overlaps: the two again, plus one new.
    assert ring.add([*first, make_item(5, 110_300)]) == 1
    ring.seal_through(110)
    # The same three once more after sealing, and the older sealed ones.
    assert ring.add([make_item(1, 105_250), make_item(2, 108_900), *first, make_item(5, 110_300)]) == 0
    ring.seal_through(112)

    assert ids(ring.view.slots) == [1, 2, 3, 4, 5]


def test_duplicate_id_with_a_different_timestamp_keeps_the_first_placement(ring):
    ring.add([make_item(3, 110_000)])
    assert ring.add([make_item(3, 111_000, text="other")]) == 0
    ring.seal_through(111)

    slot_110, slot_111 = ring.view.slots[-2:]
    assert ids((slot_110,)) == [3]
    assert slot_110.items[0].text == "hi"
    assert slot_111.items == ()


def test_ids_in_the_window_stay_deduplicated_in_a_busy_room():
    # Enough items that the ring prunes the ids it remembers.
    ring = RoomRing(size=5)
    batches = {}
    for second in range(100, 140):
        batches[second] = [make_item(second * 100 + n, second * 1000 + n) for n in range(10)]
        # Every read overlaps the previous three seconds.
        overlap = [it for s in range(second - 3, second + 1) for it in batches.get(s, [])]
        assert ring.add(overlap) == 10
        ring.seal_through(second)

    all_ids = ids(ring.view.slots)
    assert len(all_ids) == len(set(all_ids)) == 50
    assert seconds(ring.view.slots) == list(range(135, 140))


def test_add_returns_zero_for_no_items(ring):
    assert ring.add([]) == 0


# -- display cap ------------------------------------------------------------


def test_display_cap_keeps_the_earliest_items_by_timestamp_then_id_and_counts_missed():
    ring = RoomRing(size=5, display_cap=3)
    ring.add(
        [
            make_item(10, 7_900),
            make_item(11, 7_100),
            make_item(12, 7_100),
            make_item(9, 7_500),
            make_item(8, 7_999),
        ]
    )
    ring.seal_through(7)

    slot = ring.view.slots[-1]
    assert [item.id for item in slot.items] == [11, 12, 9]
    assert slot.missed == 2


def test_display_cap_zero_means_no_cap():
    ring = RoomRing(size=5, display_cap=0)
    ring.add([make_item(n, 7_000 + n) for n in range(200)])
    ring.seal_through(7)

    assert len(ring.view.slots[-1].items) == 200
    assert ring.view.slots[-1].missed == 0


def test_display_cap_at_exactly_the_item_count_misses_nothing():
    ring = RoomRing(size=5, display_cap=3)
    ring.add([make_item(n, 7_000 + n) for n in range(3)])
    ring.seal_through(7)

    assert ring.view.slots[-1].missed == 0
    assert len(ring.view.slots[-1].items) == 3


def test_display_cap_change_applies_to_seconds_sealed_after_it():
    ring = RoomRing(size=5, display_cap=1)
    ring.add([make_item(n, 7_000 + n) for n in range(3)] + [make_item(10 + n, 8_000 + n) for n in range(3)])
    ring.seal_through(7)
    ring.display_cap = 2
    ring.seal_through(8)

    assert [(len(s.items), s.missed) for s in ring.view.slots[-2:]] == [(1, 2), (2, 1)]


# -- retraction -------------------------------------------------------------


def test_retract_removes_the_item_from_sealed_slots_for_new_readers(ring):
    ring.retract([1])

    assert ids(ring.view.read(None, 10, MAX_AHEAD).slots) == [2]
    assert seconds(ring.view.slots) == list(range(100, 110))


def test_retract_lists_the_id_in_deleted_for_cursor_readers(ring):
    cursor = ring.view.read(None, 3, MAX_AHEAD).newest
    ring.retract([2, 1])
    # Not yet visible: deletions ride in the next sealed second.
    assert all(slot.deleted == () for slot in ring.view.slots)

    ring.seal_through(110)
    read = ring.view.read(cursor, 3, MAX_AHEAD)

    assert seconds(read.slots) == [110]
    assert read.slots[0].deleted == (1, 2)
    assert ids(ring.view.slots) == []


def test_retract_keeps_the_missed_count_of_a_rebuilt_slot():
    ring = RoomRing(size=5, display_cap=1)
    ring.add([make_item(1, 7_000), make_item(2, 7_001)])
    ring.seal_through(7)

    ring.retract([1])

    assert ring.view.slots[-1].items == ()
    assert ring.view.slots[-1].missed == 1


def test_retract_of_a_pending_item_means_it_is_never_shown(ring):
    ring.add([make_item(3, 110_100), make_item(4, 110_200)])
    ring.retract([3])
    ring.seal_through(110)

    assert ids(ring.view.slots) == [1, 2, 4]
    assert ring.view.slots[-1].deleted == (3,)


def test_retracted_item_is_not_placed_again_when_re_read(ring):
    ring.add([make_item(3, 110_100)])
    ring.retract([3, 1])
    assert ring.add([make_item(1, 105_250), make_item(3, 110_100)]) == 0
    ring.seal_through(111)

    assert ids(ring.view.slots) == [2]


def test_retract_does_not_change_a_view_a_reader_already_holds(ring):
    held = ring.view

    ring.retract([1])

    assert ids(held.slots) == [1, 2]
    assert ids(ring.view.slots) == [2]


def test_retract_of_unknown_ids_leaves_the_view_alone_but_tells_cursor_readers(ring):
    view = ring.view

    ring.retract([999])

    assert ring.view is view
    ring.seal_through(110)
    assert ring.view.slots[-1].deleted == (999,)


def test_retract_of_no_ids_does_nothing(ring):
    view = ring.view

    ring.retract([])
    ring.seal_through(110)

    assert ring.view.slots[-1].deleted == ()
    assert ids(ring.view.slots) == ids(view.slots)


def test_retract_before_any_seal_is_recorded_in_the_earliest_pending_second():
    ring = RoomRing(size=5)
    ring.add([make_item(1, 7_000), make_item(2, 8_000)])

    ring.retract([1])
    ring.seal_through(8)

    assert ids(ring.view.slots) == [2]
    assert [slot.deleted for slot in ring.view.slots if slot.deleted] == [(1,)]


# -- concurrency -------------------------------------------------------------


def test_concurrent_readers_see_every_id_once_in_order_without_gaps_or_torn_reads():
    size = 32
    start, stop = 1_000, 4_000  # synthetic seconds sealed by the writer
    ring = RoomRing(size=size)
    ring.seal_through(start - 1)
    expected: list[int] = []
    reader_count = 4
    progress = [start - 1] * reader_count
    seen: list[list[int]] = [[] for _ in range(reader_count)]
    errors: list[BaseException] = []
    done = threading.Event()

    def writer() -> None:
        try:
            next_id = 1
            previous: list[Item] = []
            for second in range(start, stop):
                batch = [make_item(next_id + n, second * 1000 + 37 * n) for n in range(second % 4)]
                next_id += len(batch)
                expected.extend(item.id for item in batch)
                # Overlap with the previous second's batch, as the refresher's re-reads do.
                ring.add(previous + batch)
                previous = batch
                ring.seal_through(second)
                # Backpressure so the run never outruns the slowest reader by a window:
                # the test is about torn reads, not about gaps.
                deadline = time.monotonic() + 5
                while second - min(progress) > size // 2 and not errors:
                    if time.monotonic() > deadline:
                        raise AssertionError("readers stalled")
                    time.sleep(0)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            done.set()

    def reader(index: int) -> None:
        try:
            cursor = start - 1
            while cursor < stop - 1:
                if errors:
                    return
                read = ring.view.read(cursor, 3, MAX_AHEAD)
                assert read.gap is False, (cursor, read.newest)
                assert seconds(read.slots) == list(range(cursor + 1, cursor + 1 + len(read.slots)))
                if read.slots:
                    assert read.newest == read.slots[-1].second
                else:
                    assert read.newest == cursor
                seen[index].extend(ids(read.slots))
                cursor = read.newest
                progress[index] = cursor
                if not read.slots:
                    time.sleep(0)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often to shake out torn reads
    try:
        threads = [threading.Thread(target=writer)] + [
            threading.Thread(target=reader, args=(i,)) for i in range(reader_count)
        ]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        elapsed = time.monotonic() - began
    finally:
        sys.setswitchinterval(old_interval)

    assert not errors, errors
    assert done.is_set()
    assert not any(thread.is_alive() for thread in threads)
    assert elapsed < 10
    assert len(expected) == sum(s % 4 for s in range(start, stop))
    for got in seen:
        assert got == expected


# -- against a reference model -----------------------------------------------


class RingModel:
    """What the ring should hold, written the plain way: every slot rebuilt from a dict."""

    def __init__(self, size: int, cap: int) -> None:
        self.size = size
        self.cap = cap
        self.sealed_through: int | None = None
        # second -> {id: ts_ms} still open
        self.pending: dict[int, dict[int, int]] = {}
        self.pending_deleted: dict[int, list[int]] = {}
        # sealed window, oldest first: (second, [(ts, id)], missed, deleted)
        self.window: list[tuple[int, list[tuple[int, int]], int, tuple[int, ...]]] = []
        # id -> the second it was placed in
        self.placed: dict[int, int] = {}
        # id -> the second its retraction was recorded in (None: nothing open)
        self.retracted: dict[int, int | None] = {}

    def is_live(self, item_id: int) -> bool:
        """Placed in a second still open or still in the window."""
        second = self.placed.get(item_id)
        if second is None:
            return False
        if self.sealed_through is None or second > self.sealed_through:
            return second in self.pending
        return bool(self.window) and second >= self.window[0][0]

    def add(self, items: list[tuple[int, int]]) -> int:
        added = 0
        for item_id, ts in items:
            if self.is_live(item_id) or item_id in self.retracted:
                continue
            second = ts // 1000
            if self.window and second < self.window[0][0]:
                continue  # older than the window: not part of the live feed
            if self.sealed_through is not None and second <= self.sealed_through:
                second = self.sealed_through + 1
            self.pending.setdefault(second, {})[item_id] = ts
            self.placed[item_id] = second
            added += 1
        return added

    def seal_through(self, second: int) -> int:
        first = second - self.size + 1
        if self.sealed_through is not None:
            first = max(first, self.sealed_through + 1)
        if first > second:
            return 0
        for sec in range(first, second + 1):
            entries = sorted((ts, i) for i, ts in self.pending.pop(sec, {}).items())
            missed = 0
            if self.cap and len(entries) > self.cap:
                missed = len(entries) - self.cap
                entries = entries[: self.cap]
            self.window.append((sec, entries, missed, tuple(self.pending_deleted.pop(sec, []))))
        self.window = self.window[-self.size :]
        self.pending = {s: v for s, v in self.pending.items() if s > second}
        self.pending_deleted = {s: v for s, v in self.pending_deleted.items() if s > second}
        self.sealed_through = second
        oldest = self.window[0][0]
        self.retracted = {i: s for i, s in self.retracted.items() if s is None or s >= oldest}
        return second - first + 1

    def retract(self, retracted: set[int]) -> None:
        retracted = retracted - self.retracted.keys()
        if not retracted:
            return
        for items in self.pending.values():
            for item_id in retracted:
                items.pop(item_id, None)
        self.window = [
            (sec, [(ts, i) for ts, i in entries if i not in retracted], missed, deleted)
            for sec, entries, missed, deleted in self.window
        ]
        if self.sealed_through is not None:
            open_second = self.sealed_through + 1
        elif self.pending:
            open_second = min(self.pending)
        else:
            open_second = None
        for item_id in retracted:
            self.retracted[item_id] = open_second
        if open_second is None:
            return
        self.pending.setdefault(open_second, {})
        self.pending_deleted.setdefault(open_second, []).extend(sorted(retracted))

    def read(self, after: int | None, join: int, max_ahead: int) -> tuple[list[int], list[int], bool, int | None]:
        """(seconds, ids, gap, newest) a reader should get."""
        if not self.window:
            return [], [], after is not None, None
        oldest, newest = self.window[0][0], self.window[-1][0]
        joined = self.window[-join:]
        if after is None:
            chosen, gap, cursor = joined, False, newest
        elif oldest - 1 <= after < newest:
            chosen, gap, cursor = [s for s in self.window if s[0] > after], False, newest
        elif newest <= after <= newest + max_ahead:
            chosen, gap, cursor = [], False, after
        else:
            chosen, gap, cursor = joined, True, newest
        return [s[0] for s in chosen], [i for s in chosen for _, i in s[1]], gap, cursor


def view_as_model(view: RingView) -> list[tuple[int, list[tuple[int, int]], int, tuple[int, ...]]]:
    return [(s.second, [(it.ts_ms, it.id) for it in s.items], s.missed, s.deleted) for s in view.slots]


class RingMatchesModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.next_id = 1

    @initialize(size=st.integers(1, 8), cap=st.integers(0, 4))
    def start(self, size, cap):
        self.ring = RoomRing(size=size, display_cap=cap)
        self.model = RingModel(size, cap)

    def _anchor(self) -> int:
        return self.model.sealed_through if self.model.sealed_through is not None else 20

    @rule(data=st.data(), count=st.integers(0, 5))
    def add_new_items(self, data, count):
        anchor = self._anchor()
        # Timestamps from well before the sealed second (late) to a few seconds ahead.
        stamps = data.draw(
            st.lists(st.integers((anchor - 12) * 1000, (anchor + 4) * 1000 + 999), min_size=count, max_size=count)
        )
        items = [(self.next_id + n, ts) for n, ts in enumerate(stamps)]
        self.next_id += count
        expected = self.model.add(items)
        assert self.ring.add([make_item(i, ts) for i, ts in items]) == expected

    @precondition(lambda self: any(self.model.is_live(i) for i in self.model.placed))
    @rule(data=st.data())
    def re_add_placed_items(self, data):
        """The refresher's overlapping re-read: items it already handed over, maybe with new ones."""
        live = sorted(i for i in self.model.placed if self.model.is_live(i))
        again = data.draw(st.lists(st.sampled_from(live), min_size=1, max_size=4))
        # The stored timestamp never changes; any ts would do, since a placed id must be ignored.
        items = [(i, data.draw(st.integers(0, 200_000))) for i in again]
        assert self.model.add(items) == 0
        assert self.ring.add([make_item(i, ts) for i, ts in items]) == 0

    @rule(step=st.one_of(st.integers(-3, 3), st.integers(4, 20)))
    def seal(self, step):
        target = self._anchor() + step
        expected = self.model.seal_through(target)
        assert self.ring.seal_through(target) == expected

    @precondition(lambda self: self.model.placed)
    @rule(data=st.data())
    def retract(self, data):
        known = sorted(self.model.placed)
        chosen = set(data.draw(st.lists(st.sampled_from(known), max_size=3)))
        if data.draw(st.booleans()):
            chosen.add(10**6 + self.next_id)  # an id this ring never saw
        self.model.retract(chosen)
        self.ring.retract(chosen)

    @rule(data=st.data(), join=st.integers(1, 10), max_ahead=st.integers(0, 6))
    def read(self, data, join, max_ahead):
        anchor = self._anchor()
        after = data.draw(st.one_of(st.none(), st.integers(anchor - 12, anchor + 8)))
        got = self.ring.view.read(after, join, max_ahead)
        assert (seconds(got.slots), ids(got.slots), got.gap, got.newest) == self.model.read(after, join, max_ahead)

    @invariant()
    def view_matches_model(self):
        assert view_as_model(self.ring.view) == self.model.window
        assert self.ring.sealed_through == self.model.sealed_through

    @invariant()
    def item_count_is_what_the_window_holds(self):
        assert self.ring.item_count == sum(len(slot.items) for slot in self.ring.view.slots)

    @invariant()
    def window_is_contiguous_and_bounded(self):
        secs = seconds(self.ring.view.slots)
        if secs:
            assert secs == list(range(secs[0], secs[0] + len(secs)))
        assert len(secs) <= self.ring.size


RingMatchesModel.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_ring_matches_reference_model = RingMatchesModel.TestCase


def test_retraction_read_again_is_told_once():
    ring = RoomRing(size=10)
    ring.add([make_item(1, 100_000)])
    ring.seal_through(100)

    ring.retract([1])
    ring.retract([1])
    ring.seal_through(101)

    assert ring.view.slots[-1].deleted == (1,)


def test_item_retracted_before_it_arrives_is_never_placed():
    ring = RoomRing(size=10)
    ring.seal_through(100)
    ring.retract([5])

    assert ring.add([make_item(5, 101_000)]) == 0
    ring.seal_through(101)

    assert 5 not in ids(ring.view.slots)


def test_retraction_with_its_own_time_is_told_in_that_second():
    ring = RoomRing(size=10)
    ring.add([make_item(1, 100_000)])
    ring.seal_through(100)

    ring.retract([1], at_ms={1: 103_400})
    ring.seal_through(104)

    assert [slot.second for slot in ring.view.slots if slot.deleted] == [103]


def test_retraction_whose_second_is_sealed_is_told_in_the_first_open_one():
    ring = RoomRing(size=10)
    ring.add([make_item(1, 100_000)])
    ring.seal_through(105)

    ring.retract([1], at_ms={1: 102_000})
    ring.seal_through(106)

    assert [slot.second for slot in ring.view.slots if slot.deleted] == [106]


def test_rings_sealing_the_same_window_share_its_empty_slots():
    # A thousand rooms activated together must not hold a thousand copies
    # of every empty second (each one walked by every full collection).
    rings = [RoomRing(size=60) for _ in range(3)]
    for ring in rings:
        ring.seal_through(10_000)

    first = rings[0].view.slots
    assert [slot.second for slot in first] == list(range(9_941, 10_001))
    for ring in rings[1:]:
        assert all(mine is theirs for mine, theirs in zip(ring.view.slots, first, strict=True))
