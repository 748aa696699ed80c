"""Merged duplicates, their counts and restored comments in the ring alone."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from danmaku.pull.ringbuffer import MERGE_WINDOW_MS, Item, RoomRing, Slot


def make_item(item_id: int, ts_ms: int, text: str = "233333") -> Item:
    return Item(id=item_id, ts_ms=ts_ms, color=0xFFFFFF, mode=0, user=item_id, nick="nick", avatar="", text=text)


def merging_ring(size: int = 60, display_cap: int = 0) -> RoomRing:
    ring = RoomRing(size=size, display_cap=display_cap, merge_key=lambda text: text.strip().casefold())
    ring.seal_through(99)
    return ring


class Client:
    """What a viewer following every answer holds on screen: id -> count.

    Applies an answer's slots as the wire carries them: ``deleted`` first,
    then ``items``, then ``counts`` (for ids it holds), so a comment hidden
    and restored within one answer ends up shown."""

    def __init__(self) -> None:
        self.shown: dict[int, int] = {}
        self.cursor: int | None = None
        self.restored: list[int] = []

    def follow(self, ring: RoomRing) -> list[Slot]:
        read = ring.view.read(self.cursor, join_seconds=3)
        self.cursor = read.newest
        deleted = [item_id for slot in read.slots for item_id in slot.deleted]
        items = [item for slot in read.slots for item in slot.items]
        counts = dict(pair for slot in read.slots for pair in slot.counts)
        self.restored += [item_id for slot in read.slots for item_id in slot.restored]
        for item_id in deleted:
            self.shown.pop(item_id, None)
        for item in items:
            self.shown[item.id] = item.count
        for item_id, count in counts.items():
            if item_id in self.shown:
                self.shown[item_id] = count
        return list(read.slots)


def test_a_burst_of_one_text_is_one_item_whose_count_adds_up_while_a_viewer_follows():
    ring = merging_ring()
    client = Client()
    client.follow(ring)
    # 40 comments over two seconds, sealed as they come, the viewer pulling each second.
    for second in range(2):
        ring.add(make_item(1 + second * 20 + n, 100_000 + second * 1000 + n * 40) for n in range(20))
        ring.seal_through(100 + second)
        client.follow(ring)

    assert client.shown == {1: 40}
    # One item in all the slots: the first second's, sealed with 20; the next second carries the new total.
    slots = ring.view.slots
    assert [item.count for slot in slots for item in slot.items] == [20]
    assert [pair for slot in slots for pair in slot.counts] == [(1, 40)]


def test_a_joiner_gets_the_item_with_its_latest_count():
    ring = merging_ring()
    ring.add(make_item(n, 100_000 + n * 50) for n in range(1, 41))
    ring.seal_through(101)
    joiner = Client()

    joiner.follow(ring)

    assert joiner.shown == {1: 40}


def test_hiding_some_lowers_the_count_and_hiding_all_removes_the_item():
    ring = merging_ring()
    client = Client()
    ring.add(make_item(n, 100_000 + n * 10) for n in range(1, 41))
    ring.seal_through(100)
    client.follow(ring)

    ring.retract(range(31, 41))
    ring.seal_through(101)
    client.follow(ring)
    assert client.shown == {1: 30}

    ring.retract(range(2, 31))
    ring.seal_through(102)
    assert client.shown == {1: 30}  # not yet pulled
    slots = client.follow(ring)
    assert client.shown == {1: 1}

    ring.retract([1])
    ring.seal_through(103)
    slots = client.follow(ring)
    assert client.shown == {}
    assert [item_id for slot in slots for item_id in slot.deleted] == [1]
    # A joiner now finds nothing in the sealed window.
    assert not any(slot.items for slot in ring.view.slots)


def test_hiding_the_first_comment_keeps_the_item_for_the_others():
    ring = merging_ring()
    client = Client()
    ring.add(make_item(n, 100_000 + n) for n in range(1, 4))
    ring.seal_through(100)
    client.follow(ring)

    ring.retract([1])
    ring.seal_through(101)
    slots = client.follow(ring)

    assert client.shown == {1: 2}
    assert not any(slot.deleted for slot in slots)


def test_a_hide_before_the_item_is_sealed_changes_its_count_in_place():
    ring = merging_ring()
    ring.add(make_item(n, 100_000 + n) for n in range(1, 6))
    ring.retract([2, 3])
    ring.seal_through(100)

    slot = ring.view.slots[-1]
    assert [(item.id, item.count) for item in slot.items] == [(1, 3)]
    assert slot.counts == ()
    # Nothing to tell: no viewer had the hidden ones.
    assert slot.deleted == ()


def test_duplicates_further_apart_than_the_window_are_separate_items():
    ring = merging_ring()
    ring.add([make_item(1, 100_000), make_item(2, 100_000 + MERGE_WINDOW_MS + 1)])
    ring.seal_through(106)

    assert [item.id for slot in ring.view.slots for item in slot.items] == [1, 2]


def test_different_texts_and_a_ring_without_a_key_never_merge():
    ring = merging_ring()
    ring.add([make_item(1, 100_000, "233333"), make_item(2, 100_100, "2333"), make_item(3, 100_200, " 233333 ")])
    plain = RoomRing(size=60)
    plain.seal_through(99)
    plain.add([make_item(1, 100_000), make_item(2, 100_100)])
    ring.seal_through(100)
    plain.seal_through(100)

    assert [(item.id, item.count) for item in ring.view.slots[-1].items] == [(1, 2), (2, 1)]
    assert [(item.id, item.count) for item in plain.view.slots[-1].items] == [(1, 1), (2, 1)]


def test_the_display_cap_counts_a_merged_item_once_and_misses_count_what_it_stood_for():
    ring = merging_ring(display_cap=2)
    ring.add(make_item(n, 100_000 + n, "233333") for n in range(1, 31))
    ring.add([make_item(100, 100_500, "a"), make_item(101, 100_600, "b"), make_item(102, 100_700, "b")])
    ring.seal_through(100)

    slot = ring.view.slots[-1]
    assert [(item.id, item.count) for item in slot.items] == [(1, 30), (100, 1)]
    assert slot.missed == 2  # "b" x2, cut as one item
    # The cut item merges nothing more: the next "b" is an item of its own.
    ring.add([make_item(103, 101_000, "b")])
    ring.seal_through(101)
    assert [(item.id, item.count) for item in ring.view.slots[-1].items] == [(103, 1)]


def test_a_restored_comment_comes_back_in_the_open_second_and_is_listed_once():
    ring = merging_ring()
    client = Client()
    ring.add([make_item(1, 100_000, "one")])
    ring.seal_through(100)
    client.follow(ring)
    ring.retract([1])
    ring.seal_through(101)
    client.follow(ring)
    assert client.shown == {}

    ring.restore([make_item(1, 100_000, "one")])
    ring.restore([make_item(1, 100_000, "one")])  # read again: nothing more
    ring.seal_through(102)
    slots = client.follow(ring)

    assert client.shown == {1: 1}
    assert client.restored == [1]
    assert [slot.second for slot in slots if slot.items] == [102]
    # And it can be hidden again.
    ring.retract([1])
    ring.seal_through(103)
    client.follow(ring)
    assert client.shown == {}


def test_hidden_and_restored_within_one_answer_ends_shown():
    ring = merging_ring()
    client = Client()
    ring.add([make_item(1, 100_000, "one")])
    ring.seal_through(100)
    client.follow(ring)
    ring.retract([1])
    ring.seal_through(101)
    ring.restore([make_item(1, 100_000, "one")])
    ring.seal_through(102)

    client.follow(ring)

    assert client.shown == {1: 1}


def test_a_restored_duplicate_rejoins_its_item():
    ring = merging_ring()
    client = Client()
    ring.add(make_item(n, 100_000 + n) for n in range(1, 4))
    ring.seal_through(100)
    client.follow(ring)
    ring.retract([3])
    ring.seal_through(101)
    client.follow(ring)
    assert client.shown == {1: 2}

    ring.restore([make_item(3, 100_003)])
    ring.seal_through(102)
    client.follow(ring)

    assert client.shown == {1: 3}


def test_a_restore_older_than_the_window_is_left_alone():
    ring = merging_ring(size=10)
    ring.seal_through(200)

    assert ring.restore([make_item(1, 150_000)]) == 0
    ring.seal_through(201)
    assert not any(slot.items or slot.restored for slot in ring.view.slots)


texts = st.sampled_from(["233333", "lol", "gg"])
events = st.lists(
    st.one_of(
        st.tuples(st.just("add"), texts, st.integers(0, 900)),
        st.tuples(st.just("hide"), st.integers(0, 40)),
        st.tuples(st.just("restore"), st.integers(0, 40)),
        st.tuples(st.just("tick")),
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(events)
def test_a_viewer_following_every_second_always_holds_the_live_counts(script):
    """Whatever comes, hides and comes back: each item a follower holds
    counts exactly its members still published, and no item with none."""
    ring = merging_ring()
    client = Client()
    client.follow(ring)
    second = 100
    sent: dict[int, Item] = {}
    hidden: set[int] = set()
    for event in script:
        if event[0] == "add":
            item = make_item(len(sent) + 1, second * 1000 + event[2], event[1])
            sent[item.id] = item
            ring.add([item])
        elif event[0] == "hide" and event[1] in sent and event[1] not in hidden:
            hidden.add(event[1])
            ring.retract([event[1]])
        elif event[0] == "restore" and event[1] in hidden:
            hidden.discard(event[1])
            ring.restore([sent[event[1]]])
        elif event[0] == "tick":
            ring.seal_through(second)
            second += 1
            client.follow(ring)
    ring.seal_through(second)
    client.follow(ring)

    published = {item_id for item_id in sent if item_id not in hidden}
    assert sum(client.shown.values()) == len(published)
    assert all(count > 0 for count in client.shown.values())
    # Each shown item's text is a text of some published comment.
    texts_published = {sent[item_id].text for item_id in published}
    assert {sent[item_id].text for item_id in client.shown} <= texts_published
