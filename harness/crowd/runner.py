"""A crowd of viewers split over processes, started together, for a bounded time.

A process here may hold at most 20,000 open files, and one event loop is one
core: the crowd is dealt out over processes (viewer i to process i mod P,
so each process connects its share across the whole connect window), each
running its viewers on one asyncio loop. The parent starts them at one
moment (``Crowd.start``), is free to do its own work meanwhile (send
comments, signal the server) and collects every process's record at the
end (``Crowd.join``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import multiprocessing
import random
import resource
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from harness.crowd.answers import AnswerCache
from harness.crowd.viewer import Ledger, Recorder, Viewer

# Half the 20,000 open files a process may hold here (a churned viewer's
# connection is closed before its new one opens). 20,000 viewers in two
# processes cost the generator less than in four (fewer processes taking
# turns on two cores with the server's).
VIEWERS_PER_PROCESS = 10_000
# Longest wait for the processes to start (spawn, imports) and to hand in
# their records after the run.
PROCESS_START_SECONDS = 60
PROCESS_REPORT_SECONDS = 60
# The processes start this long after the parent says go, so every one has
# its start time before it comes.
START_MARGIN_SECONDS = 0.5
# First connects made in one turn of a process's loop at most (see
# _connect_paced): enough to keep up with a 20,000-viewer storm, few enough
# that the answers to them are read within milliseconds.
CONNECT_BATCH = 64


@dataclass(frozen=True)
class CrowdSpec:
    url: str  # base URL, e.g. http://127.0.0.1:8000
    room: str
    viewers: int
    duration_seconds: float
    # Every viewer's first connect() falls within this window after the start.
    connect_seconds: float = 1.0
    # The share of viewers whose connection drops each second (after the
    # connect window), each polling again at once on a new connection.
    churn: float = 0.0
    per_process: int = VIEWERS_PER_PROCESS
    seed: int = 1
    # Local addresses the processes connect from, process n from the n-th
    # (round robin); none: the kernel's choice. Each source address has its
    # own ~28,000 ephemeral ports (net.ipv4.ip_local_port_range) towards one
    # server address: 20,000 viewers and their reconnects from one address
    # run out of ports (EADDRNOTAVAIL), where real viewers come from many.
    source_addresses: tuple[str, ...] = ()
    # The generator's event loop: "asyncio" or "uvloop" (its transports and
    # timers in C leave the server more of a shared machine; bench/crowd.py
    # runs it). The weak-network crowd's outage timing was checked on asyncio.
    event_loop: str = "asyncio"
    # The crowd shrinks: this long after the start, ``leave_share`` of the
    # viewers (drawn at random in each process) close their connection and
    # poll no more.
    leave_at_seconds: float | None = None
    leave_share: float = 0.0

    def __post_init__(self) -> None:
        if self.viewers < 1 or self.per_process < 1:
            raise ValueError("viewers and per_process must be positive")
        if not 0 < self.duration_seconds <= 3600 or not 0 <= self.connect_seconds <= self.duration_seconds:
            raise ValueError("duration must be in (0, 3600] s and the connect window within it")
        if not 0 <= self.churn <= 1:
            raise ValueError("churn is a share of viewers, 0 to 1")
        if not 0 <= self.leave_share <= 1:
            raise ValueError("leave_share is a share of viewers, 0 to 1")
        if self.leave_at_seconds is not None and not 0 <= self.leave_at_seconds <= self.duration_seconds:
            raise ValueError("the viewers leave within the run")
        parts = urlsplit(self.url)
        if not parts.hostname or (self.source_addresses and not parts.hostname.startswith("127.")):
            raise ValueError("source addresses are for a node on the loopback network")
        if self.event_loop not in ("asyncio", "uvloop"):
            raise ValueError(f"event_loop is asyncio or uvloop, not {self.event_loop!r}")
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"an http:// base URL, not {self.url!r}")

    @property
    def processes(self) -> int:
        return math.ceil(self.viewers / self.per_process)

    @property
    def path(self) -> str:
        return f"{urlsplit(self.url).path.rstrip('/')}/api/v1/rooms/{self.room}/danmaku"


def loopback_sources(processes: int) -> tuple[str, ...]:
    """127.0.0.2, 127.0.0.3, ...: one per process (any 127/8 address is this host)."""
    return tuple(f"127.0.0.{2 + number}" for number in range(processes))


@dataclass
class ProcessRecord:
    """One process's share of the run (times on the machine's monotonic clock)."""

    recorder: Recorder
    ledgers: list[Ledger]
    # Once a second: (when, open connections, answers so far, own CPU seconds so far).
    samples: list[tuple[float, int, int, float]]
    cpu_seconds: float
    cache_hits: int
    cache_misses: int


@dataclass
class CrowdResult:
    spec: CrowdSpec
    start_at: float
    end_at: float
    records: list[ProcessRecord] = field(default_factory=list)

    def _joined(self, name: str, typecode: str) -> array:
        out = array(typecode)
        for record in self.records:
            out.extend(getattr(record.recorder, name))
        return out

    @property
    def poll_at(self) -> array:
        return self._joined("poll_at", "d")

    @property
    def latency(self) -> array:
        return self._joined("latency", "d")

    @property
    def status(self) -> array:
        return self._joined("status", "H")

    @property
    def size(self) -> array:
        return self._joined("size", "I")

    @property
    def next_ms(self) -> array:
        return self._joined("next_ms", "Q")

    @property
    def reason(self) -> array:
        return self._joined("reason", "B")

    @property
    def missed(self) -> array:
        return self._joined("missed", "Q")

    @property
    def items(self) -> array:
        return self._joined("items", "I")

    @property
    def viewers(self) -> array:
        return self._joined("viewers", "Q")

    @property
    def first_connect_at(self) -> array:
        return self._joined("first_connect_at", "d")

    @property
    def left_at(self) -> array:
        return self._joined("left_at", "d")

    @property
    def first_latency(self) -> array:
        return self._joined("first_latency", "d")

    @property
    def errors(self) -> list[tuple[float, str]]:
        return sorted(error for record in self.records for error in record.recorder.errors)

    @property
    def retried(self) -> Counter[str]:
        return sum((record.recorder.retried for record in self.records), Counter())

    @property
    def ledgers(self) -> list[Ledger]:
        return sorted((ledger for record in self.records for ledger in record.ledgers), key=lambda ledger: ledger.index)

    @property
    def cpu_seconds(self) -> float:
        return sum(record.cpu_seconds for record in self.records)

    def total(self, name: str) -> int:
        """A counter summed over the processes: idle_closes, churned."""
        return sum(getattr(record.recorder, name) for record in self.records)


class Crowd:
    """Spawns the processes (``with Crowd(spec) as crowd``), starts them
    together (``start``), collects them (``join``); leaving the block stops
    any still running."""

    def __init__(self, spec: CrowdSpec) -> None:
        self.spec = spec
        self._context = multiprocessing.get_context("spawn")
        self._processes: list = []
        self._pipes: list = []
        self.start_at = 0.0

    def __enter__(self) -> Crowd:
        try:
            for number in range(self.spec.processes):
                parent_end, child_end = self._context.Pipe()
                process = self._context.Process(
                    target=_process_main, args=(self.spec, number, child_end), name=f"crowd-{number}", daemon=True
                )
                process.start()
                child_end.close()
                self._processes.append(process)
                self._pipes.append(parent_end)
            deadline = time.monotonic() + PROCESS_START_SECONDS
            for pipe in self._pipes:
                if not pipe.poll(max(0.0, deadline - time.monotonic())):
                    raise RuntimeError("a crowd process did not start in time")
                if pipe.recv() != "ready":
                    raise RuntimeError("a crowd process failed to start")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def start(self) -> float:
        """Go: returns the (monotonic) moment the first viewer connects."""
        self.start_at = time.monotonic() + START_MARGIN_SECONDS
        for pipe in self._pipes:
            pipe.send(self.start_at)
        return self.start_at

    def join(self) -> CrowdResult:
        """Wait for the end of the run and every process's record."""
        end_at = self.start_at + self.spec.duration_seconds
        deadline = end_at + PROCESS_REPORT_SECONDS
        result = CrowdResult(self.spec, self.start_at, end_at)
        for pipe in self._pipes:
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise RuntimeError("a crowd process did not report in time")
            record = pipe.recv()
            if isinstance(record, str):
                raise RuntimeError(f"a crowd process failed: {record}")
            result.records.append(record)
        for process in self._processes:
            process.join(10)
        return result

    def close(self) -> None:
        for process in self._processes:
            if process.is_alive():
                process.kill()
            process.join(5)
        for pipe in self._pipes:
            pipe.close()


