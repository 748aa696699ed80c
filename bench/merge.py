"""Merged duplicates: what they save viewers in items and bytes, and what
they cost the ring's writer.

One room's ring, fed and sealed second by second as the refresher does,
with a background of distinct comments (``--background`` a second) and a
burst: ``--burst`` viewers sending one text ("233333") within 2 s. Each
second a viewer following the room pulls what follows its cursor, and a
viewer joins at the burst's end; the answers are the pull's own bytes
(``danmaku.pull.wire.encode_pull``), identity and gzip, as the cache sends
them. The same run is made with merging on (moderation's normalizer, as the
refresher hands it down) and off, and the writer's time (add + seal for the
whole run) is compared between the two, alternating, median of
``--rounds``.

    .venv/bin/python bench/merge.py
    .venv/bin/python bench/merge.py --burst 400 --background 30
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from danmaku.pull.ringbuffer import Item, RoomRing  # noqa: E402
from danmaku.pull.wire import encode_pull  # noqa: E402
from moderation.normalize import duplicate_key  # noqa: E402

START_SECOND = 1_700_000_000
SECONDS = 12
BURST_AT = 4
BURST_TEXT = "233333"
JOIN_SECONDS = 3
BACKGROUND_TEXTS = ("this song is so good", "\u524d\u65b9\u9ad8\u80fd!!!", "nice shot", "\u54c8\u54c8\u54c8")


def comments(burst: int, background: int) -> list[list[Item]]:
    """Each second's comments: the background, and the burst over seconds BURST_AT and BURST_AT + 1."""
    seconds: list[list[Item]] = []
    next_id = 1
    for second in range(SECONDS):
        start_ms = (START_SECOND + second) * 1000
        batch = []
        for n in range(background):
            text = f"{BACKGROUND_TEXTS[n % len(BACKGROUND_TEXTS)]} {second}-{n}"
            batch.append(_item(next_id, start_ms + n * 1000 // max(background, 1), text))
            next_id += 1
        if second in (BURST_AT, BURST_AT + 1):
            share = burst // 2 if second == BURST_AT else burst - burst // 2
            for n in range(share):
                batch.append(_item(next_id, start_ms + n * 1000 // max(share, 1), BURST_TEXT))
                next_id += 1
        batch.sort(key=lambda item: (item.ts_ms, item.id))
        seconds.append(batch)
    return seconds


def _item(item_id: int, ts_ms: int, text: str) -> Item:
    return Item(item_id, ts_ms, 0xFFFFFF, 0, 10_000 + item_id, f"viewer{item_id}", "", text)


def run(script: list[list[Item]], *, merge: bool) -> dict:
    ring = RoomRing(size=60, display_cap=0, merge_key=duplicate_key if merge else None)
    ring.seal_through(START_SECOND - 1)
    cursor = START_SECOND - 1
    followed = {"items": 0, "bytes": 0, "gzip": 0, "answers": 0}
    joiner = None
    writer_s = 0.0
    for offset, batch in enumerate(script):
        started = time.perf_counter()
        ring.add(batch)
        ring.seal_through(START_SECOND + offset)
        writer_s += time.perf_counter() - started
        read = ring.view.read(cursor, JOIN_SECONDS)
        cursor = read.newest
        body = encode_pull(cursor="1-2", next_ms=1000, reason="normal", gap=False, slots=read.slots)
        followed["items"] += sum(len(slot.items) for slot in read.slots)
        followed["bytes"] += len(body)
        followed["gzip"] += len(gzip.compress(body, 6, mtime=0))
        followed["answers"] += 1
        if offset == BURST_AT + 1:
            joined = ring.view.read(None, JOIN_SECONDS)
            body = encode_pull(cursor="1-2", next_ms=1000, reason="normal", gap=False, slots=joined.slots)
            joiner = {
                "items": sum(len(slot.items) for slot in joined.slots),
                "bytes": len(body),
                "gzip": len(gzip.compress(body, 6, mtime=0)),
            }
    return {"followed": followed, "joiner": joiner, "writer_s": writer_s, "burst_items": _burst_items(ring)}


def _burst_items(ring: RoomRing) -> tuple[int, int]:
    """(items carrying the burst's text, the count they end with)."""
    items = [item for slot in ring.view.slots for item in slot.items if item.text == BURST_TEXT]
    latest: dict[int, int] = {item.id: item.count for item in items}
    for slot in ring.view.slots:
        for item_id, count in slot.counts:
            if item_id in latest:
                latest[item_id] = count
    return len(items), sum(latest.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=40, help="viewers sending the same text within 2 s (default 40)")
    parser.add_argument("--background", type=int, default=10, help="distinct comments a second (default 10)")
    parser.add_argument("--rounds", type=int, default=9, help="writer timing rounds, each way (default 9)")
    args = parser.parse_args()
    if not 2 <= args.burst <= 100_000 or not 0 <= args.background <= 10_000 or not 1 <= args.rounds <= 100:
        parser.error("--burst must be 2-100000, --background 0-10000, --rounds 1-100")
    script = comments(args.burst, args.background)
    merged, plain = run(script, merge=True), run(script, merge=False)
    merged_s, plain_s = [], []
    for _ in range(args.rounds):
        merged_s.append(run(script, merge=True)["writer_s"])
        plain_s.append(run(script, merge=False)["writer_s"])

    total = sum(len(batch) for batch in script)
    print(
        f"a burst of {args.burst} x {BURST_TEXT!r} within 2 s over {args.background} distinct comments a second, "
        f"{SECONDS} s, {total} comments"
    )
    print(f"{'':24}{'merged':>12}{'plain':>12}{'ratio':>8}")
    rows = [
        ("follower items", merged["followed"]["items"], plain["followed"]["items"]),
        ("follower bytes", merged["followed"]["bytes"], plain["followed"]["bytes"]),
        ("follower gzip bytes", merged["followed"]["gzip"], plain["followed"]["gzip"]),
        ("joiner items", merged["joiner"]["items"], plain["joiner"]["items"]),
        ("joiner bytes", merged["joiner"]["bytes"], plain["joiner"]["bytes"]),
        ("joiner gzip bytes", merged["joiner"]["gzip"], plain["joiner"]["gzip"]),
    ]
    for name, a, b in rows:
        print(f"  {name:22}{a:>12,}{b:>12,}{a / b:>8.2f}")
    writer_merged, writer_plain = statistics.median(merged_s), statistics.median(plain_s)
    print(
        f"  {'writer (add + seal)':22}{writer_merged * 1e3:>10.2f}ms{writer_plain * 1e3:>10.2f}ms"
        f"{writer_merged / writer_plain:>8.2f}   ({writer_merged / total * 1e6:.1f} us a comment merged, "
        f"median of {args.rounds}, alternating)"
    )
    burst_items, burst_count = merged["burst_items"]
    checks = [
        (burst_items <= 2 and burst_count == args.burst, f"the burst is {burst_items} item(s) counting {burst_count}"),
        (
            merged["followed"]["items"] <= plain["followed"]["items"] - args.burst + 2,
            f"a follower gets {plain['followed']['items'] - merged['followed']['items']} fewer items",
        ),
        (merged["followed"]["gzip"] < plain["followed"]["gzip"], "a follower's gzip bytes shrink"),
    ]
    failed = 0
    for ok, what in checks:
        print(f"[{'PASS' if ok else 'FAIL'}] {what}")
        failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
