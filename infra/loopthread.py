"""A daemon thread that repeats one step until it is stopped.

The shape of the process's background loops (the refresher, the jobs
loop): ``start`` runs it in this process unless it already runs there (a
thread inherited across a fork is dead, hence the pid check), ``stop``
ends it within one step. A step that raises is logged and the loop goes on:
nothing a step does may end the thread.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class LoopThread:
    def __init__(self, name: str, step: Callable[[], None], delay_s: Callable[[], float]) -> None:
        self.name = name
        self._step = step
        # Seconds to wait after each step, asked anew each time.
        self._delay_s = delay_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def start(self) -> None:
        if self.running():
            return
        with self._lock:
            if self.running():
                return
            self._stop.clear()
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def running(self) -> bool:
        """Whether the loop runs in this process (takes no lock)."""
        thread = self._thread
        return thread is not None and self._pid == os.getpid() and thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        logger.info("%s started", self.name)
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:
                logger.exception("%s: a step failed; the loop goes on", self.name)
            self._stop.wait(self._delay_s())
        logger.info("%s stopped", self.name)
