"""The viewer estimate against a crowd of known size on two nodes sharing Redis.

Issue 15's line: "Viewer estimate within ±15 % of the crowd's true size for
1,000 and 10,000 viewers, across two nodes sharing Redis." Two gunicorn
nodes in production mode (harness.cluster: one PostgreSQL, one Redis, as
shipped otherwise), a comment a second sent through node a, and a crowd
split over the nodes (60 % on a, 40 % on b by default). A poller reads the
``viewers`` of a pull answer from each node once a second
(harness.viewerpoll); once settled, every reading on both nodes must be
within the tolerance of the true total (the crowd plus the poller's own
polls, a few viewers). The cluster's raw tally in Redis, per window, and
the pull rate from /metrics are printed beside it, to tell a wrong count
from a wrong rounding or a late window.

    ulimit -n 20000; flock /tmp/bench.lock .venv/bin/python bench/viewers.py --viewers 1000,10000

Writes artifacts/bench/viewers.json; exits 1 on any FAIL.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.crowd import raise_open_file_limit
from bench.crowdbench.nodes import ROOM_FIELDS
from harness import cluster as cluster_harness
from harness import local
from harness.crowd import Crowd, CrowdSpec
from harness.load import Sender
from harness.viewerpoll import Sample as PollSample
from harness.viewerpoll import ViewerPoll, own_share

DEFAULT_OUT = local.BASE_DIR / "artifacts" / "bench"
ROOM = "viewers"
# Comments sent before the crowd comes: the room is at its normal interval.
SEED_SECONDS = 4.0
# Until then the estimate is still filling: promises take one interval
# (3 s) to add up, the shown count is the last whole 5 s window's.
SETTLE_SECONDS = 15.0
DURATION_SECONDS = 40.0
TOLERANCE = 0.15
# Mirrors danmaku.delivery.VIEWER_WINDOW_SECONDS (the bench reads the tally
# straight from Redis, without Django).
VIEWER_WINDOW_SECONDS = 5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--viewers", default="1000,10000", help="comma-separated crowd sizes, one run each")
    parser.add_argument("--share-a", type=float, default=0.6, help="share of the crowd on node a (the rest on b)")
    parser.add_argument("--duration", type=float, default=DURATION_SECONDS, help="seconds of crowd per run")
    parser.add_argument("--settle", type=float, default=SETTLE_SECONDS, help="seconds before readings count")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE)
    parser.add_argument("--workers", type=int, help="gunicorn workers per node (default: as shipped)")
    parser.add_argument("--event-loop", choices=("asyncio", "uvloop"), default="uvloop")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    args.sizes = [int(size) for size in args.viewers.split(",") if size.strip()]
    if not args.sizes or min(args.sizes) < 2 or not 0 < args.share_a < 1 or args.settle >= args.duration:
        parser.error("sizes >= 2, 0 < share-a < 1, settle < duration")
    return args


def pulls_answered(base_url: str) -> float | None:
    """danmaku_pulls_total over every status, from the node's /metrics."""
    try:
        text = requests.get(f"{base_url}/metrics", timeout=5).text
    except requests.RequestException:
        return None
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("danmaku_pulls_total{"))


def run(args: argparse.Namespace, size: int) -> dict:
    on_a = round(size * args.share_a)
    split = (on_a, size - on_a)
    with tempfile.TemporaryDirectory(prefix="danmaku-viewers-") as tmp, cluster_harness.two_nodes(
        room=ROOM, var_dir=Path(tmp), room_fields=ROOM_FIELDS, workers=args.workers,
        extra_env={"GUNICORN_LOG_LEVEL": "warning"},
    ) as cluster:  # fmt: skip
        return crowd_on(args, cluster, split)


