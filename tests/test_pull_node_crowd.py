"""A pull node (gunicorn as shipped, several workers) facing a small crowd
over raw sockets, the way viewers use it: each on its own kept-alive
connection, polling every few seconds, reconnecting when an answer says
``Connection: close``.

What the crowd needs from the node beyond single requests: a worker that
recycles or is reloaded hands its viewers on without one of them seeing its
connection reset or closed under it; a new viewer's first poll is answered
while every pool thread is busy; the open-file limit is raised at start.
"""

from __future__ import annotations

import contextlib
import errno
import random
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from harness import local
from harness.rawhttp import AnswerReader
from tests.openfiles import open_files_for

pytestmark = pytest.mark.slow

ROOM = "crowd"
PATH = f"/api/v1/rooms/{ROOM}/danmaku"
VIEWERS = 300
# Viewers poll as the room's 3 s interval tells them (with jitter), longer
# than gthread's 2 s stop linger and shorter than the 6 s keep-alive timeout.
POLL_SECONDS = (2.7, 3.3)
# A worker recycles after this many requests: about every 4 s per worker
# at this crowd's 100 polls/s over two workers. The crowd sees the first
# workers recycle, the reload (its old workers drained within ~5 s), and
# the reload's workers recycle in turn, each drained before the end.
MAX_REQUESTS = 200
CROWD_SECONDS = 18
HUP_AT_SECONDS = 6
# A viewer gets an answer within two poll intervals, whatever happens.
MAX_GAP_SECONDS = 2 * POLL_SECONDS[1]
ANSWER_TIMEOUT_SECONDS = 5
# Workers forked this long after a start count as a reload's successors.
SUCCESSORS_SETTLE_SECONDS = 1.5
FILES_NEEDED = 3 * VIEWERS + 200


@pytest.fixture(scope="module")
def open_files() -> Iterator[None]:
    with open_files_for(FILES_NEEDED):
        yield


def request(host: str) -> bytes:
    return f"GET {PATH} HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: gzip\r\n\r\n".encode()


@dataclass
class Viewer:
    sock: socket.socket | None = None
    buffer: bytes = b""
    asked_at: float | None = None  # a request is on its way
    next_poll: float = 0.0
    last_answer: float = 0.0
    answers: int = 0
    closes: int = 0  # answers that said Connection: close
    longest_gap: float = 0.0


