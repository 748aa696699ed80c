"""A crowd of senders (bench/send.py's ``crowd`` scenario): one kept-alive
connection per user, as each viewer's page holds its own.

Every user connects and sends its first comment within ``storm_seconds``
(a storm: a goal, and the whole room reacts), as a page opens its
connection when it first sends; then it sends a fresh comment (a new
``client_id``) with its bearer token about every ``interval_s`` (0.5-1.5
times it, at random, and never sooner than the room's slow mode after its
previous answer) on the same kept-alive connection, reading each answer
whole before the next. Sends written in the counted window (after the
storm and everyone's second send) are counted. The crowd runs on one asyncio
loop in this process (so the process's CPU is the load generator's):
every connect, write and read has a deadline, a failed connection is
counted and made again a second later, and every user stops at the end.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# A connection given up on, and made again, after this long without an answer.
TIMEOUT_SECONDS = 10.0
RECONNECT_AFTER_SECONDS = 1.0
# Longest answer head read.
HEAD_LIMIT = 16 * 1024


@dataclass
class CrowdRun:
    users: int
    seconds: float
    connected: int = 0
    # How long each user's first connect took, ms.
    connect_ms: list[float] = field(default_factory=list)
    # Counted sends only.
    sent: int = 0
    statuses: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    client_cpu_seconds: float = 0.0

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())

    def count(self, *statuses: int) -> int:
        return sum(self.statuses.get(status, 0) for status in statuses)

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)

    def per_second(self, count: int) -> float:
        return count / self.seconds if self.seconds else 0.0


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(
    base_url: str,
    path: str,
    tokens: list[str],
    *,
    storm_seconds: float,
    seconds: float,
    interval_s: float,
    slow_mode_ms: int,
    at_measure_start: Callable[[], None],
) -> CrowdRun:
    """The crowd's run: ``tokens`` users, ``seconds`` counted."""
    started = time.process_time()
    plan = _Plan(storm_seconds, seconds, interval_s, slow_mode_ms)
    result = asyncio.run(_crowd(base_url, path, tokens, plan, at_measure_start))
    result.client_cpu_seconds = time.process_time() - started
    return result


@dataclass(frozen=True)
class _Plan:
    storm_seconds: float
    seconds: float
    interval_s: float
    slow_mode_ms: int


async def _crowd(base_url: str, path: str, tokens: list[str], plan: _Plan, at_measure_start) -> CrowdRun:
    parts = urlsplit(base_url)
    loop = asyncio.get_running_loop()
    begin = loop.time()
    # Everyone has connected and sent once (the storm, then an interval and a half).
    count_from = begin + plan.storm_seconds + 1.5 * plan.interval_s
    count_to = count_from + plan.seconds
    result = CrowdRun(users=len(tokens), seconds=plan.seconds)
    target = (parts.hostname, parts.port, path)
    senders = [
        _sender(target, token, begin + plan.storm_seconds * n / len(tokens), (count_from, count_to), plan, result)
        for n, token in enumerate(tokens)
    ]

    async def mark() -> None:
        await asyncio.sleep(max(0.0, count_from - loop.time()))
        # Reading the counters blocks: off the loop, so no sender waits on it.
        await loop.run_in_executor(None, at_measure_start)

    await asyncio.wait_for(asyncio.gather(mark(), *senders), timeout=count_to - begin + 2 * TIMEOUT_SECONDS)
    return result


async def _sender(target, token: str, connect_at: float, window, plan: _Plan, result: CrowdRun) -> None:
    host, port, path = target
    interval_s = plan.interval_s
    loop = asyncio.get_running_loop()
    count_from, count_to = window
    await asyncio.sleep(max(0.0, connect_at - loop.time()))
    head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
    head += "Content-Type: application/json\r\n"
    first = True
    next_at = loop.time()
    while loop.time() < count_to:
        attempt = loop.time()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT_SECONDS)
        except (OSError, TimeoutError) as exc:
            result.errors[f"connect: {type(exc).__name__}"] += 1
            await asyncio.sleep(RECONNECT_AFTER_SECONDS)
            continue
        if first:
            result.connected += 1
            result.connect_ms.append(1000 * (loop.time() - attempt))
            first = False
        try:
            while True:
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                if loop.time() >= count_to:
                    return
                body = json.dumps({"text": f"crowd {uuid.uuid4().hex[:12]}", "client_id": uuid.uuid4().hex}).encode()
                written = loop.time()
                writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
                status, close = await asyncio.wait_for(_answer(reader, writer), TIMEOUT_SECONDS)
                answered = loop.time()
                if count_from <= written < count_to:
                    result.sent += 1
                    result.statuses[status] += 1
                    result.latencies_ms.append(1000 * (answered - written))
                next_at = max(written + interval_s * random.uniform(0.5, 1.5), answered + plan.slow_mode_ms / 1000)
                if close:
                    break
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            result.errors[f"send: {type(exc).__name__}"] += 1
            await asyncio.sleep(RECONNECT_AFTER_SECONDS)
        finally:
            writer.close()


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[int, bool]:
    """The next answer's status and whether it closes the connection, its body read."""
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > HEAD_LIMIT:
        raise ValueError("answer head too long")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    fields = (line.partition(":") for line in lines[1:] if line)
    headers = {name.strip().lower(): value.strip() for name, _, value in fields}
    await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers.get("connection", "").lower() == "close"
