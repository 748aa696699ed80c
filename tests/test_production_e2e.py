"""Production mode end to end, against real services and real processes.

- Two gunicorn "nodes" over one PostgreSQL database, the shared Redis and a
  Celery worker: sends and pulls cross nodes, cursors mean the same on both,
  and the worker's moderation reaches every viewer.
- PostgreSQL behind a TCP proxy that is stopped, then frozen: sends answer
  503 with Retry-After in bounded time, pulls keep answering.
- A private broker stopped, then frozen: sends still succeed fast, with the
  inline filter applied.

Every process started here is stopped by the harness's context managers,
whatever happens; every loop is bounded in count and in time. Each test
prints one line of measured figures.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
import requests

from harness import local
from harness.services import postgres_database, private_redis, require_postgres, require_redis
from harness.tcpproxy import TcpProxy
from moderation.services import TERMS_RELOAD_SECONDS

pytestmark = pytest.mark.slow

ROOM = "prod"
SECRET_KEY = "e2e-only-secret-key-" + "x" * 40
# No slow mode: the tests send back to back.
ROOM_FIELDS = {"user_send_interval_ms": 0}
REQUEST_TIMEOUT_SECONDS = 10
POLL_SECONDS = 0.2
# The contract: a comment reaches every process's pulls within a few seconds.
DELIVERY_LIMIT_SECONDS = 3.0
# The worker moderates within a second or so; the retraction then rides the
# next refresh of every process.
RETRACTION_LIMIT_SECONDS = 5.0
BLOCKED = "zorblax"
MASKED = "frobnicate"
LINK_TEXT = "free coins at example.com/win"


@dataclass
class Meter:
    """Every request a test made: count, unexpected answers, latency."""

    name: str
    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, case: str, elapsed: float, problem: str | None = None) -> None:
        with self._lock:
            self.latencies.setdefault(case, []).append(elapsed)
            if problem:
                self.failures.append(f"{case}: {problem}")

    def fail(self, problem: str) -> None:
        with self._lock:
            self.failures.append(problem)

    def max_ms(self, case: str | None = None) -> float:
        values = self.latencies.get(case, []) if case else [v for vs in self.latencies.values() for v in vs]
        return max(values, default=0.0) * 1000

    @property
    def requests(self) -> int:
        return sum(len(values) for values in self.latencies.values())

    def summary(self, extra: str = "") -> str:
        cases = ", ".join(f"{case} {len(v)} max {max(v) * 1000:.0f} ms" for case, v in self.latencies.items())
        line = (
            f"[{self.name}] requests {self.requests}, failures {len(self.failures)}, "
            f"max latency {self.max_ms():.0f} ms ({cases})"
        )
        return f"{line}; {extra}" if extra else line


@dataclass
class Answer:
    """A send's answer; ``status`` None when the request itself failed."""

    status: int | None
    body: dict
    headers: Mapping[str, str]
    elapsed: float


def _send(
    meter: Meter,
    case: str,
    node: local.LocalServer,
    text: str,
    *,
    expect: int = 201,
    timeout: float = REQUEST_TIMEOUT_SECONDS,
) -> Answer:
    """One send over a new connection (so any worker of ``node`` may take it)."""
    started = time.monotonic()
    try:
        response = requests.post(
            node.danmaku_url(ROOM),
            json={"text": text, "client_id": uuid.uuid4().hex},
            headers={"Authorization": f"Bearer {node.tokens[0]}", "Connection": "close"},
            timeout=timeout,
        )
    except requests.RequestException as exc:
        elapsed = time.monotonic() - started
        meter.record(case, elapsed, f"{type(exc).__name__}: {exc}")
        return Answer(None, {}, {}, elapsed)
    elapsed = time.monotonic() - started
    problem = None if response.status_code == expect else f"{response.status_code} {response.text[:200]}"
    meter.record(case, elapsed, problem)
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:500]}
    return Answer(response.status_code, body, response.headers, elapsed)


def _pull(
    meter: Meter, case: str, node: local.LocalServer, after: str | None = None, *, timeout: float = 5
) -> dict | None:
    """One pull over a new connection; the body, or None (recorded as a failure)."""
    started = time.monotonic()
    try:
        response = requests.get(
            node.danmaku_url(ROOM),
            params={"after": after} if after else {},
            headers={"Connection": "close"},
            timeout=timeout,
        )
    except requests.RequestException as exc:
        meter.record(case, time.monotonic() - started, f"{type(exc).__name__}: {exc}")
        return None
    ok = response.status_code == 200
    meter.record(case, time.monotonic() - started, None if ok else f"{response.status_code} {response.text[:200]}")
    return response.json() if ok else None