@dataclass
class CrowdResult:
    answers: int = 0
    statuses: dict[bytes, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    reconnects: int = 0
    longest_gap: float = 0.0


class Crowd:
    """Viewers polling one server from one event loop (this thread)."""

    def __init__(self, address: tuple[str, int], viewers: int) -> None:
        self.address = address
        self.host = f"{address[0]}:{address[1]}"
        self.selector = selectors.DefaultSelector()
        self.viewers = [Viewer() for _ in range(viewers)]
        self.result = CrowdResult()

    def close(self) -> None:
        for viewer in self.viewers:
            self._close(viewer)
        self.selector.close()

    def run(self, seconds: float, at: dict[float, callable] | None = None) -> CrowdResult:
        started = time.monotonic()
        for viewer in self.viewers:
            viewer.next_poll = started + random.uniform(0, POLL_SECONDS[1])
            viewer.last_answer = started
        pending = sorted((at or {}).items())
        while (now := time.monotonic()) < started + seconds:
            while pending and now >= started + pending[0][0]:
                pending.pop(0)[1]()
            for viewer in self.viewers:
                if viewer.asked_at is None and now >= viewer.next_poll:
                    self._ask(viewer, now)
                elif viewer.asked_at is not None and now - viewer.asked_at > ANSWER_TIMEOUT_SECONDS:
                    self._fail(viewer, "no answer within the timeout")
            for key, _ in self.selector.select(timeout=0.05):
                self._readable(key.data)
        for viewer in self.viewers:
            gap = time.monotonic() - viewer.last_answer if viewer.asked_at is not None else 0.0
            self.result.longest_gap = max(self.result.longest_gap, viewer.longest_gap, gap)
        return self.result

    def _ask(self, viewer: Viewer, now: float) -> None:
        if viewer.sock is None:
            try:
                viewer.sock = socket.create_connection(self.address, timeout=ANSWER_TIMEOUT_SECONDS)
            except OSError as exc:
                self._fail(viewer, f"connect: {exc!r}")
                return
            viewer.sock.setblocking(False)
            self.selector.register(viewer.sock, selectors.EVENT_READ, viewer)
            self.result.reconnects += 1
        try:
            viewer.sock.send(request(self.host))  # a few dozen bytes: the buffer takes them
        except OSError as exc:
            self._fail(viewer, f"send: {exc!r}")
            return
        viewer.asked_at = now

    def _readable(self, viewer: Viewer) -> None:
        try:
            chunk = viewer.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(viewer, f"recv: {errno.errorcode.get(exc.errno, exc)}")
            return
        if not chunk:
            state = "mid-request" if viewer.asked_at is not None else "between polls"
            self._fail(viewer, f"closed by the server {state}")
            return
        viewer.buffer += chunk
        head, found, rest = viewer.buffer.partition(b"\r\n\r\n")
        if not found:
            return
        length = int(re.search(rb"\r\nContent-Length: (\d+)", head, re.IGNORECASE)[1])
        if len(rest) < length:
            return
        if viewer.asked_at is None:
            self._fail(viewer, "an answer nobody asked for")
            return
        viewer.buffer = rest[length:]
        status = head.split(b" ", 2)[1]
        self.result.statuses[status] = self.result.statuses.get(status, 0) + 1
        self.result.answers += 1
        now = time.monotonic()
        viewer.longest_gap = max(viewer.longest_gap, now - viewer.last_answer)
        viewer.last_answer = now
        viewer.asked_at = None
        viewer.next_poll = now + random.uniform(*POLL_SECONDS)
        if b"\r\nconnection: close\r\n" in head.lower() + b"\r\n":
            viewer.closes += 1
            self._close(viewer)

    def _fail(self, viewer: Viewer, what: str) -> None:
        self.result.errors.append(what)
        self._close(viewer)
        viewer.asked_at = None
        viewer.next_poll = time.monotonic() + 1  # back off, then reconnect

    def _close(self, viewer: Viewer) -> None:
        if viewer.sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(viewer.sock)
            viewer.sock.close()
            viewer.sock = None
            viewer.buffer = b""


def worker_pids(master: subprocess.Popen) -> list[int]:
    children = subprocess.run(["pgrep", "-P", str(master.pid)], capture_output=True, text=True, check=False)
    return [int(pid) for pid in children.stdout.split()]


def soft_open_files(pid: int) -> tuple[str, str]:
    limits = Path(f"/proc/{pid}/limits").read_text()
    soft, hard = re.search(r"Max open files\s+(\S+)\s+(\S+)", limits).groups()
    return soft, hard


@pytest.mark.timeout(120)
def test_viewers_polling_through_recycles_and_a_reload_all_get_200_and_never_a_closed_connection(open_files):
    extra = {
        "GUNICORN_MAX_REQUESTS": str(MAX_REQUESTS),
        "GUNICORN_LOG_LEVEL": "info",
        "DANMAKU_SERVED_BY_HEADER": "0",
    }
    with local.gunicorn(room=ROOM, workers=2, extra_env=extra) as server:
        host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
        crowd = Crowd((host, int(port)), VIEWERS)
        try:
            result = crowd.run(CROWD_SECONDS, at={HUP_AT_SECONDS: lambda: server.process.send_signal(signal.SIGHUP)})
        finally:
            crowd.close()
        log = server.log_tail(10**7)
    recycles = log.count("Autorestarting worker")
    print(result.answers, result.statuses, result.reconnects, f"longest gap {result.longest_gap:.1f} s", recycles)
    assert recycles >= 2, log[-3000:]
    assert "Handling signal: hup" in log
    assert result.errors == []
    assert set(result.statuses) == {b"200"}
    # Every viewer moved at least once (a recycle, the reload), each time on
    # an answer saying so.
    assert result.reconnects >= 2 * VIEWERS
    assert result.longest_gap <= MAX_GAP_SECONDS
    # About one poll per viewer every 3 s.
    assert result.answers >= 0.8 * VIEWERS * CROWD_SECONDS / 3


@dataclass
class BusyThread:
    """A send whose body is larger than the loop reads: a pool thread reads
    it, waiting on the client, which sends it slowly."""

    sock: socket.socket

    @classmethod
    def start(cls, address: tuple[str, int], host: str, token: str) -> BusyThread:
        sock = socket.create_connection(address, timeout=ANSWER_TIMEOUT_SECONDS)
        sock.sendall(
            f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {token}\r\n"
            f"Content-Length: {200 * 1024}\r\n\r\n".encode()
            + b"x" * (65 * 1024)
        )
        return cls(sock)

    def trickle(self) -> None:
        self.sock.sendall(b"x")


@pytest.mark.timeout(60)
def test_a_new_viewers_first_poll_is_answered_while_every_pool_thread_is_busy(tmp_path):
    extra = {"GUNICORN_THREADS": "2", "GUNICORN_READ_TIMEOUT_SECONDS": "5", "DANMAKU_SERVED_BY_HEADER": "0"}
    with local.gunicorn(room=ROOM, workers=1, var_dir=tmp_path, extra_env=extra) as server:
        host_port = server.base_url.removeprefix("http://")
        host, port = host_port.rsplit(":", 1)
        address = (host, int(port))
        assert requests.get(server.danmaku_url(ROOM), timeout=5).status_code == 200  # the room is active
        busy = [BusyThread.start(address, host_port, server.tokens[0]) for _ in range(2)]
        try:
            time.sleep(0.5)
            # Every thread is busy: a request only a thread answers waits.
            waiting = socket.create_connection(address, timeout=ANSWER_TIMEOUT_SECONDS)
            waiting.sendall(f"GET /api/v1/openapi.json HTTP/1.1\r\nHost: {host_port}\r\n\r\n".encode())
            waiting.settimeout(1)
            with pytest.raises(TimeoutError):
                waiting.recv(1)
            for thread in busy:
                thread.trickle()
            # A new viewer's first poll, on its own new connection: answered.
            started = time.monotonic()
            viewer = socket.create_connection(address, timeout=ANSWER_TIMEOUT_SECONDS)
            viewer.sendall(request(host_port))
            answer = AnswerReader(viewer).answer()
            elapsed = time.monotonic() - started
            viewer.close()
            waiting.close()
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
            assert elapsed < 1, elapsed
        finally:
            for thread in busy:
                thread.sock.close()


@pytest.mark.timeout(60)
def test_the_open_file_limit_is_raised_to_the_hard_limit_at_start(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 1024:
        pytest.skip(f"the hard limit ({hard}) leaves nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # the server inherits a common default
    try:
        with local.gunicorn(room=ROOM, workers=1, var_dir=tmp_path) as server:
            pids = [server.process.pid, *worker_pids(server.process)]
            limits = [soft_open_files(pid) for pid in pids]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    expected = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
    assert len(pids) == 2
    assert limits == [(expected, expected)] * 2


def test_an_open_file_limit_from_the_environment_is_kept_within_the_hard_limit(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 2048:
        pytest.skip(f"the hard limit ({hard}) leaves nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        env = local.environment(tmp_path, GUNICORN_OPEN_FILES="2048")
        code = (
            "import resource, runpy; "
            "c = runpy.run_path('danmaku_site/gunicorn.conf.py'); "
            "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], c['worker_connections'])"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=local.BASE_DIR, env=env, capture_output=True, text=True, check=True
        )
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert done.stdout.split() == ["2048", "1024"]


@pytest.mark.timeout(60)
def test_a_server_stopping_with_viewers_connected_stops_within_a_keepalive_without_waiting_for_successors(tmp_path):
    """A reload's old workers keep their viewers until the new ones are up;
    a stop of the whole server has no new workers to wait for, so it is
    over once each viewer had its keep-alive to hear Connection: close."""
    with local.gunicorn(room=ROOM, workers=2, var_dir=tmp_path) as server:
        host_port = server.base_url.removeprefix("http://")
        host, port = host_port.rsplit(":", 1)
        time.sleep(SUCCESSORS_SETTLE_SECONDS)  # the start's own forks are not successors either way
        viewers = []
        for _ in range(20):
            viewer = socket.create_connection((host, int(port)), timeout=ANSWER_TIMEOUT_SECONDS)
            viewer.sendall(request(host_port))
            assert AnswerReader(viewer).answer().startswith(b"HTTP/1.1 200 OK\r\n")
            viewers.append(viewer)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=30)
        finally:
            for viewer in viewers:
                viewer.close()
        elapsed = time.monotonic() - started
    # Within the keep-alive (6 s) and a margin; waiting for successors
    # that never come took 10 s more.
    assert elapsed < 8, elapsed