def _process_main(spec: CrowdSpec, number: int, pipe) -> None:
    try:
        with asyncio.Runner(loop_factory=_loop_factory(spec.event_loop)) as runner:
            record = runner.run(_run(spec, number, pipe))
    except BaseException as exc:  # the parent must hear of it, not wait out its deadline
        import traceback

        with contextlib.suppress(OSError):
            pipe.send(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        raise
    pipe.send(record)


async def _connect_paced(viewers: list[Viewer], start_at: float, spec: CrowdSpec) -> None:
    """Each viewer's first poll at its moment in the connect window, at most
    ``CONNECT_BATCH`` between two looks at the sockets. A timer per viewer
    would run every connect that is due before reading anything: a loop
    behind its schedule connects thousands in one turn while the answers to
    the first of them wait, and their latency would be the generator's own."""
    loop = asyncio.get_running_loop()
    window = spec.connect_seconds / spec.viewers
    pending = iter(viewers)
    viewer = next(pending, None)
    while viewer is not None:
        wait = start_at + window * viewer.index - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        now = loop.time()
        for _ in range(CONNECT_BATCH):
            viewer.poll()
            viewer = next(pending, None)
            if viewer is None or start_at + window * viewer.index > now:
                break
        await asyncio.sleep(0)


def _leave(viewers: list[Viewer]) -> None:
    for viewer in viewers:
        viewer.leave()


def _loop_factory(name: str):
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _run(spec: CrowdSpec, number: int, pipe) -> ProcessRecord:
    loop = asyncio.get_running_loop()
    parts = urlsplit(spec.url)
    host, port = parts.hostname, parts.port or 80
    recorder = Recorder()
    answers = AnswerCache()
    rng = random.Random(spec.seed * 1_000_003 + number)
    indices = range(number, spec.viewers, spec.processes)
    source = spec.source_addresses[number % len(spec.source_addresses)] if spec.source_addresses else None
    path = spec.path
    viewers = [
        Viewer(
            index,
            host=host,
            port=port,
            path=path,
            recorder=recorder,
            answers=answers,
            rng=rng,
            loop=loop,
            source=source,
        )
        for index in indices
    ]
    # Thousands of viewers (and their ledgers) live for the whole run: out
    # of the collector's sight, or each full collection walks them all, on
    # the loop that should be connecting the storm.
    gc.collect()
    gc.freeze()
    # Built before the start is given, not after it (within its margin).
    pipe.send("ready")
    start_at = pipe.recv()
    storm = loop.create_task(_connect_paced(viewers, start_at, spec))
    if spec.leave_at_seconds is not None and spec.leave_share:
        leaving = rng.sample(viewers, round(spec.leave_share * len(viewers)))
        loop.call_at(start_at + spec.leave_at_seconds, _leave, leaving)
    cpu_start = _cpu_seconds()
    end_at = start_at + spec.duration_seconds
    churn_from = start_at + spec.connect_seconds
    churn_owed = 0.0
    samples: list[tuple[float, int, int, float]] = []
    tick = start_at
    while True:
        tick += 1.0
        await asyncio.sleep(max(0.0, min(tick, end_at) - loop.time()))
        now = loop.time()
        for viewer in viewers:
            viewer.check_deadline(now)
        if spec.churn and now >= churn_from:
            churn_owed += spec.churn * len(viewers)
            for viewer in rng.sample(viewers, min(len(viewers), int(churn_owed))):
                viewer.churn()
            churn_owed -= int(churn_owed)
        samples.append((now, recorder.open_connections, len(recorder.poll_at), _cpu_seconds() - cpu_start))
        if now >= end_at:
            break
    storm.cancel()
    for viewer in viewers:
        viewer.stop()
    # Let the aborted transports close before the loop goes.
    await asyncio.sleep(0.1)
    return ProcessRecord(
        recorder=recorder,
        ledgers=[viewer.ledger for viewer in viewers],
        samples=samples,
        cpu_seconds=_cpu_seconds() - cpu_start,
        cache_hits=answers.hits,
        cache_misses=answers.misses,
    )
