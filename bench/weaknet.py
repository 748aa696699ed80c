"""Viewers and the viewer page on a weak network, the long variant of
tests/test_weak_network.py and tests/pages/test_viewer_weak_network.py.

Starts gunicorn as shipped (harness.local, 2 workers, SQLite in a tmp dir,
a room at its normal 3 s interval), puts harness.weaknet in front of it
(latency with jitter, a cap per connection, random resets and stalls,
outages at chosen comments) and feeds the room a comment a second through
the send API. First a crowd of viewers (harness.crowd) behind the proxy,
then the real page in headless Chromium, each in its own run on the same
network. Prints, per run: comments sent; seen, missed, twice, gaps;
recovery after each outage (against the back-off step in force + 1 s); for
the page, stutter (harness.stutter). Exits 1 if a comment was missed or
shown twice, a gap was answered, or someone came back late.

    ulimit -n 20000
    flock /tmp/bench.lock .venv/bin/python bench/weaknet.py \\
        [--viewers 100] [--rtt-ms 300] [--jitter-ms 100] [--rate 64000] \\
        [--reset 0.05] [--stall 0.02] [--comments 46] \\
        [--outage 3:10:stall --outage 18:15:reset] [--no-page] [--no-crowd]
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import local
from harness.weakcrowd import Outage, WeakResult, WeakSpec
from harness.weakcrowd import run as run_crowd
from harness.weaknet import OUTAGE_MODES, Weakness
from harness.weakpage import PageRun, PageSpec, watch

ROOM = "weakbench"
SENDERS = ("weak-bench-0", "weak-bench-1", "weak-bench-2")
# The second ends 23 s before the end of the run (the last comment + a 10 s
# tail): a 15 s outage takes the back-off to at most its 16 s step.
DEFAULT_OUTAGES = ("3:10:stall", "18:15:reset")


def outage(text: str) -> Outage:
    """``before_comment:seconds:mode``, e.g. ``16:20:reset``."""
    before, seconds, mode = text.split(":")
    if mode not in OUTAGE_MODES:
        raise argparse.ArgumentTypeError(f"mode must be one of {OUTAGE_MODES}")
    return Outage(int(before), float(seconds), mode)


def describe(outage: Outage) -> str:
    return f"{outage.mode} {outage.seconds:g} s before comment {outage.before_comment}"


def crowd_report(result: WeakResult) -> bool:
    d = result.delivery
    print(
        f"crowd: {result.spec.viewers} viewers, {result.sent} comments: owed {d.owed} "
        f"(every viewer every comment: {result.every_viewer_owed_everything}), missed {d.missed}, "
        f"missed in a gap {d.missed_in_gap}, twice {d.duplicates}, gaps {d.gaps}, "
        f"never answered {d.viewers_never_answered}"
    )
    print(f"  errors by kind: {dict(result.errors)}; retried at once: {dict(result.crowd.retried)}")
    print(f"  network: {result.net}")
    ok = result.every_viewer_owed_everything and (d.missed, d.missed_in_gap, d.duplicates, d.gaps) == (0, 0, 0, 0)
    for recovered in result.recoveries:
        seconds = [viewer.seconds for viewer in recovered.viewers]
        limits = [viewer.limit for viewer in recovered.viewers]
        print(
            f"  after {describe(recovered.outage)}: back in p50 {statistics.median(seconds):.2f} s, "
            f"max {recovered.worst:.2f} s; limit (step in force + 1 s) p50 {statistics.median(limits):.2f} s, "
            f"max {max(limits):.2f} s; late {len(recovered.late)}; later because a random fault hit a try "
            f"after the return {len(recovered.hit_again)}"
        )
        ledgers = {ledger.index: ledger for ledger in result.crowd.ledgers}
        for viewer in (recovered.late + recovered.hit_again)[:5]:
            ledger, since = ledgers[viewer.index], recovered.back_at - recovered.outage.seconds - 5
            answers = [round(at - recovered.back_at, 2) for at in ledger.answered_at if at > since]
            backoffs = [(round(at - recovered.back_at, 2), wait) for at, wait in ledger.backoffs if at > since]
            print(
                f"    late: viewer {viewer.index} back in {viewer.seconds:.2f} s, limit {viewer.limit:.2f} s, "
                f"{viewer.faults_after} faults after the return; "
                f"from the return: answers {answers[:8]}, back-offs (at, ms) {backoffs[:8]}"
            )
        ok = ok and not recovered.late
    return ok


def page_report(run: PageRun) -> bool:
    shown = run.shown
    print(
        f"page: {len(run.sent)} comments: shown {sum(1 for s in run.sent if shown[s.id])}, "
        f"missed {len(run.missed)}, twice {len(run.twice)}, not sent but shown {len(run.strangers)}; "
        f"stutter {run.stutter_seconds:.1f} s of {run.measured_seconds:.0f} s"
    )
    print(f"  network: {run.net}")
    ok = not (run.missed or run.twice or run.strangers)
    for recovered in run.recoveries:
        print(
            f"  after {describe(recovered.outage)}: live again in {recovered.seconds:.2f} s "
            f"(limit: step in force + 1 s = {recovered.limit:.2f} s; "
            f"{recovered.faults_after} random faults after the return)"
        )
        ok = ok and (recovered.seconds <= recovered.limit or recovered.faults_after > 0)
    return ok


def run_page(server, spec: PageSpec) -> PageRun:
    from playwright.sync_api import sync_playwright

    from harness.services import CHROMIUM_ARGS, require_chromium

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=require_chromium(), headless=True, args=CHROMIUM_ARGS)
        try:
            return watch(browser, server, room=ROOM, spec=spec)
        finally:
            browser.close()


def crowd_phases(viewers: int, comments: int, weakness: Weakness, outages: tuple[Outage, ...], *, seed: int):
    """The crowd's runs: random faults and outages apart when both are
    asked for. A random reset or stall landing on a viewer's first try
    after an outage starts a new back-off (or delays the answer) that the
    outage did not cause: measured together, the recovery check would
    blame the outage for it."""
    faults = weakness.reset_probability or weakness.stall_probability
    if faults and outages:
        calm = dataclasses.replace(weakness, reset_probability=0.0, stall_probability=0.0)
        return [
            ("random faults, no outage", WeakSpec(viewers, comments, weakness, (), seed=seed)),
            ("outages, no random faults", WeakSpec(viewers, comments, calm, outages, seed=seed)),
        ]
    return [("as asked", WeakSpec(viewers, comments, weakness, outages, seed=seed))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--rtt-ms", type=float, default=300)
    parser.add_argument("--jitter-ms", type=float, default=100)
    parser.add_argument("--rate", type=int, default=64_000, help="bytes/s per connection and direction; 0: no cap")
    parser.add_argument("--reset", type=float, default=0.05, help="probability per answer chunk")
    parser.add_argument("--stall", type=float, default=0.02, help="probability per answer chunk")
    parser.add_argument("--stall-seconds", type=float, nargs=2, default=(1.0, 3.0))
    parser.add_argument("--comments", type=int, default=46, help="one a second")
    parser.add_argument("--outage", type=outage, action="append", help="before_comment:seconds:stall|reset")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--no-crowd", action="store_true")
    parser.add_argument("--no-page", action="store_true")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    outages = tuple(args.outage or (outage(text) for text in DEFAULT_OUTAGES))
    weakness = Weakness(
        rtt_ms=args.rtt_ms,
        jitter_ms=args.jitter_ms,
        rate_bytes_per_second=args.rate,
        reset_probability=args.reset,
        stall_probability=args.stall,
        stall_seconds=tuple(args.stall_seconds),
        seed=args.seed,
    )
    print(
        f"network: RTT {args.rtt_ms:g} ms ± {args.jitter_ms / 2:g} ms, cap {args.rate} B/s per connection and "
        f"direction, resets {args.reset:g} and stalls {args.stall:g} ({args.stall_seconds[0]:g}-"
        f"{args.stall_seconds[1]:g} s) per answer chunk; outages: {', '.join(map(describe, outages)) or 'none'}",
        flush=True,
    )
    ok = True
    with local.gunicorn(room=ROOM, users=SENDERS) as server:
        if not args.no_crowd:
            for label, spec in crowd_phases(args.viewers, args.comments, weakness, outages, seed=args.seed):
                print(f"crowd, {label}:", flush=True)
                result = run_crowd(
                    base_url=server.base_url,
                    room=ROOM,
                    send_url=server.danmaku_url(ROOM),
                    tokens=server.tokens,
                    spec=spec,
                )
                ok = crowd_report(result) and ok
        if not args.no_page:
            ok = page_report(run_page(server, PageSpec(args.comments, weakness, outages))) and ok
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
