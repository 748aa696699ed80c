"""Memory per active room: a full window at 15 comments per second, with the
memoized answers viewers share.

Builds ``--rooms`` rooms in this process the way the refresher does (items
added and sealed second by second into each room's ring, through the real
``PullCache`` and ``RoomRing``), then pulls each room with the cursors live
clients hold, so the memo holds the answer bytes (plain and gzip) they get.
Prints bytes per room and per comment, measured two ways: Python's own
allocations (tracemalloc: exact, no allocator slack) and the growth of the
process's resident set (what a machine pays).

No Django, no store: the pull path's data structures alone.

    .venv/bin/python bench/memory.py                 # 500 rooms, 15/s, 60 s window
    .venv/bin/python bench/memory.py --rooms 2000 --rate 5
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from danmaku.pull import wire
from danmaku.pull.cache import PullCache, PullConfig, RoomSettings
from danmaku.pull.ringbuffer import Item

FIRST_SECOND = 1_790_000_000
# Typical danmaku: short CJK phrases with a running number, so no two texts
# are the same object (each comes off the store as its own string).
PHRASES = ("主播太厉害了哈哈哈", "前方高能预警!!!", "这波操作666", "awsl 好可爱", "来了来了", "弹幕护体")
AVATAR = "/media/avatars/thumbs/{user:08d}-3f9a2c71.webp"
# Cursors live clients hold when they pull: one per second of the last poll
# interval (3 s), plus joiners without a cursor.
LIVE_CURSOR_SECONDS = 3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=500, help="rooms to build (default 500)")
    parser.add_argument("--rate", type=int, default=15, help="comments per second per room (default 15)")
    parser.add_argument("--window", type=int, default=60, help="ring slots, seconds (default 60)")
    parser.add_argument(
        "--cursors", type=int, default=LIVE_CURSOR_SECONDS, help="memoized cursors per room besides joining (default 3)"
    )
    args = parser.parse_args()
    if min(args.rooms, args.rate, args.window) < 1 or args.cursors < 0:
        parser.error("rooms, rate and window must be positive")

    comments = args.rate * args.window
    print(
        f"{args.rooms} rooms x {args.window} s window x {args.rate} comments/s = {comments} comments per room; "
        f"memo: join + {args.cursors} cursors per room"
    )

    rss_before = _rss()
    kept = _build(args)
    gc.collect()
    rss_rings = _rss() - rss_before
    _pull_all(kept, args)
    gc.collect()
    rss_total = _rss() - rss_before
    del kept
    gc.collect()

    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    kept = _build(args)
    gc.collect()
    rings = tracemalloc.get_traced_memory()[0] - base
    answer_bytes = _pull_all(kept, args)
    gc.collect()
    total = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()

    memo = total - rings
    per = args.rooms
    print(f"{'':32} {'per room':>12} {'per comment':>12}")
    print(f"{'ring (tracemalloc)':32} {rings / per:12,.0f} {rings / per / comments:12,.0f}")
    print(f"{'memoized answers (tracemalloc)':32} {memo / per:12,.0f} {memo / per / comments:12,.0f}")
    print(f"{'total (tracemalloc)':32} {total / per:12,.0f} {total / per / comments:12,.0f}")
    print(f"{'ring (RSS growth)':32} {rss_rings / per:12,.0f} {rss_rings / per / comments:12,.0f}")
    print(f"{'total (RSS growth)':32} {rss_total / per:12,.0f} {rss_total / per / comments:12,.0f}")
    print(f"answer bytes held per room (plain + gzip): {answer_bytes / per:,.0f}")
    mib = 1000 / per / 2**20
    print(f"=> 1,000 such rooms per process: {total * mib:,.0f} MiB (tracemalloc), {rss_total * mib:,.0f} MiB (RSS)")
    return 0


def _build(args: argparse.Namespace) -> PullCache:
    cache = PullCache(PullConfig(epoch=1, window_seconds=args.window))
    next_id = 10_000_000
    for room in range(args.rooms):
        entry = cache.install(
            RoomSettings(room_id=room + 1, slug=f"room-{room}", display_cap_per_second=max(30, args.rate))
        )
        for second in range(FIRST_SECOND, FIRST_SECOND + args.window):
            items = []
            for n in range(args.rate):
                next_id += 1
                user = 100_000 + (next_id * 7919) % 50_000
                items.append(
                    Item(
                        id=next_id,
                        ts_ms=second * 1000 + n * (1000 // args.rate),
                        color=int("16777215"),
                        mode=0,
                        user=user,
                        nick=f"viewer{user}",
                        avatar=AVATAR.format(user=user),
                        text=f"{PHRASES[next_id % len(PHRASES)]} {next_id % 1000}",
                    )
                )
            entry.ring.add(items)
            entry.ring.seal_through(second)
        entry.epochs = (1,)
        cache.publish(entry)
    return cache


def _pull_all(cache: PullCache, args: argparse.Namespace) -> int:
    """Pull every room as its live clients would; returns the answer bytes held."""
    newest = FIRST_SECOND + args.window - 1
    cursors = [None] + [wire.encode_cursor(1, newest - back) for back in range(1, args.cursors + 1)]
    held = 0
    for slug in list(cache.rooms):
        for cursor in cursors:
            answer = cache.pull(slug, cursor)
            if answer.status != 200:
                raise SystemExit(f"pull {slug} {cursor}: {answer.status} {answer.body[:200]!r}")
            held += len(answer.body) + len(answer.gzipped or b"")
    return held


def _rss() -> int:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


if __name__ == "__main__":
    sys.exit(main())
