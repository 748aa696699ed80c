"""The pull benchmark still runs end to end: a tiny configuration (one short
hot run against the project and the bare baseline) prints its table and
writes the plot and the JSON. Catches a suite that rotted, not a slow one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from harness.local import BASE_DIR
from harness.services import services_required

pytestmark = pytest.mark.slow


def test_pull_benchmark_prints_a_table_and_writes_the_plot(tmp_path):
    if shutil.which("wrk") is None:
        reason = "wrk is not installed (apt-get install -y -q wrk)"
        if services_required():
            pytest.fail(f"{reason} (DANMAKU_REQUIRE_SERVICES=1 makes this a failure)", pytrace=False)
        pytest.skip(reason)
    done = subprocess.run(
        [
            sys.executable, "bench/pull.py",
            "--duration", "1", "--warmup", "0", "--connections", "2",
            "--scenarios", "hot", "--servers", "gunicorn-gthread", "--paths", "fast",
            "--rooms", "5", "--out", str(tmp_path),
        ],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "req/s" in done.stdout
    assert "[PASS] 0 errors" in done.stdout
    rows = json.loads((tmp_path / "pull.json").read_text())["results"]
    assert [(row["scenario"], row["app"]) for row in rows] == [("hot", "fast"), ("hot", "bare")]
    assert all(row["requests"] > 0 and row["errors"] == 0 for row in rows)
    # The baseline was fed the project's own answer: the same size on the wire
    # (within the few bytes next_ms's jitter and the ETag may vary by).
    assert rows[1]["bytes_per_response"] == pytest.approx(rows[0]["bytes_per_response"], rel=0.05)
    assert rows[0]["ratio"] is not None
    assert (tmp_path / "pull.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