def _create_terms(env: dict[str, str], *terms: tuple[str, str]) -> None:
    """Blocked terms (term, action) created the way staff would, in another process."""
    calls = "; ".join(f"blocked_term_create(term={term!r}, action={action!r})" for term, action in terms)
    local.manage(env, "shell", "-c", f"from moderation.services import blocked_term_create; {calls}")


def _service_env(**values: str) -> dict[str, str]:
    return {"DJANGO_SECRET_KEY": SECRET_KEY, **values}


def _forget_redis_keys(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    for _ in range(100):  # bounded: a test writes a few dozen keys
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))[:1000]
        if not keys:
            break
        client.delete(*keys)
    client.close()


def _print(capsys, line: str) -> None:
    with capsys.disabled():
        print(f"\n{line}")


def _assert_stopped(*processes: subprocess.Popen) -> None:
    """Each process, and every process in the group it led, is gone."""
    for process in processes:
        assert process.poll() is not None
        with pytest.raises(ProcessLookupError):
            os.killpg(process.pid, 0)


def _assert_no_failures(meter: Meter, *logs: str) -> None:
    assert not meter.failures, "\n".join(meter.failures[:20]) + "\n" + "\n".join(log[-3000:] for log in logs)


# -- 1. Two nodes, PostgreSQL, Redis, a Celery worker -------------------------------------


