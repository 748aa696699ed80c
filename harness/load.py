"""A bounded load of sends and pulls with a client-side ledger, and the Redis
fault scenarios built on it (shared by tests/test_redis_faults.py and
bench/faults.py).

The load: a few senders (each its own user, token and client_ids) at a fixed
total rate, and a few pullers each following its own cursor chain at a fixed
poll interval (ignoring ``next_ms``: a fault must not slow the clients down).
Every request has a client timeout, so a hang is measured, not waited out.

The ledger: every 201 records the id; every pull records the ids it showed,
per puller. An id a puller shows twice is a duplicate, except when it comes
again in a ``gap`` answer (the puller rejoined: counted apart, as a repeat).
An accepted id a puller never showed is lost, unless a gap answer reached
that puller after the id was sent (then it is a loss the service reported).

A scenario runs its own redis-server (``harness.services.private_redis``)
and gunicorn (2 workers, SQLite in a tmp dir): healthy load, the fault under
load, recovery under load, then the senders stop and the pullers catch up.
It checks the ledger, the room's Redis stream (each accepted id exactly once)
and the database (no row left unpublished).
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
import requests

from harness import local
from harness.services import PrivateRedis, private_redis

ROOM = "faults"
USERS = ("fault-sender-0", "fault-sender-1", "fault-sender-2")
PREFIX = "dm"
# A request that takes longer is recorded as failed; far above the 1 s bound,
# so a blocked request shows up as its real latency.
REQUEST_TIMEOUT_SECONDS = 3.0
# Sends per second over all senders.
SEND_RATE = 10.0
PULLERS = 6
# Each puller waits a fixed time between pulls, spread over this range.
POLL_SECONDS = (0.1, 0.2)
# Longest wait for every puller's first (joining) pull.
JOIN_TIMEOUT_SECONDS = 10
# No request may take longer than this, fault or not.
LATENCY_LIMIT_SECONDS = 1.0
# Every comment reaches every viewer within this long, fault or not: a bound
# that catches a comment stuck until some unrelated event, not a target.
# Usually ~1.4 s; a comment whose publish was skipped just as Redis returned
# waits for the republish sweep (every 2 s), one more if that sweep met Redis
# still loading its data: ~6 s seen under CI load. The refresher's database
# read after an outage has its own exact test in tests/danmaku.
DELIVERY_LIMIT_SECONDS = 8.0


@dataclass(frozen=True)
class Phases:
    """How long a scenario runs healthy, faulted and recovering, under load."""

    healthy_seconds: float = 3.0
    # Redis calls time out after 250 ms and the breaker opens for 1 s: a
    # fault of a few seconds is dozens of failed calls and several breaker
    # rounds, with sends marked unpublished and pulls answered degraded.
    fault_seconds: float = 5.0
    # Long enough for a republish sweep after the fault: it runs every 2 s
    # per process and leaves rows younger than 1 s to the send publishing them.
    recovery_seconds: float = 6.0


# bench/faults.py runs the phases above (the defaults); the suite a shorter run of the
# same: still a sweep (or more) within the fault and two after it.
BENCH_PHASES = Phases()
SHORT_PHASES = Phases(healthy_seconds=2.0, fault_seconds=3.0, recovery_seconds=4.0)

# After the senders stop: the last comments need ~1.5 s to be sealed and
# pulled, a held-back one up to one more sweep.
CATCH_UP_SECONDS = 10.0
ROOM_FIELDS = {
    "user_send_interval_ms": 0,
    "room_send_cap_per_second": 100_000,
    "display_cap_per_second": 1000,
}
SCENARIOS = ("freeze", "stop", "stop-with-data")


# -- the load ---------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    id: int
    client_id: str
    started: float
    finished: float


# What viewers of a lively room type: short, repetitive, several scripts.
CHAT_PHRASES = (
    "2333333", "哈哈哈哈哈哈", "前方高能!!!", "what a goal", "lol this stream", "来了来了", "awsl",
    "GG", "this is insane", "弹幕护体", "first time here, hello everyone", "yyds", "nice play!!",
    "主播加油", "wait what just happened", "666666", "泪目", "clip it!", "草", "the music is so good",
)  # fmt: skip


def load_text(client_id: str) -> str:
    return f"load {client_id}"


def chat_text(client_id: str) -> str:
    """A chat-like comment, the same for the same ``client_id``: real rooms'
    comments compress far less than ``load <n>`` does."""
    pick = random.Random(client_id)
    words = [pick.choice(CHAT_PHRASES) for _ in range(pick.randint(1, 3))]
    return " ".join(words) + ("!" * pick.randint(0, 2)) + f" #{pick.randint(1, 9999)}"


class Sender(threading.Thread):
    """Sends one comment every ``interval`` s until told to stop."""

    def __init__(
        self,
        *,
        url: str,
        token: str,
        name: str,
        interval: float,
        stop: threading.Event,
        text: Callable[[str], str] = load_text,
    ) -> None:
        super().__init__(name=f"sender-{name}", daemon=True)
        self.text = text
        self.url = url
        self.token = token
        self.label = name
        self.interval = interval
        self.stop_event = stop
        self.sent: list[Sent] = []
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.not_broadcast = 0

    def run(self) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.token}"
        due = time.monotonic()
        number = 0
        while not self.stop_event.is_set():
            client_id = f"{self.label}-{number}"
            number += 1
            self._send(session, client_id)
            due += self.interval
            self.stop_event.wait(max(0.0, due - time.monotonic()))
        session.close()

    def _send(self, session: requests.Session, client_id: str) -> None:
        started = time.monotonic()
        try:
            response = session.post(
                self.url, json={"text": self.text(client_id), "client_id": client_id}, timeout=REQUEST_TIMEOUT_SECONDS
            )
        except requests.RequestException as exc:
            self.latencies.append(time.monotonic() - started)
            self.failures.append(f"{client_id}: {type(exc).__name__}: {exc}")
            return
        finished = time.monotonic()
        self.latencies.append(finished - started)
        if response.status_code == 201:
            self.sent.append(Sent(response.json()["id"], client_id, started, finished))
        elif response.status_code == 202:
            self.not_broadcast += 1
        else:
            self.failures.append(f"{client_id}: HTTP {response.status_code} {response.text[:200]}")


class Puller(threading.Thread):
    """Joins, then follows its cursor every ``interval`` s; the per-viewer ledger."""

    def __init__(self, *, url: str, name: str, interval: float, stop: threading.Event) -> None:
        super().__init__(name=f"puller-{name}", daemon=True)
        self.url = url
        self.interval = interval
        self.stop_event = stop
        self.joined = threading.Event()
        self.lock = threading.Lock()
        self.seen: dict[int, float] = {}  # id -> when first shown
        self.duplicates: Counter[int] = Counter()
        self.repeats = 0  # ids shown before and again in a gap answer
        self.gaps: list[float] = []  # when each gap answer arrived
        # (cursor sent, cursor received, ids in the answer) of each gap answer.
        self.gap_answers: list[tuple[str | None, str, list[int]]] = []
        self.reasons: Counter[str] = Counter()
        self.workers: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.failures: list[str] = []

    def run(self) -> None:
        session = requests.Session()
        cursor: str | None = None
        while not self.stop_event.is_set():
            cursor = self._pull(session, cursor)
            self.stop_event.wait(self.interval)
        session.close()

    def _pull(self, session: requests.Session, cursor: str | None) -> str | None:
        started = time.monotonic()
        try:
            response = session.get(
                self.url, params={"after": cursor} if cursor else {}, timeout=REQUEST_TIMEOUT_SECONDS
            )
        except requests.RequestException as exc:
            self.latencies.append(time.monotonic() - started)
            self.failures.append(f"{type(exc).__name__}: {exc}")
            return cursor
        finished = time.monotonic()
        self.latencies.append(finished - started)
        if response.status_code != 200:
            self.failures.append(f"HTTP {response.status_code} {response.text[:200]}")
            return cursor
        body = response.json()
        with self.lock:
            self.reasons[body["reason"]] += 1
            self.workers[response.headers.get("X-Served-By", "?")] += 1
            if body["gap"] and cursor is not None:
                self.gaps.append(finished)
                self.gap_answers.append((cursor, body["cursor"], list(body["items"]["id"])))
            for item_id in body["items"]["id"]:
                if item_id not in self.seen:
                    self.seen[item_id] = finished
                elif body["gap"]:
                    self.repeats += 1
                else:
                    self.duplicates[item_id] += 1
        self.joined.set()
        return body["cursor"]

    def unseen(self, accepted: dict[int, Sent]) -> tuple[list[int], list[int]]:
        """(lost, lost inside a reported gap) among ``accepted``."""
        with self.lock:
            missing = [item_id for item_id in accepted if item_id not in self.seen]
            gaps = list(self.gaps)
        in_gap = {i for i in missing if any(accepted[i].started < gap for gap in gaps)}
        return [i for i in missing if i not in in_gap], sorted(in_gap)


class Load:
    """The senders and pullers of one run."""

    def __init__(
        self,
        url: str,
        tokens: list[str],
        *,
        send_rate: float = SEND_RATE,
        pullers: int = PULLERS,
        poll_seconds: tuple[float, float] = POLL_SECONDS,
    ) -> None:
        self._stop_sending = threading.Event()
        self._stop_pulling = threading.Event()
        interval = len(tokens) / send_rate
        self.senders = [
            Sender(url=url, token=token, name=str(n), interval=interval, stop=self._stop_sending)
            for n, token in enumerate(tokens)
        ]
        low, high = poll_seconds
        step = (high - low) / max(pullers - 1, 1)
        self.pullers = [
            Puller(url=url, name=str(n), interval=low + n * step, stop=self._stop_pulling) for n in range(pullers)
        ]

    def start(self) -> None:
        """Pullers first (each joins before anything is sent), then senders."""
        for puller in self.pullers:
            puller.start()
        deadline = time.monotonic() + JOIN_TIMEOUT_SECONDS
        for puller in self.pullers:
            if not puller.joined.wait(max(0.0, deadline - time.monotonic())):
                self.stop()
                raise RuntimeError(f"{puller.name} could not join: {puller.failures[-3:]}")
        for sender in self.senders:
            sender.start()

    def stop_sending(self) -> None:
        self._stop_sending.set()
        for sender in self.senders:
            sender.join(REQUEST_TIMEOUT_SECONDS + 1)

    def stop(self) -> None:
        self._stop_sending.set()
        self._stop_pulling.set()
        for thread in [*self.senders, *self.pullers]:
            if thread.is_alive():
                thread.join(REQUEST_TIMEOUT_SECONDS + 1)

    def accepted(self) -> dict[int, Sent]:
        return {sent.id: sent for sender in self.senders for sent in list(sender.sent)}

    def delivered(self) -> bool:
        """Every puller showed every accepted id (or was told of a gap)."""
        accepted = self.accepted()
        return all(not any(puller.unseen(accepted)) for puller in self.pullers)


# -- checks outside the ledger ------------------------------------------------------


def stream_counts(redis_url: str, room_id: int, *, prefix: str = PREFIX) -> Counter[int]:
    """How many times each comment id is in the room's stream."""
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        entries = client.xrange(f"{prefix}:s:{room_id}")
    finally:
        client.close()
    return Counter(int(fields[b"id"]) for _, fields in entries if fields.get(b"k") == b"m")


