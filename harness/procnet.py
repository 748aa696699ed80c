"""Which process holds which TCP socket, read from /proc (Linux).

For benches and tests that look at a server from outside: the process
groups listening on a port, the children of a master, and how many of a
port's established connections each process holds.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

LISTEN = "0A"
ESTABLISHED = "01"


def socket_inodes(port: int, state: str) -> set[str]:
    """Inodes of the sockets whose local port is ``port``, in ``state``
    (LISTEN, ESTABLISHED)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] == state and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(parts[9])
    return inodes


def held_by(pid: int, inodes: set[str]) -> int:
    """How many of the sockets ``inodes`` process ``pid`` has open."""
    held = 0
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                link = os.readlink(fd)
                held += link.startswith("socket:[") and link[8:-1] in inodes
    return held


def children(pid: int) -> list[int]:
    """The processes ``pid`` forked (gunicorn's master: its workers)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for thread in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found.extend(int(child) for child in (thread / "children").read_text().split())
    return sorted(found)


def connections_per_child(master: int, port: int) -> list[int]:
    """How many connections to ``port`` each of ``master``'s children holds."""
    established = socket_inodes(port, ESTABLISHED)
    return [held_by(child, established) for child in children(master)]


def groups_listening(port: int) -> list[int]:
    """The process groups of the processes listening on ``port``."""
    inodes = socket_inodes(port, LISTEN)
    groups = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and held_by(int(entry.name), inodes):
            with contextlib.suppress(OSError):
                groups.add(os.getpgid(int(entry.name)))
    return sorted(groups)
