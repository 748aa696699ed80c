"""Delivery latency: how long from a send until a pulling viewer first sees it.

Starts its own gunicorn (2 workers, SQLite in a tmp dir, a free 127.0.0.1
port; with ``--redis`` also a private redis-server as the store, production
mode), sends ``--count`` comments at ``--rate`` per second from one thread
while another pulls every ``--poll-ms`` following its cursor (ignoring
``next_ms``: it measures delivery, not the polite client), then prints the
send -> first-appearance latency and stops gunicorn.

    .venv/bin/python bench/latency.py --count 200 --rate 10
    .venv/bin/python bench/latency.py --redis
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import local
from harness.services import private_redis

ROOM = "bench"
USERS = ("bench-a", "bench-b", "bench-c")
# Time allowed beyond the sending itself before the run is abandoned.
SLACK_SECONDS = 30
REQUEST_TIMEOUT_SECONDS = 5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="comments to send (default 200)")
    parser.add_argument("--rate", type=float, default=10.0, help="comments per second (default 10)")
    parser.add_argument("--poll-ms", type=int, default=50, help="pause between pulls (default 50)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--redis", action="store_true", help="Redis streams as the store (a private redis-server)")
    args = parser.parse_args()
    if args.count < 1 or args.rate <= 0 or args.poll_ms < 1:
        parser.error("--count, --rate and --poll-ms must be positive")
    # SIGTERM should stop gunicorn too, like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    room_fields = {"user_send_interval_ms": 0, "room_send_cap_per_second": 100_000, "display_cap_per_second": 1000}
    env = {"GUNICORN_LOG_LEVEL": "warning", "DANMAKU_LOG_LEVEL": "WARNING"}
    try:
        with contextlib.ExitStack() as stack:
            if args.redis:
                env["REDIS_URL"] = stack.enter_context(private_redis()).url
            server = stack.enter_context(
                local.gunicorn(room=ROOM, users=USERS, workers=args.workers, room_fields=room_fields, extra_env=env)
            )
            print(f"store: {'Redis streams (private redis-server)' if args.redis else 'the database (SQLite)'}")
            return _run(server.danmaku_url(ROOM), server.tokens, args)
    except local.LocalServerError as exc:
        raise SystemExit(str(exc)) from None


class Poller(threading.Thread):
    """Pulls every ``interval`` s following its cursor; notes when each id first shows."""

    def __init__(self, url: str, interval: float) -> None:
        super().__init__(name="poller", daemon=True)
        self.url = url
        self.interval = interval
        self.stopping = threading.Event()
        self.first_seen: dict[int, float] = {}
        self.repeats = 0
        self.pulls = 0
        self.errors: Counter = Counter()
        self.workers: Counter = Counter()

    def run(self) -> None:
        cursor = None
        with requests.Session() as session:
            while not self.stopping.is_set():
                try:
                    response = session.get(
                        self.url, params={"after": cursor} if cursor else {}, timeout=REQUEST_TIMEOUT_SECONDS
                    )
                except requests.RequestException as exc:
                    self.errors[type(exc).__name__] += 1
                else:
                    seen_at = time.monotonic()
                    self.pulls += 1
                    self.workers[response.headers.get("X-Served-By", "?")] += 1
                    if response.status_code == 200:
                        body = response.json()
                        cursor = body["cursor"]
                        for item_id in body["items"]["id"]:
                            if item_id in self.first_seen:
                                self.repeats += 1
                            else:
                                self.first_seen[item_id] = seen_at
                    else:
                        self.errors[response.status_code] += 1
                self.stopping.wait(self.interval)


def _send_all(url: str, tokens: list[str], count: int, rate: float, sent: dict[int, float], failures: Counter) -> None:
    """Send ``count`` comments at ``rate`` per second, each over a new connection
    so the kernel spreads them over the workers."""
    start = time.monotonic()
    users = itertools.cycle(tokens)
    for n in range(count):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        began = time.monotonic()
        try:
            response = requests.post(
                url,
                json={"text": f"bench {n}", "client_id": f"bench-{n}"},
                headers={"Authorization": f"Bearer {next(users)}", "Connection": "close"},
                timeout=REQUEST_TIMEOUT_SECONDS,
            )
        except requests.RequestException as exc:
            failures[type(exc).__name__] += 1
            continue
        if response.status_code == 201:
            sent[response.json()["id"]] = began
        else:
            failures[response.status_code] += 1


def _run(url: str, tokens: list[str], args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.count / args.rate + SLACK_SECONDS
    poller = Poller(url, args.poll_ms / 1000)
    poller.start()
    sent: dict[int, float] = {}
    failures: Counter = Counter()
    sender = threading.Thread(
        target=_send_all, args=(url, tokens, args.count, args.rate, sent, failures), name="sender", daemon=True
    )
    sender.start()
    sender.join(max(0.0, deadline - time.monotonic()))
    sending_done = not sender.is_alive()
    # Wait for the last comments to show up, within the same deadline.
    while time.monotonic() < deadline and not (sending_done and sent.keys() <= poller.first_seen.keys()):
        time.sleep(0.1)
        sending_done = not sender.is_alive()
    poller.stopping.set()
    poller.join(REQUEST_TIMEOUT_SECONDS + 1)

    latencies = [(poller.first_seen[i] - t) * 1000 for i, t in sent.items() if i in poller.first_seen]
    never_seen = len(sent) - len(latencies)
    print(f"sent {len(sent)}/{args.count} at {args.rate:g}/s; {poller.pulls} pulls every {args.poll_ms} ms")
    print(f"workers answering the poller: {dict(poller.workers)}")
    if latencies:
        centiles = statistics.quantiles(latencies, n=100, method="inclusive")
        print(
            "send -> first appearance (ms): "
            f"median {statistics.median(latencies):.0f}  p90 {centiles[89]:.0f}  "
            f"p99 {centiles[98]:.0f}  max {max(latencies):.0f}"
        )
    print(f"never seen: {never_seen}  repeated in the chain: {poller.repeats}")
    if failures or poller.errors:
        print(f"send failures: {dict(failures)}  pull errors: {dict(poller.errors)}")
    if not sending_done:
        print("aborted: sending did not finish before the deadline")
    ok = sending_done and never_seen == 0 and not failures and poller.repeats == 0 and len(sent) == args.count
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