def crowd_on(args: argparse.Namespace, cluster: cluster_harness.Cluster, split: tuple[int, int]) -> dict:
    node_a = cluster.nodes[0]
    stop_sending = threading.Event()
    sender = Sender(url=node_a.danmaku_url(ROOM), token=node_a.tokens[0], name="viewers", interval=1.0,
                    stop=stop_sending)  # fmt: skip
    sender.start()
    specs = [
        CrowdSpec(
            url=node.base_url,
            room=ROOM,
            viewers=count,
            duration_seconds=args.duration,
            source_addresses=(f"127.0.0.{2 + number}",),
            event_loop=args.event_loop,
        )
        for number, (node, count) in enumerate(zip(cluster.nodes, split, strict=True))
    ]
    tallies: dict[int, int] = {}
    pulls: dict[str, list[float | None]] = {}
    client = cluster.redis()
    try:
        time.sleep(SEED_SECONDS)
        with (
            Crowd(specs[0]) as crowd_a,
            Crowd(specs[1]) as crowd_b,
            ViewerPoll([node.danmaku_url(ROOM) for node in cluster.nodes]) as poll,
        ):
            start = crowd_a.start()
            crowd_b.start()
            settled_at, end = start + args.settle, start + args.duration
            metrics_at = [(settled_at, "settled"), (end - 1, "end")]
            while time.monotonic() < end:
                time.sleep(min(1.0, max(0.0, end - time.monotonic())))
                window = int(time.time() // VIEWER_WINDOW_SECONDS) - 1
                if window not in tallies:
                    raw = client.hgetall(f"{cluster.prefix}:viewers:{window}")
                    tallies[window] = sum(int(count) for count in raw.values())
                while metrics_at and time.monotonic() >= metrics_at[0][0]:
                    _, name = metrics_at.pop(0)
                    pulls[name] = [time.monotonic(), *(pulls_answered(node.base_url) for node in cluster.nodes)]
            results = [crowd_a.join(), crowd_b.join()]
    finally:
        stop_sending.set()
        sender.join(5)
        client.close()
    return figures(args, split, results, poll, start, tallies, pulls)


def figures(args, split, results, poll: ViewerPoll, start: float, tallies, pulls) -> dict:
    settled = poll.between(start + args.settle, start + args.duration)
    poller = own_share(settled)
    true_total = sum(split) + poller
    nodes = []
    for number in range(2):
        readings = [sample.viewers for sample in settled if sample.node == number]
        nodes.append(node_figures(number, split[number], readings, true_total, args.tolerance))
    rate = None
    if "settled" in pulls and "end" in pulls and None not in pulls["settled"] + pulls["end"]:
        seconds = pulls["end"][0] - pulls["settled"][0]
        polls = sum(pulls["end"][1:]) - sum(pulls["settled"][1:])
        interval = statistics.fmean(sample.next_ms for sample in settled) / 1000 if settled else None
        rate = {"polls_per_second": polls / seconds, "mean_next_s": interval,
                "little_viewers": polls / seconds * interval if interval else None}  # fmt: skip
    first_window = int((time.time() - (time.monotonic() - start)) // VIEWER_WINDOW_SECONDS)
    return {
        "crowd": sum(split),
        "split": list(split),
        "poller_viewers": round(poller, 2),
        "true_total": round(true_total, 2),
        "tolerance": args.tolerance,
        "nodes": nodes,
        "passed": bool(settled) and all(node["passed"] for node in nodes),
        "tally_by_window": {str(window - first_window): count for window, count in sorted(tallies.items())},
        "pull_rate": rate,
        "crowd_polls": sum(len(result.status) for result in results),
        "crowd_errors": sum(len(result.errors) for result in results),
        "crowd_non_200": sum(1 for result in results for status in result.status if status != 200),
        "poll_failures": poll.failures[:5],
        "readings": [sample_json(sample, start) for sample in poll.samples],
    }


def node_figures(number: int, crowd: int, readings: list[int], true_total: float, tolerance: float) -> dict:
    ratios = [reading / true_total for reading in readings]
    return {
        "node": "ab"[number],
        "crowd_here": crowd,
        "readings": len(readings),
        "median": statistics.median(readings) if readings else None,
        "min": min(readings, default=None),
        "max": max(readings, default=None),
        "ratio_median": round(statistics.median(ratios), 3) if ratios else None,
        "ratio_min": round(min(ratios), 3) if ratios else None,
        "ratio_max": round(max(ratios), 3) if ratios else None,
        "passed": bool(ratios) and all(abs(ratio - 1) <= tolerance for ratio in ratios),
    }


def sample_json(sample: PollSample, start: float) -> list:
    return [round(sample.at - start, 2), "ab"[sample.node], sample.status, sample.viewers, sample.next_ms]


def print_report(result: dict) -> None:
    print(f"\n== {result['crowd']:,} viewers ({result['split'][0]:,} on a, {result['split'][1]:,} on b); "
          f"true total {result['true_total']:,} (crowd + poller {result['poller_viewers']})")  # fmt: skip
    for node in result["nodes"]:
        verdict = "PASS" if node["passed"] else "FAIL"
        print(f"  node {node['node']}: estimate median {node['median']} (min {node['min']}, max {node['max']}, "
              f"{node['readings']} readings); ratio {node['ratio_median']} "
              f"[{node['ratio_min']}, {node['ratio_max']}]  {verdict} (±{result['tolerance']:.0%})")  # fmt: skip
    tally = ", ".join(f"{at}:{count}" for at, count in result["tally_by_window"].items())
    print(f"  Redis tally by window (window index from the crowd's start: raw sum): {tally}")
    rate = result["pull_rate"]
    if rate:
        print(f"  /metrics: {rate['polls_per_second']:.0f} polls/s x mean next_ms {rate['mean_next_s']:.2f} s "
              f"= {rate['little_viewers']:.0f} viewers (Little's law)")  # fmt: skip
    print(f"  crowd: {result['crowd_polls']:,} polls, {result['crowd_non_200']} not 200, "
          f"{result['crowd_errors']} errors; poller failures {len(result['poll_failures'])}")  # fmt: skip
    print(f"  {'PASS' if result['passed'] else 'FAIL'}: estimate within ±{result['tolerance']:.0%} on both nodes")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_open_file_limit()
    results = []
    for size in args.sizes:
        result = run(args, size)
        print_report(result)
        results.append(result)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "viewers.json"
    path.write_text(json.dumps(results, indent=1))
    print(f"wrote {path}")
    return 0 if all(result["passed"] for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
