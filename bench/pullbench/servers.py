"""Starting the server under test: the project or the bare baseline app, on
gunicorn (gthread or sync) or granian, on a free 127.0.0.1 port.

Every server leads its own process group and is stopped group-wide (TERM,
then KILL) when its block exits, whatever happened inside. With ``cpus``
the whole group is pinned there (taskset at start; children inherit it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness import local

# "gunicorn" is gunicorn as the project ships it (its config's worker class:
# gthread with polls answered on the event loop); the others name a stock
# worker class.
SERVERS = ("gunicorn", "gunicorn-gthread", "gunicorn-sync", "granian")
# As gunicorn.conf.py names it: serve() starts the worker's background jobs.
PROJECT_APP = "danmaku_site.wsgi:serve()"
BARE_APP = "bench.pullbench.bare_app:application"
GRANIAN_SCRIPT = local.BASE_DIR / "deploy" / "granian-pull.sh"
GUNICORN_CONFIG = local.BASE_DIR / "danmaku_site" / "gunicorn.conf.py"
START_TIMEOUT_SECONDS = 30
# granian's listen queue; gunicorn's default is 2048 too.
BACKLOG = 2048


class ServerError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServerSettings:
    """What must be equal between the project's run and its baseline's."""

    kind: str
    workers: int
    threads: int
    cpus: str | None = None

    @property
    def label(self) -> str:
        if self.kind == "gunicorn-sync":
            return f"{self.kind} w{self.workers}"
        return f"{self.kind} w{self.workers}t{self.threads}"


@dataclass
class RunningServer:
    settings: ServerSettings
    host_port: str
    process: subprocess.Popen
    log_path: Path
    env: dict[str, str]

    @property
    def base_url(self) -> str:
        return f"http://{self.host_port}"

    @property
    def pgid(self) -> int:
        return self.process.pid

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def command(settings: ServerSettings, app: str, port: int) -> list[str]:
    bin_dir = local.BIN_DIR
    if settings.kind.startswith("gunicorn"):
        stock = settings.kind.removeprefix("gunicorn-")
        worker_class = shipped_worker_class() if settings.kind == "gunicorn" else stock
        # The project's own config (keep-alive, timeouts, logging); the
        # command line wins over it for what the benchmark varies.
        argv = [
            str(bin_dir / "gunicorn"),
            "-c", "danmaku_site/gunicorn.conf.py",
            "-k", worker_class,
            "-w", str(settings.workers),
            "--threads", str(1 if worker_class == "sync" else settings.threads),
            "-b", f"127.0.0.1:{port}",
            app,
        ]  # fmt: skip
    elif settings.kind == "granian":
        # The project through the shipped script; the baseline through the
        # same granian with the same GRANIAN_* settings (granian_env).
        argv = ["sh", str(GRANIAN_SCRIPT)] if app == PROJECT_APP else [str(bin_dir / "granian"), app]
    else:
        raise ServerError(f"unknown server {settings.kind!r}; one of {', '.join(SERVERS)}")
    if settings.cpus is not None:
        argv = ["taskset", "-c", settings.cpus, *argv]
    return argv


def granian_env(settings: ServerSettings, port: int) -> dict[str, str]:
    """What deploy/granian-pull.sh sets, with what the benchmark varies;
    given to the baseline as well, so both run on the same server settings."""
    return {
        "GRANIAN": str(local.BIN_DIR / "granian"),
        "GRANIAN_INTERFACE": "wsgi",
        "GRANIAN_HTTP": "1",
        "GRANIAN_WEBSOCKETS": "false",
        "GRANIAN_HOST": "127.0.0.1",
        "GRANIAN_PORT": str(port),
        "GRANIAN_WORKERS": str(settings.workers),
        "GRANIAN_BLOCKING_THREADS": str(settings.threads),
        "GRANIAN_BACKLOG": str(BACKLOG),
        "GRANIAN_HTTP1_KEEP_ALIVE": "true",
        "GRANIAN_LOG_LEVEL": "warning",
    }


def bare_settings(settings: ServerSettings) -> ServerSettings:
    """Where the bare app runs beside the project on ``settings``: the same
    server and settings, except that gunicorn's shipped worker class is
    gthread for an app without a pull fast path, so the bare app gets stock
    gthread (the ceiling the issue names)."""
    if settings.kind == "gunicorn":
        return dataclasses.replace(settings, kind="gunicorn-gthread")
    return settings


def bare_label(label: str) -> str:
    """The label of the server the bare app runs on beside ``label``'s."""
    kind, _, rest = label.partition(" ")
    return f"gunicorn-gthread {rest}" if kind == "gunicorn" else label