def test_send_and_pull_across_two_nodes_on_postgres_redis_and_a_celery_worker(tmp_path, capsys):
    require_postgres()
    redis_url = require_redis()
    meter = Meter("two nodes on PostgreSQL + Redis + Celery worker")
    prefix = f"e2e-{uuid.uuid4().hex}"
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(postgres_database())
        broker = stack.enter_context(private_redis())
        stack.callback(_forget_redis_keys, redis_url, prefix)
        services = _service_env(
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            DANMAKU_REDIS_PREFIX=prefix,
            CELERY_BROKER_URL=broker.url,
        )
        worker_env = local.environment(tmp_path / "worker", **services)
        local.manage(worker_env, "migrate", "--noinput")
        worker = stack.enter_context(local.celery_worker(worker_env, log_path=tmp_path / "worker.log"))
        nodes = []
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            nodes.append(
                stack.enter_context(
                    local.gunicorn(
                        room=ROOM,
                        users=("alice",),
                        var_dir=tmp_path / name,
                        room_fields=ROOM_FIELDS,
                        extra_env=services,
                    )
                )
            )
        node_a, node_b = nodes
        logs = lambda: (node_a.log_tail(), node_b.log_tail(), worker.log())  # noqa: E731

        # Both nodes answer, and agree on where "now" is.
        start = _pull(meter, "pull", node_a)
        assert start is not None, logs()
        assert _pull(meter, "pull", node_b) is not None, logs()
        cursor0 = start["cursor"]

        # A comment sent through A reaches B's (and A's) pulls, with A's cursor.
        response = _send(meter, "send", node_a, "first through node a")
        assert response.status == 201, logs()
        first = response.body["id"]
        sent_at = time.monotonic()
        arrived: dict[str, float] = {}
        for _ in range(int(2 * DELIVERY_LIMIT_SECONDS / POLL_SECONDS)):
            for label, node in (("b", node_b), ("a", node_a)):
                body = _pull(meter, "pull", node, cursor0)
                if body and first in body["items"]["id"] and label not in arrived:
                    arrived[label] = time.monotonic() - sent_at
            if len(arrived) == 2 or time.monotonic() - sent_at > 2 * DELIVERY_LIMIT_SECONDS:
                break
            time.sleep(POLL_SECONDS)
        assert set(arrived) == {"a", "b"}, f"comment {first} reached only {arrived}\n{logs()}"
        assert max(arrived.values()) <= DELIVERY_LIMIT_SECONDS, arrived

        # One cursor chain from cursor0, each pull on the other node, while
        # comments go in through alternating nodes: every comment exactly
        # once, in order, no gap.
        sent = [first]
        seen: list[int] = []
        gaps = 0
        chain_comments = 8
        cursor = cursor0
        chain_pulls = 0
        done_at = None
        deadline = time.monotonic() + chain_comments * 2 * POLL_SECONDS + 3 * DELIVERY_LIMIT_SECONDS
        for step in range(1000):
            now = time.monotonic()
            if now > deadline:
                break
            if step % 2 == 0 and len(sent) <= chain_comments:
                response = _send(meter, "send", nodes[len(sent) % 2], f"chain comment {len(sent)} {uuid.uuid4().hex}")
                assert response.status == 201, logs()
                sent.append(response.body["id"])
            body = _pull(meter, "pull", nodes[step % 2], cursor)
            assert body is not None, logs()
            chain_pulls += 1
            gaps += bool(body["gap"])
            seen.extend(body["items"]["id"])
            cursor = body["cursor"]
            if done_at is None and len(sent) > chain_comments and set(sent) <= set(seen):
                done_at = now
            # Keep following a while past full delivery, so a repeat would show.
            if done_at is not None and now > done_at + 1.5:
                break
            time.sleep(POLL_SECONDS)
        assert gaps == 0
        assert seen == sent, f"sent {sent}, the chain saw {seen}\n{logs()}"

        # The inline filter on every process of both nodes, a term saved
        # elsewhere while they run (each process reloads within ~2 s).
        _create_terms(worker_env, (BLOCKED, "block"))
        time.sleep(TERMS_RELOAD_SECONDS + 0.5)
        for node in nodes * 3:
            response = _send(meter, "send blocked", node, f"you {BLOCKED} you", expect=400)
            assert response.status == 400, response.body
            assert response.body["errors"][0]["field"] == "text"

        # A link passes the send-time filter, then the worker's full check
        # (MODERATION_LINK_ACTION=hold) retracts it: every node tells its
        # viewers in `deleted`.
        link_cursor = cursor
        response = _send(meter, "send", node_b, LINK_TEXT)
        assert response.status == 201, logs()
        assert response.body["status"] == "published"
        link = response.body["id"]
        sent_at = time.monotonic()
        retracted: dict[str, float] = {}
        for _ in range(int(2 * RETRACTION_LIMIT_SECONDS / POLL_SECONDS)):
            for label, node in (("a", node_a), ("b", node_b)):
                body = _pull(meter, "pull", node, link_cursor)
                if body and link in body["deleted"] and link not in body["items"]["id"]:
                    retracted.setdefault(label, time.monotonic() - sent_at)
            if len(retracted) == 2 or time.monotonic() - sent_at > 2 * RETRACTION_LIMIT_SECONDS:
                break
            time.sleep(POLL_SECONDS)
        assert set(retracted) == {"a", "b"}, f"retraction of {link} seen on {retracted}\n{logs()}"
        assert max(retracted.values()) <= RETRACTION_LIMIT_SECONDS, retracted
        worker_log = worker.log(200_000)
        # The worker ran the moderation of the published comments, in
        # batches (received and succeeded: two lines each), and the nodes
        # fell back to inline moderation for none of them.
        batches = worker_log.count("Task moderation.moderate_batch[")
        assert 2 <= batches <= 2 * (len(sent) + 1), worker_log[-3000:]
        assert "broker unavailable" not in node_a.log_tail(200_000) + node_b.log_tail(200_000)
        _assert_no_failures(meter, *logs())

    _assert_stopped(node_a.process, node_b.process, worker.process)
    assert local.processes_named(worker.name) == []
    _print(
        capsys,
        meter.summary(
            f"first comment on node a after {arrived['a']:.2f} s, node b {arrived['b']:.2f} s; "
            f"cursor chain over {chain_pulls} pulls alternating nodes: {len(sent)} comments, "
            f"seen {len(seen)}, repeated {sum(n - 1 for n in Counter(seen).values())}, "
            f"gaps {gaps}; link retracted by the worker, in `deleted` after "
            f"{retracted['a']:.2f} s (a) / {retracted['b']:.2f} s (b)"
        ),
    )


# -- 2. PostgreSQL stopped, then frozen -------------------------------------------------------

# Refused connections answer at once; a frozen database costs one
# DATABASE_QUERY_TIMEOUT_MS or DATABASE_CONNECT_TIMEOUT_SECONDS (2 s each).
DB_STOPPED_LIMIT_SECONDS = 1.0
DB_FROZEN_LIMIT_SECONDS = 3.0
# Pulls never wait on the database.
PULL_LIMIT_SECONDS = 1.0
OUTAGE_SENDS = 6
OUTAGE_SEND_SPACING_SECONDS = 0.4


