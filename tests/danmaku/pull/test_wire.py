"""The cursor codec and the pull body encoder, alone."""

from __future__ import annotations

import gzip
import hashlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from danmaku.pull.ringbuffer import Item, Slot
from danmaku.pull.wire import MAX_SECOND, MODE_CODES, CursorError, decode_cursor, encode_cursor, encode_pull

# The widest epoch the codec carries: 13 base-36 digits.
MAX_EPOCH = 36**13 - 1
NICK = "\u5c0f\u660e"  # CJK
TEXT = "\u54c8\u54c8 \U0001f602"  # CJK and an emoji
COLUMNS = ["id", "offset_ms", "color", "mode", "user", "nick", "avatar", "text", "count"]


def make_item(item_id: int, ts_ms: int, **fields) -> Item:
    values = {"color": 0xFFFFFF, "mode": 0, "user": 7, "nick": "nick", "avatar": "", "text": "hi"} | fields
    return Item(id=item_id, ts_ms=ts_ms, **values)


def pull(slots, **overrides) -> dict:
    args = {"cursor": "1-abc", "next_ms": 3000, "reason": "normal", "gap": False, "slots": slots} | overrides
    return orjson.loads(encode_pull(**args))


# -- cursor codec -------------------------------------------------------------


@pytest.mark.parametrize(
    ("epoch", "second", "cursor"),
    [
        (0, 0, "0-0"),
        (1, 35, "1-z"),
        (36, 36, "10-10"),
        (1, 1_700_000_000, "1-s44we8"),
        (MAX_EPOCH, MAX_SECOND, "zzzzzzzzzzzzz-e13wu1og"),
    ],
)
def test_cursor_is_lowercase_base36_epoch_dash_second(epoch, second, cursor):
    assert encode_cursor(epoch, second) == cursor
    assert decode_cursor(cursor) == (epoch, second)


@given(epoch=st.integers(0, MAX_EPOCH), second=st.integers(0, MAX_SECOND))
def test_cursor_roundtrips(epoch, second):
    cursor = encode_cursor(epoch, second)

    assert decode_cursor(cursor) == (epoch, second)
    assert cursor == cursor.strip().lower()


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "-",
        "1",
        "1-",
        "-1",
        "1-2-3",
        "1--2",
        "+1-2",
        "1-+2",
        "1-A",
        "A-1",
        "1_2",
        "1 2",
        " 1-2",
        "1-2 ",
        "1-2\n",
        "\u0661-2",  # an Arabic-Indic digit
        "\uff11-2",  # a fullwidth digit
        "1-\u0131",  # dotless i
        "1-2\x00",
        "0" * 14 + "-1",
        "1-" + "1" * 14,
    ],
)
def test_malformed_cursor_raises_cursor_error(cursor):
    with pytest.raises(CursorError, match="previous pull"):
        decode_cursor(cursor)


@pytest.mark.parametrize("cursor", ["01-2", "1-02", "00-0", "0-00", "000000000000a-b"])
def test_cursor_with_leading_zeros_is_not_one_we_issued(cursor):
    # A second spelling of the same cursor would be a second URL for the same
    # answer, defeating proxy caches keyed on the URL.
    with pytest.raises(CursorError):
        decode_cursor(cursor)


def test_cursor_beyond_max_second_is_out_of_range():
    assert decode_cursor(encode_cursor(3, MAX_SECOND)) == (3, MAX_SECOND)

    with pytest.raises(CursorError, match="out of range"):
        decode_cursor(encode_cursor(3, MAX_SECOND + 1))


@pytest.mark.timeout(5)
@pytest.mark.parametrize(("epoch", "second"), [(-1, 0), (0, -1), (-36, -36)])
def test_negative_cursor_parts_cannot_be_encoded(epoch, second):
    with pytest.raises(ValueError, match="non-negative"):
        encode_cursor(epoch, second)


def _assert_decodes_canonically_or_refuses(text: str) -> None:
    try:
        epoch, second = decode_cursor(text)
    except CursorError:
        return
    assert isinstance(epoch, int)
    assert isinstance(second, int)
    assert encode_cursor(epoch, second) == text


@settings(max_examples=300)
@given(st.text())
def test_decode_of_any_text_is_canonical_or_cursor_error(text):
    _assert_decodes_canonically_or_refuses(text)


