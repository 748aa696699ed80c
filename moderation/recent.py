"""What a batch of comments' full checks read of the comments before them, read once.

The repeated-message and flood rules look at earlier comments: the
sender's last minute in the room, and the room's last 10 s. Asked one
comment at a time, a busy room's flood check read up to 500 rows and
normalized each text for every comment (about 6-11 ms of worker CPU per
comment at 400 comments/s). A batch reads each room's window once, each
user's minute once, and normalizes each text once per worker process
(``_keys``); the counts are the same as the one-at-a-time queries give
(the same windows, the same scan limits, newest first;
``tests/moderation/test_recent.py`` compares them).

The flood rule scans up to 500 of the room's rows per comment, newest
first: at 400 comments/s that scan was half the worker's CPU, almost all
of it over rows of other texts. Each room's rows are indexed by match form
once per batch, and a comment whose earlier same-form rows all lie within
the first ``scan_limit`` rows from its own time (so the scan would reach
every one of them) is counted from the index alone; otherwise it is
scanned as before.

Nor does a batch read the room's whole 10 s: a comment's scan stops after
500 rows of other senders, so a batch reads the rows of its own time span
and at most ``ROWS_BEFORE`` rows before it (at 400 comments/s the window
held ~4,000 rows a batch, most never scanned). A comment whose scan could
run past the last row read (more of its own or of later rows than the
margin) is counted by the per-comment query instead (``query_flood``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.db.models import Q

from danmaku.models import Danmaku

# Match forms a worker remembers by text: a comment is in ~500 windows.
KEY_MEMORY = 50_000
# Rows one batch reads for a room's flood window within the batch's own
# time span, at most (~0.1 s of sends), and before it: the scan limit (500)
# and a margin for the sender's own rows and rows stored out of order.
ROOM_ROWS_MAX = 20_000
ROWS_BEFORE = 1_000

Row = tuple[int, int, int, str]  # id, user id, ts_ms, text


class RecentComments:
    """Earlier comments of a batch's rooms and senders, for ``repeat_count`` and ``flood_senders``."""

    def __init__(
        self,
        batch: Iterable[Danmaku],
        *,
        key: Callable[[str], str],
        query_flood: Callable[[Danmaku], int],
        flood_window_ms: int,
        flood_min_chars: int,
        repeat_window_ms: int,
    ) -> None:
        self._key = key
        self._query_flood = query_flood
        batch = list(batch)
        # Rooms whose window was not read whole (rows before the batch's span left out).
        self._cut: set[int] = set()
        # Per room, the batch's match forms and senders: what its index holds.
        self._batch_keys: dict[int, set[str]] = {}
        self._batch_senders: dict[int, set[int]] = {}
        self._by_room: dict[int, list[Row]] = {}
        self._by_user: dict[tuple[int, int], list[Row]] = defaultdict(list)
        # Room -> its rows indexed, built when first asked.
        self._indexes: dict[int, _Index] = {}
        rooms: dict[int, list[Danmaku]] = defaultdict(list)
        for danmaku in batch:
            rooms[danmaku.room_id].append(danmaku)
        for room_id, comments in rooms.items():
            low = min(c.ts_ms for c in comments)
            high = max(c.ts_ms for c in comments)
            self._batch_keys[room_id] = {self.key_of(c.id, c.text) for c in comments}
            self._batch_senders[room_id] = {c.user_id for c in comments}
            if any(len(self.key_of(c.id, c.text)) >= flood_min_chars for c in comments):
                span, cut = self._newest_rows(Q(room_id=room_id, ts_ms__gte=low, ts_ms__lte=high), ROOM_ROWS_MAX)
                before: list[Row] = []
                if not cut:
                    # Read on from where the span ends, so what is read has no hole.
                    window = Q(room_id=room_id, ts_ms__gt=low - flood_window_ms, ts_ms__lt=low)
                    before, cut = self._newest_rows(window, ROWS_BEFORE)
                self._by_room[room_id] = span + before
                if cut:
                    self._cut.add(room_id)
            users = {c.user_id for c in comments}
            for row in self._rows(
                Q(room_id=room_id, user_id__in=users, ts_ms__gt=low - repeat_window_ms, ts_ms__lte=high)
            ):
                self._by_user[(room_id, row[1])].append(row)

    def key_of(self, danmaku_id: int, text: str) -> str:
        # By text: a flood repeats one text, and a text's form never changes.
        key = _keys.get(text)
        if key is None:
            if len(_keys) >= KEY_MEMORY:
                _keys.pop(next(iter(_keys)), None)
            key = _keys[text] = self._key(text)
        return key

    def repeat_count(self, danmaku: Danmaku, *, window_ms: int, scan_limit: int) -> int:
        """The sender's comments in the room with the same match form within the window, this one included."""
        key = self.key_of(danmaku.id, danmaku.text)
        earlier = self._earlier(self._by_user.get((danmaku.room_id, danmaku.user_id), ()), danmaku, window_ms)
        same = 0
        for count, (row_id, _, _, text) in enumerate(earlier):
            if count >= scan_limit:
                break
            same += self.key_of(row_id, text) == key
        return 1 + same

    def flood_senders(self, danmaku: Danmaku, *, window_ms: int, scan_limit: int) -> int:
        """Different users who sent this comment's match form in the room within the window, it included."""
        key = self.key_of(danmaku.id, danmaku.text)
        rows = self._by_room.get(danmaku.room_id, [])
        if danmaku.room_id in self._cut and not self._read_far_enough(danmaku, rows, window_ms, scan_limit):
            return self._query_flood(danmaku)
        counted = self._flood_from_index(danmaku, rows, key, window_ms=window_ms, scan_limit=scan_limit)
        if counted is not None:
            return counted
        senders = set()
        scanned = 0
        for row_id, user_id, _, text in self._earlier(rows, danmaku, window_ms):
            if user_id == danmaku.user_id:
                continue
            if scanned >= scan_limit:
                break
            scanned += 1
            if self.key_of(row_id, text) == key:
                senders.add(user_id)
        return 1 + len(senders)

    def _flood_from_index(
        self, danmaku: Danmaku, rows: list[Row], key: str, *, window_ms: int, scan_limit: int
    ) -> int | None:
        """``flood_senders`` from the rows of ``key`` alone, or None when one
        of them lies where the scan might stop before it."""
        index = self._index_of(danmaku.room_id, rows)
        positions = index.by_key.get(key)
        if positions is None:
            return None  # not a form of the batch's: not indexed
        start = index.start(danmaku)
        low = danmaku.ts_ms - window_ms
        senders = set()
        for position in positions:
            if position < start:
                continue
            row_id, user_id, ts_ms, _ = rows[position]
            if ts_ms <= low:
                break
            if row_id >= danmaku.id or user_id == danmaku.user_id:
                continue
            # The scan counts at most position - start rows before this one.
            if position - start >= scan_limit:
                return None
            senders.add(user_id)
        return 1 + len(senders)

    def _read_far_enough(self, danmaku: Danmaku, rows: list[Row], window_ms: int, scan_limit: int) -> bool:
        """Whether this comment's scan ends within the rows read of a window
        read in part: the last row read is out of its window, or the rows
        from its start hold ``scan_limit`` rows the scan counts (rows less
        the sender's own and any stored after it)."""
        if not rows or rows[-1][2] <= danmaku.ts_ms - window_ms:
            return bool(rows)
        index = self._index_of(danmaku.room_id, rows)
        start = index.start(danmaku)
        own = index.by_user.get(danmaku.user_id)
        if own is None:
            own_from_start = sum(1 for row in rows[start:] if row[1] == danmaku.user_id)
        else:
            own_from_start = len(own) - bisect_left(own, start)
        later = len(index.ids) - bisect_left(index.ids, danmaku.id + 1)
        return len(rows) - start - own_from_start - later >= scan_limit

    def _index_of(self, room_id: int, rows: list[Row]) -> _Index:
        """The room's rows indexed for the batch's own match forms and senders
        (a comment of another form or sender is scanned instead)."""
        index = self._indexes.get(room_id)
        if index is None:
            wanted, senders = self._batch_keys.get(room_id, set()), self._batch_senders.get(room_id, set())
            by_key: dict[str, list[int]] = {key: [] for key in wanted}
            by_user: dict[int, list[int]] = {user_id: [] for user_id in senders}
            known = _keys
            for position, (row_id, user_id, _, text) in enumerate(rows):
                key = known.get(text)
                if key is None:
                    key = self.key_of(row_id, text)
                if key in wanted:
                    by_key[key].append(position)
                if user_id in senders:
                    by_user[user_id].append(position)
            index = _Index([-row[2] for row in rows], by_key, by_user, sorted(row[0] for row in rows))
            self._indexes[room_id] = index
        return index

    @staticmethod
    def _earlier(rows, danmaku: Danmaku, window_ms: int):
        # Rows are newest first, as the one-at-a-time queries scan them.
        low = danmaku.ts_ms - window_ms
        for row in rows:
            if row[2] > danmaku.ts_ms:
                continue
            if row[2] <= low:
                break
            if row[0] < danmaku.id:
                yield row

    @staticmethod
    def _rows(where: Q) -> list[Row]:
        rows = Danmaku.objects.filter(where).values_list("id", "user_id", "ts_ms", "text")
        return list(rows.order_by("-ts_ms", "-id"))

    @staticmethod
    def _newest_rows(where: Q, limit: int) -> tuple[list[Row], bool]:
        """At most ``limit`` rows newest first (ties: the later id first), and
        whether older ones were left out. The database orders by time alone,
        so that it walks the room's time index backwards and stops at the
        limit (ordering by id too, it reads and sorts the whole range); a cut
        through one millisecond's rows leaves that millisecond out, so what is
        read has no hole."""
        found = list(
            Danmaku.objects.filter(where).order_by("-ts_ms").values_list("id", "user_id", "ts_ms", "text")[:limit]
        )
        cut = len(found) == limit
        if cut:
            cut_at = found[-1][2]
            found = [row for row in found if row[2] != cut_at]
        found.sort(key=lambda row: (-row[2], -row[0]))
        return found, cut


@dataclass(frozen=True)
class _Index:
    """A room's rows (newest first) by position: negated timestamps, and
    positions by match form and by sender; and their ids, sorted."""

    newest_first: list[int]
    by_key: dict[str, list[int]]
    by_user: dict[int, list[int]]
    ids: list[int]

    def start(self, danmaku: Danmaku) -> int:
        """Where the comment's scan begins: the newest row at or before its time."""
        return bisect_left(self.newest_first, -danmaku.ts_ms)


_keys: dict[str, str] = {}
