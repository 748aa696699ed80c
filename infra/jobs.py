"""The background jobs loop: one thread per server process running each
registered job at its own interval.

Apps register their jobs when Django starts (``AppConfig.ready``), each with
the roles (DANMAKU_ROLE) whose processes run it. A server process starts the
loop once it is the process that will serve (after gunicorn forks:
``danmaku_site.wsgi.serve``), not on its first request, so a node nobody
sends to still runs its sweeps; commands, Celery workers and the test suite
never start it. ``JobLoop.run_due()`` is a plain method tests call.

A job that raises is logged and counted (danmaku_job_errors_total) and runs
again at its next turn; the loop never dies of a job's error. Each job
closes the database connections it left unusable or too old, as a request
would.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.db import close_old_connections

from infra.loopthread import LoopThread
from infra.metrics import JOB_ERRORS

logger = logging.getLogger(__name__)

# The loop sleeps until the next job is due, but wakes at least this often,
# so a stop request or a job registered late never waits long.
MAX_SLEEP_SECONDS = 1.0


@dataclass(frozen=True)
class Job:
    name: str
    every_seconds: float
    run: Callable[[], object]
    # The DANMAKU_ROLE values whose processes run it.
    roles: frozenset[str]


class JobLoop:
    def __init__(self, jobs: Iterable[Job] = (), *, clock: Callable[[], float] = time.monotonic) -> None:
        self.jobs = list(jobs)
        self._clock = clock
        # Job name -> when it is due next; absent: at once.
        self._due: dict[str, float] = {}
        self._thread = LoopThread("danmaku-jobs", self.run_due, self.seconds_to_next)

    def run_due(self) -> list[str]:
        """Run every job whose time has come, in registration order; returns their names."""
        ran = []
        for job in self.jobs:
            now = self._clock()
            if self._due.get(job.name, now) > now:
                continue
            self._due[job.name] = now + job.every_seconds
            try:
                job.run()
            except Exception:
                JOB_ERRORS.labels(job=job.name).inc()
                logger.exception("background job %s failed; it runs again in %.1f s", job.name, job.every_seconds)
            finally:
                close_old_connections()
            ran.append(job.name)
        return ran

    def seconds_to_next(self) -> float:
        if not self.jobs:
            return MAX_SLEEP_SECONDS
        now = self._clock()
        soonest = min(self._due.get(job.name, now) for job in self.jobs)
        return min(max(soonest - now, 0.0), MAX_SLEEP_SECONDS)

    def start(self) -> None:
        """Start the thread in this process unless it runs already."""
        self._thread.start()

    def running(self) -> bool:
        return self._thread.running()

    def stop(self, timeout: float = 5.0) -> None:
        self._thread.stop(timeout)


_registered: dict[str, Job] = {}
_loop: JobLoop | None = None
_loop_lock = threading.Lock()


def register(name: str, *, every_seconds: float, run: Callable[[], object], roles: Iterable[str]) -> None:
    """Make ``run`` a job of every process whose role is in ``roles`` (once per name)."""
    _registered[name] = Job(name=name, every_seconds=every_seconds, run=run, roles=frozenset(roles))


def jobs_for(role: str) -> list[Job]:
    return [job for job in _registered.values() if role in job.roles]


def start(*, role: str) -> JobLoop:
    """Start this process's loop with the jobs of ``role`` (once per process)."""
    global _loop
    with _loop_lock:
        if _loop is None or not _loop.running():
            _loop = JobLoop(jobs_for(role))
            _loop.start()
            names = ", ".join(job.name for job in _loop.jobs) or "none"
            logger.info("background jobs started (role %s): %s", role, names)
        return _loop


def stop() -> None:
    global _loop
    with _loop_lock:
        if _loop is not None:
            _loop.stop()
        _loop = None
