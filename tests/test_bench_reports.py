"""The report raid benchmark still runs end to end against a real node on a
small crowd, and its verdicts read what it measured. Catches a bench that
rotted, not a slow report."""

from __future__ import annotations

import re
import subprocess
import sys

from harness.local import BASE_DIR


def test_report_raid_benchmark_storms_a_node_and_judges_the_hide_and_the_flood():
    done = subprocess.run(
        [
            sys.executable,
            "bench/reports.py",
            *("--reporters", "20", "--threshold", "5", "--flood", "30", "--storm", "0.5"),
        ],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "20 reporters, storm 0.5 s, threshold 5, SQLite" in out
    assert re.search(r"sends \(baseline\) +20 answers in [0-9.]+ s, statuses \{201: 20\}, errors 0", out), out
    # 201 until the fifth report hid it, then 409 (all 201 if they all came first).
    raid = re.search(r"reports \(raid\) +20 answers .*statuses \{201: (\d+)(?:, 409: (\d+))?\}", out)
    assert raid is not None, out
    assert int(raid[1]) >= 5
    assert int(raid[1]) + int(raid[2] or 0) == 20
    hidden = re.search(
        r"left pulls [0-9.]+ s after the raid began; 1 auto-hide audit row\(s\); (\d+) reports stored", out
    )
    assert hidden is not None, out
    # Every report stored was answered 201: none waited past the hide into the table.
    assert hidden[1] == raid[1]
    assert "statuses {201: 10, 429: 20}, errors 0" in out
    assert out.count("[PASS]") == 6, out
