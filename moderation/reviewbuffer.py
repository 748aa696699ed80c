"""The review buffer: a process's comments waiting to be sent to the full check together.

``ReviewBuffer.add`` keeps a comment's id; a flusher thread hands what is
kept to ``publish`` (one call per at most ``batch_size`` ids) once the
oldest id has waited ``interval_s``, or at once when ``batch_size`` ids are
waiting, whichever comes first. An ``urgent`` id (a comment waiting for
its verdict before anyone sees it) brings the flush forward to at most
``urgent_interval_s`` after it was added. ``publish`` must not raise (moderation's
publishes with its fallback). No Django here: ids in, lists of ids out.

- Bounded: at most ``max_pending`` ids wait. ``add`` refuses the next ones
  (returns False) until a flush makes room; the caller leaves those to the
  sweep for comments whose check never ran, so a broker that takes nothing,
  or fallbacks slower than the sends, cost memory for ``max_pending`` ids
  and no more.
- One per process: ``PerProcess.get`` makes a new, empty buffer in a process
  forked from one that had one (a gunicorn worker never sends its parent's
  ids, and the parent's flusher thread does not exist in the child).
- The flusher starts with the first ``add`` in the process (after any fork)
  and, on a normal exit, what is left is flushed before the interpreter
  stops its thread pools (``_at_exit``), so a clean restart loses nothing.
  A killed process loses at most what it held: the sweep finds those.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable

from infra.loopthread import LoopThread

logger = logging.getLogger(__name__)

# The flusher sleeps this long at most while nothing waits (the first id
# wakes it), so a stop never waits longer.
IDLE_WAIT_S = 1.0
# How long the exit flush waits for the flusher thread to finish a flush
# it is in the middle of, before flushing what is left itself.
EXIT_JOIN_S = 2.0


class ReviewBuffer:
    def __init__(
        self,
        publish: Callable[[list[int]], object],
        *,
        batch_size: int,
        interval_s: float,
        max_pending: int,
        urgent_interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if batch_size < 1 or max_pending < batch_size:
            raise ValueError("need 1 <= batch_size <= max_pending")
        self.pid = os.getpid()
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.urgent_interval_s = interval_s if urgent_interval_s is None else min(urgent_interval_s, interval_s)
        self.max_pending = max_pending
        self._publish = publish
        self._clock = clock
        self._lock = threading.Lock()
        self._ids: list[int] = []
        # When the waiting ids are due (clock seconds): the oldest's interval,
        # or sooner for an urgent one.
        self._due_at = 0.0
        self._wake = threading.Event()
        self._stopping = False
        self._thread = LoopThread("moderation-reviews", self._step, lambda: 0.0)
        self._exit_registered = False

    def add(self, danmaku_id: int, *, urgent: bool = False) -> bool:
        """Keep ``danmaku_id`` for the next flush; False if the buffer is full.
        ``urgent``: flush within ``urgent_interval_s``."""
        sooner = False
        with self._lock:
            count = len(self._ids)
            if count >= self.max_pending:
                return False
            if not count or urgent:
                now = self._clock()
                due = now + (self.urgent_interval_s if urgent else self.interval_s)
                sooner = bool(count) and due < self._due_at
                if not count or sooner:
                    self._due_at = due
            self._ids.append(danmaku_id)
            count += 1
        # The first id starts the interval, an urgent one may shorten it; a
        # full batch goes at once.
        if count == 1 or sooner or count % self.batch_size == 0:
            self._wake.set()
        if not self._thread.running():
            self.start()
        return True

    def __len__(self) -> int:
        return len(self._ids)

    def flush(self) -> int:
        """Publish every waiting id now, ``batch_size`` per call; returns how many."""
        with self._lock:
            ids, self._ids = self._ids, []
        for start in range(0, len(ids), self.batch_size):
            self._publish(ids[start : start + self.batch_size])
        return len(ids)

    def start(self) -> None:
        """Run the flusher in this process (once; ``add`` does it)."""
        if os.getpid() != self.pid:
            raise RuntimeError("a review buffer belongs to the process that made it")
        self._stopping = False
        self._thread.start()
        if not self._exit_registered:
            self._exit_registered = True
            _register_exit(self._at_exit)

    def running(self) -> bool:
        return self._thread.running()

    def stop(self, timeout: float = EXIT_JOIN_S) -> None:
        """End the flusher (within one flush); waiting ids stay for ``flush``."""
        self._stopping = True
        self._wake.set()
        self._thread.stop(timeout)

    def close(self) -> int:
        """Stop the flusher and flush what is left; returns how many were flushed."""
        self.stop()
        return self.flush()

    def discard(self) -> int:
        """Stop the flusher and drop what waits, as a killed process would; returns how many."""
        self.stop()
        with self._lock:
            dropped, self._ids = len(self._ids), []
        return dropped

    def _step(self) -> None:
        # Cleared before looking, so an add (or a stop) after the look wakes the wait.
        self._wake.clear()
        if self._stopping:
            return
        with self._lock:
            count, due_at = len(self._ids), self._due_at
        if not count:
            self._wake.wait(IDLE_WAIT_S)
            return
        if count < self.batch_size:
            wait = due_at - self._clock()
            if wait > 0:
                # Woken early (an urgent id, a full batch, a stop): look again.
                self._wake.wait(wait)
                return
        self.flush()

    def _at_exit(self) -> None:
        if os.getpid() != self.pid:
            return  # a forked child inherited the hook, not the ids
        try:
            flushed = self.close()
        except Exception:
            logger.exception("review buffer not flushed at exit")
            return
        if flushed:
            logger.info("review buffer: %d comments flushed at exit", flushed)


def _register_exit(hook: Callable[[], None]) -> None:
    """Run ``hook`` when the interpreter exits normally, while thread pools still work.

    ``atexit`` hooks run after ``concurrent.futures`` has shut its pools
    down, and the publish runs on one (``infra.taskqueue``): from there every
    publish would fail and fall back. ``threading._register_atexit`` hooks
    run first, in reverse order of registration, so one registered after the
    pool's (which ``infra.taskqueue`` imports before any buffer exists) runs
    while the pool still takes work. Private, but there since Python 3.9;
    without it, ``atexit`` (the flush then takes the fallback).
    """
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(hook)
            return
        except RuntimeError:  # the interpreter is already shutting down
            pass
    atexit.register(hook)


class PerProcess:
    """The current process's buffer, made on first use by ``make``."""

    def __init__(self, make: Callable[[], ReviewBuffer]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._buffer: ReviewBuffer | None = None

    def get(self) -> ReviewBuffer:
        buffer = self._buffer
        if buffer is None or buffer.pid != os.getpid():
            with self._lock:
                buffer = self._buffer
                if buffer is None or buffer.pid != os.getpid():
                    # A forked child's copy holds its parent's ids: dropped here
                    # (the parent flushes them), never published twice.
                    buffer = self._buffer = self._make()
        return buffer

    def reset(self) -> None:
        """Forget this process's buffer, dropping what waits in it (tests)."""
        with self._lock:
            buffer, self._buffer = self._buffer, None
        if buffer is not None and buffer.pid == os.getpid():
            buffer.discard()
