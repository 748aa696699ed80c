"""Finding the shared services (Redis, PostgreSQL) and starting private ones.

Tests that need a service call ``require_redis()`` / ``require_postgres()``:
where the service is absent they skip with the reason, unless
DANMAKU_REQUIRE_SERVICES=1 (as .ci/run sets), which turns the skip into a
failure. Fault tests start their own redis-server on a free port so the
shared one is never stopped or frozen.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.local import free_port

SHARED_REDIS_URL = os.environ.get("DANMAKU_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SHARED_POSTGRES_URL = os.environ.get("DANMAKU_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
START_TIMEOUT_SECONDS = 10


def services_required() -> bool:
    return os.environ.get("DANMAKU_REQUIRE_SERVICES", "") not in ("", "0", "false")


def _missing(reason: str) -> None:
    if services_required():
        pytest.fail(f"{reason} (DANMAKU_REQUIRE_SERVICES=1 makes this a failure)", pytrace=False)
    pytest.skip(reason)


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def require_redis(url: str = SHARED_REDIS_URL) -> str:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping()
    except redis.RedisError as exc:
        _missing(f"Redis is not reachable at {url}: {exc}")
    return url


def require_postgres(url: str = SHARED_POSTGRES_URL) -> str:
    import psycopg

    try:
        with psycopg.connect(_libpq(url), connect_timeout=2) as conn:
            conn.execute("select 1")
    except psycopg.Error as exc:
        _missing(f"PostgreSQL is not reachable at {url}: {exc}")
    return url


def require_redis_server_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        _missing("redis-server is not installed (needed to start a private Redis)")
    return path


def _libpq(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


@contextlib.contextmanager
def postgres_database(url: str = SHARED_POSTGRES_URL) -> Iterator[str]:
    """A fresh, empty database on the shared server, dropped afterwards."""
    import psycopg

    name = f"danmaku_e2e_{os.getpid()}_{int(time.time() * 1000) % 10_000_000}"
    with psycopg.connect(_libpq(url), autocommit=True, connect_timeout=2) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(_libpq(url), autocommit=True, connect_timeout=2) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class PrivateRedis:
    """A redis-server of our own: stop, freeze and restart it at will."""

    binary: str
    port: int
    workdir: Path
    process: subprocess.Popen | None = None
    # Keep every write in an append-only file (fsynced per write), so a
    # restart, even after SIGKILL, comes back with its data; off by default.
    persistent: bool = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--dir", str(self.workdir),
                *(("--appendonly", "yes", "--appendfsync", "always") if self.persistent else ("--appendonly", "no")),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.workdir / 'redis.log').read_text()[-2000:]}")
            if _port_open("127.0.0.1", self.port, 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not listen on {self.port} within {START_TIMEOUT_SECONDS} s")

    def stop(self) -> None:
        """Kill it (unless ``persistent`` it keeps nothing: a restart comes back empty)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    def freeze(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


@contextlib.contextmanager
def private_redis(*, persistent: bool = False) -> Iterator[PrivateRedis]:
    binary = require_redis_server_binary()
    with tempfile.TemporaryDirectory(prefix="danmaku-redis-") as workdir:
        server = PrivateRedis(binary=binary, port=free_port(), workdir=Path(workdir), persistent=persistent)
        server.start()
        try:
            yield server
        finally:
            server.stop()


CHROMIUM_PATH = os.environ.get("DANMAKU_TEST_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps dialing Google's
# hosts, which this network refuses; --no-sandbox because CI runs as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require_chromium(path: str = CHROMIUM_PATH) -> str:
    """Debian's Chromium and Playwright for Python, for the browser tests.

    Playwright's own browser download does not work on CI machines; the tests
    drive the system Chromium at ``path`` (``apt-get install chromium``).
    """
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        _missing(f"Playwright for Python is not installed (pip install -r requirements-dev.txt): {exc}")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        _missing(f"Chromium is not installed at {path} (apt-get install chromium)")
    return path
