"""What the send benchmark runs beside the web server, and what it reads off it.

The broker (a private vhost on the local RabbitMQ, or a private
redis-server), CPU samples of every process a send touches, the per-send
counters of PostgreSQL and Redis, and the servers' logs.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis

from bench.pullbench import cpu
from harness.services import private_redis

RABBITMQ_HOST, RABBITMQ_PORT = "127.0.0.1", 5672
RABBITMQCTL_TIMEOUT_SECONDS = 30
# The Celery queue every task goes to (the project names no other).
CELERY_QUEUE = "celery"
PG_COUNTERS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted", "tup_fetched")
# Lines of a server's log worth reporting.
PROBLEM_MARKERS = ("Traceback", "ERROR", "CRITICAL", "WARNING", "Error:")
# "2026-12-06 19:05:47,244 " (Django's format), "[2026-12-06 19:05:47 +0000] [123] " (gunicorn's),
# "[2026-12-06 19:05:47,244: " (Celery's).
LOG_PREFIX_RE = re.compile(r"^(\[?\d{4}-\d\d-\d\d[ T][\d:,.]+( [+-]\d{4})?\]?:? (\[\d+\] )?)")


class BrokerUnavailable(RuntimeError):
    pass


class RabbitBroker:
    """A private vhost on the local RabbitMQ (the node itself is shared)."""

    label = "RabbitMQ (private vhost)"

    def __init__(self, vhost: str) -> None:
        self.vhost = vhost
        self.url = f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}/{vhost}"
        self._pid = _rabbitmq_pid()

    def backlog(self) -> int:
        """Messages in the vhost's queues, ready or taken but not acknowledged."""
        out = _rabbitmqctl("list_queues", "-p", self.vhost, "-q", "--no-table-headers", "name", "messages")
        total = 0
        for line in out.splitlines():
            name, _, count = line.rpartition("\t")
            if name and not name.endswith(".pidbox") and count.strip().isdigit():
                total += int(count)
        return total

    def cpu_seconds(self) -> float | None:
        """The whole node's CPU (it is shared: other vhosts count too)."""
        return None if self._pid is None else cpu.process_cpu_seconds(self._pid)

    def commandstats(self) -> dict[str, int]:
        return {}


class RedisBroker:
    label = "redis-server (private)"

    def __init__(self, url: str) -> None:
        self.url = url

    def backlog(self) -> int:
        client = redis.Redis.from_url(self.url, socket_timeout=5)
        try:
            return int(client.llen(CELERY_QUEUE)) + int(client.hlen("unacked"))
        finally:
            client.close()

    def cpu_seconds(self) -> float:
        return redis_cpu_seconds(self.url)

    def commandstats(self) -> dict[str, int]:
        return redis_commandstats(self.url)


Broker = RabbitBroker | RedisBroker


@contextlib.contextmanager
def broker(kind: str) -> Iterator[Broker]:
    if kind == "redis":
        with private_redis() as server:
            yield RedisBroker(server.url)
        return
    with rabbitmq_vhost() as vhost:
        yield RabbitBroker(vhost)


@contextlib.contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """A fresh vhost for guest on the local RabbitMQ, deleted afterwards."""
    if shutil.which("rabbitmqctl") is None:
        raise BrokerUnavailable("rabbitmqctl is not installed; use --broker redis")
    try:
        socket.create_connection((RABBITMQ_HOST, RABBITMQ_PORT), timeout=1).close()
    except OSError as exc:
        raise BrokerUnavailable(f"RabbitMQ is not listening on {RABBITMQ_PORT} ({exc}); use --broker redis") from exc
    vhost = f"danmaku-sendbench-{os.getpid()}-{secrets.token_hex(3)}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield vhost
    finally:
        _rabbitmqctl("delete_vhost", vhost)


