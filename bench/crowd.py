"""A crowd of viewers against a pull node: issues 14's and 15's scenarios and their pass lines.

N simulated viewers (harness.crowd: asyncio, one kept-alive connection each,
split over processes of at most 5,000), each obeying the pull contract
exactly: wait ``next_ms``, send the cursor back, back off and resume on any
error as the viewer page does. The room is seeded first (a comment a
second through the send API, so it is at its normal 3 s interval, not
quiet) and gets a comment every second for the whole run.

    .venv/bin/python bench/crowd.py --viewers 20000 --duration 60          # steady, gunicorn as shipped
    .venv/bin/python bench/crowd.py --topology nginx --scenario steady,storm
    .venv/bin/python bench/crowd.py --scenario churn --churn 0.05
    .venv/bin/python bench/crowd.py --scenario recycle --max-requests 5000
    .venv/bin/python bench/crowd.py --scenario hup,kill
    .venv/bin/python bench/crowd.py --url http://127.0.0.1:8000 --room demo --token TOKEN
    .venv/bin/python bench/crowd.py --scenario budget --poll-budget 1000      # 9,000 viewers, 3/4 leave at 70 s
    .venv/bin/python bench/crowd.py --scenario egress                         # 3,000 viewers, 20 comments/s

Scenarios: steady (all N connect within 1 s, then poll for the run), storm
(all N connect within 1 s on a node warmed by a smaller crowd), churn (a
share of viewers drop their connection and reconnect every second),
recycle (gunicorn started with a low GUNICORN_MAX_REQUESTS), hup (SIGHUP to
gunicorn's master mid-run), kill (SIGKILL one worker mid-run).

Issue 15 (delivery control): budget (the node started with
DANMAKU_PULL_BUDGET_PER_SECOND; a crowd that would poll 3x that at the
room's 3 s interval, 3/4 of it leaving at 70 s of 100) and egress (the node
started with DANMAKU_EGRESS_BUDGET_BYTES_PER_SECOND, by default half of
what the crowd received in a first run without it, at 20 comments/s). In
every scenario the answers' viewers estimate is judged against the viewers
really polling, when the node sends one; the node's control gauges are read
off /metrics once a second and plotted.

Prints the figures and a PASS/FAIL line per scenario (the issues' acceptance),
writes artifacts/bench/crowd-<scenario>.png and .json. Exits 1 on any FAIL.
Run heavy crowds one at a time: flock /tmp/bench.lock, and ulimit -n 20000.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import requests

from bench.crowdbench import control, metrics, nodes, plot, report
from harness import local
from harness.crowd import VIEWERS_PER_PROCESS, Crowd, CrowdSpec, Sent, loopback_sources
from harness.load import Sender, chat_text

DEFAULT_OUT = local.BASE_DIR / "artifacts" / "bench"
ROOM = "crowd"
# Comments sent before the crowd comes: the room is lively (its normal
# interval, not the quiet one) and the node has served before.
SEED_SECONDS = 4.0
# storm: a smaller crowd first, so the node the storm meets is warm.
WARM_VIEWERS = 500
WARM_SECONDS = 5.0
# recycle: gunicorn's max_requests for the scenario (the shipped 100,000
# recycles a worker every ~30 s at 20,000 viewers; this, every few seconds).
RECYCLE_MAX_REQUESTS = 20_000
# hup and kill strike at this share of the run.
EVENT_AT_SHARE = 0.5
# When the viewers' connections are counted per gunicorn worker (the storm
# over, before any recycle or reload): at most half the run in.
SPREAD_AT_SECONDS = 5.0
# Open files a generator process needs beyond one per viewer.
OPEN_FILES_MARGIN = 1000
# Defaults per scenario where they differ from steady's (viewers, seconds,
# comments per second).
VIEWERS = 20_000
DURATION_SECONDS = 60.0
SEND_RATE = 1.0
# budget: a crowd that would poll this many times the budget at the room's
# normal interval (3 s), until BUDGET_LEAVE_SHARE of it leaves.
BUDGET_OVERLOAD = 3
POLL_INTERVAL_SECONDS = 3
BUDGET_DURATION_SECONDS = 100.0
BUDGET_LEAVE_AT_SECONDS = 70.0
# The share of viewers that leave (at --leave-at; budget: at 70 s).
LEAVE_SHARE = 0.75
# egress: a lively room (every answer carries comments to cut) and its crowd.
EGRESS_VIEWERS = 3000
EGRESS_SEND_RATE = 20.0
# Without --egress-budget, the budget is this share of the bytes per second
# the crowd received (settled) in a first run of this length without one.
EGRESS_BUDGET_SHARE = 0.5
CALIBRATION_SECONDS = 25.0
CALIBRATION_SETTLED_SECONDS = 10
# Comments per second one sender thread sends at most: each send waits for
# its answer (tens of ms on a node under a crowd), so a lively room gets
# several senders, their sends interleaved.
SENDS_PER_THREAD = 5.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--topology", choices=nodes.TOPOLOGIES, default="gunicorn")
    parser.add_argument("--url", help="a running node's base URL instead of starting one (steady, storm, churn)")
    parser.add_argument("--room", default=ROOM, help="with --url: the room to poll")
    parser.add_argument("--token", help="with --url: a bearer token to send comments with (manage.py issue_token)")
    parser.add_argument(
        "--server-pid", type=int, action="append", default=[], help="with --url: its process group is the server's"
    )
    parser.add_argument("--scenario", default="steady", help=f"comma-separated: {', '.join(report.SCENARIOS)}")
    parser.add_argument(
        "--viewers", type=int, help=f"default {VIEWERS:,}; budget: {BUDGET_OVERLOAD * POLL_INTERVAL_SECONDS}x the poll"
        f" budget; egress: {EGRESS_VIEWERS:,}"
    )  # fmt: skip
    parser.add_argument(
        "--duration", type=float, help=f"seconds of crowd per scenario (default {DURATION_SECONDS:.0f}; budget"
        f" {BUDGET_DURATION_SECONDS:.0f})"
    )  # fmt: skip
    parser.add_argument(
        "--send-rate", type=float, help=f"comments/s (default {SEND_RATE:g}; egress {EGRESS_SEND_RATE:g})"
    )
    parser.add_argument("--poll-budget", type=float, default=1000.0, help="budget: DANMAKU_PULL_BUDGET_PER_SECOND")
    parser.add_argument(
        "--egress-budget", type=float, help="egress: DANMAKU_EGRESS_BUDGET_BYTES_PER_SECOND (default: measured, halved)"
    )
    parser.add_argument(
        "--leave-at", type=float, help=f"seconds in, viewers leave (budget: {BUDGET_LEAVE_AT_SECONDS:g})"
    )
    parser.add_argument("--leave-share", type=float, help=f"the share that leaves (default {LEAVE_SHARE:g})")
    parser.add_argument("--connect-seconds", type=float, default=1.0, help="every first connect() within this")
    parser.add_argument("--churn", type=float, default=0.05, help="churn: share of viewers reconnecting each second")
    parser.add_argument("--max-requests", type=int, default=RECYCLE_MAX_REQUESTS, help="recycle: GUNICORN_MAX_REQUESTS")
    parser.add_argument("--per-process", type=int, default=VIEWERS_PER_PROCESS, help="viewers per generator process")
    parser.add_argument(
        "--event-loop", choices=("asyncio", "uvloop"), default="uvloop", help="the generator's event loop"
    )
    parser.add_argument("--one-source", action="store_true", help="every viewer connects from 127.0.0.1")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra server environment")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    args.scenarios = [name.strip() for name in args.scenario.split(",") if name.strip()]
    unknown = [name for name in args.scenarios if name not in report.SCENARIOS]
    if unknown or not args.scenarios:
        parser.error(f"--scenario: choose from {', '.join(report.SCENARIOS)}")
    if args.url and set(args.scenarios) & {"recycle", "hup", "kill"}:
        parser.error("recycle, hup and kill need a node started here (no --url)")
    if args.url and "egress" in args.scenarios and args.egress_budget is None:
        parser.error("egress with --url: give the node's --egress-budget")
    return args


def for_scenario(args: argparse.Namespace, scenario: str) -> argparse.Namespace:
    """``args`` with the scenario's defaults where none was given."""
    run = argparse.Namespace(**vars(args))
    if scenario == "budget":
        viewers = round(BUDGET_OVERLOAD * args.poll_budget * POLL_INTERVAL_SECONDS)
        defaults = (viewers, BUDGET_DURATION_SECONDS, SEND_RATE, BUDGET_LEAVE_AT_SECONDS, LEAVE_SHARE)
    elif scenario == "egress":
        defaults = (EGRESS_VIEWERS, DURATION_SECONDS, EGRESS_SEND_RATE, None, LEAVE_SHARE)
    else:
        defaults = (VIEWERS, DURATION_SECONDS, SEND_RATE, None, LEAVE_SHARE)
    for name, default in zip(("viewers", "duration", "send_rate", "leave_at", "leave_share"), defaults, strict=True):
        if getattr(run, name) is None:
            setattr(run, name, default)
    return run


