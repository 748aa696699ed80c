"""The benchmark plan: which servers to start, which loads to run on each,
and the baselines measured beside them in the same run.

For every server kind (same workers, threads and CPUs throughout):

- the project, fast path on and/or off (``paths``), in the deployment each
  scenario needs (``DEPLOYMENTS``): ``hot`` and ``rooms`` on pull-role nodes
  over SQLite (one holding the hot room, one with all 1,000 rooms warm),
  ``mixed`` on a node serving both roles, ``redis`` on a pull-role node
  reading a private redis-server;
- the bare app (``bare_app.py``) returning the hot answer's exact bytes:
  the ceiling every project figure on that server is divided by.

The project and its bare app run side by side, and their load runs
alternate: each project run of the fast path is paired with a bare run
right before or after it (the order flips every repetition), and the
server not being measured is stopped (SIGSTOP) so it takes no CPU. A row's
ratio is the median of its pairs' ratios: on a shared, noisy machine two
runs seconds apart see the same weather, two runs minutes apart do not.
``repeat`` sets the pairs per row; its figures are the runs' medians.

Then, when nginx is installed, the shipped ``deploy/nginx.conf`` micro-cache
in front of a pull node, against nginx serving a static file holding the
same hot answer.

Every load run is preceded by a fresh round of comments and cursors
(``workload.prepare_round``) and a short warm-up, so each one measures the
same state: cursors a few seconds old, every room already in each worker.
Each server leads its own process group and is stopped when its block
exits, whatever happened (servers.serve).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.pullbench import servers, workload, wrk
from bench.pullbench.servers import ServerSettings
from harness import local

SCENARIOS = ("hot", "rooms", "mixed", "redis", "nginx")
PATHS = ("fast", "ninja")
# 1 send per 100 pulls: every 101st request is a send.
MIXED_SEND_EVERY = 101
# Beside the mixed load, a probe of this many connections pulls the hot room
# only: wrk puts sends and pulls in one latency distribution, and with one
# request in 100 a send, its p99 is where the sends begin. The probe's p99 is
# the pulls' own, what a viewer on a node that also takes sends waits.
PULL_PROBE_CONNECTIONS = 2
# Longest time spent loading every room into every worker before measuring.
ACTIVATION_TIMEOUT_SECONDS = 60
ACTIVATION_BLIND_SECONDS = 8
ACTIVATION_ROUND_SECONDS = 2
# Requests until the hot answer is a cache hit (the first ones may miss).
CACHED_HEADERS_ATTEMPTS = 20
# What each scenario needs the project to run as: (store, role, all rooms
# warm). The hot room gets a node of its own, so its figure never depends on
# which other scenarios share the run (a node holding 1,000 rooms also pays
# the refresher's tick for them).
DEPLOYMENTS = {
    "hot": ("embedded", "pull", False),
    "rooms": ("embedded", "pull", True),
    "mixed": ("embedded", "all", True),
    "redis": ("redis", "pull", True),
}


class Skipped(Exception):
    """A scenario this machine cannot run (a missing binary); said, not hidden."""


@dataclass
class Options:
    duration: float = 10.0
    warmup: float = 1.0
    connections: tuple[int, ...] = (64,)
    workers: int = 2
    # None: what each server ships with (gunicorn.conf.py, deploy/granian-pull.sh).
    threads: int | None = None
    scenarios: tuple[str, ...] = ("hot", "rooms", "mixed", "redis", "nginx")
    servers: tuple[str, ...] = ("gunicorn", "granian")
    paths: tuple[str, ...] = ("fast", "ninja")
    rooms: int = 1000
    pin: bool = False
    wrk_threads: int | None = None
    nginx_workers: int = 1
    # Load runs per row, each paired with a bare run (see the module's docstring).
    repeat: int = 1

    def settings(self, kind: str) -> ServerSettings:
        threads = self.threads or servers.shipped_threads(kind)
        return ServerSettings(kind, self.workers, threads, self.server_cpus)

    @property
    def server_cpus(self) -> str | None:
        return "0" if self.pin else None

    @property
    def wrk_cpus(self) -> str | None:
        return "1" if self.pin else None

    @property
    def load_threads(self) -> int:
        if self.wrk_threads:
            return self.wrk_threads
        # Pinned, wrk has one core: one thread. Otherwise one per core.
        return 1 if self.pin else min(2, os.cpu_count() or 1)


@dataclass
class Result:
    scenario: str
    server: str
    app: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    socket_errors: int
    status_errors: int
    bytes_per_response: float
    server_cpu_s: float
    wrk_cpu_s: float
    seconds: float
    requests: int
    sends: int
    # The baseline this row is divided by (same server, same connections).
    baseline: str = ""
    ratio: float | None = None
    # Runs this row combines (medians of each figure; counts added up), and
    # the lowest and highest of its paired ratios and p99s.
    runs: int = 1
    ratio_low: float | None = None
    ratio_high: float | None = None
    p99_high_ms: float | None = None
    rps_runs: list[float] = field(default_factory=list)
    # The mixed load only: the p99 of a probe pulling beside it (see
    # PULL_PROBE_CONNECTIONS).
    pull_p99_ms: float | None = None


@dataclass
class Report:
    options: dict
    results: list[Result] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hot_body_bytes: dict[str, int] = field(default_factory=dict)
    machine: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "options": self.options,
            "machine": self.machine,
            "hot_body_bytes": self.hot_body_bytes,
            "skipped": self.skipped,
            "notes": self.notes,
            "results": [asdict(result) for result in self.results],
        }


def run(options: Options, *, say: Callable[[str], None] = print) -> Report:
    report = Report(options=asdict(options), machine=_machine())
    with tempfile.TemporaryDirectory(prefix="danmaku-pullbench-") as tmp:
        work_dir = Path(tmp)
        say(f"preparing {options.rooms} rooms and {workload.USERS} viewers")
        template = workload.make_template(work_dir, rooms=options.rooms)
        if not template.has_fast_path_switch:
            note = "this checkout has no DANMAKU_PULL_FAST_PATH setting: fast and ninja runs serve the same code"
            report.notes.append(note)
            say(f"note: {note}")
        bench = _Bench(options, report, template, work_dir, say)
        for kind in options.servers:
            bench.server_block(options.settings(kind))
        if "nginx" in options.scenarios:
            try:
                bench.nginx_block(options.settings(options.servers[0]))
            except Skipped as exc:
                report.skipped.append(f"nginx: {exc}")
                say(f"skipped nginx: {exc}")
    report.machine["loadavg_after"] = _loadavg()
    _attach_ratios(report.results)
    return report


class _Bench:
    def __init__(self, options: Options, report: Report, template: workload.Template, work_dir: Path, say) -> None:
        self.options = options
        self.report = report
        self.template = template
        self.work_dir = work_dir
        self.say = say
        self.serial = 0
        # The latest round's hot answer: what the bare app and nginx's static file serve.
        self.hot_answer: dict | None = None
        self.hot_path = workload.pull_path(workload.HOT_ROOM)

    # -- blocks ---------------------------------------------------------------

    def server_block(self, settings: ServerSettings) -> None:
        """Every project scenario on this server, each run paired with a run
        of the bare app on the same settings (started once, stopped between
        its runs)."""
        wanted = [name for name in self.options.scenarios if name in DEPLOYMENTS]
        if not wanted:
            return
        # Fast-path rows are paired; ninja rows too when no fast path runs
        # (otherwise they are divided by the bare runs' median).
        paired_paths = {"fast"} if "fast" in self.options.paths else set(self.options.paths)
        bare_runs: dict[int, list[Result]] = defaultdict(list)
        with contextlib.ExitStack() as bare_stack:
            bare = None
            for path in self.options.paths:
                for deployment in dict.fromkeys(DEPLOYMENTS[name] for name in wanted):
                    scenarios = [name for name in wanted if DEPLOYMENTS[name] == deployment]
                    try:
                        with self.project(settings, path=path, deployment=deployment) as server:
                            for name in scenarios:
                                for connections in self.options.connections:
                                    if bare is None:
                                        bare = self.start_bare(settings, server, bare_stack)
                                    pair = bare if path in paired_paths else None
                                    self.compare(name, server, path, connections, pair, bare_runs)
                    except Skipped as exc:
                        self.report.skipped.append(f"{', '.join(scenarios)} on {settings.label} ({path}): {exc}")
                        self.say(f"skipped {', '.join(scenarios)}: {exc}")
        for connections in self.options.connections:
            if bare_runs[connections]:
                self.report.results.append(_combine(bare_runs[connections]))

    def start_bare(
        self, settings: ServerSettings, project: servers.RunningServer, stack: contextlib.ExitStack
    ) -> servers.RunningServer:
        """The bare app serving the hot answer's bytes, stopped until its first run."""
        if self.hot_answer is None:
            # No scenario ran yet: one round on the project gives the bytes.
            self.round(project, rooms=False)
        answer_path = self.work_dir / f"bare-answer-{self.next_serial()}.json"
        answer_path.write_text(json.dumps(self.hot_answer))
        var_dir = self.work_dir / f"bare-{self.next_serial()}"
        var_dir.mkdir()
        bare = stack.enter_context(
            servers.serve(
                servers.bare_settings(settings),
                app=servers.BARE_APP,
                var_dir=var_dir,
                probe_path="/",
                extra_env={"BENCH_BARE_ANSWER": str(answer_path)},
            )
        )
        servers.pause(bare.pgid)
        return bare

    def compare(
        self,
        scenario: str,
        server: servers.RunningServer,
        path: str,
        connections: int,
        bare: servers.RunningServer | None,
        bare_runs: dict[int, list[Result]],
    ) -> None:
        """``repeat`` runs of the project, each beside a bare run when ``bare``
        is given (project first, then bare first, and so on)."""
        runs, ratios = [], []
        for repetition in range(self.options.repeat):
            bare_run = None
            if bare is not None and repetition % 2:
                bare_run = self.bare_run(bare, server, connections)
            runs.append(self.project_run(scenario, server, path, connections))
            if bare is not None and bare_run is None:
                bare_run = self.bare_run(bare, server, connections)
            if bare_run is not None:
                bare_runs[connections].append(bare_run)
                if bare_run.rps:
                    ratios.append(runs[-1].rps / bare_run.rps)
        row = _combine(runs)
        _set_paired_ratio(row, ratios, f"bare on {(bare or server).settings.label}, paired")
        self.report.results.append(row)

    def bare_run(self, bare: servers.RunningServer, project: servers.RunningServer, connections: int) -> Result:
        """One run of the bare app while the project is stopped."""
        with servers.paused(project.pgid), servers.resumed(bare.pgid):
            return self.load(
                scenario="hot",
                server_label=bare.settings.label,
                app="bare",
                url=bare.base_url,
                script="hot.lua",
                args=[self.hot_path],
                connections=connections,
                pgids=[bare.pgid],
            )

    def nginx_block(self, settings: ServerSettings) -> None:
        """The micro-cache in front of a pull node, each hot run paired with a
        run of nginx serving the hot answer as a static file (the other nginx
        and the node stopped meanwhile)."""
        try:
            from harness import nginx as nginx_harness
        except ImportError as exc:
            raise Skipped(f"harness/nginx.py is not available yet ({exc})") from None
        if nginx_harness.find_nginx() is None:
            raise Skipped("nginx is not installed (apt-get install -y -q nginx-light)")
        label = f"nginx w{self.options.nginx_workers} + {settings.label}"
        static_runs: dict[int, list[Result]] = defaultdict(list)
        with contextlib.ExitStack() as stack:
            upstream = stack.enter_context(self.project(settings, path="fast", deployment=DEPLOYMENTS["rooms"]))
            proxy = stack.enter_context(
                nginx_harness.nginx(upstream=upstream.host_port, workers=self.options.nginx_workers)
            )
            self.pin_nginx(proxy)
            static = None
            for connections in self.options.connections:
                cached = dict(server_label=label, app="nginx-cache", url=proxy.base_url, connections=connections)
                pgids = [proxy.process.pid, upstream.pgid]
                # Every hot pair first, then the rooms runs: a rooms run's
                # misses leave the upstream a queue that would delay the next
                # hot run's one miss, and every viewer waiting on its lock.
                hot_runs, ratios = [], []
                for repetition in range(self.options.repeat):
                    round_ = self.round(upstream, rooms=False)
                    if static is None:
                        headers = _cached_headers(proxy.base_url, round_.hot_path)
                        static = self.start_static(nginx_harness, stack, headers)
                    static_run = None
                    if repetition % 2:
                        static_run = self.static_run(static, [upstream.pgid, proxy.process.pid], connections)
                    hot_runs.append(
                        self.load(scenario="hot", script="hot.lua", args=[round_.hot_path], pgids=pgids, **cached)
                    )
                    if static_run is None:
                        static_run = self.static_run(static, [upstream.pgid, proxy.process.pid], connections)
                    static_runs[connections].append(static_run)
                    if static_run.rps:
                        ratios.append(hot_runs[-1].rps / static_run.rps)
                rooms_runs = []
                for _ in range(self.options.repeat):
                    rooms_args = [str(self.lua_data(self.round(upstream)))]
                    rooms_runs.append(
                        self.load(scenario="rooms", script="rooms.lua", args=rooms_args, pgids=pgids, **cached)
                    )
                hot_row = _combine(hot_runs)
                _set_paired_ratio(hot_row, ratios, "nginx-static, paired")
                self.report.results += [hot_row, _combine(rooms_runs)]
        for connections in self.options.connections:
            if static_runs[connections]:
                self.report.results.append(_combine(static_runs[connections]))

    def start_static(self, nginx_harness, stack: contextlib.ExitStack, headers: dict[str, str]):
        """nginx serving the hot answer's bytes as a file, with the cached
        answer's headers, stopped until its first run."""
        body = base64.b64decode(self.hot_answer["body_b64"])
        static = stack.enter_context(
            nginx_harness.nginx(
                upstream=None,
                static_files={"hot.json": body},
                static_headers=headers,
                workers=self.options.nginx_workers,
            )
        )
        # Unwound before the server above: a stopped nginx would not act on its stop signal.
        stack.callback(servers.resume, static.process.pid)
        self.pin_nginx(static)
        servers.pause(static.process.pid)
        return static

    def static_run(self, static, others: list[int], connections: int) -> Result:
        from harness.nginx import STATIC_PREFIX

        with servers.paused(*others), servers.resumed(static.process.pid):
            return self.load(
                scenario="hot",
                server_label=f"nginx w{self.options.nginx_workers}",
                app="nginx-static",
                url=static.base_url,
                script="hot.lua",
                args=[f"{STATIC_PREFIX}hot.json"],
                connections=connections,
                pgids=[static.process.pid],
            )

    def pin_nginx(self, proxy) -> None:
        if self.options.server_cpus is not None:
            servers.pin_group(proxy.pids(), self.options.server_cpus)

    # -- pieces -----------------------------------------------------------------

    @contextlib.contextmanager
    def project(self, settings: ServerSettings, *, path: str, deployment: tuple[str, str, bool]) -> Iterator:
        """The project on ``settings`` as ``deployment`` says (store, role, every room warm)."""
        store, role, rooms = deployment
        var_dir = workload.fresh_var_dir(self.template, self.work_dir, f"project-{self.next_serial()}")
        extra = {"DANMAKU_ROLE": role, "DANMAKU_PULL_FAST_PATH": "1" if path == "fast" else "0"}
        held = f"{len(self.template.rooms)} rooms warm" if rooms else "the hot room"
        self.say(f"starting {settings.label}: project, {path} path, {store} store, role {role}, {held}")
        with contextlib.ExitStack() as stack:
            if store == "redis":
                extra["REDIS_URL"] = stack.enter_context(_private_redis()).url
            server = stack.enter_context(
                servers.serve(
                    settings,
                    app=servers.PROJECT_APP,
                    var_dir=var_dir,
                    probe_path=workload.pull_path(workload.HOT_ROOM),
                    extra_env=extra,
                )
            )
            if rooms:
                self.activate(server)
            yield server

    def activate(self, server: servers.RunningServer) -> None:
        """Load every room into every worker before anything is measured.

        A room's first pull in a process reads it from the database
        (milliseconds, once per process): left to the measured runs, a
        thousand of them per worker would be counted as pull cost. Joins
        spread evenly over the rooms until the workers' ring gauge says each
        holds them all, or the deadline passes (then the report says so).
        """
        rooms = [workload.HOT_ROOM, *self.template.rooms]
        wanted = len(rooms) * server.settings.workers
        data = self.work_dir / f"activate-{self.next_serial()}.lua"
        workload.write_lua_data(data, pulls=[workload.pull_path(room) for room in rooms])
        started = time.monotonic()
        deadline = started + ACTIVATION_TIMEOUT_SECONDS
        held = workload.ring_rooms(server.host_port)
        if held < 0:
            # No gauge to watch: a fixed dose instead, and say so.
            deadline = time.monotonic() + ACTIVATION_BLIND_SECONDS
            self.report.notes.append(f"{server.settings.label}: /metrics unreadable, rooms warmed blind")
        while held < wanted and time.monotonic() < deadline:
            # The gauge is set at the end of each refresher tick, so it lags
            # by up to a second: at most one round more than needed.
            wrk.run(
                url=server.base_url,
                script="rooms.lua",
                args=[str(data)],
                duration=ACTIVATION_ROUND_SECONDS,
                connections=64,
                threads=self.options.load_threads,
                server_pgids=[server.pgid],
            )
            held = workload.ring_rooms(server.host_port)
        self.say(f"  {max(held, 0)} of {wanted} room rings warm after {time.monotonic() - started:.1f} s")
        if 0 <= held < wanted:
            note = f"{server.settings.label}: only {held} of {wanted} room rings warm after activation"
            self.report.notes.append(note)
            self.say(f"note: {note}")

    def round(self, server: servers.RunningServer, *, rooms: bool = True) -> workload.Round:
        """Fresh comments and cursors; without ``rooms`` only the hot room's (a hot-only run)."""
        round_ = workload.prepare_round(
            server.host_port, server.env, self.template.rooms if rooms else [], round_number=self.next_serial()
        )
        self.hot_answer = round_.hot_answer
        self.hot_path = round_.hot_path
        body = base64.b64decode(round_.hot_answer["body_b64"])
        self.report.hot_body_bytes = {"gzip": len(body), "identity": round_.identity_body_bytes}
        return round_

    def lua_data(self, round_: workload.Round, *, send_every: int = 0) -> Path:
        path = self.work_dir / f"requests-{self.next_serial()}.lua"
        workload.write_lua_data(
            path,
            pulls=round_.room_paths,
            send_every=send_every,
            sends=workload.send_paths(self.template.rooms) if send_every else (),
            tokens=self.template.tokens if send_every else (),
        )
        return path

    def project_run(self, scenario: str, server: servers.RunningServer, path: str, connections: int) -> Result:
        round_ = self.round(server, rooms=scenario != "hot")
        if scenario == "hot":
            script, args = "hot.lua", [round_.hot_path]
        else:
            send_every = MIXED_SEND_EVERY if scenario == "mixed" else 0
            script, args = "rooms.lua", [str(self.lua_data(round_, send_every=send_every))]
        return self.load(
            scenario=scenario,
            server_label=server.settings.label,
            app=path,
            url=server.base_url,
            script=script,
            args=args,
            connections=connections,
            pgids=[server.pgid],
        )

    def load(
        self,
        *,
        scenario: str,
        server_label: str,
        app: str,
        url: str,
        script: str,
        args: list[str],
        connections: int,
        pgids: list[int],
    ) -> Result:
        common = dict(
            url=url,
            script=script,
            args=args,
            connections=connections,
            threads=self.options.load_threads,
            server_pgids=pgids,
            cpu_list=self.options.wrk_cpus,
        )
        if self.options.warmup > 0:
            wrk.run(duration=self.options.warmup, **common)
        probe = None
        with ThreadPoolExecutor(max_workers=1) as pool:
            if scenario == "mixed":
                probe_options = common | dict(
                    script="hot.lua",
                    args=[self.hot_path],
                    connections=PULL_PROBE_CONNECTIONS,
                    threads=1,
                    server_pgids=[],
                )
                probe = pool.submit(wrk.run, duration=self.options.duration, **probe_options)
            measured = wrk.run(duration=self.options.duration, **common)
            probed = probe.result() if probe is not None else None
        result = Result(
            scenario=scenario,
            server=server_label,
            app=app,
            connections=connections,
            rps=round(measured.rps, 1),
            p50_ms=measured.latency_us["p50"] / 1000,
            p99_ms=measured.latency_us["p99"] / 1000,
            errors=measured.errors,
            socket_errors=measured.socket_errors,
            status_errors=measured.status_errors,
            bytes_per_response=round(measured.bytes_per_response, 1),
            server_cpu_s=round(measured.server_cpu_seconds, 2),
            wrk_cpu_s=round(measured.wrk_cpu_seconds, 2),
            seconds=round(measured.seconds, 2),
            requests=measured.requests,
            sends=measured.sends,
            pull_p99_ms=probed.latency_us["p99"] / 1000 if probed is not None else None,
        )
        self.say(
            f"  {scenario:<6} {server_label:<24} {app:<12} c{connections:<4} {result.rps:>10,.0f} req/s"
            f"  p99 {result.p99_ms:7.2f} ms  errors {result.errors}"
        )
        return result

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial


