"""The replay benchmark still runs end to end on a small segment, and its
verdicts read what it measured. Catches a bench that rotted, not a slow build."""

from __future__ import annotations

import re
import subprocess
import sys

from harness.local import BASE_DIR


def test_replay_benchmark_measures_a_segment_and_judges_it():
    done = subprocess.run(
        [sys.executable, "bench/replay.py", "--comments", "300", "--rounds", "2"],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "replay segment of 300 comments on sqlite" in out
    assert re.search(r"build \+ gzip +[0-9.]+ ms best", out)
    assert re.search(r"serve, built +[0-9.]+ µs, 0 queries in 2000 serves", out)
    assert re.search(r"size +[0-9,]+ bytes, gzip [0-9,]+ bytes \(\d+% smaller\)", out)
    assert out.count("[PASS]") == 3, out