class Puller:
    """Pulls ``after`` every POLL_SECONDS on a thread until stopped; each answer
    must be a 200 carrying ``expected`` ids."""

    def __init__(self, meter: Meter, node: local.LocalServer, after: str, expected: list[int]) -> None:
        self.meter, self.node, self.after, self.expected = meter, node, after, expected
        self.stop_event = threading.Event()
        self.case = "pull"
        self.thread = threading.Thread(target=self._run, name="e2e-puller", daemon=True)

    def _run(self) -> None:
        for _ in range(10_000):  # bounded; stopped long before
            if self.stop_event.is_set():
                return
            body = _pull(self.meter, self.case, self.node, self.after, timeout=5)
            if body is not None and not set(self.expected) <= set(body["items"]["id"]):
                self.meter.fail(f"{self.case}: answer lacks {self.expected}: {body['items']['id']}")
            self.stop_event.wait(POLL_SECONDS)

    def __enter__(self) -> Puller:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.thread.join(timeout=10)


def _proxied(url: str, port: int) -> str:
    parts = urlsplit(url)
    auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return parts._replace(netloc=f"{auth}127.0.0.1:{port}").geturl()


def _sends_during_outage(meter: Meter, case: str, node: local.LocalServer, limit_s: float) -> None:
    """OUTAGE_SENDS sends, spaced so the outage lasts a few seconds of pulls."""
    for i in range(OUTAGE_SENDS):
        if i:
            time.sleep(OUTAGE_SEND_SPACING_SECONDS)
        response = _send(meter, case, node, f"while the database is away {i}", expect=503)
        if response.status != 503:
            continue  # recorded as a failure
        assert response.elapsed < limit_s, f"{case}: a send took {response.elapsed:.2f} s"
        assert int(response.headers["Retry-After"]) >= 1
        assert response.body["retry_after_ms"] > 0


def _sends_recover(meter: Meter, case: str, node: local.LocalServer, count: int = 6) -> int:
    """Sends until ``count`` in a row succeed (bounded); returns how many did not before that."""
    refused = streak = 0
    deadline = time.monotonic() + 10
    for i in range(60):
        if streak >= count or time.monotonic() > deadline:
            break
        response = _send(meter, case, node, f"back again {case} {i}", expect=201)
        if response.status == 201:
            streak += 1
        else:
            refused += 1
            streak = 0
    assert streak >= count, f"sends did not recover after {case}"
    return refused


def test_database_down_sends_answer_503_and_pulls_keep_answering(tmp_path, capsys):
    postgres_url = require_postgres()
    redis_url = require_redis()
    meter = Meter("database stopped / frozen")
    prefix = f"e2e-{uuid.uuid4().hex}"
    target = urlsplit(postgres_url)
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(postgres_database())
        proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
        proxy.start()
        stack.callback(proxy.stop)
        stack.callback(_forget_redis_keys, redis_url, prefix)
        services = _service_env(
            DATABASE_URL=_proxied(database_url, proxy.port), REDIS_URL=redis_url, DANMAKU_REDIS_PREFIX=prefix
        )
        # Migrates through the proxy, like the node itself.
        node = stack.enter_context(
            local.gunicorn(room=ROOM, var_dir=_mkdir(tmp_path / "node"), room_fields=ROOM_FIELDS, extra_env=services)
        )
        logs = node.log_tail

        # Warm: the room is active in the workers, three comments delivered.
        start = _pull(meter, "pull", node)
        assert start is not None, logs()
        cursor0 = start["cursor"]
        warm = []
        for i in range(3):
            response = _send(meter, "send", node, f"before the outage {i}")
            assert response.status == 201, logs()
            warm.append(response.body["id"])
        for _ in range(int(3 * DELIVERY_LIMIT_SECONDS / POLL_SECONDS)):
            # Several pulls, so both workers have the comments.
            bodies = [_pull(meter, "pull", node, cursor0) for _ in range(4)]
            if all(b and set(warm) <= set(b["items"]["id"]) for b in bodies):
                break
            time.sleep(POLL_SECONDS)
        else:
            pytest.fail(f"warm-up comments {warm} never reached the pulls\n{logs()}")

        with Puller(meter, node, cursor0, warm) as puller:
            puller.case = "pull (db stopped)"
            proxy.stop()
            _sends_during_outage(meter, "send (db stopped)", node, DB_STOPPED_LIMIT_SECONDS)
            puller.case = "pull (db back)"
            proxy.start()
            refused_after_stop = _sends_recover(meter, "send (after restart)", node)

            puller.case = "pull (db frozen)"
            proxy.freeze()
            _sends_during_outage(meter, "send (db frozen)", node, DB_FROZEN_LIMIT_SECONDS)
            puller.case = "pull (db thawed)"
            proxy.thaw()
            refused_after_freeze = _sends_recover(meter, "send (after thaw)", node)

        # Refusals right after recovery are expected (connections broken by
        # the outage fail once each), not counted as failures of the test.
        meter.failures = [f for f in meter.failures if not f.startswith(("send (after restart)", "send (after thaw)"))]
        assert refused_after_stop + refused_after_freeze <= 8, (refused_after_stop, refused_after_freeze)
        for case in ("pull (db stopped)", "pull (db frozen)"):
            assert len(meter.latencies.get(case, ())) >= 5, f"too few pulls during the outage: {case}"
        pull_max_s = {case: meter.max_ms(case) / 1000 for case in meter.latencies if case.startswith("pull (")}
        assert max(pull_max_s.values()) < PULL_LIMIT_SECONDS, pull_max_s
        _assert_no_failures(meter, logs())

    _assert_stopped(node.process)
    _print(
        capsys,
        meter.summary(
            f"refused while recovering: {refused_after_stop} after restart, {refused_after_freeze} after thaw"
        ),
    )


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- 3. Broker stopped, then frozen ---------------------------------------------------------