def shipped_worker_class() -> str:
    found = re.search(r'GUNICORN_WORKER_CLASS", "([^"]+)"', GUNICORN_CONFIG.read_text())
    if found is None:
        raise ServerError(f"cannot find the shipped worker class in {GUNICORN_CONFIG}")
    return found.group(1)


def shipped_threads(kind: str) -> int:
    """Threads per process the project ships for ``kind`` (read from its
    config, so the default run measures what is deployed)."""
    if kind == "gunicorn-sync":
        return 1
    if kind == "granian":
        source, pattern = GRANIAN_SCRIPT, r"GRANIAN_BLOCKING_THREADS:-(\d+)"
    else:
        source, pattern = GUNICORN_CONFIG, r'GUNICORN_THREADS", "(\d+)"'
    found = re.search(pattern, source.read_text()) if source.exists() else None
    if found is None:
        raise ServerError(f"cannot find the shipped thread count in {source}; pass --threads")
    return int(found.group(1))


def server_env(var_dir: Path, port: int, settings: ServerSettings, extra: dict[str, str]) -> dict[str, str]:
    return local.environment(
        var_dir,
        DANMAKU_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKERS=str(settings.workers),
        GUNICORN_THREADS=str(settings.threads),
        # A worker recycled mid-run would put its restart into the figures.
        GUNICORN_MAX_REQUESTS="0",
        # No heartbeat deadline: a server stopped (SIGSTOP) while another one
        # is measured must not find its workers overdue when it resumes.
        GUNICORN_TIMEOUT_SECONDS="0",
        GUNICORN_LOG_LEVEL="warning",
        GUNICORN_CONTROL_SOCKET="off",
        DANMAKU_LOG_LEVEL="WARNING",
        # Production answers carry no debugging header.
        DANMAKU_SERVED_BY_HEADER="0",
        # One directory per instance, for gunicorn and granian alike.
        PROMETHEUS_MULTIPROC_DIR=str(var_dir / "prometheus"),
        **(granian_env(settings, port) if settings.kind == "granian" else {}),
        **extra,
    )


@contextlib.contextmanager
def serve(
    settings: ServerSettings,
    *,
    app: str,
    var_dir: Path,
    probe_path: str,
    extra_env: dict[str, str] | None = None,
) -> Iterator[RunningServer]:
    """Run ``app`` on ``settings`` until the block exits; ready when ``probe_path`` answers 200."""
    port = local.free_port()
    env = server_env(var_dir, port, settings, extra_env or {})
    (var_dir / "prometheus").mkdir(exist_ok=True)
    log_path = var_dir / f"{settings.kind}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command(settings, app, port),
            cwd=local.BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = RunningServer(settings, f"127.0.0.1:{port}", process, log_path, env)
    try:
        _wait_until_ready(server, probe_path)
        yield server
    finally:
        # A stopped group would not act on SIGTERM.
        resume(server.pgid)
        local.stop(process)


def pause(pgid: int) -> None:
    """SIGSTOP a whole process group: it takes no CPU until resumed."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGSTOP)


def resume(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGCONT)


@contextlib.contextmanager
def paused(*pgids: int) -> Iterator[None]:
    """Process groups stopped for the block (a run of another server is measured)."""
    for pgid in pgids:
        pause(pgid)
    try:
        yield
    finally:
        for pgid in pgids:
            resume(pgid)


@contextlib.contextmanager
def resumed(pgid: int) -> Iterator[None]:
    """A process group kept stopped between its runs, running for the block."""
    resume(pgid)
    try:
        yield
    finally:
        pause(pgid)


def _wait_until_ready(server: RunningServer, probe_path: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    last = "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerError(f"{server.settings.kind} exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            status = get_status(server.host_port, probe_path)
        except OSError as exc:
            last = str(exc)
        else:
            if status == 200:
                return
            last = f"HTTP {status}"
        time.sleep(0.1)
    raise ServerError(
        f"{server.settings.kind} did not answer {probe_path} within {START_TIMEOUT_SECONDS} s ({last}):\n"
        f"{server.log_tail()}"
    )


def get_status(host_port: str, path: str, timeout: float = 2.0) -> int:
    connection = http.client.HTTPConnection(host_port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def pin_group(pids: list[int], cpus: str) -> None:
    """Pin processes started by someone else (nginx) to ``cpus``, all their threads."""
    wanted = {int(cpu) for cpu in cpus.split(",")}
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(task), wanted)
