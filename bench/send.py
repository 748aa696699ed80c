"""The send path in production mode (issue 16): accepted sends per second
against a bare ceiling, and a flood against a capped room.

    flock /tmp/bench.lock .venv/bin/python bench/send.py                   # accept: 2,000 users, 64 connections, 20 s
    flock /tmp/bench.lock .venv/bin/python bench/send.py --slow-mode-ms 0  # accept: the service's own speed
    flock /tmp/bench.lock .venv/bin/python bench/send.py --scenario flood  # 500 sends/s at a room capped at 50/s, 30 s
    flock /tmp/bench.lock .venv/bin/python bench/send.py --scenario crowd  # 3,000 users on their own connections, 500/s
    flock /tmp/bench.lock .venv/bin/python bench/send.py --scenario all    # all three, on the same servers
    flock /tmp/bench.lock .venv/bin/python bench/send.py --accept-rate 400 # accept, the connections paced at 400/s
    flock /tmp/bench.lock .venv/bin/python bench/send.py --server granian  # the send role (and ceiling) on granian
    .venv/bin/python bench/send.py --seconds 5 --users 500                 # shorter, fewer users
    .venv/bin/python bench/send.py --broker redis                          # a private redis-server as the broker
    .venv/bin/python bench/send.py --celery inline                         # no worker: moderation inside the request

Starts, all private and stopped afterwards: a fresh database on the shared
PostgreSQL (``harness.services.postgres_database``), a redis-server for the
store and the limits, a broker (a fresh vhost on the local RabbitMQ, or
``--broker redis``), a Celery worker (``harness.local.celery_worker``,
``--celery-concurrency``) and a send-role gunicorn (DANMAKU_ROLE=send,
``--workers``, the worker class and threads danmaku_site/gunicorn.conf.py
ships) on a free 127.0.0.1 port. Two rooms: ``send-bench`` with slow mode at
``--slow-mode-ms`` and its cap raised out of the way, ``send-flood`` capped
at ``--cap`` comments/s.

The load is wrk (``bench/sendbench/lua/send.lua``), one connection per wrk
thread: every request POSTs a fresh comment (unique ``client_id``) with a
user's Bearer token, each thread sending as its own slice of the users,
round robin. Each user keeps the room's slow mode as the viewer page does
(its next send waits until ``--slow-mode-ms`` after its previous answer);
the bare app's users do not (it has no slow mode). Latency is timed by the script from request to answer, per
answer status (2 % buckets).

Every run is warmed up on its own connections: wrk sends alike for
``--warmup`` seconds (at least long enough for each user to send once)
before counting starts, and every counter is read at that moment. A user
always sends on the same connection, and a connection stays on one server
process, so each process has met the users it serves (its caches of tokens,
senders and sanctions), as a process that has been up a while has; a
warm-up on other connections would leave about half of them new to the
process that now serves them.

``accept`` (the default): the ceiling, then ``--seconds``
(20) of sends as fast as answered to ``send-bench`` by ``--users`` (2,000)
users over ``--connections`` (64), then the ceiling again: the ratio is
to the mean of the two, so the machine's drift over the run (this shared
one's ceiling moved 1,237-1,870/s between runs) falls on both sides. The
ceiling is ``bench/sendbench/bare_app.py`` on the same gunicorn settings
and worker class, one prepared INSERT and one XADD per request over
per-thread connections to the same database and Redis, driven by the same
script and connections while the project and the worker are stopped
(SIGSTOP). Reported: accepted sends/s and their latency, the
ratio to the ceiling, CPU per accepted send by process (web: gunicorn's
process group; postgres: the private database's backends; redis: the store
server's INFO cpu; celery: the worker's group, over the run and the drain of
its backlog, waited for up to 60 s; the broker: the whole RabbitMQ node,
shared), the load generator's own, and PostgreSQL/Redis round trips per
send (counter deltas from before the run to after that wait).

The ratio is the service's speed only when nothing else bounds the run.
2,000 users in a 2 s slow mode offer at most 1,000 sends/s, which a fast
machine reaches: a run within 90 % of what its users' slow mode lets them
offer, or a paced one, prints the ratio without a verdict. Slow mode off
(``--slow-mode-ms 0``), as the issue measured the service's speed, each
user sends again as soon as answered.

``flood``: ``--seconds`` (30) of sends paced at ``--rate`` (500/s) in all,
from ``--users`` (5,000) users over ``--connections`` (256: a connection
waits for its answer, so the pace holds while answers take less than
connections / rate), to ``send-flood``. Reported: requests sent
and answered (wrk stops without waiting for the last ones: at most one per
connection is cut off), socket errors, statuses, the stored comments per
second of their timestamp (the cap must hold to the comment), and the
server CPU (web + postgres + redis) per request, and per rejected send as
an upper bound (all of it charged to the rejections). Then the same room,
users and connections at the cap's own pace (``--cap``/s) for as long: the
cost of a rejected send, checked against the issue's 300 µs, is the flood's
server CPU beyond that run's over the rejections beyond its (the accepted
sends and the idle cost fall on both sides).

``crowd``: ``--users`` (3,000) users, each on its own kept-alive
connection as each viewer's page holds one (``bench/sendbench/crowd.py``,
asyncio in this process, not wrk), all connecting within a second, each
sending about every ``--crowd-interval`` (6 s) to ``send-bench``, for
``--seconds`` (30) counted after everyone has sent once. Reported: who
connected and how fast, sends and their statuses, errors, latency, and CPU
per answered send by process.

Exit status 1 when a scenario had a 5xx, a socket error or no accepted send.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.pullbench import servers, wrk
from bench.sendbench import bare_app, deployment, load
from bench.sendbench import crowd as sendcrowd
from bench.sendbench.load import SendRun
from harness import local
from harness.services import postgres_database, private_redis, require_postgres

ACCEPT_ROOM = "send-bench"
# deploy/granian-send.sh's blocking threads per worker: a send waits on the
# database and Redis, so a worker needs a few to keep its core busy.
GRANIAN_SEND_THREADS = 4
FLOOD_ROOM = "send-flood"
SECRET_KEY = "bench-only-secret-key-" + "x" * 40
BARE_APP = "bench.sendbench.bare_app:application"
SCENARIOS = ("accept", "flood", "crowd", "all")
# The flood's connections: each is paced at rate / connections sends/s and
# waits for its answer, so the offered rate holds while answers take less
# than connections / rate seconds (512 ms at 500/s).
DEFAULTS = {
    "accept": {"seconds": 20.0, "users": 2000, "connections": 64},
    "flood": {"seconds": 30.0, "users": 5000, "connections": 256},
    # One connection per user.
    "crowd": {"seconds": 30.0, "users": 3000, "connections": 3000},
}
# The crowd's users all connect within this long.
CROWD_STORM_SECONDS = 1.0
# The room cap "out of the way" for the accept scenario.
CAP_OUT_OF_THE_WAY = 1_000_000
# The ceiling's own warm-up (its threads open their connections).
CEILING_WARMUP_SECONDS = 2.0
# A paced warm-up lasts long enough for every user to send this many times.
WARMUP_SENDS_PER_USER = 1.2
# Longest wait for the worker to work off the moderation tasks of a run.
DRAIN_TIMEOUT_SECONDS = 60.0
# Idle PostgreSQL backends flush their statistics at most a second after a transaction.
PG_STATS_FLUSH_SECONDS = 1.5
# The acceptance figures.
ACCEPT_MIN_PER_SECOND = 400
ACCEPT_MAX_P99_MS = 100
CEILING_MIN_RATIO = 0.5
# An accepted rate this close to what the users' slow mode lets them offer
# is the users' limit, not the service's.
LOAD_BOUND_SHARE = 0.9
REJECTED_MAX_CPU_US = 300
# The flood's offered rate counts as held at this share of --rate (wrk's
# duration includes the last answers' wait).
OFFERED_MIN_SHARE = 0.95


@dataclass
class Deployment:
    args: argparse.Namespace
    work_dir: Path
    database_url: str
    store_url: str
    broker: deployment.Broker | None
    project: servers.RunningServer
    worker: local.CeleryWorker | None
    tokens: list[str]

    @property
    def database_name(self) -> str:
        return self.database_url.rsplit("/", 1)[1]

    def processes(self, web_pgid: int | None = None) -> deployment.Processes:
        return deployment.Processes(
            web_pgid=self.project.pgid if web_pgid is None else web_pgid,
            database_name=self.database_name,
            store_url=self.store_url,
            worker_pgid=self.worker.process.pid if self.worker is not None else None,
            broker=self.broker,
        )

    def measure(
        self,
        server: servers.RunningServer,
        room: str,
        *,
        users: int,
        connections: int,
        seconds: float,
        rate: float,
        warmup: float,
        web_pgid: int | None = None,
        slow_mode_ms: int = 0,
    ) -> Measured:
        """A run warmed up on its own connections, its counters read when counting starts and its CPU after."""
        processes = self.processes(web_pgid)
        marks = Marks(self, processes)
        run = load.run(
            base_url=server.base_url,
            path=f"/api/v1/rooms/{room}/danmaku",
            tokens=self.tokens[:users],
            seconds=seconds,
            connections=connections,
            rate=rate,
            work_dir=self.work_dir,
            warmup=warmup,
            at_measure_start=marks,
            slow_mode_ms=slow_mode_ms,
        )
        cpu_before, counters_before = marks.taken()
        cpu_run = deployment.cpu_delta(processes.sample(), cpu_before)
        return Measured(run, processes, cpu_before, counters_before, cpu_run)

    def warmup_seconds(self, *, users: int, rate: float) -> float:
        """``--warmup``, or longer where a paced run would not reach every user."""
        reach = WARMUP_SENDS_PER_USER * users / rate if rate else 0.0
        return float(max(self.args.warmup, round(reach + 0.5)))


@dataclass
class Measured:
    run: SendRun
    processes: deployment.Processes
    cpu_before: dict[str, float]
    counters_before: dict
    # CPU seconds per process over the counted part of the run.
    cpu_run: dict[str, float]


class Marks:
    """Counters read when a run's counting starts (``load.run``'s ``at_measure_start``)."""

    def __init__(self, dep: Deployment, processes: deployment.Processes) -> None:
        self._dep = dep
        self._processes = processes
        self.cpu: dict[str, float] | None = None
        self.counters: dict | None = None

    def __call__(self) -> None:
        # The planner's statistics of the comments table, as a database that
        # has been up a while has them (autovacuum's ANALYZE): a table filled
        # within the warm-up has none, and the planner then reads the room's
        # whole minute by time for one sender's comments.
        deployment.analyze(self._dep.database_url, "danmaku_danmaku")
        self.cpu = self._processes.sample()
        self.counters = deployment.snapshot(self._dep.database_url, self._dep.store_url, self._dep.broker)

    def taken(self) -> tuple[dict[str, float], dict]:
        if self.cpu is None or self.counters is None:
            raise RuntimeError("the counters were not read when counting started")
        return self.cpu, self.counters


def main() -> int:
    args = _arguments()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    require_postgres()
    wrk.wrk_binary()
    scenarios = ("accept", "flood", "crowd") if args.scenario == "all" else (args.scenario,)
    failed = False
    with contextlib.ExitStack() as stack:
        dep = _deploy(stack, args, users=max(_setting(args, name, "users") for name in scenarios))
        _print_header(dep)
        for name in scenarios:
            print()
            if name == "crowd":
                crowded = crowd(dep)
                failed |= bool(crowded.server_errors or crowded.errors or not crowded.count(201))
                continue
            run = accept(dep) if name == "accept" else flood(dep)
            failed |= bool(run.server_errors or run.socket_error_count or not run.accepted)
        print()
        _print_log_problems(dep)
    return 1 if failed else 0


def _print_log_problems(dep: Deployment) -> None:
    logs = [("gunicorn", dep.project.log_path)]
    if dep.worker is not None:
        logs.append(("celery worker", dep.worker.log_path))
    for label, path in logs:
        count, kinds = deployment.log_problems(path)
        print(f"{label} log: {count:,} lines with a warning or error" + (", commonest:" if kinds else ""))
        for times, line in kinds:
            print(f"  {times:6,} x {line[:200]}")
    if dep.worker is not None:
        _print_batch_times(dep.worker.log_path)


def _print_batch_times(log_path) -> None:
    """How long the worker took over each moderation batch (its INFO lines),
    the wait a `pre` comment's verdict adds to its batch's interval."""
    took = sorted(
        float(found[1]) * 1000
        for found in re.finditer(r"moderation\.moderate_batch\[[^]]*\] succeeded in ([\d.]+)s", log_path.read_text())
    )
    if took:
        print(
            f"moderation batches: {len(took):,}, each decided in p50 {took[len(took) // 2]:.1f} ms, "
            f"p99 {took[min(len(took) - 1, len(took) * 99 // 100)]:.1f} ms, max {took[-1]:.1f} ms"
        )


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=SCENARIOS, default="accept", help="default accept")
    parser.add_argument("--seconds", type=float, help="measured load time (accept 20, flood 30)")
    parser.add_argument("--users", type=int, help="distinct senders (accept 2,000, flood 5,000)")
    parser.add_argument("--connections", type=int, help="keep-alive connections, one per wrk thread (64, flood 256)")
    # Each sender's first send in each worker fills that process's caches
    # (danmaku.sendcache), as a process that has been up a while holds them.
    parser.add_argument(
        "--warmup",
        type=float,
        default=10.0,
        help="seconds of sends on the run's own connections before counting (default 10; a paced run's "
        "at least long enough for every user to send once)",
    )
    parser.add_argument("--slow-mode-ms", type=int, default=2000, help="both rooms' per-user interval")
    parser.add_argument("--rate", type=float, default=500.0, help="flood: sends/s in all (default 500)")
    parser.add_argument(
        "--accept-rate",
        type=float,
        help="accept: pace the connections at this many sends/s in all (default: closed loop, each "
        "connection sending again as soon as it is answered, where p50 is connections ÷ throughput)",
    )
    parser.add_argument("--cap", type=int, default=50, help="flood: the room's cap, comments/s (default 50)")
    parser.add_argument(
        "--crowd-interval", type=float, default=6.0, help="crowd: each user's mean time between sends, s (default 6)"
    )
    parser.add_argument(
        "--server",
        choices=("gunicorn", "granian"),
        default="gunicorn",
        help="the send role's server: gunicorn (default) or granian (deploy/granian-send.sh); the ceiling too",
    )
    parser.add_argument("--workers", type=int, default=2, help="server workers (default 2)")
    parser.add_argument("--server-threads", type=int, help="threads per worker (default: as shipped)")
    parser.add_argument("--broker", choices=("rabbitmq", "redis"), default="rabbitmq", help="default rabbitmq")
    parser.add_argument("--celery", choices=("worker", "inline"), default="worker", help="default worker")
    parser.add_argument("--celery-concurrency", type=int, default=1, help="worker processes (default 1)")
    args = parser.parse_args()
    if args.seconds is not None and args.seconds < 1:
        parser.error("--seconds must be at least 1 (wrk counts whole seconds)")
    connections = 1 if args.connections is None else args.connections
    if min(connections, args.workers, args.celery_concurrency, args.cap) < 1 or args.rate <= 0:
        parser.error("--connections, --workers, --celery-concurrency, --cap and --rate must be positive")
    if args.accept_rate is not None and args.accept_rate <= 0:
        parser.error("--accept-rate must be positive")
    if args.warmup < 1:
        parser.error("--warmup must be at least 1")
    for scenario in ("accept", "flood") if args.scenario == "all" else (args.scenario,):
        if _setting(args, scenario, "users") < _setting(args, scenario, "connections"):
            parser.error("--users must be at least --connections (each wrk thread sends as its own users)")
    if args.server_threads is None:
        args.server_threads = GRANIAN_SEND_THREADS if args.server == "granian" else servers.shipped_threads("gunicorn")
    return args


def _setting(args: argparse.Namespace, scenario: str, name: str):
    value = getattr(args, name)
    return DEFAULTS[scenario][name] if value is None else value


def _deploy(stack: contextlib.ExitStack, args: argparse.Namespace, *, users: int) -> Deployment:
    work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sendbench-")))
    database_url = stack.enter_context(postgres_database())
    store = stack.enter_context(private_redis())
    broker = stack.enter_context(deployment.broker(args.broker)) if args.celery == "worker" else None
    extra = {
        "DJANGO_SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": database_url,
        "REDIS_URL": store.url,
    }
    if broker is not None:
        extra["CELERY_BROKER_URL"] = broker.url
    # servers.serve sets the web server's log levels itself.
    env = local.environment(work_dir, DANMAKU_LOG_LEVEL="WARNING", **extra)
    accept_fields = {"room_send_cap_per_second": CAP_OUT_OF_THE_WAY, "user_send_interval_ms": args.slow_mode_ms}
    local.prepare_room(env, ACCEPT_ROOM, (), **accept_fields)
    flood_fields = {"room_send_cap_per_second": args.cap, "user_send_interval_ms": args.slow_mode_ms}
    tokens = _rooms_and_tokens(env, FLOOD_ROOM, flood_fields, users)
    bare_app.create_table(database_url)
    settings = servers.ServerSettings(kind=args.server, workers=args.workers, threads=args.server_threads)
    project = stack.enter_context(
        servers.serve(
            settings,
            app=servers.PROJECT_APP,
            var_dir=work_dir,
            probe_path="/healthz",
            extra_env=extra | {"DANMAKU_ROLE": "send"},
        )
    )
    worker = None
    if broker is not None:
        worker = stack.enter_context(
            local.celery_worker(env, log_path=work_dir / "celery.log", concurrency=args.celery_concurrency)
        )
    return Deployment(args, work_dir, database_url, store.url, broker, project, worker, tokens)


ROOMS_AND_TOKENS_CODE = """
import io, json, secrets
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management import call_command
from danmaku.models import ApiToken, Room
spec = json.loads(SPEC)
call_command("create_room", spec["room"], stdout=io.StringIO())
Room.objects.filter(slug=spec["room"]).update(**spec["fields"])
User = get_user_model()
users = User.objects.bulk_create(
    [User(username=f"sender-{n}", password=make_password(None)) for n in range(spec["users"])]
)
raws = [ApiToken.PREFIX + secrets.token_urlsafe(32) for _ in users]
ApiToken.objects.bulk_create(
    [ApiToken(user=u, key_hash=ApiToken.hash(r), label="bench") for u, r in zip(users, raws)]
)
print(json.dumps(raws))
"""


def _rooms_and_tokens(env: dict[str, str], room: str, fields: dict[str, int], users: int) -> list[str]:
    """Create ``room`` with ``fields``, and ``users`` users with a token each (in bulk)."""
    spec = json.dumps({"room": room, "fields": fields, "users": users})
    out = local.manage(env, "shell", "-c", ROOMS_AND_TOKENS_CODE.replace("SPEC", repr(spec), 1))
    return json.loads(out.strip().splitlines()[-1])


def _print_header(dep: Deployment) -> None:
    args = dep.args
    celery = (
        f"Celery worker (concurrency {args.celery_concurrency}) on {dep.broker.label}"
        if dep.broker is not None
        else "Celery inline (moderation inside the request)"
    )
    server = f"gunicorn ({servers.shipped_worker_class()}" if args.server == "gunicorn" else "granian (wsgi"
    print(f"send-role {server}, {args.workers} workers x {args.server_threads} threads), PostgreSQL + Redis, {celery}")
    print(f"code: {_code_version()}")
    load_1, load_5, _ = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load_1:.2f} (1 min) {load_5:.2f} (5 min) at the start")


def _code_version() -> str:
    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=local.BASE_DIR, capture_output=True, text=True, check=False)
        return done.stdout

    # "XY path": the status takes the first three characters.
    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    changed = [path for path in changed if not path.startswith(("bench/", "docs/", "tests/"))]
    head = git("rev-parse", "--short", "HEAD").strip()
    return head + (f" + uncommitted changes to {', '.join(changed)}" if changed else "")


# -- accept -------------------------------------------------------------------


def accept(dep: Deployment) -> SendRun:
    args = dep.args
    seconds, users = _setting(args, "accept", "seconds"), _setting(args, "accept", "users")
    connections = _setting(args, "accept", "connections")
    pace = f"paced at {args.accept_rate:,.0f} sends/s" if args.accept_rate else "closed loop"
    # Each user waits out its slow mode, so the users can offer only so much.
    most = f"{1000 * users / args.slow_mode_ms:,.0f} sends/s" if args.slow_mode_ms > 0 else "no limit"
    print(
        f"accept: {users:,} users over {connections} connections ({pace}), {seconds:g} s, "
        f"slow mode {args.slow_mode_ms} ms (the users offer at most {most}), room cap {CAP_OUT_OF_THE_WAY:,}/s"
    )
    ceiling, ceiling_cpu = _ceiling(dep, users=users, connections=connections, seconds=seconds)
    # The ceiling's users out of slow mode (the same users and room).
    time.sleep(args.slow_mode_ms / 1000)
    rate = args.accept_rate or 0.0
    warmup = dep.warmup_seconds(users=users, rate=rate)
    measured = dep.measure(
        dep.project,
        ACCEPT_ROOM,
        users=users,
        connections=connections,
        seconds=seconds,
        rate=rate,
        warmup=warmup,
        slow_mode_ms=args.slow_mode_ms,
    )
    run, processes, cpu_run = measured.run, measured.processes, measured.cpu_run
    cpu_before, counters_before = measured.cpu_before, measured.counters_before
    backlog = dep.broker.backlog() if dep.broker is not None else 0
    drained = deployment.wait_drained(dep.broker, timeout=DRAIN_TIMEOUT_SECONDS)
    if "celery" in cpu_run:
        # The worker's CPU over the run and the drain of its backlog.
        cpu_run["celery"] = processes.sample()["celery"] - cpu_before["celery"]
    time.sleep(PG_STATS_FLUSH_SECONDS)
    counters_after = deployment.snapshot(dep.database_url, dep.store_url, dep.broker)
    ceiling_after, _ = _ceiling(dep, users=users, connections=connections, seconds=seconds)

    rate = run.per_second(run.accepted)
    before_rate, after_rate = ceiling.per_second(ceiling.accepted), ceiling_after.per_second(ceiling_after.accepted)
    ceiling_rate = (before_rate + after_rate) / 2
    ratio = rate / ceiling_rate if ceiling_rate else 0.0
    print(f"accepted: {rate:,.0f} sends/s ({run.accepted:,} in {run.seconds:.1f} s)   statuses: {_statuses(run)}")
    _print_requests(run)
    _print_latency(run, ("all", "answered"), ("201", "accepted"))
    print(
        f"ceiling: {ceiling_rate:,.0f} sends/s, the mean of {before_rate:,.0f} before the run and "
        f"{after_rate:,.0f} after it ({ceiling.accepted:,} in {ceiling.seconds:.1f} s, statuses: "
        f"{_statuses(ceiling)}, before); bare WSGI app, same gunicorn settings and connections, "
        f"one INSERT + one XADD per send"
    )
    _print_latency(ceiling, ("201", "ceiling"))
    print(f"ratio: accepted sends/s ÷ ceiling sends/s = {rate:,.0f} ÷ {ceiling_rate:,.0f} = {ratio:.2f}")
    print(f"CPU per accepted send: {_cpu_line(cpu_run, run.accepted, run.wrk_cpu_seconds)}")
    if dep.broker is not None:
        print(f"  celery: {backlog:,} tasks waiting at the end of the run ({drained}; its CPU includes the wait)")
    print(f"CPU per ceiling send: {_cpu_line(ceiling_cpu, ceiling.accepted, ceiling.wrk_cpu_seconds)}")
    _print_counters(counters_before, counters_after, run)
    p99 = run.latency_ms("201", "p99")
    if args.accept_rate:
        # Paced: the pace is the most that can be accepted (wrk's start
        # and whole seconds leave a few sends of it out).
        _check(
            args.accept_rate >= ACCEPT_MIN_PER_SECOND and rate >= OFFERED_MIN_SHARE * args.accept_rate,
            f"≥ {ACCEPT_MIN_PER_SECOND} accepted sends/s, paced at {args.accept_rate:,.0f}: {rate:,.0f} accepted",
        )
    else:
        _check(rate >= ACCEPT_MIN_PER_SECOND, f"≥ {ACCEPT_MIN_PER_SECOND} accepted sends/s: {rate:,.0f}")
    _check(p99 is not None and p99 <= ACCEPT_MAX_P99_MS, f"p99 ≤ {ACCEPT_MAX_P99_MS} ms: {_ms(p99)}")
    _check(not run.server_errors and not run.socket_error_count, f"0 5xx, 0 socket errors: {_errors(run)}")
    bound = _bound_by_load(args, rate, users)
    if bound:
        # Then the ratio measures the load, not the service: no verdict.
        print(
            f"  [----] ≥ {CEILING_MIN_RATIO}x the ceiling: {ratio:.2f}, not measured: {bound} bounds this run; "
            "the service's own speed is a closed loop with --slow-mode-ms 0"
        )
    else:
        _check(ratio >= CEILING_MIN_RATIO, f"≥ {CEILING_MIN_RATIO}x the ceiling: {ratio:.2f}")
    return run


def _bound_by_load(args: argparse.Namespace, rate: float, users: int) -> str:
    """What other than the service bounds the accepted rate, if anything:
    the pace, or the users' slow mode (each user sends at most once a
    slow-mode interval, as the viewer page does)."""
    if args.accept_rate:
        return f"the pace ({args.accept_rate:,.0f} sends/s)"
    most = 1000 * users / args.slow_mode_ms if args.slow_mode_ms > 0 else 0.0
    if most and rate >= LOAD_BOUND_SHARE * most:
        return f"the users' slow mode (at most {most:,.0f} sends/s)"
    return ""


def _ceiling(
    dep: Deployment, *, users: int, connections: int, seconds: float, rate: float = 0.0, answer_only: bool = False
) -> tuple[SendRun, dict[str, float]]:
    """The bare app's run (as fast as answered, or paced at ``rate``), the
    project and the worker stopped meanwhile; ``answer_only``: it answers
    202 without touching PostgreSQL or Redis."""
    args = dep.args
    settings = servers.ServerSettings(kind=args.server, workers=args.workers, threads=args.server_threads)
    var_dir = Path(tempfile.mkdtemp(prefix="bare-", dir=dep.work_dir))
    env = {"BENCH_SEND_DATABASE_URL": dep.database_url, "BENCH_SEND_REDIS_URL": dep.store_url}
    if answer_only:
        env["BENCH_SEND_ANSWER_ONLY"] = "1"
    stopped = [dep.project.pgid] + ([dep.worker.process.pid] if dep.worker is not None else [])
    with (
        servers.serve(settings, app=BARE_APP, var_dir=var_dir, probe_path="/", extra_env=env) as bare,
        servers.paused(*stopped),
    ):
        measured = dep.measure(
            bare,
            ACCEPT_ROOM,
            users=users,
            connections=connections,
            seconds=seconds,
            rate=rate,
            warmup=CEILING_WARMUP_SECONDS,
            web_pgid=bare.pgid,
        )
        run, cpu_run = measured.run, measured.cpu_run
    # Stopped: neither took CPU.
    cpu_run.pop("celery", None)
    cpu_run.pop("broker", None)
    return run, cpu_run


# -- flood --------------------------------------------------------------------


def flood(dep: Deployment) -> SendRun:
    args = dep.args
    seconds, users = _setting(args, "flood", "seconds"), _setting(args, "flood", "users")
    connections = _setting(args, "flood", "connections")
    print(
        f"flood: {users:,} users sending {args.rate:,.0f}/s in all over {connections} connections for "
        f"{seconds:g} s to a room capped at {args.cap}/s, slow mode {args.slow_mode_ms} ms"
    )
    warmup = dep.warmup_seconds(users=users, rate=args.rate)
    measured = dep.measure(
        dep.project,
        FLOOD_ROOM,
        users=users,
        connections=connections,
        seconds=seconds,
        rate=args.rate,
        warmup=warmup,
        slow_mode_ms=args.slow_mode_ms,
    )
    run, cpu_run, counters_before = measured.run, measured.cpu_run, measured.counters_before
    backlog = dep.broker.backlog() if dep.broker is not None else 0
    drained = deployment.wait_drained(dep.broker, timeout=DRAIN_TIMEOUT_SECONDS)
    time.sleep(PG_STATS_FLUSH_SECONDS)
    counters_after = deployment.snapshot(dep.database_url, dep.store_url, dep.broker)
    per_second = deployment.rows_per_second(dep.database_url, FLOOD_ROOM)

    print(
        f"requests: sent {run.sent:,} ({run.per_second(run.sent):,.0f}/s), answered {run.answered:,}, "
        f"cut off by the end of the run {run.cut_off} (at most one per connection), "
        f"socket errors {_errors(run)}" + (f", pacing slots skipped {run.skipped:,}" if run.skipped else "")
    )
    rejected = run.count(202, 429)
    print(
        f"statuses: {_statuses(run)}   accepted {run.accepted:,} ({run.per_second(run.accepted):,.1f}/s), "
        f"rejected {rejected:,} (202 room busy, 429 slow mode)"
    )
    _print_latency(run, ("all", "answered"), ("201", "accepted"), ("202", "room busy"))
    stored = sum(per_second.values())
    top = max(per_second.values(), default=0)
    full = sum(1 for count in per_second.values() if count == args.cap)
    print(
        f"cap: {stored:,} comments stored over {len(per_second)} seconds of their timestamp; "
        f"at most {top} in a second (cap {args.cap}), {full} seconds at exactly {args.cap}"
    )
    over = {second: count for second, count in sorted(per_second.items()) if count > args.cap}
    if over:
        first = min(per_second)
        listed = ", ".join(f"second {second - first}: {count}" for second, count in over.items())
        print(f"  over the cap: {listed} (seconds counted from the first comment's)")
    server_cpu = _server_cpu(cpu_run)
    answered = max(run.answered, 1)
    at_most = 1e6 * server_cpu / rejected if rejected else None
    print(
        f"server CPU (web + postgres + redis): {server_cpu:.2f} s = {1e6 * server_cpu / answered:,.0f} µs per "
        f"answered request; per rejected send at most "
        + (f"{at_most:,.0f} µs (all of it charged to the rejections)" if rejected else "(none refused)")
    )
    print(f"CPU per request: {_cpu_line(cpu_run, run.answered, run.wrk_cpu_seconds)}")
    if dep.broker is not None:
        print(f"  celery: {backlog:,} tasks waiting at the end of the run ({drained})")
    _print_counters(counters_before, counters_after, run)
    per_rejected = _marginal_rejection_cost(dep, run, server_cpu, seconds=seconds, users=users, connections=connections)
    for answer_only, what in (
        (False, "the bare app (one INSERT + one XADD a request, no checks)"),
        (True, "the bare app answering 202 at once (no database, no Redis: the server's own cost)"),
    ):
        floor, floor_cpu = _ceiling(
            dep, users=users, connections=connections, seconds=seconds, rate=args.rate, answer_only=answer_only
        )
        floor_server = sum(floor_cpu.get(name, 0.0) for name in ("web", "postgres", "redis"))
        print(
            f"floor: {what} at the same pace and connections: "
            f"{floor.per_second(floor.answered):,.0f} requests/s, server CPU "
            f"{1e6 * floor_server / max(floor.answered, 1):,.0f} µs per request "
            f"({_cpu_line(floor_cpu, floor.answered, floor.wrk_cpu_seconds)})"
        )
    offered = run.per_second(run.sent)
    _check(
        offered >= OFFERED_MIN_SHARE * args.rate, f"the pace held: {offered:,.0f} of {args.rate:,.0f} sends/s offered"
    )
    _check(not run.socket_error_count, f"every request answered: socket errors {_errors(run)}")
    _check(not run.server_errors, f"0 5xx: {run.server_errors}")
    _check(top <= args.cap, f"the cap held to the comment: at most {top} in a second")
    limit = REJECTED_MAX_CPU_US
    if per_rejected is None:
        _check(False, f"a rejected send ≤ {limit} µs: not measured in this run")
    else:
        _check(per_rejected <= limit, f"a rejected send ≤ {limit} µs: {per_rejected:,.0f}")
    return run


def _server_cpu(cpu_run: dict[str, float]) -> float:
    return sum(cpu_run.get(name, 0.0) for name in ("web", "postgres", "redis"))


def _marginal_rejection_cost(
    dep: Deployment, flood_run: SendRun, flood_cpu: float, *, seconds: float, users: int, connections: int
) -> float | None:
    """µs of server CPU per rejected send: what the flood cost beyond the same
    room, users and connections sent to at the cap's own pace, over the
    rejections beyond that run's.

    The cap's pace accepts about as many sends as the flood, and both runs
    carry the same idle cost (background jobs, PostgreSQL's and Redis's own
    timers), so the difference is the refusals'. Whatever the slower run
    accepted fewer is charged to the refusals too: an overestimate, never an
    underestimate. The users are warm from the flood, so a short warm-up does.
    """
    args = dep.args
    measured = dep.measure(
        dep.project,
        FLOOD_ROOM,
        users=users,
        connections=connections,
        seconds=seconds,
        rate=float(args.cap),
        warmup=float(args.warmup),
        slow_mode_ms=args.slow_mode_ms,
    )
    paced, paced_cpu = measured.run, _server_cpu(measured.cpu_run)
    flood_rejected, paced_rejected = flood_run.count(202, 429), paced.count(202, 429)
    print(
        f"at the cap's own pace ({args.cap}/s, same room, users and connections, {seconds:g} s): "
        f"{paced.per_second(paced.sent):,.0f} sends/s, accepted {paced.per_second(paced.accepted):,.1f}/s, "
        f"rejected {paced_rejected:,}, server CPU {paced_cpu:.2f} s "
        f"({_cpu_line(measured.cpu_run, paced.answered, paced.wrk_cpu_seconds)})"
    )
    extra = flood_rejected - paced_rejected
    if extra <= 0:
        print("per rejected send: not measured (the flood refused no more than the cap's pace)")
        return None
    # Each run's CPU scaled to the flood's length, for a --seconds that wrk overran.
    cost = 1e6 * (flood_cpu - paced_cpu * flood_run.seconds / max(paced.seconds, 1e-9)) / extra
    if cost <= 0:
        # The two runs' noise outweighed the refusals: no figure, and no pass.
        print(
            f"per rejected send: not measured (the run at the cap's pace cost {paced_cpu:.2f} s, "
            f"the flood {flood_cpu:.2f} s: the noise is larger than {extra:,} refusals)"
        )
        return None
    print(
        f"per rejected send: {cost:,.0f} µs of server CPU "
        f"(({flood_cpu:.2f} s - {paced_cpu:.2f} s) / {extra:,} more rejections than at the cap's pace)"
    )
    return cost


# -- crowd --------------------------------------------------------------------


def crowd(dep: Deployment) -> sendcrowd.CrowdRun:
    """Many users, each on its own kept-alive connection, sending now and then."""
    args = dep.args
    seconds, users = _setting(args, "crowd", "seconds"), _setting(args, "crowd", "users")
    interval = args.crowd_interval
    print(
        f"crowd: {users:,} users, each on its own kept-alive connection, all connecting within "
        f"{CROWD_STORM_SECONDS:g} s, each sending about every {interval:g} s ({users / interval:,.0f} sends/s "
        f"offered) to {ACCEPT_ROOM} (slow mode {args.slow_mode_ms} ms, room cap out of the way), {seconds:g} s counted"
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 2 * users + 1000)), hard))
    processes = dep.processes()
    marks = Marks(dep, processes)
    run = sendcrowd.run(
        dep.project.base_url,
        f"/api/v1/rooms/{ACCEPT_ROOM}/danmaku",
        dep.tokens[:users],
        storm_seconds=CROWD_STORM_SECONDS,
        seconds=seconds,
        interval_s=interval,
        slow_mode_ms=args.slow_mode_ms,
        at_measure_start=marks,
    )
    cpu_before, _ = marks.taken()
    cpu_run = deployment.cpu_delta(processes.sample(), cpu_before)
    drained = deployment.wait_drained(dep.broker, timeout=DRAIN_TIMEOUT_SECONDS)
    if "celery" in cpu_run:
        cpu_run["celery"] = processes.sample()["celery"] - cpu_before["celery"]
    accepted = run.count(201)
    statuses = " ".join(f"{status}: {count:,}" for status, count in sorted(run.statuses.items())) or "none"
    errors = ", ".join(f"{kind} {count}" for kind, count in run.errors.items()) or "0"
    connects = [_ms(sendcrowd.percentile(run.connect_ms, share)) for share in (0.5, 0.99)]
    print(
        f"connected: {run.connected:,} of {users:,}, first connect p50 {connects[0]} p99 {connects[1]} "
        f"max {_ms(max(run.connect_ms, default=None))}"
    )
    print(
        f"counted: sent {run.sent:,} ({run.per_second(run.sent):,.0f}/s), accepted {accepted:,} "
        f"({run.per_second(accepted):,.0f}/s)   statuses: {statuses}   errors: {errors}"
    )
    latency = [_ms(sendcrowd.percentile(run.latencies_ms, share)) for share in (0.5, 0.9, 0.99)]
    print(f"latency: p50 {latency[0]} p90 {latency[1]} p99 {latency[2]} max {_ms(max(run.latencies_ms, default=None))}")
    print(f"CPU per answered send: {_cpu_line(cpu_run, run.answered, run.client_cpu_seconds)}")
    if dep.broker is not None:
        print(f"  celery: {drained} (its CPU includes the drain)")
    p99 = sendcrowd.percentile(run.latencies_ms, 0.99)
    _check(run.connected == users, f"every user connected: {run.connected:,} of {users:,}")
    _check(not run.errors and not run.server_errors, f"0 errors, 0 5xx: errors {errors}, 5xx {run.server_errors}")
    _check(accepted == run.sent, f"every counted send accepted: {accepted:,} of {run.sent:,}")
    _check(p99 is not None and p99 <= ACCEPT_MAX_P99_MS, f"p99 ≤ {ACCEPT_MAX_P99_MS} ms: {_ms(p99)}")
    return run


# -- printing -----------------------------------------------------------------


def _statuses(run: SendRun) -> str:
    return " ".join(f"{status}: {count:,}" for status, count in sorted(run.statuses.items())) or "none"


def _errors(run: SendRun) -> str:
    if not run.socket_error_count:
        return "0"
    return ", ".join(f"{name} {count}" for name, count in run.socket_errors.items() if count)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _print_requests(run: SendRun) -> None:
    print(
        f"requests: sent {run.sent:,}, answered {run.answered:,} ({run.per_second(run.answered):,.0f}/s), "
        f"cut off by the end of the run {run.cut_off}, socket errors {_errors(run)}, "
        f"waits for a user's slow mode {run.held:,} (warm-up included)"
    )


def _print_latency(run: SendRun, *names: tuple[str, str]) -> None:
    parts = []
    for key, label in names:
        figures = run.latency_us.get(key)
        if figures:
            parts.append(
                f"{label} ({figures['count']:,}) p50 {figures['p50'] / 1000:.1f} p90 {figures['p90'] / 1000:.1f} "
                f"p99 {figures['p99'] / 1000:.1f} max {figures['max'] / 1000:.1f}"
            )
    print("latency (ms): " + "  |  ".join(parts))


def _cpu_line(cpu_run: dict[str, float], count: int, wrk_cpu: float) -> str:
    count = max(count, 1)
    server = sum(cpu_run.get(name, 0.0) for name in ("web", "postgres", "redis", "celery"))
    parts = [
        f"{name} {1000 * cpu_run[name] / count:.2f}"
        for name in ("web", "postgres", "redis", "celery")
        if name in cpu_run
    ]
    line = " + ".join(parts) + f" = {1000 * server / count:.2f} ms"
    if "broker" in cpu_run:
        line += f"; broker (whole node, shared) {1000 * cpu_run['broker'] / count:.2f} ms"
    return line + f"; load generator {1000 * wrk_cpu / count:.2f} ms"


def _print_counters(before: dict, after: dict, run: SendRun) -> None:
    requests = max(run.answered, 1)
    print(f"per request ({run.answered:,} answered, {run.accepted:,} accepted), and per 1,000 requests/s:")
    for name in deployment.PG_COUNTERS:
        delta = after["pg"][name] - before["pg"][name]
        print(f"  postgres {name:14} {delta / requests:8.2f}   {1000 * delta / requests:10,.0f}/s")
    tables = []
    for name, counts in after["tables"].items():
        old = before["tables"].get(name, [0, 0, 0])
        ins, upd, scans = (a - b for a, b in zip(counts, old, strict=True))
        if ins or upd or scans:
            tables.append((scans + ins + upd, name, ins, upd, scans))
    for _, name, ins, upd, scans in sorted(tables, reverse=True)[:8]:
        print(
            f"    table {name:28} inserts {ins / requests:5.2f}  updates {upd / requests:5.2f}  "
            f"scans {scans / requests:5.2f}"
        )
    for server in ("store", "broker"):
        if not after[server]:
            continue
        deltas = {name: after[server][name] - before[server].get(name, 0) for name in after[server]}
        total = sum(deltas.values())
        print(f"  redis ({server}) commands {total / requests:8.2f}   {1000 * total / requests:10,.0f}/s")
        for name, delta in sorted(deltas.items(), key=lambda kv: -kv[1])[:8]:
            if delta:
                print(f"    {name:22} {delta / requests:6.2f}")


def _check(ok: bool, text: str) -> None:
    print(f"  [{'PASS' if ok else 'FAIL'}] {text}")


if __name__ == "__main__":
    sys.exit(main())