def _db_value(db_path: Path, sql: str, *params) -> int:
    with contextlib.closing(sqlite3.connect(db_path, timeout=5)) as conn:
        return conn.execute(sql, params).fetchone()[0]


def room_id(db_path: Path, slug: str) -> int:
    return _db_value(db_path, "SELECT id FROM danmaku_room WHERE slug = ?", slug)


def rows_not_in_stream(db_path: Path) -> int:
    """Published comments the store has not taken yet (waiting for the sweep)."""
    return _db_value(db_path, "SELECT COUNT(*) FROM danmaku_danmaku WHERE in_stream = 0 AND status = 'published'")


# -- the scenarios ------------------------------------------------------------------


@dataclass
class Figures:
    scenario: str
    sends: int = 0
    pulls: int = 0
    send_failures: int = 0
    pull_failures: int = 0
    not_broadcast: int = 0
    max_send_ms: float = 0.0
    max_pull_ms: float = 0.0
    accepted: int = 0
    lost: int = 0
    lost_in_gaps: int = 0
    duplicated: int = 0
    repeats_after_gap: int = 0
    gaps: int = 0
    degraded_pulls: int = 0
    stream_duplicates: int = 0
    stream_missing: int = 0
    # Accepted before the restart and gone with Redis's data (scenario stop).
    stream_gone: int = 0
    rows_not_in_stream: int = 0
    max_delivery_ms: float = 0.0
    violations: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.scenario}: requests sends={self.sends} pulls={self.pulls}"
            f" | failures sends={self.send_failures} pulls={self.pull_failures}"
            f" | max latency ms send={self.max_send_ms:.0f} pull={self.max_pull_ms:.0f}"
            f" | accepted={self.accepted} lost={self.lost} (in gaps {self.lost_in_gaps})"
            f" duplicated={self.duplicated} (repeats after gap {self.repeats_after_gap})"
            f" | gaps={self.gaps} degraded pulls={self.degraded_pulls}"
            f" | stream duplicates={self.stream_duplicates} missing={self.stream_missing} gone={self.stream_gone}"
            f" | rows not in stream={self.rows_not_in_stream} | max delivery ms={self.max_delivery_ms:.0f}"
        )


