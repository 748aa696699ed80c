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
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

from django.db.models import Q

from danmaku.models import Danmaku

# Match forms a worker remembers by text: a comment is in ~500 windows.
KEY_MEMORY = 50_000
# Rows one batch reads for a room's flood window, at most: beyond it the
# oldest rows of the window go unread, as the scan limit drops them anyway.
ROOM_ROWS_MAX = 20_000

Row = tuple[int, int, int, str]  # id, user id, ts_ms, text


class RecentComments:
    """Earlier comments of a batch's rooms and senders, for ``repeat_count`` and ``flood_senders``."""

    def __init__(
        self,
        batch: Iterable[Danmaku],
        *,
        key: Callable[[str], str],
        flood_window_ms: int,
        flood_min_chars: int,
        repeat_window_ms: int,
    ) -> None:
        self._key = key
        batch = list(batch)
        self._by_room: dict[int, list[Row]] = {}
        self._by_user: dict[tuple[int, int], list[Row]] = defaultdict(list)
        rooms: dict[int, list[Danmaku]] = defaultdict(list)
        for danmaku in batch:
            rooms[danmaku.room_id].append(danmaku)
        for room_id, comments in rooms.items():
            low = min(c.ts_ms for c in comments)
            high = max(c.ts_ms for c in comments)
            if any(len(self.key_of(c.id, c.text)) >= flood_min_chars for c in comments):
                self._by_room[room_id] = self._rows(
                    Q(room_id=room_id, ts_ms__gt=low - flood_window_ms, ts_ms__lte=high), ROOM_ROWS_MAX
                )
            users = {c.user_id for c in comments}
            for row in self._rows(
                Q(room_id=room_id, user_id__in=users, ts_ms__gt=low - repeat_window_ms, ts_ms__lte=high), None
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
        rows = self._by_room.get(danmaku.room_id, ())
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
    def _rows(where: Q, limit: int | None) -> list[Row]:
        rows = Danmaku.objects.filter(where).order_by("-ts_ms", "-id").values_list("id", "user_id", "ts_ms", "text")
        return list(rows[:limit] if limit else rows)


_keys: dict[str, str] = {}
