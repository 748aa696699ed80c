"""Where the refresher reads published danmaku from, and sends publish to.

One interface, two backends:

- ``DatabaseStore`` (embedded default, and the fallback while Redis is
  down): the Danmaku table is the store; timestamps come from this host.
- ``RedisStore`` (production): one stream per room holding comments and
  retractions in order, Redis time as the timestamp source, room settings
  as JSON keys, and an epoch key that changes when Redis lost its data.

Every Redis failure surfaces as ``StoreUnavailable`` so callers take their
fallback without knowing redis-py.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from danmaku.identity import avatar_url, display_nick
from danmaku.models import Danmaku, Room
from danmaku.pull.ringbuffer import Item
from infra.clock import now_ms as host_now_ms
from infra.redis import breaker, evalsha, get_redis, thread_redis

logger = logging.getLogger(__name__)

ROOM_FIELDS = (
    "id",
    "slug",
    "poll_interval_ms",
    "quiet_interval_ms",
    "quiet_after_seconds",
    "display_cap_per_second",
    "poll_multiplier",
    "merge_duplicates",
    "pinned_text",
    "pinned_nick",
    "pinned_danmaku_id",
    "pinned_until_ms",
    "updated_at",
)
ITEM_FIELDS = (
    "id",
    "room_id",
    "ts_ms",
    "color",
    "mode",
    "user_id",
    "text",
    "user__username",
    "user__viewer_profile__nickname",
    "user__viewer_profile__avatar_thumb",
)
# Most entries one refresher read takes from one room's stream; a room's
# send cap keeps a second's worth far below it.
STREAM_READ_COUNT = 10_000
# Most restored comments one database read takes (across all rooms): a
# moderator unhides one at a time; a bulk unhide beyond this in one tick's
# look-back stays in the record and off screens.
RESTORED_READ_LIMIT = 10_000
# Streams keep about two windows of history (trimmed by time, lazily).
STREAM_KEEP_WINDOWS = 2
# How long Redis remembers which ids it published, so a retried publish
# (a timeout whose command still ran, or two processes sweeping at once)
# never adds a comment twice.
PUBLISHED_MEMORY_MS = 10 * 60 * 1000
# How long the "changed" indexes (which rooms got a stream entry, whose
# settings changed, by Redis time) keep a room after its last change. A
# refresher that has not read for longer reads every room instead.
CHANGED_MEMORY_MS = 10 * 60 * 1000
# What a send with a client_id was told is kept this long (danmaku.limits),
# so a retry is answered from Redis without charging any limit or reading
# the database. Clients retry within seconds; later copies still meet the
# first one's row at the write. About 100 bytes each: 12 MB at 400 sends/s.
ANSWER_TTL_MS = 5 * 60 * 1000
# Read the indexes from this long before the previous read: covers a Redis
# clock that stepped back a little. Costs nothing but a few extra rooms read.
CHANGED_MARGIN_MS = 2000
# Every this often a refresher reads every active room's stream and settings
# regardless of the indexes: a safety net for a change that reached Redis
# without its index entry (a publisher running older code during a deploy),
# and how a room whose settings key vanished is noticed and republished.
FULL_READ_SECONDS = 30.0
# Rooms saved since a previous read, looking back this much further:
# ``updated_at`` comes from the clock of whichever process saved the room.
SETTINGS_SAVE_SKEW = timedelta(seconds=60)


class StoreUnavailable(Exception):
    """The store could not be reached in time; take the fallback."""


@dataclass
class RoomRef:
    room_id: int
    slug: str


@dataclass
class Batch:
    """What one read of the store returned."""

    now_ms: int
    epoch: int
    items: dict[int, list[Item]] = field(default_factory=lambda: defaultdict(list))
    # (id, when it was retracted in ms) per room.
    retracted: dict[int, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))
    # Comments unhidden, per room, to be put back on screens.
    restored: dict[int, list[Item]] = field(default_factory=lambda: defaultdict(list))
    # Room settings rows by room id; None when this read did not include them.
    rooms: dict[int, dict] | None = None
    # Whether ``rooms`` holds every room asked for (a room absent from it is
    # gone), or only the rooms whose settings changed.
    all_rooms: bool = True
    # Rooms whose read stopped at a count limit: seal them only up to the
    # second before the last entry read (room id -> that entry's ms).
    partial: dict[int, int] = field(default_factory=dict)


def room_row_from_model(room: Room) -> dict:
    return {name: getattr(room, name) for name in ROOM_FIELDS}


def settings_version(row: dict) -> int:
    updated = row["updated_at"]
    if isinstance(updated, (int, float)):
        return int(updated)
    return int(updated.timestamp() * 1_000_000)


def item_from_row(row: dict) -> Item:
    return Item(
        id=row["id"],
        ts_ms=row["ts_ms"],
        color=row["color"],
        mode=row["mode"],
        user=row["user_id"],
        nick=display_nick(row["user__viewer_profile__nickname"], row["user__username"]),
        avatar=avatar_url(row.get("user__viewer_profile__avatar_thumb")),
        text=row["text"],
    )


class DatabaseStore:
    """The Danmaku table as the store. ``epoch`` never changes: the table
    keeps its history."""

    epoch = 1

    def __init__(self, *, monotonic=time.monotonic) -> None:
        self._monotonic = monotonic
        self._settings_read_at: datetime | None = None
        self._next_full_settings_read = 0.0

    def now_ms(self) -> int:
        """This host's clock (``infra.clock``): it stamps the rows read here."""
        return host_now_ms()

    def read(self, rooms: list[RoomRef], since_ms: int) -> Batch:
        """Items and retractions since ``since_ms`` and the rooms' settings.

        Rows can commit out of timestamp order, so callers pass a ``since_ms``
        that overlaps their previous read; the ring drops ids it already has.
        """
        batch = Batch(now_ms=self.now_ms(), epoch=self.epoch)
        room_ids = [room.room_id for room in rooms]
        if not room_ids:
            batch.rooms = {}
            return batch
        batch.rooms, batch.all_rooms = self._room_settings(room_ids)
        self._read_into(batch, room_ids, since_ms)
        return batch

    def _room_settings(self, room_ids: list[int]) -> tuple[dict[int, dict], bool]:
        """Every asked room's settings every ``FULL_READ_SECONDS`` (a room
        missing then is gone), and in between only rooms saved since the
        previous read: with 1,000 active rooms, reading and converting all of
        them was most of a tick."""
        started = timezone.now()
        full = self._settings_read_at is None or self._monotonic() >= self._next_full_settings_read
        if full:
            rows = Room.objects.filter(id__in=room_ids).values(*ROOM_FIELDS)
        else:
            wanted = set(room_ids)
            saved = Room.objects.filter(updated_at__gte=self._settings_read_at - SETTINGS_SAVE_SKEW)
            rows = [row for row in saved.values(*ROOM_FIELDS) if row["id"] in wanted]
        settings_rows = {row["id"]: row for row in rows}
        self._settings_read_at = started
        if full:
            self._next_full_settings_read = self._monotonic() + FULL_READ_SECONDS
        return settings_rows, full

    def backfill(self, room: RoomRef, from_ms: int) -> Batch:
        batch = Batch(now_ms=self.now_ms(), epoch=self.epoch)
        # A backfill reads every published row of the window: a restored
        # comment is among them.
        self._read_into(batch, [room.room_id], from_ms, restored=False)
        return batch

    def _read_into(self, batch: Batch, room_ids: list[int], since_ms: int, *, restored: bool = True) -> None:
        in_rooms = _room_id_in(room_ids)
        rows = (
            # Comments on a recording share the table, never the stream.
            Danmaku.objects.filter(ts_ms__gte=since_ms, status=Danmaku.Status.PUBLISHED, broadcast__isnull=True)
            .extra(where=[in_rooms])
            .order_by("ts_ms", "id")
            .values(*ITEM_FIELDS)
        )
        for row in rows:
            batch.items[row["room_id"]].append(item_from_row(row))
        retracted = (
            Danmaku.objects.filter(retracted_at_ms__gte=since_ms, broadcast__isnull=True)
            .extra(where=[in_rooms])
            .values_list("room_id", "id", "retracted_at_ms")
        )
        for room_id, danmaku_id, at_ms in retracted:
            batch.retracted[room_id].append((danmaku_id, at_ms))
        if not restored:
            return
        # Across all rooms, those not served here dropped: restores are few,
        # and a list of 10,000 room ids costs more than reading them all.
        wanted = set(room_ids)
        rows = (
            Danmaku.objects.filter(
                restored_at_ms__gte=since_ms, status=Danmaku.Status.PUBLISHED, broadcast__isnull=True
            )
            .order_by("restored_at_ms")
            .values(*ITEM_FIELDS)[:RESTORED_READ_LIMIT]
        )
        for row in rows:
            if row["room_id"] in wanted:
                batch.restored[row["room_id"]].append(item_from_row(row))


