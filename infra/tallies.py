"""Prometheus counters bumped on every request, counted cheaply enough for the hot paths.

Under PROMETHEUS_MULTIPROC_DIR, prometheus-client's counter takes a lock,
asks the kernel for the pid and writes its file on every increment: about
1 µs, a third of a fast-path pull, and 4 % of a refused send's CPU on a
send node's loop. A ``Tally`` has each thread count into a dict only it
writes (no lock, no race), and ``flush`` adds the counts up into a file
named like the library's own counter files, so /metrics adds it to the
same series. ``flush_tallies`` flushes every tally of the process: each
refresher tick, a send node's flush job (``FLUSH_EVERY_SECONDS``), before
the process answers /metrics, and at exit.

Without PROMETHEUS_MULTIPROC_DIR (one process, its own registry) the
counter's children are bumped directly.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter
from prometheus_client.mmap_dict import MmapedDict, mmap_key

# How often a node without a refresher (a send node) writes its counts: any
# worker's scrape is then at most this far behind the others'.
FLUSH_EVERY_SECONDS = 1.0


class Tally:
    """A one-label ``Counter`` (``metric``) counted per thread; ``tag`` names
    its file. ``inc`` takes any key; ``label_of`` turns a key into the
    label's value once per key (a status code into its outcome), never per
    count."""

    def __init__(self, metric: Counter, tag: str, label_of: Callable[[Any], str] = str) -> None:
        self._metric = metric
        self._tag = tag
        self._label_of = label_of
        self._lock = threading.Lock()
        self._counts: FileCounts | _RegistryCounts | None = None
        _tallies.append(self)

    def inc(self, key) -> None:
        """Count one under ``key``. The first call picks where counts go and
        puts that ``inc`` in this one's place: a hot path's count is then
        one call, as with no tally in between."""
        counts = self._start()
        self.inc = counts.inc
        counts.inc(key)

    def flush(self) -> None:
        counts = self._counts
        if counts is not None:
            counts.flush()

    def _start(self) -> FileCounts | _RegistryCounts:
        with self._lock:
            if self._counts is None:
                # Decided like prometheus-client decides: by the environment.
                directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
                self._counts = (
                    FileCounts(self._metric, directory, self._tag, self._label_of)
                    if directory
                    else _RegistryCounts(self._metric, self._label_of)
                )
            return self._counts


class FileCounts:
    """Per-thread counts, added up by label into this process's file by ``flush``."""

    def __init__(self, metric: Counter, directory: str, tag: str, label_of: Callable[[Any], str] = str) -> None:
        self._metric = metric
        self._label_of = label_of
        # Continued, not restarted, if this pid already wrote one (a worker
        # recycled onto a pid number used before in this instance).
        self._file = MmapedDict(os.path.join(directory, f"counter_{os.getpid()}_{tag}.db"))
        self._lock = threading.Lock()
        self._labels: dict[Any, str] = {}
        self._keys: dict[str, str] = {}
        self._start: dict[str, float] = {}
        self._written: dict[str, float] = {}
        self._local = threading.local()
        # Every thread's counts, kept after the thread ends: they still count.
        self._threads: list[dict[Any, int]] = []

    def inc(self, key) -> None:
        try:
            counts = self._local.counts
        except AttributeError:
            counts = self._local.counts = {}
            with self._lock:
                self._threads.append(counts)
        counts[key] = counts.get(key, 0) + 1

    def flush(self) -> None:
        with self._lock:
            totals: dict[str, int] = {}
            for counts in self._threads:
                # A copy is taken in one step under the GIL, even while its
                # thread adds a key to it.
                for key, count in counts.copy().items():
                    label = self._labels.get(key)
                    if label is None:
                        label = self._labels[key] = self._label_of(key)
                    totals[label] = totals.get(label, 0) + count
            for label, count in totals.items():
                mmap = self._keys.get(label)
                if mmap is None:
                    mmap = self._keys[label] = self._mmap_key(label)
                    self._start[label] = self._file.read_value(mmap)[0]
                total = self._start[label] + count
                if self._written.get(label) != total:
                    self._file.write_value(mmap, total, 0.0)
                    self._written[label] = total

    def _mmap_key(self, label: str) -> str:
        # The key prometheus-client's multiprocess counter would use.
        metric = self._metric.describe()[0]
        (name,) = self._metric._labelnames
        return mmap_key(metric.name, f"{metric.name}_total", [name], [label], metric.documentation)


class _RegistryCounts:
    """Without PROMETHEUS_MULTIPROC_DIR: the process's own registry."""

    def __init__(self, metric: Counter, label_of: Callable[[Any], str]) -> None:
        self._metric = metric
        self._label_of = label_of
        self._children: dict[Any, Any] = {}

    def flush(self) -> None:
        """Nothing to write: the registry is this process's."""

    def inc(self, key) -> None:
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._metric.labels(self._label_of(key))
        child.inc()


_tallies: list[Tally] = []


def flush_tallies() -> None:
    """Write every tally of this process where /metrics reads them."""
    for tally in list(_tallies):
        tally.flush()


atexit.register(flush_tallies)
