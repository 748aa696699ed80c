"""The merged-duplicates benchmark still runs end to end on a small burst,
and its verdicts read what it measured. Catches a bench that rotted."""

from __future__ import annotations

import re
import subprocess
import sys

from harness.local import BASE_DIR


def test_merge_benchmark_measures_a_burst_both_ways_and_judges_it():
    done = subprocess.run(
        [sys.executable, "bench/merge.py", "--burst", "12", "--background", "3", "--rounds", "2"],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "a burst of 12 x '233333' within 2 s over 3 distinct comments a second" in out
    follower = re.search(r"follower items +(\d+) +(\d+) +[0-9.]+", out)
    assert follower is not None, out
    assert int(follower[2]) - int(follower[1]) == 11  # twelve comments, one item
    assert re.search(r"writer \(add \+ seal\) +[0-9.]+ms +[0-9.]+ms +[0-9.]+", out)
    assert "[PASS] the burst is 1 item(s) counting 12" in out
    assert out.count("[PASS]") == 3, out
