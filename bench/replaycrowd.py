"""A crowd opening a replay at once (bench/replay.py --crowd): the storm
after a big stream ends and its recording goes up.

Every viewer opens its own kept-alive connection within ``storm_seconds``,
loads the broadcast (``GET /api/v1/broadcasts/{id}``), then the segment it
starts in, by version, gzip; and then, about every ``interval_s``, a
segment again (the next one, or one it seeks to), reading every answer
whole. One asyncio loop in this process; every connect, write and read has
a deadline; a failed connection is counted and made again a second later;
every viewer stops at the end. Run twice on the same server, the first
time against segments nobody has built (a cold storm), the second against
built ones (warm): the ratio says what building once, shared, costs the
crowd.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

TIMEOUT_SECONDS = 10.0
RECONNECT_AFTER_SECONDS = 1.0
HEAD_LIMIT = 16 * 1024
BODY_LIMIT = 8 * 1024 * 1024


@dataclass
class CrowdRun:
    viewers: int
    connected: int = 0
    answers: int = 0
    bytes: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    # Seconds from a viewer's start to its first segment in hand.
    first_segment: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def percentile(self, values: list[float], share: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


class Viewer:
    def __init__(self, host: str, port: int, run: CrowdRun) -> None:
        self.host, self.port, self.run = host, port, run
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), TIMEOUT_SECONDS
            )
        request = f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nAccept-Encoding: gzip\r\n\r\n"
        self.writer.write(request.encode())
        started = time.monotonic()
        await asyncio.wait_for(self.writer.drain(), TIMEOUT_SECONDS)
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), TIMEOUT_SECONDS)
        if len(head) > HEAD_LIMIT:
            raise ValueError("answer head too long")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length, zipped = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "content-encoding":
                zipped = value.strip().lower() == "gzip"
        if length > BODY_LIMIT:
            raise ValueError("answer body too long")
        body = await asyncio.wait_for(self.reader.readexactly(length), TIMEOUT_SECONDS) if length else b""
        self.run.latencies.append(time.monotonic() - started)
        self.run.answers += 1
        self.run.bytes += len(head) + len(body)
        self.run.statuses[status] = self.run.statuses.get(status, 0) + 1
        return status, gzip.decompress(body) if zipped else body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _viewer(base: str, broadcast_id: int, run: CrowdRun, *, delay: float, until: float, interval_s: float):
    parts = urlsplit(base)
    viewer = Viewer(parts.hostname, parts.port, run)
    await asyncio.sleep(delay)
    began, first, connected = time.monotonic(), True, False
    while time.monotonic() < until:
        try:
            status, body = await viewer.get(f"/api/v1/broadcasts/{broadcast_id}")
            if status != 200:
                raise ValueError(f"broadcast answered {status}")
            if not connected:
                run.connected += 1
                connected = True
            versions = json.loads(body)["segments"]
            while time.monotonic() < until:
                index = random.randrange(len(versions))
                status, _ = await viewer.get(
                    f"/api/v1/broadcasts/{broadcast_id}/danmaku?segment={index}&v={versions[index]}"
                )
                if status != 200:
                    raise ValueError(f"segment answered {status}")
                if first:
                    run.first_segment.append(time.monotonic() - began)
                    first = False
                await asyncio.sleep(interval_s * random.uniform(0.5, 1.5))
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
            run.errors += 1
            viewer.close()
            await asyncio.sleep(RECONNECT_AFTER_SECONDS)
    viewer.close()


def run_crowd(
    base: str, broadcast_id: int, *, viewers: int, seconds: float, storm_seconds: float = 1.0, interval_s: float = 3.0
) -> CrowdRun:
    run = CrowdRun(viewers)

    async def main() -> None:
        until = time.monotonic() + storm_seconds + seconds
        await asyncio.gather(
            *(
                _viewer(
                    base, broadcast_id, run, delay=random.uniform(0, storm_seconds), until=until, interval_s=interval_s
                )
                for _ in range(viewers)
            )
        )

    asyncio.run(main())
    return run
