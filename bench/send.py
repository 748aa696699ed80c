"""The send path in production mode: accepted sends per second, latency, and
what each send costs PostgreSQL and Redis.

Starts, all private and stopped afterwards: a fresh database on the shared
PostgreSQL (``harness.services.postgres_database``), a redis-server for the
store and the limits, a second one as the Celery broker (``--celery broker``,
no worker consumes it: the web tier alone) or none (``--celery inline``: the
moderation task runs inside the request, so its database work is counted),
and gunicorn (``--workers``, gthread) on a free 127.0.0.1 port. Then
``--threads`` client threads, each with a keep-alive session, send to one
room for ``--seconds`` as fast as they are answered, cycling through
``--users`` users so slow mode (2 s per user) never refuses a send.

PostgreSQL load comes from pg_stat_database / pg_stat_user_tables deltas of
the private database (read after gunicorn stopped, so every backend flushed
its counters); Redis load from INFO commandstats of the private servers.
Both are divided by every request sent (warm-up included), and scaled to
1,000 sends/s. The refresher's own per-tick queries are in them too.

    .venv/bin/python bench/send.py                         # 10 s, 16 threads, broker mode
    .venv/bin/python bench/send.py --celery inline --seconds 5
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psycopg
import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import local
from harness.services import postgres_database, private_redis, require_postgres

ROOM = "send-bench"
SECRET_KEY = "bench-only-secret-key-" + "x" * 40
REQUEST_TIMEOUT_SECONDS = 5
WARMUP_SECONDS = 1.0
# Slow mode stays on (its Redis work is part of every send); users are many
# enough that each waits far longer than the interval between its sends.
ROOM_FIELDS = {"room_send_cap_per_second": 1_000_000, "user_send_interval_ms": 2000}
PG_COUNTERS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted", "tup_fetched")
TEXTS = ("主播太厉害了哈哈哈", "前方高能预警!!!", "这波操作666", "awsl 好可爱", "来了来了", "弹幕护体")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured load time (default 10)")
    parser.add_argument("--threads", type=int, default=16, help="client threads (default 16)")
    parser.add_argument("--users", type=int, default=2000, help="distinct senders (default 2000)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--celery", choices=("broker", "inline"), default="broker", help="default broker")
    args = parser.parse_args()
    if args.seconds <= 0 or min(args.threads, args.users, args.workers) < 1:
        parser.error("--seconds, --threads, --users and --workers must be positive")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    require_postgres()

    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(postgres_database())
        store_redis = stack.enter_context(private_redis())
        env = {
            "DJANGO_SECRET_KEY": SECRET_KEY,
            "DATABASE_URL": database_url,
            "REDIS_URL": store_redis.url,
            "GUNICORN_LOG_LEVEL": "warning",
            "DANMAKU_LOG_LEVEL": "WARNING",
        }
        broker_redis = None
        if args.celery == "broker":
            broker_redis = stack.enter_context(private_redis())
            env["CELERY_BROKER_URL"] = broker_redis.url
        server = stack.enter_context(
            local.gunicorn(room=ROOM, workers=args.workers, room_fields=ROOM_FIELDS, extra_env=env)
        )
        tokens = _issue_tokens(server, args.users)
        before = _snapshot(database_url, store_redis, broker_redis)
        load = _Load(server.danmaku_url(ROOM), tokens, args.threads)
        database_name = database_url.rsplit("/", 1)[1]
        gunicorn_cpu = _cpu_seconds(lambda pgrp, _: pgrp == server.process.pid)
        postgres_cpu = _cpu_seconds(lambda _, cmdline: database_name in cmdline)
        client_cpu = time.process_time()
        load.run(WARMUP_SECONDS, args.seconds)
        gunicorn_cpu = _cpu_seconds(lambda pgrp, _: pgrp == server.process.pid) - gunicorn_cpu
        # Backends of the private database (gunicorn's connections persist).
        postgres_cpu = _cpu_seconds(lambda _, cmdline: database_name in cmdline) - postgres_cpu
        client_cpu = time.process_time() - client_cpu
        local.stop(server.process)
        # Backends flush their statistics as they exit; give the collector a moment.
        time.sleep(1.0)
        after = _snapshot(database_url, store_redis, broker_redis)
    _report(args, load, before, after, {"gunicorn": gunicorn_cpu, "postgres": postgres_cpu, "client": client_cpu})
    return 0 if not load.failures and load.accepted_total else 1


def _issue_tokens(server: local.LocalServer, count: int) -> list[str]:
    code = f"""
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from danmaku.models import ApiToken
import secrets
User = get_user_model()
users = User.objects.bulk_create([User(username=f"sender-{{n}}", password=make_password(None)) for n in range({count})])
raws = [ApiToken.PREFIX + secrets.token_urlsafe(32) for _ in users]
ApiToken.objects.bulk_create([ApiToken(user=u, key_hash=ApiToken.hash(r), label="bench") for u, r in zip(users, raws)])
print("\\n".join("TOKEN " + r for r in raws))
"""
    # The shell prints a line of its own first; the tokens are marked.
    lines = server.manage("shell", "-c", code).splitlines()
    return [line.split(" ", 1)[1] for line in lines if line.startswith("TOKEN ")]


class _Load:
    def __init__(self, url: str, tokens: list[str], threads: int) -> None:
        self.url = url
        self.threads = threads
        self._tokens = itertools.cycle(tokens)
        self._lock = threading.Lock()
        self._serial = itertools.count()
        self.statuses: Counter = Counter()
        self.failures: Counter = Counter()
        self.latencies_ms: list[float] = []
        self.accepted = 0
        self.accepted_total = 0
        self.requests_total = 0
        self.measured_seconds = 0.0

    def run(self, warmup: float, seconds: float) -> None:
        start = time.monotonic()
        self._measure_from = start + warmup
        self._until = self._measure_from + seconds
        workers = [threading.Thread(target=self._worker, daemon=True) for _ in range(self.threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(warmup + seconds + REQUEST_TIMEOUT_SECONDS + 5)
        self.measured_seconds = seconds

    def _next(self) -> tuple[str, int]:
        with self._lock:
            return next(self._tokens), next(self._serial)

    def _worker(self) -> None:
        latencies, statuses, failures = [], Counter(), Counter()
        accepted = accepted_total = sent = 0
        with requests.Session() as session:
            while (now := time.monotonic()) < self._until:
                token, serial = self._next()
                body = {"text": f"{TEXTS[serial % len(TEXTS)]} {serial}", "client_id": f"b{serial}"}
                try:
                    response = session.post(
                        self.url,
                        json=body,
                        headers={"Authorization": f"Bearer {token}"},
                        timeout=REQUEST_TIMEOUT_SECONDS,
                    )
                except requests.RequestException as exc:
                    failures[type(exc).__name__] += 1
                    continue
                sent += 1
                elapsed_ms = (time.monotonic() - now) * 1000
                ok = response.status_code == 201
                accepted_total += ok
                if now >= self._measure_from:
                    statuses[response.status_code] += 1
                    if ok:
                        accepted += 1
                        latencies.append(elapsed_ms)
                if not ok and response.status_code != 429:
                    failures[f"{response.status_code} {response.text[:80]}"] += 1
        with self._lock:
            self.latencies_ms.extend(latencies)
            self.statuses.update(statuses)
            self.failures.update(failures)
            self.accepted += accepted
            self.accepted_total += accepted_total
            self.requests_total += sent


def _snapshot(database_url: str, store_redis, broker_redis) -> dict:
    libpq = database_url.replace("postgres://", "postgresql://", 1)
    with psycopg.connect(libpq, connect_timeout=5, autocommit=True) as conn:
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
        "store": _commandstats(store_redis.url),
        "broker": _commandstats(broker_redis.url) if broker_redis is not None else {},
    }


def _commandstats(url: str) -> dict[str, int]:
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        stats = {name.removeprefix("cmdstat_"): value["calls"] for name, value in client.info("commandstats").items()}
        cpu = client.info("cpu")
        stats["_cpu_ms"] = int((cpu["used_cpu_user"] + cpu["used_cpu_sys"]) * 1000)
        return stats
    finally:
        client.close()


def _cpu_seconds(matches) -> float:
    """CPU used so far by every live process for which ``matches(pgrp, cmdline)``."""
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if matches(int(fields[2]), cmdline):
                ticks += int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _report(args, load: _Load, before: dict, after: dict, cpu: dict[str, float]) -> None:
    gunicorn_cpu, postgres_cpu, client_cpu = cpu["gunicorn"], cpu["postgres"], cpu["client"]
    rate = load.accepted / load.measured_seconds
    print(
        f"send path: PostgreSQL + Redis, celery {args.celery}, {args.workers} gunicorn workers (gthread), "
        f"{args.threads} client threads, {args.seconds:g} s measured after {WARMUP_SECONDS:g} s warm-up"
    )
    print(
        f"accepted: {rate:,.0f} sends/s  ({load.accepted} in {load.measured_seconds:g} s)  "
        f"statuses: {dict(load.statuses)}"
    )
    if load.latencies_ms:
        centiles = statistics.quantiles(load.latencies_ms, n=100, method="inclusive")
        print(
            f"latency of accepted sends (ms): p50 {statistics.median(load.latencies_ms):.1f}  "
            f"p90 {centiles[89]:.1f}  p99 {centiles[98]:.1f}  max {max(load.latencies_ms):.1f}"
        )
    if load.failures:
        print(f"failures: {dict(load.failures)}")
    run_seconds = WARMUP_SECONDS + args.seconds
    accepted = max(load.accepted_total, 1)
    print(
        f"CPU: gunicorn {gunicorn_cpu:.1f} s ({100 * gunicorn_cpu / run_seconds:.0f} % of a core), "
        f"postgres backends {postgres_cpu:.1f} s, load generator {client_cpu:.1f} s; per accepted send: "
        f"gunicorn {1000 * gunicorn_cpu / accepted:.2f} ms, postgres {1000 * postgres_cpu / accepted:.2f} ms"
    )
    sends = max(load.requests_total, 1)
    print(f"\nper send ({load.requests_total} requests, {load.accepted_total} accepted), and per 1,000 sends/s:")
    for name in PG_COUNTERS:
        delta = after["pg"][name] - before["pg"][name]
        print(f"  postgres {name:14} {delta / sends:8.2f}   {1000 * delta / sends:10,.0f}/s")
    tables = []
    for name, counts in after["tables"].items():
        old = before["tables"].get(name, [0, 0, 0])
        ins, upd, scans = (a - b for a, b in zip(counts, old, strict=True))
        if ins or upd or scans:
            tables.append((scans + ins + upd, name, ins, upd, scans))
    for _, name, ins, upd, scans in sorted(tables, reverse=True)[:8]:
        print(f"    table {name:28} inserts {ins / sends:5.2f}  updates {upd / sends:5.2f}  scans {scans / sends:5.2f}")
    for server in ("store", "broker"):
        if not after[server]:
            continue
        deltas = {k: after[server][k] - before[server].get(k, 0) for k in after[server] if k != "_cpu_ms"}
        total = sum(deltas.values())
        cpu_ms = after[server]["_cpu_ms"] - before[server]["_cpu_ms"]
        print(
            f"  redis ({server}) commands {total / sends:8.2f}   {1000 * total / sends:10,.0f}/s   "
            f"CPU {cpu_ms / sends * 1000:.0f} µs per send"
        )
        for name, delta in sorted(deltas.items(), key=lambda kv: -kv[1])[:8]:
            if delta:
                print(f"    {name:22} {delta / sends:6.2f}")


if __name__ == "__main__":
    sys.exit(main())