@contextlib.contextmanager
def _private_redis() -> Iterator:
    import shutil

    if shutil.which("redis-server") is None:
        raise Skipped("redis-server is not installed (apt-get install -y -q redis-server)")
    from harness.services import private_redis

    with private_redis() as redis_server:
        yield redis_server


def _combine(runs: list[Result]) -> Result:
    """One row for repeated runs of the same load: the median of each rate
    and latency, counts and CPU seconds added up (so µs per request stays
    CPU over requests)."""
    first = runs[0]
    if len(runs) == 1:
        first.rps_runs = [first.rps]
        first.p99_high_ms = first.p99_ms
        return first

    def median(name: str) -> float:
        return statistics.median(getattr(run, name) for run in runs)

    def total(name: str):
        return sum(getattr(run, name) for run in runs)

    return Result(
        scenario=first.scenario,
        server=first.server,
        app=first.app,
        connections=first.connections,
        rps=round(median("rps"), 1),
        p50_ms=median("p50_ms"),
        p99_ms=median("p99_ms"),
        errors=total("errors"),
        socket_errors=total("socket_errors"),
        status_errors=total("status_errors"),
        bytes_per_response=round(median("bytes_per_response"), 1),
        server_cpu_s=round(total("server_cpu_s"), 2),
        wrk_cpu_s=round(total("wrk_cpu_s"), 2),
        seconds=round(total("seconds"), 2),
        requests=total("requests"),
        sends=total("sends"),
        runs=len(runs),
        p99_high_ms=max(run.p99_ms for run in runs),
        rps_runs=[run.rps for run in runs],
        pull_p99_ms=statistics.median(probed) if (probed := [r.pull_p99_ms for r in runs if r.pull_p99_ms]) else None,
    )