# What "fast" means for a send while the broker is away (the publish gives
# up after DANMAKU_PUBLISH_DEADLINE_MS, 500 ms).
BROKER_SEND_LIMIT_SECONDS = 1.0
BROKER_SENDS = 10


def _broker_outage_sends(meter: Meter, case: str, node: local.LocalServer, cursor: str) -> None:
    for i in range(BROKER_SENDS):
        response = _send(meter, f"send ({case})", node, f"broker {case} {i} {uuid.uuid4().hex[:6]}")
        assert response.status == 201, node.log_tail()
    blocked = _send(meter, f"send blocked ({case})", node, f"so {BLOCKED} here", expect=400)
    assert blocked.status == 400, blocked.body
    assert blocked.body["errors"] == [{"field": "text", "reason": "contains blocked words"}]
    # The case in the text: the two cases' comments come within 5 s, and
    # equal texts would be merged into the first one's item.
    masked = _send(meter, f"send masked ({case})", node, f"just {MASKED} it ({case})")
    assert masked.status == 201, node.log_tail()
    masked_id = masked.body["id"]
    for name, values in meter.latencies.items():
        if name.endswith(f"({case})"):
            assert max(values) < BROKER_SEND_LIMIT_SECONDS, (name, values)
    # Stored masked, so every viewer pulls it masked.
    deadline = time.monotonic() + 3 * DELIVERY_LIMIT_SECONDS
    for _ in range(100):
        body = _pull(meter, "pull", node, cursor)
        assert body is not None, node.log_tail()
        items = dict(zip(body["items"]["id"], body["items"]["text"], strict=True))
        if masked_id in items:
            assert items[masked_id] == "just " + "*" * len(MASKED) + f" it ({case})"
            return
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_SECONDS)
    pytest.fail(f"masked comment {masked_id} not pulled ({case})\n{node.log_tail()}")


def test_broker_stopped_or_frozen_sends_still_succeed_fast_with_the_inline_filter(tmp_path, capsys):
    meter = Meter("broker frozen / stopped")
    var_dir = _mkdir(tmp_path / "node")
    with private_redis() as broker:
        extra = {"CELERY_BROKER_URL": broker.url}
        env = local.environment(var_dir, **extra)
        local.manage(env, "migrate", "--noinput")
        _create_terms(env, (BLOCKED, "block"), (MASKED, "mask"))
        with local.gunicorn(room=ROOM, var_dir=var_dir, room_fields=ROOM_FIELDS, extra_env=extra) as node:
            start = _pull(meter, "pull", node)
            assert start is not None, node.log_tail()
            response = _send(meter, "send (broker up)", node, "the broker is up")
            assert response.status == 201, node.log_tail()

            broker.freeze()
            try:
                _broker_outage_sends(meter, "broker frozen", node, start["cursor"])
            finally:
                broker.thaw()
            broker.stop()
            _broker_outage_sends(meter, "broker stopped", node, start["cursor"])
            fallbacks = node.log_tail(200_000).count("broker unavailable")
            _assert_no_failures(meter, node.log_tail())

    _assert_stopped(node.process)
    cases = ("frozen", "stopped")
    _print(
        capsys,
        meter.summary(
            "max send latency "
            + ", ".join(f"broker {c} {meter.max_ms(f'send (broker {c})'):.0f} ms" for c in cases)
            + f"; fallback warnings logged {fallbacks}"
        ),
    )
