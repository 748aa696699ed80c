"""The send benchmark still runs end to end: every scenario, a second each,
a few users, on the same private servers. Catches a bench that rotted, not a
slow send path: the acceptance figures are printed, not asserted."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys

import pytest

from harness.local import BASE_DIR
from harness.services import require_postgres, require_redis_server_binary, services_required

CAP = 10
# The users honour slow mode: at the 2 s default, 200 users offer at most
# 100 sends/s, and four connections send them all early in the warm-up,
# then wait out slow mode through the whole measured second (0 sent).
SLOW_MODE_MS = 100


def _rabbitmq_running() -> bool:
    if shutil.which("rabbitmqctl") is None:
        return False
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.mark.slow
def test_send_benchmark_runs_every_scenario_and_prints_the_ceiling_the_cap_and_the_crowd():
    if shutil.which("wrk") is None:
        reason = "wrk is not installed (apt-get install -y -q wrk)"
        if services_required():
            pytest.fail(f"{reason} (DANMAKU_REQUIRE_SERVICES=1 makes this a failure)", pytrace=False)
        pytest.skip(reason)
    require_postgres()
    require_redis_server_binary()
    # RabbitMQ as in production where it runs; otherwise a private redis-server.
    broker = "rabbitmq" if _rabbitmq_running() else "redis"
    done = subprocess.run(
        [
            sys.executable, "bench/send.py", "--scenario", "all", "--broker", broker,
            "--seconds", "1", "--warmup", "1", "--users", "200", "--connections", "4",
            "--rate", "60", "--cap", str(CAP), "--slow-mode-ms", str(SLOW_MODE_MS), "--crowd-interval", "1",
        ],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, f"{out}\n{done.stderr}"
    assert _number(r"^accepted: [\d,]+ sends/s \(([\d,]+) in", out) > 0
    assert _number(r"^ratio: accepted sends/s ÷ ceiling sends/s = [\d,]+ ÷ ([\d,]+) = \d+\.\d\d$", out) > 0
    assert re.search(r"^CPU per accepted send: web [\d.]+ \+ postgres [\d.]+ \+ redis [\d.]+ \+ celery", out, re.M)
    assert "  [PASS] 0 5xx, 0 socket errors" in out
    # The flood: accepted some, no 5xx, the cap held in every second.
    assert _number(r"^statuses: .*?   accepted ([\d,]+)", out) > 0
    assert not re.search(r"^statuses: .*\b5\d\d: ", out, re.M), out
    assert _number(rf"at most (\d+) in a second \(cap {CAP}\)", out) <= CAP
    assert "  [PASS] the cap held to the comment" in out
    assert "  [PASS] every request answered" in out
    # A refusal's cost: the flood against the same room at the cap's own pace.
    assert re.search(r"^at the cap's own pace \(10/s, .*server CPU [\d.]+ s", out, re.M), out
    assert re.search(r"^per rejected send: ([\d,]+ µs of server CPU|not measured)", out, re.M), out
    # Both floors under a refusal: the bare app's write, and its answer alone.
    assert _number(r"^floor: the bare app \(one INSERT.*?: ([\d,]+) requests/s", out) > 0
    assert _number(r"^floor: the bare app answering 202 at once.*?: ([\d,]+) requests/s", out) > 0
    # The crowd: everyone on their own connection, every counted send accepted.
    assert "  [PASS] every user connected: 200 of 200" in out
    assert "  [PASS] 0 errors, 0 5xx" in out
    assert _number(r"^counted: sent ([\d,]+) ", out) > 0
    assert "  [PASS] every counted send accepted" in out


def _number(pattern: str, out: str) -> int:
    found = re.search(pattern, out, re.M)
    assert found, f"no line matching {pattern!r} in:\n{out}"
    return int(found[1].replace(",", ""))
