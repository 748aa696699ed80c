"""What each worker process of a node measured, shared with its siblings.

A node (one gunicorn or granian instance) is several processes, and its
budgets are the node's: each process must know what all of them served.
Each writes its own small file once a second into the node's directory
(PROMETHEUS_MULTIPROC_DIR, which every worker of the instance shares and
the instance empties at start) and reads its siblings'. A file older than
STALE_SECONDS is a process that stopped (killed, recycled) and is ignored,
and removed once it is much older. No locks: a file is replaced whole
(written aside, then renamed over the old one).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import orjson

PREFIX = "load-"
SUFFIX = ".json"
# A sibling that has not written for this long is not serving any more.
STALE_SECONDS = 3.0
# Its file is removed after this long (a sibling paused longer than this,
# e.g. stopped in a debugger, writes it again when it resumes).
REMOVE_AFTER_SECONDS = 60.0


class NodeShare:
    def __init__(self, directory: str | os.PathLike, *, name: str | None = None) -> None:
        self.directory = Path(directory)
        self._name = name

    @property
    def name(self) -> str:
        # By the pid asked now: a forked child writes a file of its own.
        return self._name or f"{PREFIX}{os.getpid()}{SUFFIX}"

    def exchange(self, mine: dict, *, now: float | None = None) -> list[dict]:
        """Write this process's ``mine``; every live process's, this one's first."""
        now = time.time() if now is None else now
        self.write(mine, now=now)
        return [mine, *self.siblings(now=now)]

    def write(self, mine: dict, *, now: float) -> None:
        path = self.directory / self.name
        aside = path.with_suffix(".tmp")
        aside.write_bytes(orjson.dumps({"at": now, "data": mine}))
        os.replace(aside, path)

    def siblings(self, *, now: float | None = None) -> list[dict]:
        """Every live process's last share but this one's."""
        return self._read(now, skip=self.name)

    def everyone(self, *, now: float | None = None) -> list[dict]:
        """Every live process's last share, this one's included (for readers
        that share nothing themselves, such as /metrics)."""
        return self._read(now, skip=None)

    def _read(self, now: float | None, *, skip: str | None) -> list[dict]:
        now = time.time() if now is None else now
        found = []
        for path in self.directory.glob(f"{PREFIX}*{SUFFIX}"):
            if path.name == skip:
                continue
            try:
                record = orjson.loads(path.read_bytes())
                age = now - float(record["at"])
            except (OSError, ValueError, KeyError, TypeError):
                # Vanished or replaced while read: it is read again next second.
                continue
            if age > REMOVE_AFTER_SECONDS:
                with contextlib.suppress(OSError):
                    path.unlink()
            elif age <= STALE_SECONDS:
                found.append(record["data"])
        return found

    def forget(self) -> None:
        """Remove this process's file (at exit)."""
        with contextlib.suppress(OSError):
            (self.directory / self.name).unlink()


def node_share() -> NodeShare | None:
    """The node's share when its processes have a common directory."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return NodeShare(directory) if directory else None