@dataclass(frozen=True)
class Fault:
    begin: Callable[[PrivateRedis], None]
    end: Callable[[PrivateRedis], None]
    persistent: bool = False
    # Redis comes back without its data: a new epoch, old cursors get gaps.
    loses_data: bool = False


FAULTS = {
    "freeze": Fault(begin=PrivateRedis.freeze, end=PrivateRedis.thaw),
    "stop": Fault(begin=PrivateRedis.stop, end=PrivateRedis.start, loses_data=True),
    "stop-with-data": Fault(begin=PrivateRedis.stop, end=PrivateRedis.start, persistent=True),
}


def run_scenario(
    name: str, *, phases: Phases = BENCH_PHASES, progress: Callable[[str], None] = lambda _: None
) -> Figures:
    """Run one scenario end to end; the figures carry any violations."""
    fault = FAULTS[name]
    quiet = {"GUNICORN_LOG_LEVEL": "warning", "DANMAKU_LOG_LEVEL": "WARNING"}
    with (
        tempfile.TemporaryDirectory(prefix="danmaku-faults-") as var_dir,
        private_redis(persistent=fault.persistent) as server,
        local.gunicorn(
            room=ROOM,
            users=USERS,
            workers=2,
            var_dir=var_dir,
            room_fields=ROOM_FIELDS,
            extra_env={"REDIS_URL": server.url, "DANMAKU_REDIS_PREFIX": PREFIX, **quiet},
        ) as gunicorn,
    ):
        db_path = Path(var_dir) / "db.sqlite3"
        load = Load(gunicorn.danmaku_url(ROOM), gunicorn.tokens)
        try:
            load.start()
            progress(f"{name}: load running, healthy")
            time.sleep(phases.healthy_seconds)
            fault_started = time.monotonic()
            fault.begin(server)
            try:
                progress(f"{name}: fault begun")
                time.sleep(phases.fault_seconds)
            finally:
                fault.end(server)
            progress(f"{name}: fault over, recovering under load")
            time.sleep(phases.recovery_seconds)
            load.stop_sending()
            deadline = time.monotonic() + CATCH_UP_SECONDS
            while time.monotonic() < deadline and not (rows_not_in_stream(db_path) == 0 and load.delivered()):
                time.sleep(0.2)
        finally:
            load.stop()
        figures = _figures(name, load, fault, fault_started)
        _check_store(figures, load, fault, fault_started, server.url, db_path)
        if figures.violations:
            figures.details.append(f"gunicorn log tail:\n{gunicorn.log_tail(3000)}")
        return figures


