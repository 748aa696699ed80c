"""The pull benchmark still runs end to end: a tiny configuration (one short
hot run against the project and the bare baseline) prints its table and
writes the plot and the JSON. Catches a suite that rotted, not a slow one.
And its acceptance checks divide by the right baseline."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from bench.pullbench import table
from bench.pullbench.suite import Result, _attach_ratios, _combine
from harness.local import BASE_DIR
from harness.services import services_required


@pytest.mark.slow
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
            "--scenarios", "hot,mixed", "--servers", "gunicorn", "--paths", "fast",
            "--rooms", "5", "--repeat", "2", "--out", str(tmp_path),
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
    assert [(row["scenario"], row["app"]) for row in rows] == [("hot", "fast"), ("mixed", "fast"), ("hot", "bare")]
    mixed = rows.pop(1)
    assert mixed["sends"] > 0
    # Beside the mixed load a probe times pulls alone; only that row has it.
    assert mixed["pull_p99_ms"] > 0
    assert rows[0]["pull_p99_ms"] is None
    assert all(row["requests"] > 0 and row["errors"] == 0 for row in rows)
    # The baseline was fed the project's own answer: the same size on the wire
    # (within the few bytes next_ms's jitter and the ETag may vary by).
    assert rows[1]["bytes_per_response"] == pytest.approx(rows[0]["bytes_per_response"], rel=0.05)
    assert rows[0]["ratio"] is not None
    # Two project runs, each paired with a bare run: the ratio is their median.
    assert rows[0]["runs"] == mixed["runs"] == 2
    assert rows[1]["runs"] == 4  # a bare run beside each of the four
    assert rows[0]["ratio_low"] <= rows[0]["ratio"] <= rows[0]["ratio_high"]
    assert (tmp_path / "pull.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def _row(scenario: str, server: str, app: str, rps: float, *, connections: int = 64, p99_ms: float = 5.0) -> Result:
    return Result(
        scenario=scenario, server=server, app=app, connections=connections, rps=rps, p50_ms=1.0, p99_ms=p99_ms,
        errors=0, socket_errors=0, status_errors=0, bytes_per_response=1000.0, server_cpu_s=1.0, wrk_cpu_s=1.0,
        seconds=10.0, requests=int(rps * 10), sends=0,
    )  # fmt: skip


def _verdicts(results: list[Result]) -> dict[str, bool | None]:
    """Each check's verdict; a check made per server fails if any server fails."""
    _attach_ratios(results)
    verdicts: dict[str, bool | None] = {}
    for check in table.checks(results):
        earlier = verdicts.get(check.key, True)
        verdicts[check.key] = None if check.ok is None else (check.ok and earlier is not False)
    return verdicts


def test_checks_judge_each_figure_against_the_baseline_of_the_same_run():
    results = [
        # gunicorn as shipped, over the bare app on stock gthread.
        _row("hot", "gunicorn w2t4", "fast", 10_000),
        _row("hot", "gunicorn-gthread w2t4", "bare", 9_000),
        _row("hot", "granian w2t2", "fast", 40_000),
        _row("hot", "granian w2t2", "bare", 44_000),
        _row("rooms", "granian w2t2", "fast", 30_000, connections=256, p99_ms=20.0),
        _row("rooms", "gunicorn w2t4", "fast", 8_000, connections=256, p99_ms=80.0),
        _row("hot", "nginx w1 + gunicorn-gthread w2t4", "nginx-cache", 45_000),
        _row("hot", "nginx w1", "nginx-static", 50_000),
    ]
    verdicts = _verdicts(results)
    assert results[0].ratio == pytest.approx(10_000 / 9_000, abs=0.001)
    assert results[6].ratio == pytest.approx(0.9)
    assert verdicts["gunicorn"] is True
    # 40,000 is 4.4x bare gunicorn gthread and 0.91x bare granian.
    assert verdicts["best"] is True
    assert verdicts["p99"] is False  # gunicorn's 80 ms at 256 connections
    assert verdicts["errors"] is True
    assert verdicts["nginx"] is True


def test_checks_fail_a_best_server_below_its_own_bare_app_and_say_what_was_not_measured():
    results = [
        _row("hot", "gunicorn-gthread w2t4", "fast", 10_000),
        _row("hot", "gunicorn-gthread w2t4", "bare", 9_000),
        _row("hot", "granian w2t2", "fast", 37_000),
        _row("hot", "granian w2t2", "bare", 50_000),
    ]
    verdicts = _verdicts(results)
    assert verdicts["best"] is False  # 4.1x bare gunicorn, but only 0.74x bare granian
    assert verdicts["p99"] is None
    assert verdicts["nginx"] is None


def test_repeated_runs_combine_into_medians_and_checks_use_the_paired_ratio():
    runs = [_row("hot", "gunicorn w2t4", "fast", rps) for rps in (9_000, 12_000, 10_000)]
    row = _combine(runs)
    assert (row.rps, row.runs, row.rps_runs) == (10_000, 3, [9_000, 12_000, 10_000])
    assert row.requests == sum(run.requests for run in runs)
    # Paired with bare runs seconds apart: 1.02x, although the medians of the
    # two rows divide to 0.91x (the bare runs met a quieter machine).
    row.ratio, row.ratio_low, row.ratio_high = 1.02, 0.98, 1.05
    row.baseline = "bare on gunicorn-gthread w2t4, paired"
    bare = _combine([_row("hot", "gunicorn-gthread w2t4", "bare", rps) for rps in (11_000, 11_000)])
    verdicts = _verdicts([row, bare])
    assert row.ratio == 1.02, "a paired ratio is kept, not recomputed"
    assert verdicts["gunicorn"] is True


def test_the_gunicorn_check_is_on_gunicorn_as_shipped_not_on_stock_gthread():
    results = [
        _row("hot", "gunicorn-gthread w2t4", "fast", 10_000),
        _row("hot", "gunicorn-gthread w2t4", "bare", 9_000),
    ]
    assert _verdicts(results)["gunicorn"] is None  # not measured: needs --servers gunicorn
    results = [
        _row("hot", "gunicorn w2t4", "fast", 8_000),
        _row("hot", "gunicorn-gthread w2t4", "bare", 9_000),
    ]
    assert _verdicts(results)["gunicorn"] is False
    assert results[0].baseline == "bare on gunicorn-gthread w2t4"
