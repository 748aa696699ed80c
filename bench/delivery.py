"""Delivery control's cost per second in one pull process, by active rooms.

Runs the real ``Delivery.tick()`` (danmaku.delivery) in this process over a
pull cache of N live rooms, each with a comment in its ring and 20 viewers'
promises in its meter, sharing with three sibling processes of its node
(their share files copied from this one's, refreshed before each tick, as
live siblings rewrite theirs every second). Measured with this thread's CPU
time, without and with a poll budget (the budget adds the rooms' intervals,
their liveliness and the controller).

The baseline, measured in the same run: one pass over the rooms taking each
meter's reading (``RoomMeter.take``), the least any tick must do. Prints ms
per tick, the ratio to the baseline, and the share of one core at one tick
a second.

    .venv/bin/python bench/delivery.py                       # 1,000 and 10,000 rooms
    .venv/bin/python bench/delivery.py --rooms 10000 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SIBLINGS = 3
PROMISES_PER_ROOM = 20
START_SECOND = 1_000_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", default="1000,10000", help="comma-separated active room counts")
    parser.add_argument("--ticks", type=int, default=7, help="measured ticks per case (default 7)")
    parser.add_argument("--profile", action="store_true", help="print the top functions of each case")
    args = parser.parse_args()
    if args.ticks < 1:
        parser.error("--ticks must be at least 1")

    print(f"Delivery.tick, {SIBLINGS} sibling processes' shares, median of {args.ticks} ticks (thread CPU)")
    print(f"{'rooms':>7} {'budget':>7} {'ms/tick':>9} {'baseline ms':>12} {'x base':>7} {'core share':>11}")
    for count in (int(part) for part in args.rooms.split(",")):
        for budget in (None, 1000.0):
            tick_ms, base_ms = _case(count, budget, args)
            label = "none" if budget is None else f"{budget:,.0f}"
            print(
                f"{count:>7,} {label:>7} {tick_ms:>9.1f} {base_ms:>12.1f} {tick_ms / max(base_ms, 1e-6):>6.1f}x"
                f" {tick_ms / 1000:>10.1%}"
            )
    return 0


def _case(count: int, budget: float | None, args: argparse.Namespace) -> tuple[float, float]:
    from danmaku.delivery import Delivery
    from danmaku.pull.cache import PullCache, RoomSettings
    from danmaku.pull.control import Controller
    from danmaku.pull.ringbuffer import Item
    from infra.nodeshare import NodeShare

    cache = PullCache()
    for number in range(count):
        entry = cache.install(RoomSettings(room_id=number, slug=f"room-{number}"))
        entry.ring.add([Item(START_SECOND, number, 0xFFFFFF, 0, 7, "nick", "", "a comment")])
        entry.ring.seal_through(START_SECOND)
        cache.publish(entry)
    controller = Controller(poll_budget=budget, egress_budget=None, max_multiplier=5.0)
    with tempfile.TemporaryDirectory(prefix="delivery-bench-") as directory:
        delivery = Delivery(cache=cache, controller=controller, share=NodeShare(directory, name="load-0.json"))
        own = os.path.join(directory, "load-0.json")
        siblings = [os.path.join(directory, f"load-{number}.json") for number in range(1, SIBLINGS + 1)]
        _promise(cache)
        delivery.tick()
        for sibling in siblings:
            shutil.copy(own, sibling)
        ticks, baselines = [], []
        profile = cProfile.Profile() if args.profile else None
        for _ in range(args.ticks):
            _promise(cache)
            for sibling in siblings:
                os.utime(sibling)
            # A tick a second, as the refresher thread runs it.
            delivery._last_at -= 1.0
            if profile:
                profile.enable()
            started = time.thread_time()
            delivery.tick()
            ticks.append(time.thread_time() - started)
            if profile:
                profile.disable()
            started = time.thread_time()
            for entry in list(cache.rooms.values()):
                entry.meter.take()
            baselines.append(time.thread_time() - started)
        if profile:
            pstats.Stats(profile).sort_stats("cumulative").print_stats(15)
    return statistics.median(ticks) * 1000, statistics.median(baselines) * 1000


def _promise(cache) -> None:
    """Each room's viewers polled in the last second: promises ahead."""
    for entry in cache.rooms.values():
        for _ in range(PROMISES_PER_ROOM):
            entry.meter.count(400, 3000)


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "danmaku_site.settings")
    import django

    django.setup()


if __name__ == "__main__":
    _setup()
    sys.exit(main())
