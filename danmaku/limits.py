"""Send limits: slow mode per (room, user), then a cap per room and second.

``take_send()`` is the one entry point. It first claims the user's slow-mode
slot; a user who must wait is told how long and does not count against the
room. Then it counts the send against the room's cap for the current second.

A copy of a send (a client retrying, or a double click; same ``client_id``)
is never charged and never gets a 429. With Redis, each send's answer is
kept under its ``client_id`` (``answer_key``): the script hands a copy what
the first was told ("on its way", "discarded", or the stored comment) before
touching any limit, and the send path answers from it without reading the
database. The other backends keep the ``client_id`` of the send holding the
slow-mode slot, and a copy gets that send's allowance again: it goes on to
the write, where the unique ``client_id`` makes it answer with the first
copy's comment (``danmaku.send``).

Fair share: in a room whose cap was full the second before, a user whose
slow mode is under a second takes at most one place per second, so the
fastest sender cannot take a capped room's places (Redis only; the other
backends serve one process or an outage).

Backends, chosen by configuration:

- REDIS_URL set: the answer look-up and both checks run in one Lua script,
  so one atomic round trip decides them (and returns Redis time, the
  comment's timestamp); the limits are exact across every process and node. Slow
  mode is a key with a PX of the interval (its PTTL is the wait);
  the room cap counts per second of Redis server time (``TIME`` inside the
  script), so nodes with skewed clocks still agree on "this second". Every key
  expires, so nothing accumulates.
- REDIS_URL set but Redis failing (down, frozen, timing out): each call costs
  at most one client timeout (REDIS_TIMEOUT_MS) and then falls back to limits
  kept in this process's memory. That fallback is per process: with N
  processes serving sends, a room may accept up to N times its cap per second
  and a user may send once per process per interval while Redis is down. That
  is the right trade: a comment service that refuses every send because its
  rate limiter is unreachable fails its users worse than one that briefly
  lets a few more comments through, and the cap still bounds the flood (the
  pull side caps what is shown per room anyway). Counts taken in memory are
  not carried back to Redis when it returns.
- No REDIS_URL (the embedded default): counters in the database
  (``SendWindow``), moved with conditional UPDATEs so concurrent workers
  cannot both take the last place.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass, field

import redis
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from redis.commands.core import Script

from danmaku.models import SendWindow
from danmaku.store import ANSWER_TTL_MS
from infra.metrics import FALLBACKS
from infra.ratelimitlog import RateLimitedLog
from infra.redis import breaker, evalsha, get_redis, thread_redis

logger = logging.getLogger(__name__)

# The room-cap key only matters during its own second; two seconds lets a
# send that straddles the boundary still find it, then it is gone.
CAP_KEY_TTL_MS = 2000
# Slow mode this short lets a user send twice within one second; in a room
# at its cap such a user then takes at most one place per second (the
# fair-share rule, docs/architecture.md). Longer slow modes already do.
FAIR_SHARE_BELOW_MS = 1000
# While Redis is failing every send falls back; one warning per this long
# says so without a log line per request.
FALLBACK_WARNING_EVERY_SECONDS = 10
# Slow-mode entries one process keeps while Redis is down: up to ~350 bytes
# each with a 64-character client_id, so at most ~35 MB. Beyond it the
# oldest entry goes (that user may send early).
FALLBACK_MAX_USERS = 100_000
# SendWindow.user_id for the room-wide counter; real user ids start at 1.
ROOM_ROW = 0


@dataclass(frozen=True)
class Allowance:
    """``retry_after_ms`` > 0: slow mode, retry then. ``room_busy``: the room's cap is full.

    From Redis also ``now_ms``, its time (the comment's timestamp), and
    ``answer``: what a copy of this send was told (``client_id``), uncharged:
    "p" it is on its way (go on to the write), "b" the room's cap discarded
    it, "d:<id>:<status>" it was stored.
    """

    retry_after_ms: int = 0
    room_busy: bool = False
    # Not part of the verdict: two allowances alike but for the time are equal.
    now_ms: int | None = field(default=None, compare=False)
    answer: str | None = None


def take_send(
    *, room_id: int, user_id: int, interval_ms: int, cap_per_second: int, now_ms: int, client_id: str = ""
) -> Allowance:
    """Charge one send to the user's slow mode and then to the room's cap.

    ``interval_ms <= 0`` turns slow mode off. ``now_ms`` is the caller's clock;
    the Redis backend ignores it and uses Redis server time. ``client_id``
    (empty: none): a send with the same one as the send holding the slot gets
    that send's allowance, uncharged.
    """
    claim = dict(
        room_id=room_id, user_id=user_id, interval_ms=interval_ms, cap_per_second=cap_per_second, client_id=client_id
    )
    if not settings.REDIS_URL:
        return _take_db(**claim, now_ms=now_ms)
    try:
        if not breaker.allows():
            raise redis.ConnectionError("skipped: Redis failed moments ago")
        verdict = _take_redis(**claim)
        breaker.succeeded()
        return verdict
    except redis.RedisError as exc:
        breaker.failed()
        FALLBACKS.labels(dependency="redis", where="limits").inc()
        _fallback_log.warning("send limits: Redis unavailable (%s); this process enforces them alone", exc)
        return _fallback.take(**claim, now_ms=now_ms)


def remembers_answers() -> bool:
    """Whether ``take_send`` will hand a copy of a send its first answer
    (Redis answering); else the caller looks in the database first."""
    return bool(settings.REDIS_URL) and breaker.allows()


def remember_answer(key: str, value: str) -> None:
    """Keep what a send was told for its copies (see ``answer_key``); best
    effort: without it a copy still meets the first one's row at the write."""
    try:
        get_redis().set(key, value, px=ANSWER_TTL_MS)
    except redis.RedisError as exc:
        _fallback_log.warning("send answer not kept, Redis unavailable: %s", exc)


# -- Redis ------------------------------------------------------------------------

# KEYS: the user's slow-mode key, the room's cap key (a hash: the second
# being counted, its count, and whether the second before it was full), the
# send's answer key, the user's fair-share key. ARGV: interval ms, cap per
# second, cap key TTL ms, client_id ("" for none), answer TTL ms, "1" when
# the fair-share rule applies. Returns {retry_after_ms, room_busy, Redis
# time ms, answer}: answer is what a copy of this send (same client_id)
# was told, "" when none came first. The keys share the room's hash tag, so
# this also runs on a cluster.
_LUA = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local client_id = ARGV[4]
if client_id ~= '' then
  local answer = redis.call('GET', KEYS[3])
  if answer then return {0, 0, now_ms, answer} end
end
local interval = tonumber(ARGV[1])
if interval > 0 then
  local wait = redis.call('PTTL', KEYS[1])
  if wait > 0 then return {wait, 0, now_ms, ''} end
end
local second = t[1]
local cap = tonumber(ARGV[2])
local counted = redis.call('HMGET', KEYS[2], 'second', 'count', 'full')
local count = 0
local full_before = false
if counted[1] == second then
  count = tonumber(counted[2])
  full_before = counted[3] == '1'
elseif counted[1] and tonumber(counted[1]) == tonumber(second) - 1 then
  full_before = tonumber(counted[2]) >= cap
end
local busy = count >= cap
local fair = full_before and ARGV[6] == '1'
if fair and not busy and redis.call('GET', KEYS[4]) == second then
  busy = true
end
if not busy then
  redis.call('HSET', KEYS[2], 'second', second, 'count', count + 1, 'full', full_before and '1' or '0')
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  if fair then redis.call('SET', KEYS[4], second, 'PX', ARGV[3]) end
end
if interval > 0 then
  redis.call('SET', KEYS[1], '1', 'PX', interval)
end
if client_id ~= '' then
  redis.call('SET', KEYS[3], busy and 'b' or 'p', 'PX', ARGV[5])
end
return {0, busy and 1 or 0, now_ms, ''}
"""


@functools.lru_cache(maxsize=4)
def _script(client: redis.Redis) -> Script:
    # EVALSHA, loading the script on NOSCRIPT (a new or restarted server).
    return client.register_script(_LUA)


def _keys(room_id: int, user_id: int, client_id: str) -> tuple[str, str, str, str]:
    prefix = settings.DANMAKU_REDIS_PREFIX
    return (
        f"{prefix}:slow:{{{room_id}}}:{user_id}",
        f"{prefix}:cap:{{{room_id}}}",
        answer_key(room_id=room_id, user_id=user_id, client_id=client_id),
        f"{prefix}:fair:{{{room_id}}}:{user_id}",
    )


def answer_key(*, room_id: int, user_id: int, client_id: str) -> str:
    """Where the answer to a send with this ``client_id`` is kept (Redis)."""
    return f"{settings.DANMAKU_REDIS_PREFIX}:answer:{{{room_id}}}:{user_id}:{client_id}"


def answer_value(*, danmaku_id: int, status: str) -> str:
    return f"d:{danmaku_id}:{status}"


def _take_redis(*, room_id: int, user_id: int, interval_ms: int, cap_per_second: int, client_id: str) -> Allowance:
    # Every send's one command: this thread's own connection (no pool checkout).
    client = thread_redis()
    fair = "1" if interval_ms < FAIR_SHARE_BELOW_MS else "0"
    args = (interval_ms, cap_per_second, CAP_KEY_TTL_MS, client_id, ANSWER_TTL_MS, fair)
    script = _script(get_redis())  # registered once per process, run on this thread's connection
    retry_after_ms, busy, now_ms, answer = evalsha(client, script, _keys(room_id, user_id, client_id), args)
    answer = answer.decode() if isinstance(answer, bytes) else answer
    return Allowance(
        retry_after_ms=int(retry_after_ms),
        # A copy of a discarded send is told the same, on every backend.
        room_busy=bool(busy) or answer == "b",
        now_ms=int(now_ms),
        answer=answer or None,
    )


# -- In-process fallback ------------------------------------------------------------


class _InProcessLimits:
    """The same two checks in this process's memory, under one lock."""

    def __init__(self, max_users: int = FALLBACK_MAX_USERS) -> None:
        self._lock = threading.Lock()
        self._max_users = max_users
        # (room, user) -> (may send again at, client_id that took the slot, room was busy)
        self._slots: dict[tuple[int, int], tuple[int, str, bool]] = {}
        self._rooms: dict[int, tuple[int, int]] = {}  # room -> (second, count)
        self._pruned_second = 0

    def take(
        self, *, room_id: int, user_id: int, interval_ms: int, cap_per_second: int, now_ms: int, client_id: str = ""
    ) -> Allowance:
        second = now_ms // 1000
        with self._lock:
            if second > self._pruned_second:
                self._prune(now_ms)
            key = (room_id, user_id)
            if interval_ms > 0:
                held = self._slots.pop(key, None)
                if held is not None and held[0] > now_ms:
                    self._slots[key] = held
                    if client_id and held[1] == client_id:
                        return Allowance(room_busy=held[2])
                    return Allowance(retry_after_ms=held[0] - now_ms)
                if len(self._slots) >= self._max_users:
                    del self._slots[next(iter(self._slots))]
            counted_second, count = self._rooms.get(room_id, (second, 0))
            if counted_second != second:
                count = 0
            busy = count >= cap_per_second
            if not busy:
                self._rooms[room_id] = (second, count + 1)
            if interval_ms > 0:
                self._slots[key] = (now_ms + interval_ms, client_id, busy)
            return Allowance(room_busy=busy)

    def _prune(self, now_ms: int) -> None:
        # Once a second: drop waits that are over and counts of past seconds.
        self._pruned_second = now_ms // 1000
        self._slots = {key: held for key, held in self._slots.items() if held[0] > now_ms}
        self._rooms.clear()


_fallback = _InProcessLimits()
_fallback_log = RateLimitedLog(logger, every_seconds=FALLBACK_WARNING_EVERY_SECONDS)


# -- Database (no Redis configured) --------------------------------------------------


def _take_db(
    *, room_id: int, user_id: int, interval_ms: int, cap_per_second: int, now_ms: int, client_id: str
) -> Allowance:
    # One transaction: a copy of this send reading the slot sees it with the
    # room cap's verdict, never in between.
    with transaction.atomic():
        held = _db_user_slot(
            room_id=room_id, user_id=user_id, interval_ms=interval_ms, now_ms=now_ms, client_id=client_id
        )
        if held is not None:
            return held
        busy = not _db_room_slot(room_id=room_id, cap_per_second=cap_per_second, now_ms=now_ms)
        if busy and interval_ms > 0:
            SendWindow.objects.filter(room_id=room_id, user_id=user_id).update(count=1)
        return Allowance(room_busy=busy)


def _db_user_slot(*, room_id: int, user_id: int, interval_ms: int, now_ms: int, client_id: str) -> Allowance | None:
    """Claim the user's next send: None if claimed, else this send's answer
    (the wait, or the first copy's allowance when ``client_id`` holds the slot)."""
    if interval_ms <= 0:
        return None
    rows = SendWindow.objects.filter(room_id=room_id, user_id=user_id)
    mark = now_ms + interval_ms
    for _ in range(2):
        if rows.filter(mark__lte=now_ms).update(mark=mark, count=0, client_id=client_id):
            return None
        if _create(room_id=room_id, user_id=user_id, mark=mark, count=0, client_id=client_id):
            return None
        held = rows.values_list("mark", "client_id", "count").first()
        if held is not None and held[0] > now_ms:
            if client_id and held[1] == client_id:
                return Allowance(room_busy=bool(held[2]))
            return Allowance(retry_after_ms=held[0] - now_ms)
    return Allowance(retry_after_ms=interval_ms)


def _db_room_slot(*, room_id: int, cap_per_second: int, now_ms: int) -> bool:
    """Count one send against the room's cap for this second; False if full."""
    if cap_per_second <= 0:
        return False
    second = now_ms // 1000
    rows = SendWindow.objects.filter(room_id=room_id, user_id=ROOM_ROW)
    for _ in range(2):
        if rows.filter(mark=second, count__lt=cap_per_second).update(count=F("count") + 1):
            return True
        if rows.filter(mark__lt=second).update(mark=second, count=1):
            return True
        if _create(room_id=room_id, user_id=ROOM_ROW, mark=second, count=1):
            return True
        # A concurrent send stamped a moment later already moved the row on
        # to the next second: this one counts there (it was not refused
        # in its own second, which is over).
        if rows.filter(mark__gt=second, count__lt=cap_per_second).update(count=F("count") + 1):
            return True
        if rows.filter(mark__gte=second, count__gte=cap_per_second).exists():
            return False
    return False


def _create(**fields) -> bool:
    try:
        with transaction.atomic():
            SendWindow.objects.create(**fields)
    except IntegrityError:
        return False
    return True