def _room_id_in(room_ids: list[int]) -> str:
    """``room_id IN (...)`` for the Danmaku table, the ids written out.

    Django's ``room_id__in`` prepares each id through the foreign key one by
    one: with 10,000 active rooms, two such lists were most of a refresher
    tick. The ids are the rings' own room ids, made integers here, so
    nothing from outside reaches the SQL.
    """
    column = f"{connection.ops.quote_name(Danmaku._meta.db_table)}.{connection.ops.quote_name('room_id')}"
    return f"{column} IN ({','.join(str(int(room_id)) for room_id in room_ids)})"


# Publishes one comment unless this id was published recently (KEYS: the
# stream, the room's published-ids set, the streams-changed index, and a
# send's answer key or any other key when there is none; ARGV: id, keep-ms,
# trim-ms, room id, changed-keep-ms, the answer ("" for none), its keep-ms,
# then the entry's field/value pairs). Returns the entry's Redis time in ms
# (its stream id's), or the negative of the time it was first published if
# it already was. The index entry is written in the same script as the
# stream entry, so a reader that sees one sees the other; the answer is
# kept either way, what copies of the send are told.
PUBLISH_LUA = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
if ARGV[6] ~= '' then
  redis.call('SET', KEYS[4], ARGV[6], 'PX', ARGV[7])
