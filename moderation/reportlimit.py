"""How many reports one user may file: REPORTS_PER_MINUTE in any 60 s.

A sliding window, not a per-minute counter: a flood straddling a minute's
boundary still gets exactly the limit in every 60 s, never twice it.

Backends, as for the send limits (``danmaku.limits``):

- REDIS_URL set: a sorted set per user of the times (Redis server time) of
  their accepted reports in the last minute; one Lua script trims it,
  counts, and adds this report only when under the limit, so one atomic
  round trip decides across every process and node. A refused report adds
  nothing. The key expires a minute after the last accepted report.
- No REDIS_URL, or Redis failing: the report table itself is the ledger. The
  caller counts the user's reports of the last minute inside the
  transaction that would write the new one, with the user's row locked, so
  two concurrent reports of one user cannot both take the last place. This
  is exact too (reports are rare next to sends, so the database can carry
  it); Redis only keeps a flood's refusals off the database.

A report Redis admitted may still turn out not to be written (a concurrent
copy of it won the unique constraint): it keeps its place in the window;
the limit errs towards refusing a flood, never towards letting one in.
"""

from __future__ import annotations

import functools
import logging
import uuid
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from redis.commands.core import Script

from infra.metrics import FALLBACKS
from infra.ratelimitlog import RateLimitedLog
from infra.redis import breaker, evalsha, get_redis
from moderation.models import Report

logger = logging.getLogger(__name__)
_fallback_log = RateLimitedLog(logger, every_seconds=10)

# A person reading a stream and reporting what they see files a few reports
# in a bad minute; ten leaves room for a raid on screen while keeping one
# account from flooding the moderators' queue (docs/reports.md).
REPORTS_PER_MINUTE = 10
WINDOW_MS = 60_000

# KEYS: the user's window (a sorted set). ARGV: window ms, limit, a unique
# member for this report. Returns 0 when admitted, else the ms until the
# oldest report in the window leaves it.
_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return 0
"""


@functools.lru_cache(maxsize=4)
def _script(client: redis.Redis) -> Script:
    return client.register_script(_LUA)


def window_key(user_id: int) -> str:
    return f"{settings.DANMAKU_REDIS_PREFIX}:reports:{user_id}"


def take_redis(*, user_id: int) -> int | None:
    """Charge one report in Redis: 0 admitted, > 0 the ms to wait, None when
    Redis is not configured or not answering (count in the database instead)."""
    if not settings.REDIS_URL:
        return None
    try:
        if not breaker.allows():
            raise redis.ConnectionError("skipped: Redis failed moments ago")
        client = get_redis()
        wait = evalsha(
            client, _script(client), (window_key(user_id),), (WINDOW_MS, REPORTS_PER_MINUTE, uuid.uuid4().hex)
        )
        breaker.succeeded()
        return int(wait)
    except redis.RedisError as exc:
        breaker.failed()
        FALLBACKS.labels(dependency="redis", where="report_limit").inc()
        _fallback_log.warning("report limit: Redis unavailable (%s); counting in the database", exc)
        return None


def take_database(*, user_id: int, now: datetime) -> int:
    """The same verdict from the report table: 0 admitted, else the ms to wait.
    Call inside the transaction that writes the report: it locks the user's row."""
    get_user_model().objects.select_for_update().filter(pk=user_id).values_list("pk").first()
    since = now - timedelta(milliseconds=WINDOW_MS)
    recent = list(
        Report.objects.filter(reporter_id=user_id, created_at__gt=since)
        .order_by("created_at")
        .values_list("created_at", flat=True)[:REPORTS_PER_MINUTE]
    )
    if len(recent) < REPORTS_PER_MINUTE:
        return 0
    return max(1, int((recent[0] - since).total_seconds() * 1000))