def _figures(name: str, load: Load, fault: Fault, fault_started: float) -> Figures:
    accepted = load.accepted()
    figures = Figures(scenario=name, accepted=len(accepted))
    send_latencies = [s for sender in load.senders for s in sender.latencies]
    pull_latencies = [s for puller in load.pullers for s in puller.latencies]
    figures.sends, figures.pulls = len(send_latencies), len(pull_latencies)
    figures.max_send_ms = max(send_latencies, default=0) * 1000
    figures.max_pull_ms = max(pull_latencies, default=0) * 1000
    figures.send_failures = sum(len(sender.failures) for sender in load.senders)
    figures.pull_failures = sum(len(puller.failures) for puller in load.pullers)
    figures.not_broadcast = sum(sender.not_broadcast for sender in load.senders)
    for puller in load.pullers:
        lost, in_gap = puller.unseen(accepted)
        figures.lost += len(lost)
        figures.lost_in_gaps += len(in_gap)
        figures.duplicated += sum(puller.duplicates.values())
        figures.repeats_after_gap += puller.repeats
        figures.gaps += len(puller.gaps)
        figures.degraded_pulls += puller.reasons["degraded"]
        delays = [puller.seen[i] - accepted[i].finished for i in accepted if i in puller.seen]
        figures.max_delivery_ms = max(figures.max_delivery_ms, max(delays, default=0) * 1000)
        if lost or puller.duplicates or puller.failures:
            figures.details.append(
                f"{puller.name}: lost {sorted(lost)[:20]} duplicated {dict(puller.duplicates)}"
                f" failures {puller.failures[:3]} gaps {len(puller.gaps)} workers {dict(puller.workers)}"
            )
    for sender in load.senders:
        if sender.failures:
            figures.details.append(f"{sender.name}: failures {sender.failures[:3]}")

    violations = figures.violations
    if figures.pull_failures:
        violations.append(f"{figures.pull_failures} failed pulls")
    if figures.send_failures:
        violations.append(f"{figures.send_failures} failed sends")
    if figures.not_broadcast:
        violations.append(f"{figures.not_broadcast} sends not broadcast (room cap)")
    slowest = max(figures.max_send_ms, figures.max_pull_ms)
    if slowest >= LATENCY_LIMIT_SECONDS * 1000:
        violations.append(f"a request took {slowest:.0f} ms")
    if figures.max_delivery_ms >= DELIVERY_LIMIT_SECONDS * 1000:
        violations.append(f"a comment took {figures.max_delivery_ms:.0f} ms to reach a viewer")
    if figures.lost:
        violations.append(f"{figures.lost} ids lost outside any reported gap")
    # Every process here lived through the fault, so even across a reset its
    # ring continues old cursors exactly: nothing skipped, nothing repeated.
    if figures.lost_in_gaps:
        violations.append(f"{figures.lost_in_gaps} ids skipped by a gap answer")
    if figures.duplicated or figures.repeats_after_gap:
        violations.append(f"{figures.duplicated + figures.repeats_after_gap} ids shown twice to one viewer")
    if fault.loses_data and figures.gaps != len(load.pullers):
        violations.append(f"{figures.gaps} gap answers; expected one per viewer after Redis lost its data")
    if not fault.loses_data and figures.gaps:
        violations.append(f"{figures.gaps} gap answers although Redis kept its data")
    if not figures.degraded_pulls:
        violations.append("no pull answered 'degraded' during the fault")
    if not any(sent.started >= fault_started for sent in accepted.values()):
        violations.append("no comment was accepted during the fault")
    return figures


def _check_store(
    figures: Figures, load: Load, fault: Fault, fault_started: float, redis_url: str, db_path: Path
) -> None:
    accepted = load.accepted()
    counts = stream_counts(redis_url, room_id(db_path, ROOM))
    figures.stream_duplicates = sum(1 for n in counts.values() if n > 1)
    missing = [i for i in accepted if counts[i] == 0]
    if fault.loses_data:
        # Published to the Redis that was lost: gone from the stream (the
        # database and the rings still have them). Everything sent from the
        # moment Redis went down must be in the new stream.
        gone = {i for i in missing if accepted[i].started < fault_started}
        figures.stream_gone = len(gone)
        missing = [i for i in missing if i not in gone]
    figures.stream_missing = len(missing)
    figures.rows_not_in_stream = rows_not_in_stream(db_path)
    if figures.stream_duplicates:
        figures.violations.append(f"{figures.stream_duplicates} ids more than once in the stream")
    if missing:
        figures.violations.append(f"{len(missing)} accepted ids missing from the stream: {sorted(missing)[:20]}")
    if figures.rows_not_in_stream:
        figures.violations.append(f"{figures.rows_not_in_stream} rows still in_stream=False")