def raise_open_file_limit() -> int:
    """As far as the hard limit: the generator processes and a node started
    here inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def sources(base_url: str, args: argparse.Namespace) -> tuple[str, ...]:
    """On loopback, each generator process connects from its own 127.0.0.x
    (its own ephemeral ports, as viewers come from many addresses)."""
    if args.one_source or urlsplit(base_url).hostname != "127.0.0.1":
        return ()
    return loopback_sources(math.ceil(args.viewers / args.per_process))


def run_scenario(args: argparse.Namespace, scenario: str) -> bool:
    args = for_scenario(args, scenario)
    extra_env = dict(item.split("=", 1) for item in args.env)
    if scenario == "recycle":
        extra_env["GUNICORN_MAX_REQUESTS"] = str(args.max_requests)
    if scenario == "budget":
        extra_env["DANMAKU_PULL_BUDGET_PER_SECOND"] = f"{args.poll_budget:g}"
    if args.url:
        base_url = args.url.rstrip("/")
        groups = sorted({os.getpgid(pid) for pid in args.server_pid})
        node = nodes.Node(base_url, f"{base_url}/api/v1/rooms/{args.room}/danmaku", args.token, groups)
        return judge(args, scenario, measure(args, scenario, node, args.room))
    if scenario == "egress" and args.egress_budget is None:
        args.egress_budget = calibrate(args, extra_env)
    if scenario == "egress":
        extra_env["DANMAKU_EGRESS_BUDGET_BYTES_PER_SECOND"] = f"{args.egress_budget:.0f}"
    with started_node(args, extra_env) as node:
        figures = measure(args, scenario, node, ROOM)
    return judge(args, scenario, figures)


@contextlib.contextmanager
def started_node(args: argparse.Namespace, extra_env: dict[str, str]) -> Iterator[nodes.Node]:
    with (
        tempfile.TemporaryDirectory(prefix="danmaku-crowd-") as tmp,
        nodes.start(args.topology, room=ROOM, var_dir=Path(tmp), extra_env=extra_env) as node,
    ):
        yield node


def calibrate(args: argparse.Namespace, extra_env: dict[str, str]) -> float:
    """The egress budget: a share of what the same crowd receives from a node without one."""
    run = argparse.Namespace(**vars(args))
    run.duration = CALIBRATION_SECONDS
    with started_node(args, extra_env) as node:
        figures = measure(run, "egress", node, ROOM)
    needed = statistics.mean(s["bytes"] for s in figures.seconds[CALIBRATION_SETTLED_SECONDS:])
    budget = EGRESS_BUDGET_SHARE * needed
    print(
        f"egress calibration: {args.viewers:,} viewers at {args.send_rate:g} comments/s received"
        f" {needed:,.0f} B/s ({figures.polls_per_second:,.0f} answers/s) without a budget; budget {budget:,.0f} B/s"
    )
    return budget


def start_senders(node: nodes.Node, rate: float, stop: threading.Event) -> list[Sender]:
    """``rate`` comments a second, spread evenly: senders a send apart."""
    count = math.ceil(rate / SENDS_PER_THREAD)
    senders = []
    for number in range(count):
        if number:
            time.sleep(1 / rate)
        sender = Sender(
            url=node.send_url, token=node.token, name=f"crowd{number}", interval=count / rate, stop=stop, text=chat_text
        )
        sender.start()
        senders.append(sender)
    return senders


def measure(args: argparse.Namespace, scenario: str, node: nodes.Node, room: str) -> report.Figures:
    stop_sending = threading.Event()
    senders = start_senders(node, args.send_rate, stop_sending) if node.token else []
    scrapes = requests.Session()
    try:
        time.sleep(SEED_SECONDS)
        if scenario == "storm":
            warm = CrowdSpec(url=node.base_url, room=room, viewers=min(WARM_VIEWERS, args.viewers),
                             duration_seconds=WARM_SECONDS, per_process=args.per_process,
                             event_loop=args.event_loop)  # fmt: skip
            with Crowd(warm) as crowd:
                crowd.start()
                crowd.join()
        spec = CrowdSpec(
            url=node.base_url,
            room=room,
            viewers=args.viewers,
            duration_seconds=args.duration,
            connect_seconds=args.connect_seconds,
            churn=args.churn if scenario == "churn" else 0.0,
            per_process=args.per_process,
            source_addresses=sources(node.base_url, args),
            event_loop=args.event_loop,
            leave_at_seconds=args.leave_at,
            leave_share=args.leave_share,
        )
        events: list[tuple[float, str]] = []
        spread: list[int] = []
        rss_before = node.rss_bytes() if node.groups else None
        rss_peak = rss_before
        cpu_before = node.cpu_seconds() if node.groups else None
        # (when, the server's CPU seconds so far): its CPU in each second.
        server_samples: list[tuple[float, float]] = []
        # (when, the node's control gauges): read at each second's end.
        gauge_samples: list[tuple[float, dict[str, float]]] = []
        with Crowd(spec) as crowd:
            start = crowd.start()
            if cpu_before is not None:
                server_samples.append((start, node.cpu_seconds()))
            event_at = start + args.duration * EVENT_AT_SHARE if scenario in ("hup", "kill") else None
            end = start + args.duration
            spread_at = start + min(SPREAD_AT_SECONDS, args.duration / 2)
            tick = start
            while tick < end:
                tick = min(tick + 1.0, end)
                time.sleep(max(0.0, tick - time.monotonic()))
                if node.groups:
                    rss_peak = max(rss_peak, node.rss_bytes())
                    server_samples.append((time.monotonic(), node.cpu_seconds()))
                gauge_samples.append((time.monotonic(), metrics.scrape(node.base_url, room=room, session=scrapes)))
                if spread_at is not None and time.monotonic() >= spread_at:
                    spread_at = None
                    spread = node.connections_per_worker()
                if event_at is not None and time.monotonic() >= event_at:
                    event_at = None
                    if scenario == "hup":
                        node.hup()
                        events.append((time.monotonic(), "SIGHUP master"))
                    else:
                        victim = node.kill_worker()
                        events.append((time.monotonic(), f"SIGKILL worker {victim}"))
            result = crowd.join()
        server_cpu = node.cpu_seconds() - cpu_before if cpu_before is not None else None
    finally:
        stop_sending.set()
        for sender in senders:
            sender.join(5)
        scrapes.close()
    if result.left_at:
        events.append((min(result.left_at), f"{len(result.left_at):,} viewers leave"))
    sent = sorted((Sent(s.id, s.started, s.finished) for sender in senders for s in sender.sent), key=lambda s: s.id)
    failures = [failure for sender in senders for failure in sender.failures]
    if failures:
        print(f"send failures, e.g.: {failures[:3]}")
    return report.figures(
        result,
        scenario=scenario,
        topology="url" if args.url else args.topology,
        sent=sent,
        send_failures=len(failures),
        server_cpu_seconds=server_cpu,
        rss_before=rss_before,
        rss_peak=rss_peak,
        events=events,
        server_samples=server_samples,
        spread=spread,
        gauge_samples=gauge_samples,
        poll_budget=args.poll_budget if scenario == "budget" else None,
        egress_budget=args.egress_budget if scenario == "egress" else None,
        send_rate=args.send_rate,
    )


def judge(args: argparse.Namespace, scenario: str, figures: report.Figures) -> bool:
    """Print the figures and checks; write the JSON and the PNG."""
    controlled = scenario in ("budget", "egress")
    if controlled or figures.left:
        print(f"\n-- timeline · {scenario} (every 5th second) --")
        control.print_timeline(figures)
    passed = report.print_report(figures, report.checks(figures) + control.checks(figures))
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"crowd-{scenario}" if args.topology == "gunicorn" or args.url else f"crowd-{scenario}-{args.topology}"
    (args.out / f"{name}.json").write_text(json.dumps(figures.as_json(), indent=1, default=str))
    (plot.write_control_png if controlled else plot.write_png)(figures, args.out / f"{name}.png")
    print(f"wrote {args.out / name}.png and .json")
    return passed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limit = raise_open_file_limit()
    if args.per_process + OPEN_FILES_MARGIN > limit:
        print(f"warning: {args.per_process} viewers per process near the open-file limit {limit}", file=sys.stderr)
    results = [run_scenario(args, scenario) for scenario in args.scenarios]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
