"""Refresher cost per tick with 10, 1,000 and 10,000 active rooms.

Runs the real ``Refresher.refresh_once()`` in this process, in real time (one
tick per refresh interval, as the background thread does), over rooms that
are all live in the pull cache, while comments arrive at a realistic mix:
``--hot-share`` of the rooms at 15 comments/s, ``--warm-share`` at 1/s, the
rest quiet. Each tick first writes that second's comments (not measured),
then measures with this thread's CPU time what the refresher thread does
each tick: ``refresh_once()`` and the ring gauges (``observe_refresher``).
Both stores also read every room's settings (Redis: and streams) every
``FULL_READ_SECONDS``; that tick is forced once, measured apart and
amortized into the share of a core.

Two modes: ``embedded`` (DatabaseStore on a private SQLite file) and
``redis`` (RedisStore on a private redis-server, with the database as its
fallback, the republish sweep included). Prints ms per tick, the share of
one core at the refresher's interval, and, in Redis mode, Redis's own CPU
(commandstats) for the refresher's reads.

    .venv/bin/python bench/refresher.py                      # both modes, 10/1000/10000 rooms
    .venv/bin/python bench/refresher.py --modes redis --rooms 10000 --ticks 5 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Comments per second in a hot and a warm room.
HOT_RATE = 15
WARM_RATE = 1
# Ticks run before measuring: the first reads each room's whole window.
WARMUP_TICKS = 2
# The refresher's own Redis work (the writer's EVALSHA is left out).
REFRESHER_COMMANDS = ("time", "get", "mget", "xread", "multi", "exec", "set", "zrangebyscore", "smembers", "del")


@dataclass
class Result:
    mode: str
    rooms: int
    comments_per_s: int
    wall_ms: list[float]
    cpu_ms: list[float]
    redis_us: list[float]
    interval_ms: int
    # CPU of the tick that reads every room, and how often it comes.
    full_read_ms: float | None = None
    full_read_seconds: float = 30.0

    def row(self) -> str:
        cpu = statistics.mean(self.cpu_ms)
        if self.full_read_ms is not None:
            ticks = self.full_read_seconds * 1000 / self.interval_ms
            cpu = (cpu * (ticks - 1) + self.full_read_ms) / ticks
        share = 100 * cpu / self.interval_ms
        redis = f"{statistics.mean(self.redis_us) / 1000:8.2f}" if self.redis_us else "       -"
        full = f"{self.full_read_ms:9.2f}" if self.full_read_ms is not None else "        -"
        return (
            f"{self.mode:9} {self.rooms:>7,} {self.comments_per_s:>7,} {len(self.cpu_ms):>5} "
            f"{statistics.median(self.wall_ms):8.2f} {max(self.wall_ms):8.2f} {statistics.median(self.cpu_ms):8.2f} "
            f"{cpu:8.2f} {max(self.cpu_ms):8.2f} "
            f"{1000 / self.interval_ms:6.2f} {share:7.2f}% {redis} {full}"
        )


HEADER = (
    f"{'mode':9} {'rooms':>7} {'cmt/s':>7} {'ticks':>5} {'wall p50':>8} {'wall max':>8} {'cpu p50':>8} {'cpu avg':>8} "
    f"{'cpu max':>8} {'tick/s':>6} {'%core':>8} {'redis ms'} {'full read'}"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", default="10,1000,10000", help="comma-separated active room counts")
    parser.add_argument("--modes", default="embedded,redis", help="embedded, redis or both")
    parser.add_argument("--ticks", type=int, default=5, help="measured ticks per case (default 5)")
    parser.add_argument("--hot-share", type=float, default=0.01, help="share of rooms at 15/s (default 0.01)")
    parser.add_argument("--warm-share", type=float, default=0.09, help="share of rooms at 1/s (default 0.09)")
    parser.add_argument("--interval-ms", type=int, default=1000, help="refresher interval (default 1000)")
    parser.add_argument("--profile", action="store_true", help="print the top functions of each case")
    args = parser.parse_args()
    counts = [int(part) for part in args.rooms.split(",")]
    modes = [part.strip() for part in args.modes.split(",")]
    if not counts or min(counts) < 1 or args.ticks < 1 or set(modes) - {"embedded", "redis"}:
        parser.error("rooms and ticks must be positive; modes are embedded and redis")

    with tempfile.TemporaryDirectory(prefix="danmaku-refresher-") as var_dir:
        _setup_django(var_dir)
        rows, user = _create_rooms(max(counts))
        results = []
        print(HEADER, flush=True)
        for mode in modes:
            for count in counts:
                result = _run_case(mode, rows[:count], user, args)
                results.append(result)
                print(result.row(), flush=True)
    print(
        "\nwall/cpu: ms of one tick, refresh_once() and the ring gauges (cpu: this thread's CPU time); redis ms: "
        "Redis CPU per tick for the refresher's commands; full read: cpu ms of the tick that reads every room "
        "(every FULL_READ_SECONDS); %core = mean cpu per tick (full read amortized) / interval."
    )
    return 0


def _setup_django(var_dir: str) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        os.environ.pop(name, None)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="danmaku_site.settings",
        DANMAKU_VAR_DIR=var_dir,
        DANMAKU_LOG_LEVEL="WARNING",
        DANMAKU_REFRESHER_AUTOSTART="0",
    )
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def _create_rooms(count: int):
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from danmaku.models import Room
    from danmaku.store import ROOM_FIELDS

    Room.objects.bulk_create(
        [Room(slug=f"r{n}", title=f"Room {n}", display_cap_per_second=30) for n in range(count)], batch_size=2000
    )
    # Rooms set up long ago, as in production: nothing for the sweep's
    # "saved since the last sweep" to republish.
    Room.objects.update(updated_at=timezone.now() - timedelta(days=1))
    user = get_user_model().objects.create_user("bench-writer")
    rows = list(Room.objects.order_by("id").values(*ROOM_FIELDS))
    return rows, user


def _rates(count: int, args: argparse.Namespace) -> list[int]:
    hot = max(1, round(count * args.hot_share))
    warm = round(count * args.warm_share)
    return [HOT_RATE] * hot + [WARM_RATE] * warm + [0] * max(0, count - hot - warm)


class _Writer:
    """Writes a second's comments to the store the refresher reads."""

    def __init__(self, mode: str, rows: list[dict], rates: list[int], user, store) -> None:
        self.mode = mode
        self.load = [(row["id"], rate) for row, rate in zip(rows, rates, strict=True) if rate]
        self.user = user
        self.store = store
        self.next_id = 10_000_000 if mode == "redis" else None

    @property
    def per_second(self) -> int:
        return sum(rate for _, rate in self.load)

    def write_second(self) -> None:
        from danmaku.models import Danmaku

        now_ms = int(time.time() * 1000)
        comments = [
            Danmaku(
                room_id=room_id,
                user=self.user,
                text=f"comment {n} in a live room",
                color=0xFFFFFF,
                mode=0,
                ts_ms=now_ms - random.randrange(1000),
                # As the send path stores them in embedded mode (the table is
                # the store): nothing for a later Redis run's sweep to republish.
                in_stream=True,
            )
            for room_id, rate in self.load
            for n in range(rate)
        ]
        if self.mode == "embedded":
            Danmaku.objects.bulk_create(comments, batch_size=1000)
            return
        for danmaku in comments:
            self.next_id += 1
            danmaku.id = self.next_id
            self.store.publish(danmaku, nick="viewer", avatar="/static/danmaku/avatar.svg")