@settings(max_examples=300)
@given(
    st.one_of(
        st.text(alphabet="0123456789abcxyzAZ-+_ \n\u0661", max_size=32),
        st.from_regex(r"[0-9a-z]{1,14}-[0-9a-z]{1,14}", fullmatch=True),
    )
)
def test_decode_of_cursor_like_text_is_canonical_or_cursor_error(text):
    _assert_decodes_canonically_or_refuses(text)


# -- pull body --------------------------------------------------------------


@pytest.fixture
def slots() -> tuple[Slot, ...]:
    return (
        Slot(100, (make_item(1, 100_250, text="first"), make_item(2, 100_900, mode=MODE_CODES["top"])), missed=3),
        Slot(101, (), deleted=(7, 5)),
        Slot(102, (make_item(3, 102_001, color=0xFF0000, user=9, nick=NICK, avatar="/a/9.png", text=TEXT),), 1, (2,)),
    )


def test_pull_body_is_json_with_the_contract_fields(slots):
    body = pull(slots, cursor="1-2s", next_ms=4500, reason="busy", gap=True)

    assert set(body) == {
        "cursor",
        "next_ms",
        "reason",
        "gap",
        "missed",
        "items",
        "deleted",
        "counts",
        "restored",
        "pinned",
        "viewers",
    }
    assert (body["cursor"], body["next_ms"], body["reason"], body["gap"]) == ("1-2s", 4500, "busy", True)
    assert list(body["items"]) == COLUMNS


def test_pull_items_are_columns_of_equal_length_in_slot_order(slots):
    items = pull(slots)["items"]

    assert {len(column) for column in items.values()} == {3}
    assert items["id"] == [1, 2, 3]
    assert items["color"] == [0xFFFFFF, 0xFFFFFF, 0xFF0000]
    assert items["mode"] == [0, 1, 0]
    assert items["user"] == [7, 7, 9]
    assert items["nick"] == ["nick", "nick", NICK]
    assert items["avatar"] == ["", "", "/a/9.png"]
    assert items["text"] == ["first", "hi", TEXT]


def test_pull_offset_ms_counts_from_the_start_of_the_first_slots_second(slots):
    assert pull(slots)["items"]["offset_ms"] == [250, 900, 2001]
    # Without the first slot the base moves to second 101.
    assert pull(slots[1:])["items"]["offset_ms"] == [1001]


def test_pull_offset_base_is_the_first_slot_even_when_it_is_empty():
    body = pull([Slot(50), Slot(51, (make_item(1, 51_010),))])

    assert body["items"]["offset_ms"] == [1010]


def test_pull_sums_missed_and_collects_deleted_in_slot_order(slots):
    body = pull(slots)

    assert body["missed"] == 4
    assert body["deleted"] == [7, 5, 2]


def test_pull_with_no_slots_has_empty_columns():
    body = pull([])

    assert body["items"] == {column: [] for column in COLUMNS}
    assert body["missed"] == 0
    assert body["deleted"] == []


def test_pull_accepts_slots_as_a_one_shot_iterable(slots):
    assert encode_pull(cursor="c", next_ms=1, reason="quiet", gap=False, slots=iter(slots)) == encode_pull(
        cursor="c", next_ms=1, reason="quiet", gap=False, slots=slots
    )


def test_pull_body_is_utf8_not_ascii_escaped(slots):
    raw = encode_pull(cursor="c", next_ms=1, reason="normal", gap=False, slots=slots)

    assert TEXT.encode() in raw


def test_mode_codes_match_the_order_clients_rely_on():
    assert MODE_CODES == {"scroll": 0, "top": 1, "bottom": 2}


item_strategy = st.builds(
    make_item,
    st.integers(1, 2**53),
    st.just(0),
    color=st.integers(0, 0xFFFFFF),
    mode=st.sampled_from(list(MODE_CODES.values())),
    user=st.integers(1, 2**31),
    nick=st.text(st.characters(exclude_categories=["Cs"]), max_size=8),
    text=st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=8),
)


@st.composite
def slot_runs(draw) -> list[Slot]:
    first = draw(st.integers(0, 2**33))
    out = []
    for second in range(first, first + draw(st.integers(0, 5))):
        items = [
            it._replace(ts_ms=second * 1000 + draw(st.integers(0, 999)))
            for it in draw(st.lists(item_strategy, max_size=4))
        ]
        deleted = tuple(draw(st.lists(st.integers(1, 2**53), max_size=3)))
        out.append(Slot(second, tuple(items), draw(st.integers(0, 50)), deleted))
    return out


