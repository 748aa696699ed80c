"""A real gunicorn on a free 127.0.0.1 port over its own SQLite file.

Shared by the end-to-end tests and the benchmarks. Every process started
here leads its own process group and is stopped (group-wide, TERM then KILL)
when the context exits, whatever happened inside.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

BASE_DIR = Path(__file__).resolve().parent.parent
BIN_DIR = Path(sys.executable).parent
# Longest wait for gunicorn to answer its first request.
START_TIMEOUT_SECONDS = 30
# Variables that would point a local instance at shared production services.
SERVICE_VARIABLES = ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL")


class LocalServerError(RuntimeError):
    pass


@dataclass
class LocalServer:
    base_url: str
    tokens: list[str]
    process: subprocess.Popen
    log_path: Path
    env: dict[str, str]

    def manage(self, *args: str) -> str:
        """Run a management command against this server's database."""
        return manage(self.env, *args)

    def danmaku_url(self, room: str) -> str:
        return f"{self.base_url}/api/v1/rooms/{room}/danmaku"

    def log_tail(self, chars: int = 5000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(var_dir: Path | str, **extra: str) -> dict[str, str]:
    """This process's environment minus shared services, plus a private var dir."""
    env = {key: value for key, value in os.environ.items() if key not in SERVICE_VARIABLES}
    env.update(
        DJANGO_SETTINGS_MODULE="danmaku_site.settings",
        DANMAKU_VAR_DIR=str(var_dir),
        DANMAKU_SERVED_BY_HEADER="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode:
        raise LocalServerError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


# prepare_room's steps, the same management commands, in one process: each
# manage.py process starts Django first (~0.6 s here), and a server start
# took one for the migration, one for the room, one for its fields and one
# per token.
PREPARE_ROOM_CODE = """
import io, json
from django.core.management import call_command
from danmaku.models import Room
spec = json.loads(SPEC)
if spec["migrate"]:
    call_command("migrate", interactive=False, verbosity=0)
call_command("create_room", spec["room"], stdout=io.StringIO())
if spec["fields"]:
    Room.objects.filter(slug=spec["room"]).update(**spec["fields"])
tokens = []
for user in spec["users"]:
    out = io.StringIO()
    call_command("issue_token", user, stdout=out, stderr=io.StringIO())
    tokens.append(out.getvalue().strip())
print(json.dumps(tokens))
"""


def prepare_room(env: dict[str, str], room: str, users: tuple[str, ...], **room_fields: int) -> list[str]:
    """Migrate, create ``room`` with ``room_fields`` set, issue a token per user."""
    migrated = start_from_migrated(env)
    fields = {k: int(v) for k, v in room_fields.items()}
    spec = json.dumps({"room": room, "users": list(users), "fields": fields, "migrate": not migrated})
    out = manage(env, "shell", "-c", PREPARE_ROOM_CODE.replace("SPEC", repr(spec), 1))
    return json.loads(out.strip().splitlines()[-1])


def start_from_migrated(env: dict[str, str]) -> bool:
    """Give an embedded-default server (SQLite in its var dir) a copy of a
    database already migrated, when it has none yet: migrating a fresh one
    took ~2 s of every server start, and the suite starts a hundred. The
    copy is made once per machine and set of migrations (and pinned
    requirements). True if it gave one (nothing is left to migrate)."""
    if env.get("DATABASE_URL"):
        return False
    target = Path(env["DANMAKU_VAR_DIR"]) / "db.sqlite3"
    if target.exists():
        return False
    template = _migrated_template(env)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The backup API: a consistent copy whatever the template's journal holds.
    with contextlib.closing(sqlite3.connect(template)) as source, contextlib.closing(sqlite3.connect(target)) as copy:
        source.backup(copy)
    return True


def _migrated_template(env: dict[str, str]) -> Path:
    digest = hashlib.sha256()
    for path in sorted([*BASE_DIR.glob("*/migrations/*.py"), BASE_DIR / "requirements.txt"]):
        digest.update(path.name.encode() + path.read_bytes())
    template = Path(tempfile.gettempdir()) / f"danmaku-migrated-{digest.hexdigest()[:16]}.sqlite3"
    if template.exists():
        return template
    with tempfile.TemporaryDirectory(prefix="danmaku-migrate-") as var_dir:
        manage({**env, "DANMAKU_VAR_DIR": var_dir}, "migrate", "--noinput")
        partial = template.with_suffix(f".{os.getpid()}.partial")
        built = Path(var_dir) / "db.sqlite3"
        with contextlib.closing(sqlite3.connect(built)) as source, contextlib.closing(sqlite3.connect(partial)) as copy:
            source.backup(copy)
        # Atomic: a concurrent builder's file is as good as this one.
        os.replace(partial, template)
    return template


@contextlib.contextmanager
def gunicorn(
    *,
    room: str,
    users: tuple[str, ...] = ("sender",),
    workers: int | None = 2,
    var_dir: Path | str | None = None,
    room_fields: dict[str, int] | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[LocalServer]:
    """Run gunicorn with the project's config until the block exits
    (``workers=None``: as many as the config ships with)."""
    with contextlib.ExitStack() as stack:
        if var_dir is None:
            var_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="danmaku-"))
        port = free_port()
        sized = {} if workers is None else {"GUNICORN_WORKERS": str(workers)}
        env = environment(var_dir, DANMAKU_BIND=f"127.0.0.1:{port}", **sized, **(extra_env or {}))
        tokens = prepare_room(env, room, users, **(room_fields or {}))
        yield stack.enter_context(gunicorn_over(env, Path(var_dir) / "gunicorn.log", tokens))


@contextlib.contextmanager
def gunicorn_over(env: dict[str, str], log_path: Path, tokens: list[str] = ()) -> Iterator[LocalServer]:
    """Run gunicorn with the project's config over ``env`` (its database
    already prepared, ``DANMAKU_BIND`` a free 127.0.0.1 port) until the
    block exits."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(BIN_DIR / "gunicorn"), "-c", "danmaku_site/gunicorn.conf.py"],
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        server = LocalServer(f"http://{env['DANMAKU_BIND']}", list(tokens), process, log_path, env)
        wait_until_answering(server)
        yield server
    finally:
        stop(process)


def wait_until_answering(server: LocalServer, timeout: float = START_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise LocalServerError(f"gunicorn exited with {server.process.returncode}:\n{server.log_tail()}")
        # The socket listens before the workers boot: a request may connect
        # and then wait; either way, try again until the deadline.
        with contextlib.suppress(requests.ConnectionError, requests.Timeout):
            if requests.get(f"{server.base_url}/api/v1/openapi.json", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise LocalServerError(f"gunicorn did not answer within {timeout} s:\n{server.log_tail()}")


def stop(process: subprocess.Popen) -> None:
    """Stop a process and everything in the group it leads."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=15)
    # Anything outliving its leader (or a hung shutdown) gets no second chance.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=5)


GRANIAN_SCRIPT = BASE_DIR / "deploy" / "granian-pull.sh"
GRANIAN_SCRIPTS = {"pull": GRANIAN_SCRIPT, "send": BASE_DIR / "deploy" / "granian-send.sh"}


@contextlib.contextmanager
def granian(env: dict[str, str], log_path: Path, *, workers: int | None = 1, role: str = "pull") -> Iterator[str]:
    """Run deploy/granian-<role>.sh (one worker; ``None``: as many as the
    script ships with) over ``env`` (its database already prepared) on a
    free 127.0.0.1 port until the block exits; yields its base URL."""
    port = free_port()
    sized = {} if workers is None else {"GRANIAN_WORKERS": str(workers)}
    env = (
        env
        | sized
        | {
            "GRANIAN": str(BIN_DIR / "granian"),
            "GRANIAN_PORT": str(port),
            "GRANIAN_LOG_LEVEL": "warning",
            "DANMAKU_ROLE": role,
            "PROMETHEUS_MULTIPROC_DIR": str(log_path.parent / "prometheus-granian"),
        }
    )
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["sh", str(GRANIAN_SCRIPTS[role])],
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                log_text = log_path.read_text(errors="replace")
                raise LocalServerError(f"granian exited with {process.returncode}:\n{log_text}")
            with contextlib.suppress(requests.ConnectionError, requests.Timeout):
                if requests.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise LocalServerError(f"granian did not answer:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.1)
        yield base_url
    finally:
        stop(process)


# -- Celery workers ----------------------------------------------------------------

# Longest wait for a worker to say it is ready (it imports Django and connects
# to the broker first).
WORKER_START_TIMEOUT_SECONDS = 30


class CeleryWorker:
    """``celery -A danmaku_site worker`` leading its own process group.

    Its output goes to ``log_path``; ``name`` is unique, so ``processes_named``
    can check that nothing of it is left after ``stop()``.
    """

    def __init__(self, env: dict[str, str], log_path: Path, *, concurrency: int = 1) -> None:
        self.name = f"danmaku-test-{uuid.uuid4().hex[:8]}"
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(BIN_DIR / "celery"), "-A", "danmaku_site", "worker",
                    "--pool", "prefork", "--concurrency", str(concurrency), "--loglevel", "INFO",
                    "--without-gossip", "--without-mingle", "--without-heartbeat",
                    "-n", f"{self.name}@%h",
                ],
                cwd=BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def wait_ready(self, timeout: float = WORKER_START_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LocalServerError(f"celery worker exited with {self.process.returncode}:\n{self.log()}")
            if " ready." in self.log():
                return
            time.sleep(0.1)
        raise LocalServerError(f"celery worker {self.name} not ready within {timeout} s:\n{self.log()}")

    def log(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def pool_children(self) -> list[int]:
        """The worker's pool processes: the children of every one of its
        threads (billiard may fork a replacement from a helper thread)."""
        children: set[int] = set()
        for thread in Path(f"/proc/{self.process.pid}/task").iterdir():
            with contextlib.suppress(OSError):
                children.update(int(pid) for pid in (thread / "children").read_text().split())
        return sorted(children)

    def kill(self) -> None:
        """SIGKILL the whole worker: no chance to acknowledge or requeue."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Warm shutdown (TERM), then KILL for anything left in its group."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        # Pool children outliving the main process, or a hung shutdown.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=5)


@contextlib.contextmanager
def celery_worker(
    env: dict[str, str], *, log_path: Path | str, concurrency: int = 1, wait_ready: bool = True
) -> Iterator[CeleryWorker]:
    """Run a Celery worker with ``env`` (see ``environment``) until the block exits.

    ``env`` must name the broker (CELERY_BROKER_URL) and the same database
    as the processes that publish to it.
    """
    worker = CeleryWorker(env, Path(log_path), concurrency=concurrency)
    try:
        if wait_ready:
            worker.wait_ready()
        yield worker
    finally:
        worker.stop()


def processes_named(fragment: str) -> list[str]:
    """Every running process whose command line contains ``fragment`` ("pid: cmdline")."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if fragment in cmdline:
                    found.append(f"{entry.name}: {cmdline}")
    return found