def _run_case(mode: str, rows: list[dict], user, args: argparse.Namespace) -> Result:
    from contextlib import ExitStack

    from danmaku.pull.cache import PullCache, PullConfig
    from danmaku.refresher import Refresher, settings_from_row
    from danmaku.store import FULL_READ_SECONDS, DatabaseStore, RedisStore
    from infra.redis import breaker, make_redis

    with ExitStack() as stack:
        client = None
        if mode == "redis":
            from harness.services import private_redis

            server = stack.enter_context(private_redis())
            client = make_redis(server.url, timeout_s=2.0)
            stack.callback(client.connection_pool.disconnect)
            breaker.succeeded()
            store = RedisStore(lambda: client, prefix="bench", window_seconds=60)
            store.publish_rooms(rows)
            fallback = DatabaseStore()
        else:
            store, fallback = DatabaseStore(), None
        cache = PullCache(PullConfig(epoch=0, window_seconds=60))
        refresher = Refresher(cache=cache, store=store, fallback=fallback, interval_ms=args.interval_ms)
        # Every room is being pulled: its entry is live, as after its first pull.
        for row in rows:
            cache.publish(cache.install(settings_from_row(row)))
        writer = _Writer(mode, rows, _rates(len(rows), args), user, store)
        profile = cProfile.Profile(time.thread_time) if args.profile else None
        wall, cpu, redis_us = [], [], []
        for tick in range(WARMUP_TICKS + args.ticks):
            time.sleep(refresher._delay_s())
            writer.write_second()
            for entry in cache.rooms.values():
                entry.last_pulled = cache.clock()
            before_redis = _redis_usec(client) if client is not None else 0
            measuring = tick >= WARMUP_TICKS
            if measuring and profile is not None:
                profile.enable()
            started_wall, started_cpu = time.perf_counter(), time.thread_time()
            _tick(refresher)
            cpu_s, wall_s = time.thread_time() - started_cpu, time.perf_counter() - started_wall
            if measuring and profile is not None:
                profile.disable()
            if measuring:
                wall.append(wall_s * 1000)
                cpu.append(cpu_s * 1000)
                if client is not None:
                    redis_us.append(_redis_usec(client) - before_redis)
        # The safety-net tick that reads every room (Redis: streams and
        # settings; database: settings), forced once.
        time.sleep(refresher._delay_s())
        writer.write_second()
        if mode == "redis":
            store._next_full_read = 0.0
        else:
            store._next_full_settings_read = 0.0
        started_cpu = time.thread_time()
        _tick(refresher)
        full_read_ms = (time.thread_time() - started_cpu) * 1000
        if len(cache.rooms) != len(rows):
            raise SystemExit(f"{mode}: {len(rows) - len(cache.rooms)} rooms fell out of the cache")
        if profile is not None:
            print(f"--- profile: {mode}, {len(rows)} rooms, {args.ticks} ticks")
            pstats.Stats(profile).sort_stats(os.environ.get("BENCH_PROFILE_SORT", "tottime")).print_stats(25)
    return Result(
        mode, len(rows), writer.per_second, wall, cpu, redis_us, args.interval_ms, full_read_ms, FULL_READ_SECONDS
    )


def _tick(refresher) -> None:
    """What the refresher thread does each tick (``Refresher._run``), less
    waiting and the database connection check."""
    from danmaku.refresher import observe_refresher

    refresher.refresh_once()
    observe_refresher(refresher)


def _redis_usec(client) -> float:
    stats = client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("usec", 0) for name in REFRESHER_COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
