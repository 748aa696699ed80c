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


def test_replay_crowd_benchmark_storms_a_real_node_and_counts_its_builds():
    done = subprocess.run(
        [sys.executable, "bench/replay.py", "--crowd", "20", "--seconds", "1", "--comments", "200", "--segments", "2"],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    cold = re.search(r"cold: connected 20/20, .* errors 0, statuses \{200: \d+\}, segments built (\d+);", out)
    warm = re.search(r"warm: connected 20/20, .* errors 0, statuses \{200: \d+\}, segments built (\d+);", out)
    assert cold, out
    assert warm, out
    # Two segments, built once in each of the node's two workers at most; never again.
    assert 1 <= int(cold[1]) <= 4
    assert int(warm[1]) == 0
    assert "[PASS] every viewer connected" in out