@settings(max_examples=150)
@given(slot_runs())
def test_pull_body_matches_its_slots(run):
    body = pull(run)
    items = [item for slot in run for item in slot.items]

    assert {len(column) for column in body["items"].values()} == {len(items)}
    assert body["items"]["id"] == [item.id for item in items]
    assert body["items"]["text"] == [item.text for item in items]
    assert body["items"]["offset_ms"] == [item.ts_ms - run[0].second * 1000 for item in items]
    assert all(offset >= 0 for offset in body["items"]["offset_ms"])
    assert body["missed"] == sum(slot.missed for slot in run)
    assert body["deleted"] == [i for slot in run for i in slot.deleted]


def test_late_item_plays_at_the_start_of_the_slot_it_was_placed_in():
    # Item 7 carries second 100's timestamp but arrived after 100 was sealed.
    slots = (Slot(101, (make_item(8, 101_300),)), Slot(102, (make_item(7, 100_900),)))

    body = orjson.loads(encode_pull(cursor="1-1", next_ms=3000, reason="normal", gap=False, slots=slots))

    assert body["items"]["id"] == [8, 7]
    assert body["items"]["offset_ms"] == [300, 1000]


# -- size on the wire ---------------------------------------------------------

# A lively room: 15 comments over 3 s from 10 viewers, CJK and Latin texts,
# avatars named as the avatar fetch names them (or the default one).
LIVELY_TEXTS = (
    "\u54c8\u54c8\u54c8\u54c8\u54c8\u54c8",
    "666666",
    "\u524d\u65b9\u9ad8\u80fd\u9884\u8b66!!!",
    "this song is so good",
    "\u4e3b\u64ad\u597d\u5389\u5bb3",
    "lol what just happened",
    "awsl",
    "2333333",
    "\u7b2c\u4e00\u6b21\u6765\uff0c\u597d\u70ed\u95f9",
    "GG wp",
    "\u5f39\u5e55\u62a4\u4f53",
    "where is this place? looks amazing",
    "\u6cea\u76ee\u4e86",
    "nice shot!!",
    "\u4e0b\u6b21\u4e00\u5b9a",
)
LIVELY_NICKS = (
    "\u5c0f\u660e",
    "Alice",
    "\u591c\u732b\u5b50",
    "bob_42",
    "\u661f\u6cb3",
    "Kenji",
    "\u8def\u4eba\u7532",
    "Mia",
    "\u963f\u98de",
    "tom",
)


def lively_items() -> list[Item]:
    def avatar(user: int) -> str:
        if user % 4 == 0:
            return "/static/danmaku/avatar-default.svg"
        return f"/media/avatars/{user}-{hashlib.sha256(str(user).encode()).hexdigest()[:16]}.png"

    base = 1_732_000_000
    items = []
    for n, text in enumerate(LIVELY_TEXTS):
        user = 1000 + (n * 7) % 10
        ts_ms = (base + n // 5) * 1000 + (n % 5) * 190 + 37
        color = 0xFE0302 if n % 4 == 0 else 0xFFFFFF
        mode = MODE_CODES["top"] if n % 6 == 0 else MODE_CODES["scroll"]
        items.append(Item(880_000 + n, ts_ms, color, mode, user, LIVELY_NICKS[user % 10], avatar(user), text))
    return items


def test_gzipped_lively_answer_is_small_and_no_larger_than_a_list_of_objects():
    items = lively_items()
    seconds = sorted({item.ts_ms // 1000 for item in items})
    slots = [Slot(s, tuple(i for i in items if i.ts_ms // 1000 == s)) for s in seconds]
    envelope = {"cursor": "1-s5kdbk", "next_ms": 2873, "reason": "normal", "gap": False}
    body = encode_pull(**envelope, slots=slots)
    # The obvious alternative layout: the same comments, one object each.
    naive = orjson.dumps(envelope | {"missed": 0, "items": [item._asdict() for item in items], "deleted": []})

    zipped = len(gzip.compress(body, 6, mtime=0))

    assert zipped <= 0.6 * len(body), (zipped, len(body))
    assert zipped <= len(gzip.compress(naive, 6, mtime=0))