end
local seen = redis.call('ZSCORE', KEYS[2], ARGV[1])
if seen then
  return -tonumber(seen)
end
local minid = tostring(now_ms - tonumber(ARGV[3])) .. '-0'
local id = redis.call('XADD', KEYS[1], 'MINID', '~', minid, '*', unpack(ARGV, 8))
-- The entry's own id decides its second: XADD reads the clock again (a
-- millisecond may have passed since TIME) and never goes below the
-- stream's last id, so the comment's time is taken from the id.
now_ms = tonumber(string.match(id, '^(%d+)'))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
redis.call('ZADD', KEYS[2], now_ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]))
redis.call('ZADD', KEYS[3], now_ms, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now_ms - tonumber(ARGV[5]))
return now_ms
"""

# Stores a room's settings blob if it differs from the stored one, and then
# notes the room in the settings-changed index (KEYS: the room's key, the
# index; ARGV: the blob, the slug, changed-keep-ms). Returns 1 if it changed.
# Republishing an unchanged room costs readers nothing.
PUBLISH_ROOM_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return 0
end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], now_ms, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms - tonumber(ARGV[3]))
return 1
"""


class RedisStore:
    """Streams in Redis.

    A read costs one round trip when nothing changed, two when something
    did, and only the rooms that changed are read: every publish notes its
    room in an index by Redis time, so the refresher asks the index what
    changed since its previous read instead of reading every active room.
    """

    def __init__(
        self, client_factory, *, prefix: str, window_seconds: int, clock=time.monotonic, hot_client_factory=None
    ) -> None:
        self._client_factory = client_factory
        # Publishes (one a send): the calling thread's own connection, if given.
        self._hot_client = hot_client_factory or client_factory
        self.prefix = prefix
        self.window_ms = window_seconds * 1000
        self._clock = clock
        # Last stream id read per room: a stream never reorders, so no overlap.
        self._positions: dict[int, str] = {}
        self.epoch = 0
        self._publish = None
        self._publish_room = None
        # Redis time of the previous successful read; None: read everything.
        self._last_read_ms: int | None = None
        # Rooms whose previous read stopped at STREAM_READ_COUNT.
        self._unfinished: set[int] = set()
        self._next_full_read = 0.0

    # -- keys ---------------------------------------------------------------

    def stream_key(self, room_id: int) -> str:
        return f"{self.prefix}:s:{room_id}"

    def published_key(self, room_id: int) -> str:
        return f"{self.prefix}:pub:{room_id}"

    def room_key(self, slug: str) -> str:
        return f"{self.prefix}:room:{slug}"

    @property
    def epoch_key(self) -> str:
        return f"{self.prefix}:epoch"

    @property
    def streams_changed_key(self) -> str:
        return f"{self.prefix}:changed:s"

    @property
    def rooms_changed_key(self) -> str:
        return f"{self.prefix}:changed:room"

    @property
    def client(self) -> redis.Redis:
        return self._client_factory()

    # -- reading (the refresher) --------------------------------------------

    def read(self, rooms: list[RoomRef], since_ms: int) -> Batch:
        """New entries of ``rooms``, and the settings of those whose settings changed.

        Every entry stamped before the batch's ``now_ms`` is in it (or was in
        an earlier batch): the indexes and ``now_ms`` come from one
        transaction, and a room's stream is read after its index entry.
        """
        if not rooms:
            return Batch(now_ms=host_now_ms(), epoch=self.epoch, rooms={})
        with _unavailable_on_error("read", probe=True):
            full = self._last_read_ms is None or self._clock() >= self._next_full_read
            threshold = 0 if self._last_read_ms is None else self._last_read_ms - CHANGED_MARGIN_MS
            pipe = self.client.pipeline(transaction=True)
            pipe.time()
            pipe.get(self.epoch_key)
            pipe.zrangebyscore(self.streams_changed_key, threshold, "+inf")
            pipe.zrangebyscore(self.rooms_changed_key, threshold, "+inf")
            now, epoch_raw, streams_changed, rooms_changed = pipe.execute()
            now_ms = _time_ms(now)
            epoch_before = self.epoch
            batch = Batch(now_ms=now_ms, epoch=self._epoch(epoch_raw), rooms={}, all_rooms=True)
            if epoch_before != batch.epoch or now_ms - threshold > CHANGED_MEMORY_MS:
                # The indexes cannot say what changed since then.
                full = True
            if full:
                stream_rooms, setting_rooms = rooms, rooms
            else:
                stream_rooms, setting_rooms = self._changed(rooms, streams_changed, rooms_changed)
                batch.all_rooms = False
            if stream_rooms or setting_rooms:
                self._read_changed(batch, stream_rooms, setting_rooms, since_ms)
            self._last_read_ms = now_ms
            if full:
                self._next_full_read = self._clock() + FULL_READ_SECONDS
            return batch

    def _changed(self, rooms: list[RoomRef], streams_changed, rooms_changed) -> tuple[list[RoomRef], list[RoomRef]]:
        """The rooms whose stream or settings may hold something unread."""
        stream_ids = {int(member) for member in streams_changed}
        stream_ids |= self._unfinished
        positions = self._positions
        stream_rooms = [r for r in rooms if r.room_id in stream_ids or r.room_id not in positions]
        setting_rooms = []
        if rooms_changed:
            slugs = {_text(member) for member in rooms_changed}
            setting_rooms = [r for r in rooms if r.slug in slugs]
        return stream_rooms, setting_rooms

    def _read_changed(
        self, batch: Batch, stream_rooms: list[RoomRef], setting_rooms: list[RoomRef], since_ms: int
    ) -> None:
        # No transaction: the batch's now_ms is already fixed, and anything
        # this read sees beyond it is simply placed in a later second.
        pipe = self.client.pipeline(transaction=False)
        if setting_rooms:
            pipe.mget([self.room_key(room.slug) for room in setting_rooms])
        if stream_rooms:
            pipe.xread(
                {self.stream_key(room.room_id): self._position(room.room_id, since_ms) for room in stream_rooms},
                count=STREAM_READ_COUNT,
            )
        replies = pipe.execute()
        if setting_rooms:
            for raw in replies.pop(0):
                if raw:
                    row = json.loads(raw)
                    batch.rooms[row["id"]] = row
        if not stream_rooms:
            return
        positions = self._positions
        for room in stream_rooms:
            if room.room_id not in positions:
                # Nothing after this position existed when the stream was
                # read: from now on the index says when there is.
                positions[room.room_id] = f"{max(since_ms, 0)}-0"
        self._unfinished.clear()
        for key, entries in replies[0] or ():
            room_id = int(_text(key).rsplit(":", 1)[1])
            self._apply_entries(batch, room_id, entries)
            if len(entries) >= STREAM_READ_COUNT:
                batch.partial[room_id] = int(self._positions[room_id].split("-", 1)[0])
                self._unfinished.add(room_id)

    def backfill(self, room: RoomRef, from_ms: int) -> Batch:
        with _unavailable_on_error("backfill"):
            pipe = self.client.pipeline(transaction=True)
            pipe.time()
            pipe.get(self.epoch_key)
            pipe.xrange(self.stream_key(room.room_id), min=f"{max(from_ms, 0)}-0", max="+")
            now, epoch_raw, entries = pipe.execute()
            batch = Batch(now_ms=_time_ms(now), epoch=self._epoch(epoch_raw))
            self._positions[room.room_id] = f"{max(from_ms, 0)}-0"
            self._apply_entries(batch, room.room_id, entries)
            return batch

    def forget(self, room_id: int) -> None:
        self._positions.pop(room_id, None)
        self._unfinished.discard(room_id)

    def _position(self, room_id: int, since_ms: int) -> str:
        position = self._positions.get(room_id)
        return position if position is not None else f"{max(since_ms, 0)}-0"

    def _apply_entries(self, batch: Batch, room_id: int, entries) -> None:
        for entry_id, fields in entries:
            entry_id = _text(entry_id)
            self._positions[room_id] = entry_id
            data = _fields(fields)
            kind = data.get("k")
            if kind == "d":
                batch.retracted[room_id].append((int(data["id"]), int(entry_id.split("-", 1)[0])))
                continue
            ts_ms = int(data["ts"]) if data.get("ts") else int(entry_id.split("-", 1)[0])
            (batch.restored if kind == "r" else batch.items)[room_id].append(
                Item(
                    id=int(data["id"]),
                    ts_ms=ts_ms,
                    color=int(data["c"]),
                    mode=int(data["o"]),
                    user=int(data["u"]),
                    nick=data["n"],
                    avatar=data["a"],
                    text=data["t"],
                )
            )

    def _epoch(self, raw) -> int:
        """The store's epoch; a Redis that lost its data gets a new one."""
        if raw is None:
            candidate = random.randrange(1, 2**40)
            self.client.set(self.epoch_key, candidate, nx=True)
            raw = self.client.get(self.epoch_key)
        epoch = int(raw)
        if self.epoch and epoch != self.epoch:
            logger.warning(
                "store epoch changed (%s -> %s): Redis lost its data; old cursors read as gaps", self.epoch, epoch
            )
            self._positions.clear()
        self.epoch = epoch
        return epoch

    # -- writing (the send path and the sweep) ------------------------------

    def publish(self, danmaku: Danmaku, *, nick: str, avatar: str, original_ts: bool = False, answer=None) -> int:
        """Add the comment to its room's stream (once); returns its Redis time.

        ``original_ts`` keeps the comment's own timestamp (a republish after
        an outage), so rings that already showed it from the database know it.
        ``answer`` (key, value): set too, in the same round trip, for
        ``ANSWER_TTL_MS`` (what copies of the send are told, ``danmaku.limits``).
        """
        fields = _comment_fields("m", danmaku, nick=nick, avatar=avatar)
        if original_ts:
            fields["ts"] = danmaku.ts_ms
        return abs(self._run_publish(danmaku.room_id, danmaku.id, fields, answer=answer))

    def published_ids(self, comments: list[tuple[int, int]]) -> set[int]:
        """Of these (room id, comment id), those already on their streams: one round trip."""
        by_room: dict[int, list[int]] = {}
        for room_id, danmaku_id in comments:
            by_room.setdefault(room_id, []).append(danmaku_id)
        with _unavailable_on_error("published_ids"):
            pipe = self.client.pipeline(transaction=False)
            for room_id, ids in by_room.items():
                pipe.zmscore(self.published_key(room_id), ids)
            replies = pipe.execute()
        found = set()
        for ids, scores in zip(by_room.values(), replies, strict=True):
            found.update(danmaku_id for danmaku_id, score in zip(ids, scores, strict=True) if score is not None)
        return found

    def publish_retraction(self, *, room_id: int, danmaku_id: int) -> None:
        self._run_publish(room_id, f"d{danmaku_id}", {"k": "d", "id": danmaku_id})

    def publish_restore(self, danmaku: Danmaku, *, nick: str, avatar: str) -> None:
        """Put an unhidden comment back on its room's screens (with its own
        timestamp); each restore once, however often it is retried."""
        fields = {**_comment_fields("r", danmaku, nick=nick, avatar=avatar), "ts": danmaku.ts_ms}
        self._run_publish(danmaku.room_id, f"r{danmaku.id}:{danmaku.restored_at_ms}", fields)

    def publish_room(self, row: dict) -> None:
        self.publish_rooms([row])

    def publish_rooms(self, rows) -> int:
        """Store each room's settings where they changed; returns how many did."""
        with _unavailable_on_error("publish_rooms"):
            if self._publish_room is None:
                self._publish_room = self.client.register_script(PUBLISH_ROOM_LUA)
            pipe = self.client.pipeline(transaction=False)
            for row in rows:
                payload = dict(row)
                payload["updated_at"] = settings_version(row)
                self._publish_room(
                    keys=[self.room_key(row["slug"]), self.rooms_changed_key],
                    args=[json.dumps(payload), row["slug"], CHANGED_MEMORY_MS],
                    client=pipe,
                )
            return sum(pipe.execute())

    # -- audience (danmaku.delivery) -----------------------------------------

    def viewers_key(self, window: int) -> str:
        return f"{self.prefix}:viewers:{window}"

    def add_viewers(self, window: int, counts: dict[int, int], *, keep_seconds: int) -> None:
        """Add one process's viewers per room to the window's cluster-wide tally."""
        if not counts:
            return
        with _unavailable_on_error("add_viewers"):
            key = self.viewers_key(window)
            pipe = self.client.pipeline(transaction=False)
            for room_id, count in counts.items():
                pipe.hincrby(key, room_id, count)
            pipe.expire(key, keep_seconds)
            pipe.execute()

    def viewers(self, window: int, room_ids: list[int] | None = None) -> dict[int, int]:
        """The window's tally: viewers per room over every process that added."""
        with _unavailable_on_error("viewers"):
            key = self.viewers_key(window)
            if room_ids is None:
                raw = self.client.hgetall(key)
                return {int(room): int(count) for room, count in raw.items()}
            values = self.client.hmget(key, room_ids) if room_ids else []
            return {room: int(value) for room, value in zip(room_ids, values, strict=True) if value is not None}

    def room_row(self, slug: str) -> dict | None:
        """A room's settings as last published (used while the database is down)."""
        with _unavailable_on_error("room_row"):
            raw = self.client.get(self.room_key(slug))
        return json.loads(raw) if raw else None

    def now_ms(self) -> int:
        """This host's clock (``infra.clock``); batches carry Redis time."""
        return host_now_ms()

    def _run_publish(self, room_id: int, member, fields: dict, answer=None) -> int:
        stream_key = self.stream_key(room_id)
        answer_key, answer_value = answer if answer is not None else (stream_key, "")
        args = [member, PUBLISHED_MEMORY_MS, self.window_ms * STREAM_KEEP_WINDOWS, room_id, CHANGED_MEMORY_MS]
        args += [answer_value, ANSWER_TTL_MS]
        for name, value in fields.items():
            args.extend((name, _plain(value)))
        keys = [stream_key, self.published_key(room_id), self.streams_changed_key, answer_key]
        with _unavailable_on_error("publish"):
            client = self._hot_client()  # connects, for a new thread
            if self._publish is None:
                self._publish = client.register_script(PUBLISH_LUA)
            return int(evalsha(client, self._publish, keys, args))


