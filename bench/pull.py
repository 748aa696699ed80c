"""Pull throughput at the machine's limit, against a bare WSGI app measured in
the same run on the same server settings.

Starts the project on free 127.0.0.1 ports (gunicorn gthread/sync or
granian; fast path and/or the ninja endpoint; SQLite or a private Redis),
seeds rooms and comments through the service functions, takes real cursors,
loads it with wrk (Lua scripts in bench/pullbench/lua/, Accept-Encoding:
gzip) and prints a table, the ratios to the baselines and the issue's
acceptance checks. Writes artifacts/bench/pull.png and pull.json.

    .venv/bin/python bench/pull.py                          # everything, 10 s per run, 64 connections
    .venv/bin/python bench/pull.py --connections 64,256     # plus the p99 check at 256
    .venv/bin/python bench/pull.py --repeat 5               # 5 alternating pairs per row, medians
    .venv/bin/python bench/pull.py --pin                    # server on CPU 0, wrk on CPU 1
    .venv/bin/python bench/pull.py --scenarios hot --servers gunicorn-gthread --duration 3

Exits 1 when any run saw an error (non-2xx/3xx answer or socket error).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.pullbench import plot, servers, suite, table, workload
from harness import local

DEFAULT_OUT = local.BASE_DIR / "artifacts" / "bench"


def _names(allowed: tuple[str, ...]):
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(name.strip() for name in text.split(",") if name.strip())
        unknown = [name for name in names if name not in allowed]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)} (comma-separated)")
        return names

    return parse


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("comma-separated whole numbers, e.g. 64,256") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("connection counts must be positive")
    return counts


def parse_args(argv: list[str] | None = None) -> tuple[suite.Options, Path]:
    defaults = suite.Options()
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--duration", type=float, default=defaults.duration, help="seconds per measured run (default %(default)s)")
    add("--warmup", type=float, default=defaults.warmup, help="seconds of unmeasured load first (default %(default)s)")
    add("--connections", type=_counts, default=defaults.connections, help="e.g. 64,256 (default 64)")
    add("--workers", type=int, default=defaults.workers, help="server processes (default %(default)s)")
    add("--threads", type=int, default=None, help="threads per process (default: what each server ships with)")
    add(
        "--scenarios",
        type=_names(suite.SCENARIOS),
        default=defaults.scenarios,
        help=f"comma-separated from {','.join(suite.SCENARIOS)} (default all)",
    )
    add(
        "--servers",
        type=_names(servers.SERVERS),
        default=defaults.servers,
        help=f"comma-separated from {','.join(servers.SERVERS)} (default {','.join(defaults.servers)})",
    )
    add(
        "--paths",
        type=_names(suite.PATHS),
        default=defaults.paths,
        help="fast (DANMAKU_PULL_FAST_PATH=1) and/or ninja (=0) (default both)",
    )
    add("--rooms", type=int, default=defaults.rooms, help="rooms in the rooms/mixed/redis loads (default %(default)s)")
    add(
        "--repeat",
        type=int,
        default=defaults.repeat,
        help="runs per row, each paired with a run of the bare app; figures are their medians (default %(default)s)",
    )
    add("--pin", action="store_true", help="taskset: server on CPU 0, wrk on CPU 1")
    add("--wrk-threads", type=int, default=None, help="wrk threads (default 2, or 1 with --pin)")
    add("--nginx-workers", type=int, default=defaults.nginx_workers, help="nginx worker processes (default 1)")
    add("--out", type=Path, default=DEFAULT_OUT, help="where pull.png and pull.json go (default artifacts/bench)")
    args = parser.parse_args(argv)
    if args.duration < 1 or args.warmup < 0 or min(args.workers, args.threads or 1, args.rooms, args.repeat) < 1:
        parser.error("--duration ≥ 1, --warmup ≥ 0, --workers, --threads, --rooms and --repeat ≥ 1")
    options = suite.Options(
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        workers=args.workers,
        threads=args.threads,
        scenarios=args.scenarios,
        servers=args.servers,
        paths=args.paths,
        rooms=args.rooms,
        pin=args.pin,
        wrk_threads=args.wrk_threads,
        nginx_workers=args.nginx_workers,
        repeat=args.repeat,
    )
    return options, args.out


def main(argv: list[str] | None = None) -> int:
    options, out_dir = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so every server's finally block runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        report = suite.run(options, say=lambda text: print(text, flush=True))
    except (servers.ServerError, workload.WorkloadError, local.LocalServerError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    except suite.wrk.WrkError as exc:
        print(f"wrk failed: {exc}", file=sys.stderr)
        return 2

    threads = f"{options.threads} threads" if options.threads else "shipped thread counts"
    print()
    print(
        f"pull benchmark: {options.repeat} run(s) per row, {options.duration:g} s each "
        f"after {options.warmup:g} s warm-up, "
        f"{options.workers} workers, {threads}, wrk {options.load_threads} thread(s)"
        f"{', pinned (server CPU 0, wrk CPU 1)' if options.pin else ''}; "
        f"load average before {report.machine['loadavg_before']}, after {report.machine['loadavg_after']}"
    )
    if report.hot_body_bytes:
        print(
            f"hot answer: {report.hot_body_bytes['gzip']} bytes gzipped, "
            f"{report.hot_body_bytes['identity']} bytes identity"
        )
    print()
    print(table.format_table(report.results))
    print()
    print(
        "x base: req/s over the bare app on the same server settings, the median of the runs' pairs "
        "(range: lowest-highest pair); nginx-cache: over nginx-static; pulls p99 (mixed): a 2-connection probe "
        "pulling the hot room beside the load (p99 mixes sends and pulls)"
    )
    for check in table.checks(report.results):
        print(check)
    for skipped in report.skipped:
        print(f"[skip] {skipped}")
    for note in report.notes:
        print(f"[note] {note}")

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "pull.json").write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    if report.results:
        plot.write_png(
            report.results,
            out_dir / "pull.png",
            title=f"pull benchmark, {report.machine['started']} "
            f"({options.workers} workers, {threads}{', pinned' if options.pin else ''})",
        )
    print(f"\nwrote {out_dir / 'pull.json'} and {out_dir / 'pull.png'}")
    return 1 if any(result.errors for result in report.results) else 0


if __name__ == "__main__":
    sys.exit(main())
