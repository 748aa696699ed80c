"""Running wrk with one of our Lua scripts and reading its report.

wrk prints its own summary; ``lua/report.lua`` adds one JSON line with the
exact counts (requests, bytes, socket and status errors, latency
percentiles), which is what we read. The server's CPU is sampled around the
run from /proc; wrk's own CPU comes from wait4() when it is reaped (the same
utime + stime /proc/<pid>/stat shows, taken at the very end).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.pullbench import cpu

LUA_DIR = Path(__file__).resolve().parent / "lua"
MARKER = "PULLBENCH-JSON "
# wrk stops itself after --duration; allow this much more before killing it.
OVERRUN_SECONDS = 15
# A request slower than this is a wrk timeout error (wrk's own default is 2 s).
REQUEST_TIMEOUT_SECONDS = 5


class WrkError(RuntimeError):
    pass


@dataclass
class WrkResult:
    requests: int
    seconds: float
    bytes: int
    sends: int
    socket_errors: int
    status_errors: int
    latency_us: dict[str, float]
    wrk_cpu_seconds: float
    server_cpu_seconds: float
    # wrk's whole output, for scripts that report more than report.lua.
    stdout: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.socket_errors + self.status_errors

    @property
    def bytes_per_response(self) -> float:
        return self.bytes / self.requests if self.requests else 0.0


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkError("wrk is not installed: apt-get install -y -q wrk")
    return path


def run(
    *,
    url: str,
    script: str,
    args: list[str],
    duration: float,
    connections: int,
    threads: int,
    server_pgids: list[int],
    cpu_list: str | None = None,
) -> WrkResult:
    """Load ``url`` with ``lua/<script>`` for ``duration`` seconds."""
    command = [
        wrk_binary(),
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        f"--timeout={REQUEST_TIMEOUT_SECONDS}s",
        "-s",
        str(LUA_DIR / script),
        url,
        "--",
        *args,
    ]
    if cpu_list is not None:
        command = ["taskset", "-c", cpu_list, *command]
    server_before = sum(cpu.group_cpu_seconds(pgid) for pgid in server_pgids)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, start_new_session=True)
        try:
            status, wrk_cpu = _wait(process, timeout=duration + OVERRUN_SECONDS)
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        server_after = sum(cpu.group_cpu_seconds(pgid) for pgid in server_pgids)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if status:
        raise WrkError(f"wrk exited with {status}:\n{stderr.strip()}\n{stdout.strip()}")
    return _parse(stdout, wrk_cpu=wrk_cpu, server_cpu=server_after - server_before)


def _wait(process: subprocess.Popen, *, timeout: float) -> tuple[int, float]:
    """Reap ``process`` ourselves (wait4 gives its CPU time); kill it at ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            # Tell Popen it is reaped, so it does not wait for it again.
            process.returncode = os.waitstatus_to_exitcode(status)
            return process.returncode, usage.ru_utime + usage.ru_stime
        time.sleep(0.05)
    raise WrkError(f"wrk did not finish within {timeout:.0f} s")


def _parse(stdout: str, *, wrk_cpu: float, server_cpu: float) -> WrkResult:
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            report = json.loads(line[len(MARKER) :])
            break
    else:
        raise WrkError(f"wrk printed no report line:\n{stdout}")
    errors = report["errors"]
    return WrkResult(
        requests=report["requests"],
        seconds=report["duration_us"] / 1e6,
        bytes=report["bytes"],
        sends=report["sends"],
        socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        status_errors=errors["status"],
        latency_us=report["latency_us"],
        wrk_cpu_seconds=wrk_cpu,
        server_cpu_seconds=server_cpu,
        stdout=stdout,
    )
