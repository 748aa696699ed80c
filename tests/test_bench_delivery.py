"""The delivery-control cost benchmark still runs end to end: a tiny
configuration prints a row per budget setting with its baseline. Catches a
bench that rotted, not a slow controller."""

from __future__ import annotations

import re
import subprocess
import sys

from harness.local import BASE_DIR

ROW = re.compile(r"^\s*200\s+(none|1,000)\s+(\d+\.\d)\s+(\d+\.\d)\s+(\d+\.\d)x\s+\d+\.\d%$", re.M)


def test_delivery_benchmark_prints_a_row_per_budget_setting():
    done = subprocess.run(
        [sys.executable, "bench/delivery.py", "--rooms", "200", "--ticks", "1"],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = ROW.findall(done.stdout)
    assert [budget for budget, *_ in rows] == ["none", "1,000"], done.stdout
    assert all(float(tick) > 0 and float(base) >= 0 for _, tick, base, _ in rows), done.stdout