def _rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=RABBITMQCTL_TIMEOUT_SECONDS, check=False
    )
    if done.returncode:
        raise BrokerUnavailable(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _rabbitmq_pid() -> int | None:
    for cmdline, pid in _processes():
        if "beam.smp" in cmdline and "rabbit" in cmdline:
            return pid
    return None


def _processes() -> Iterator[tuple[str, int]]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                yield (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"), int(entry.name)


@dataclass
class Drain:
    seconds: float
    # Tasks still waiting when the wait gave up (0: drained).
    left: int

    def __str__(self) -> str:
        if self.left:
            return f"{self.left:,} still waiting after {self.seconds:.0f} s"
        return f"drained in {self.seconds:.1f} s"


def wait_drained(broker: Broker | None, *, timeout: float) -> Drain:
    """Wait until the broker holds no task, or ``timeout``."""
    start = time.monotonic()
    left = broker.backlog() if broker is not None else 0
    while left and time.monotonic() - start < timeout:
        time.sleep(0.25)
        left = broker.backlog()
    return Drain(time.monotonic() - start, left)


# -- CPU --------------------------------------------------------------------


# How often the backends' CPU is read between samples: a backend that exits
# (a connection closed) keeps the time it had at its last reading.
BACKEND_POLL_SECONDS = 0.25


class PostgresBackends:
    """CPU of the backends connected to one database (its name is in their
    process titles) since this was made, those that have exited since
    included, as of their last reading (a thread reads them every
    ``BACKEND_POLL_SECONDS``). Live-only sums go backwards when a
    long-lived connection (a worker's, kept between tasks) closes mid-run."""

    def __init__(self, database_name: str) -> None:
        self._marker = f" {database_name} "
        self._lock = threading.Lock()
        # (pid, start time) -> CPU seconds at its last reading.
        self._seen: dict[tuple[int, int], float] = {}
        self._read()
        threading.Thread(target=self._poll, name="pg-backend-cpu", daemon=True).start()

    def cpu_seconds(self) -> float:
        self._read()
        with self._lock:
            return sum(self._seen.values())

    def _poll(self) -> None:
        while True:
            time.sleep(BACKEND_POLL_SECONDS)
            self._read()

    def _read(self) -> None:
        readings = {}
        for cmdline, pid in _processes():
            if cmdline.startswith("postgres: ") and self._marker in cmdline:
                fields = cpu.stat_fields(pid)
                if fields is not None:
                    # Start time (field 22) tells a reused pid from its predecessor.
                    readings[(pid, int(fields[19]))] = (int(fields[11]) + int(fields[12])) / cpu.TICKS_PER_SECOND
        with self._lock:
            self._seen.update(readings)


def redis_cpu_seconds(url: str) -> float:
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        info = client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    finally:
        client.close()


@dataclass
class Processes:
    """Who to sample: each figure is CPU-seconds so far."""

    web_pgid: int
    database_name: str
    store_url: str
    worker_pgid: int | None
    broker: Broker | None
    postgres: PostgresBackends = field(init=False)

    def __post_init__(self) -> None:
        self.postgres = PostgresBackends(self.database_name)

    def sample(self) -> dict[str, float]:
        figures = {
            "web": cpu.group_cpu_seconds(self.web_pgid),
            "postgres": self.postgres.cpu_seconds(),
            "redis": redis_cpu_seconds(self.store_url),
        }
        if self.worker_pgid is not None:
            figures["celery"] = cpu.group_cpu_seconds(self.worker_pgid)
        broker_cpu = self.broker.cpu_seconds() if self.broker is not None else None
        if broker_cpu is not None:
            figures["broker"] = broker_cpu
        return figures


def cpu_delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in after if name in before}


# -- per-send counters ------------------------------------------------------


def snapshot(database_url: str, store_url: str, broker: Broker | None) -> dict:
    """PostgreSQL's counters for the private database and Redis's per command."""
    with psycopg.connect(_libpq(database_url), connect_timeout=5, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            f"SELECT {', '.join(PG_COUNTERS)} FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        tables = {
            name: counts
            for name, *counts in conn.execute(
                "SELECT relname, n_tup_ins, n_tup_upd, coalesce(seq_scan, 0) + coalesce(idx_scan, 0)"
                " FROM pg_stat_user_tables"
            )
        }
    return {
        "pg": dict(zip(PG_COUNTERS, row, strict=True)),
        "tables": tables,
        "store": redis_commandstats(store_url),
        "broker": broker.commandstats() if broker is not None else {},
    }


def analyze(database_url: str, table: str) -> None:
    with psycopg.connect(_libpq(database_url), connect_timeout=5, autocommit=True) as conn:
        conn.execute(f'ANALYZE "{table}"')


def redis_commandstats(url: str) -> dict[str, int]:
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        return {name.removeprefix("cmdstat_"): value["calls"] for name, value in client.info("commandstats").items()}
    finally:
        client.close()


def _libpq(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


def rows_per_second(database_url: str, room: str) -> dict[int, int]:
    """The room's stored comments per second of their timestamp (``ts_ms``:
    Redis time once published, as the room cap counts)."""
    with psycopg.connect(_libpq(database_url), connect_timeout=5, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT d.ts_ms / 1000, count(*) FROM danmaku_danmaku d JOIN danmaku_room r ON r.id = d.room_id"
            " WHERE r.slug = %s GROUP BY 1",
            (room,),
        ).fetchall()
    return {int(second): int(count) for second, count in rows}


# -- logs ---------------------------------------------------------------------


def log_problems(path: Path, *, kinds: int = 5) -> tuple[int, list[tuple[int, str]]]:
    """How many lines of ``path`` look like trouble, and the commonest kinds
    (a line without its timestamp and process id) with their counts."""
    if not path.exists():
        return 0, []
    counts: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        if any(marker in line for marker in PROBLEM_MARKERS):
            counts[LOG_PREFIX_RE.sub("", line)] += 1
    return sum(counts.values()), [(count, kind) for kind, count in counts.most_common(kinds)]
