"""The server under a crowd: started here for a topology, or one already running.

Each topology is what ships: gunicorn as `make run` starts it
(danmaku_site/gunicorn.conf.py over the embedded default, its workers),
the shipped deploy/nginx.conf in front of that, or deploy/granian-pull.sh
(the pull role; sends go to a gunicorn beside it over the same database).
A node says which process groups are its own, for CPU and RSS.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.pullbench.cpu import group_cpu_seconds
from harness import local, procnet
from harness import nginx as nginx_harness

TOPOLOGIES = ("gunicorn", "nginx", "granian")
# Sends: one user at a comment a second, never slowed or capped by the room.
ROOM_FIELDS = {"user_send_interval_ms": 0, "room_send_cap_per_second": 100_000}
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Node:
    # Where viewers poll, and where comments are sent (a room's danmaku URL).
    base_url: str
    send_url: str
    token: str | None
    # Process groups whose CPU and memory are the server's.
    groups: list[int] = field(default_factory=list)
    # gunicorn's master, for the reload and kill scenarios.
    master_pid: int | None = None
    # Whether viewers connect to gunicorn itself (no proxy in between).
    direct: bool = False

    def cpu_seconds(self) -> float:
        return sum(group_cpu_seconds(group) for group in self.groups)

    def rss_bytes(self) -> int:
        total = 0
        for pid in _members(self.groups):
            with contextlib.suppress(OSError, IndexError, ValueError):
                total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
        return total

    def workers(self) -> list[int]:
        """gunicorn's workers (the master's children)."""
        return [] if self.master_pid is None else procnet.children(self.master_pid)

    def connections_per_worker(self) -> list[int]:
        """How many viewers' connections each gunicorn worker holds (none
        when viewers reach gunicorn through a proxy)."""
        if self.master_pid is None or not self.direct:
            return []
        return procnet.connections_per_child(self.master_pid, int(self.base_url.rsplit(":", 1)[1]))

    def hup(self) -> None:
        os.kill(self.master_pid, signal.SIGHUP)

    def kill_worker(self) -> int:
        victim = self.workers()[0]
        os.kill(victim, signal.SIGKILL)
        return victim


def _members(groups: list[int]) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                text = (entry / "stat").read_text()
                if int(text[text.rindex(")") + 2 :].split()[2]) in groups:
                    found.append(int(entry.name))
    return found


@contextlib.contextmanager
def start(topology: str, *, room: str, var_dir: Path, extra_env: dict[str, str]) -> Iterator[Node]:
    env = {"GUNICORN_LOG_LEVEL": "warning", **extra_env}
    with local.gunicorn(room=room, workers=None, var_dir=var_dir, room_fields=ROOM_FIELDS, extra_env=env) as server:
        send_url = server.danmaku_url(room)
        token = server.tokens[0]
        pid = server.process.pid
        if topology == "gunicorn":
            yield Node(server.base_url, send_url, token, [pid], pid, direct=True)
        elif topology == "nginx":
            upstream = server.base_url.removeprefix("http://")
            # worker_processes auto: one per core, two here.
            with nginx_harness.nginx(upstream=upstream, workers=os.cpu_count() or 1) as proxy:
                yield Node(proxy.base_url, send_url, token, [pid, proxy.process.pid], pid)
        elif topology == "granian":
            with local.granian(server.env, var_dir / "granian.log", workers=None) as url:
                yield Node(url, send_url, token, [pid, *procnet.groups_listening(int(url.rsplit(":", 1)[1]))], pid)
        else:
            raise ValueError(f"topology: one of {', '.join(TOPOLOGIES)}")