def _comment_fields(kind: str, danmaku: Danmaku, *, nick: str, avatar: str) -> dict:
    """A comment as a stream entry (``k``: "m" a comment, "r" a restore)."""
    return {
        "k": kind,
        "id": danmaku.id,
        "u": danmaku.user_id,
        "n": nick,
        "a": avatar,
        "c": danmaku.color,
        "o": danmaku.mode,
        "t": danmaku.text,
    }


class _unavailable_on_error:
    """Turn any Redis failure into ``StoreUnavailable``, and skip Redis at
    once while the shared breaker is open (a recent call failed)."""

    def __init__(self, what: str, *, probe: bool = False) -> None:
        self.what = what
        # A probe (the refresher's read) tries Redis even with the breaker open.
        self.probe = probe

    def __enter__(self):
        if not self.probe and not breaker.allows():
            raise StoreUnavailable(f"redis {self.what}: skipped, Redis failed moments ago")
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None:
            breaker.succeeded()
            return False
        if isinstance(exc, redis.RedisError):
            breaker.failed()
            raise StoreUnavailable(f"redis {self.what}: {exc}") from exc
        return False


def _time_ms(value) -> int:
    seconds, micros = value
    return int(seconds) * 1000 + int(micros) // 1000


def _plain(value):
    """``value`` as a plain str or int: hiredis packs nothing else (an
    IntegerChoices member, say), where redis-py's own packer took subclasses."""
    if type(value) in (str, int):
        return value
    return int(value) if isinstance(value, int) else str(value)


def _fields(raw: dict) -> dict[str, str]:
    try:
        return {k.decode(): v.decode() for k, v in raw.items()}
    except AttributeError:
        # A client that decodes replies itself.
        return {str(k): str(v) for k, v in raw.items()}


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_database_store: DatabaseStore | None = None
_redis_store: RedisStore | None = None


def database_store() -> DatabaseStore:
    global _database_store
    if _database_store is None:
        _database_store = DatabaseStore()
    return _database_store


def redis_store() -> RedisStore | None:
    """The Redis store when REDIS_URL is configured, else None."""
    global _redis_store
    if not settings.REDIS_URL:
        return None
    if _redis_store is None:
        _redis_store = RedisStore(
            get_redis,
            prefix=settings.DANMAKU_REDIS_PREFIX,
            window_seconds=settings.DANMAKU_WINDOW_SECONDS,
            hot_client_factory=thread_redis,
        )
    return _redis_store


def reset_stores() -> None:
    global _database_store, _redis_store
    _database_store = None
    _redis_store = None