def _set_paired_ratio(row: Result, ratios: list[float], baseline: str) -> None:
    """The row's ratio: the median of its pairs', with their range."""
    if ratios:
        row.baseline = baseline
        row.ratio = round(statistics.median(ratios), 3)
        row.ratio_low, row.ratio_high = round(min(ratios), 3), round(max(ratios), 3)


def _attach_ratios(results: list[Result]) -> None:
    """Rows not paired with bare runs: project rows over the bare row on the
    same server and connections; nginx micro-cache rows over nginx serving
    the static file."""
    bare = {(r.server, r.connections): r for r in results if r.app == "bare"}
    static = {r.connections: r for r in results if r.app == "nginx-static"}
    for result in results:
        if result.ratio is not None:
            continue
        base = None
        if result.app in PATHS:
            base = bare.get((servers.bare_label(result.server), result.connections))
        elif result.app == "nginx-cache":
            base = static.get(result.connections)
        if base is not None and base.rps:
            result.baseline = f"{base.app} on {base.server}"
            result.ratio = round(result.rps / base.rps, 3)


def _loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def _machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "loadavg_before": _loadavg(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "python": local.BIN_DIR.as_posix(),
    }


# Written by nginx itself for a static file as for a cached answer.
NGINX_OWN_HEADERS = {"server", "date", "content-length", "connection", "keep-alive", "etag"}


def _cached_headers(base_url: str, path: str) -> dict[str, str]:
    """The headers of the hot answer served from the micro-cache, less
    nginx's own: what the static file is served with, so that the pair
    compares the same answer (the static file once went out with nginx's
    file headers, ~70 bytes and five header lines fewer)."""
    host, _, port = base_url.removeprefix("http://").partition(":")
    for _ in range(CACHED_HEADERS_ATTEMPTS):
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            connection.request("GET", path, headers={"Accept-Encoding": "gzip"})
            response = connection.getresponse()
            response.read()
        finally:
            connection.close()
        if response.status == 200 and response.getheader("X-Cache-Status") == "HIT":
            return {name: value for name, value in response.getheaders() if name.lower() not in NGINX_OWN_HEADERS}
        time.sleep(0.05)
    raise workload.WorkloadError(f"no cache hit for {path} in {CACHED_HEADERS_ATTEMPTS} attempts")
