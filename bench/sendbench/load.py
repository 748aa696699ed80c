"""Sends driven by wrk (``lua/send.lua``), through the pull benchmark's runner.

One connection per wrk thread, so the script times each request itself and
keeps latency per answer status. The users' tokens, the room's path and the
pace travel to every thread in a data file (a Lua chunk).
"""

from __future__ import annotations

import json
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.pullbench import wrk

SCRIPT = Path(__file__).resolve().parent / "lua" / "send.lua"
MARKER = "SENDBENCH-JSON "
# What a token may hold, so that it can go into the Lua data file as is.
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]+")
# Texts of a run are numbered from a random multiple of this (a run sends fewer).
TEXT_NUMBERS = 10**7


@dataclass
class SendRun:
    """One wrk run of sends: what was sent, how it was answered, how long it took."""

    seconds: float
    connections: int
    sent: int
    answered: int
    skipped: int
    # Times a connection waited for its next user's slow mode.
    held: int
    statuses: dict[int, int]
    # Per "all" and per status ("201", "202", ...): count, p50, p90, p99, max (µs).
    latency_us: dict[str, dict[str, int]]
    socket_errors: dict[str, int]
    wrk_cpu_seconds: float

    def count(self, *statuses: int) -> int:
        return sum(self.statuses.get(status, 0) for status in statuses)

    def count_range(self, low: int, high: int) -> int:
        return sum(count for status, count in self.statuses.items() if low <= status <= high)

    @property
    def accepted(self) -> int:
        return self.count(201)

    @property
    def server_errors(self) -> int:
        return self.count_range(500, 599)

    @property
    def socket_error_count(self) -> int:
        return sum(self.socket_errors.values())

    @property
    def cut_off(self) -> int:
        """Requests sent but neither answered nor failed: in flight when wrk
        stopped (it stops without waiting), at most one per connection."""
        return max(0, self.sent - self.answered)

    def per_second(self, count: int) -> float:
        return count / self.seconds if self.seconds else 0.0

    def latency_ms(self, name: str, centile: str) -> float | None:
        figures = self.latency_us.get(name)
        return None if figures is None else figures[centile] / 1000


def run(
    *,
    base_url: str,
    path: str,
    tokens: list[str],
    seconds: float,
    connections: int,
    rate: float = 0.0,
    work_dir: Path,
    warmup: float = 0.0,
    at_measure_start: Callable[[], None] | None = None,
    slow_mode_ms: int = 0,
) -> SendRun:
    """Send to ``path`` for ``seconds`` over ``connections`` connections, as
    fast as answered (``rate`` 0) or paced at ``rate`` sends/s in all.

    With ``warmup``, the same connections send alike for that many seconds
    first, uncounted, and ``at_measure_start`` is called (in another thread)
    when counting starts: the moment to read the counters the run is
    measured against."""
    if len(tokens) < connections:
        raise ValueError(f"{len(tokens)} users cannot fill {connections} connections: one user per thread at least")
    measure_from = time.monotonic() + warmup
    data = _data_file(
        work_dir,
        path=path,
        tokens=tokens,
        threads=connections,
        rate=rate,
        measure_from=measure_from,
        slow_mode_ms=slow_mode_ms,
    )
    timer = threading.Timer(max(0.0, measure_from - time.monotonic()), at_measure_start or (lambda: None))
    timer.start()
    try:
        result = wrk.run(
            url=base_url + path,
            script=str(SCRIPT),
            args=[str(data)],
            duration=warmup + seconds,
            connections=connections,
            threads=connections,
            server_pgids=[],
        )
    finally:
        timer.cancel()
    timer.join()
    if time.monotonic() < measure_from:
        raise wrk.WrkError(f"wrk stopped within its {warmup:g} s warm-up")
    measured = max(result.seconds - warmup, 0.0)
    return _parse(result, connections=connections, measured_seconds=measured)


def _data_file(
    work_dir: Path, *, path: str, tokens: list[str], threads: int, rate: float, measure_from: float, slow_mode_ms: int
) -> Path:
    for token in tokens:
        if not TOKEN_RE.fullmatch(token):
            raise ValueError(f"a token with unexpected characters: {token[:8]}...")
    # A fresh prefix for every run's client_ids (no run replays another's)
    # and a fresh first number for its texts (no user repeats a text).
    nonce = secrets.token_hex(4)
    base = secrets.randbelow(TEXT_NUMBERS) * TEXT_NUMBERS
    quoted = ", ".join(f'"{token}"' for token in tokens)
    chunk = (
        f'return {{path = "{path}", nonce = "{nonce}", base = {base}, threads = {threads}, rate = {float(rate)!r},\n'
        f"measure_from = {measure_from * 1e6:.0f}, slow_mode_ms = {int(slow_mode_ms)},\n"
        f"tokens = {{{quoted}}}}}\n"
    )
    with tempfile.NamedTemporaryFile("w", dir=work_dir, prefix="sends-", suffix=".lua", delete=False) as handle:
        handle.write(chunk)
    return Path(handle.name)


def _parse(result: wrk.WrkResult, *, connections: int, measured_seconds: float) -> SendRun:
    for line in result.stdout.splitlines():
        if line.startswith(MARKER):
            report = json.loads(line[len(MARKER) :])
            break
    else:
        raise wrk.WrkError(f"wrk printed no {MARKER.strip()} line:\n{result.stdout}")
    pull = next(
        json.loads(line[len(wrk.MARKER) :]) for line in result.stdout.splitlines() if line.startswith(wrk.MARKER)
    )
    errors = pull["errors"]
    return SendRun(
        seconds=measured_seconds,
        connections=connections,
        sent=report["sent"],
        answered=report["answered"],
        skipped=report["skipped"],
        held=report["held"],
        statuses={int(status): count for status, count in report["statuses"].items()},
        latency_us=report["latency_us"],
        socket_errors={name: errors[name] for name in ("connect", "read", "write", "timeout")},
        # wrk's own CPU, the measured part's share of it.
        wrk_cpu_seconds=result.wrk_cpu_seconds * measured_seconds / result.seconds if result.seconds else 0.0,
    )
