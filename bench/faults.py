"""Redis faults under load: freeze, stop (restart empty), stop with data.

Each scenario starts its own redis-server on a free port (the shared one is
left alone) and its own gunicorn (2 workers, SQLite in a tmp dir), runs a
bounded load of sends and pulls with a client-side ledger (harness.load),
freezes or stops Redis for a few seconds under that load, and prints one
summary line. Exits 1 if any scenario broke a promise (a failed request, one
slower than 1 s, a comment lost, duplicated, or missing from the stream).

    .venv/bin/python bench/faults.py [--scenario freeze|stop|stop-with-data|all]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import load
from harness.local import LocalServerError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=[*load.SCENARIOS, "all"], default="all")
    parser.add_argument("--verbose", action="store_true", help="print each phase as it starts")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed (each scenario starts a private one)")
    # SIGTERM should stop gunicorn and redis-server too, like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    progress = (lambda message: print(message, file=sys.stderr, flush=True)) if args.verbose else (lambda _: None)

    failed = False
    for name in load.SCENARIOS if args.scenario == "all" else (args.scenario,):
        try:
            figures = load.run_scenario(name, progress=progress)
        except LocalServerError as exc:
            raise SystemExit(str(exc)) from None
        print(figures.line(), flush=True)
        if figures.violations:
            failed = True
            print(f"  VIOLATIONS: {'; '.join(figures.violations)}")
            for detail in figures.details:
                print(f"  {detail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
