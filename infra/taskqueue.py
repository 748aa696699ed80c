"""The one place that publishes Celery tasks, with the fallback.

Every task is started through ``enqueue`` (or ``enqueue_on_commit``):

- No broker configured (the embedded default, ``task_always_eager``): the
  task runs inline, here and now.
- Otherwise it is published with the fail-fast limits of the settings: one
  connect or read costs at most DANMAKU_BROKER_TIMEOUT_MS and nothing is
  retried. On top of that the publish runs on a small pool of threads and
  the caller waits at most DANMAKU_PUBLISH_DEADLINE_MS for it, so a step the
  socket timeouts do not cover (DNS, a sentinel walk, a client library bug)
  cannot hold a request either.
- Any failure: a warning (at most one per task per WARN_INTERVAL_SECONDS),
  danmaku_fallbacks_total{dependency="broker"} counted, the caller's
  ``fallback`` run, and False returned. Nothing is raised to the caller.

A publish that timed out on a frozen broker may still reach it once the
broker wakes up (the command sat in its socket buffer), so the task can run
after its fallback did: tasks and fallbacks must both be idempotent.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from celery import Task
from django.conf import settings
from django.db import transaction
from kombu.exceptions import EncodeError

from infra.metrics import FALLBACKS
from infra.ratelimitlog import RateLimitedLog

logger = logging.getLogger(__name__)

# Publishes in flight at once in one process: at least gunicorn's threads per
# worker. A publish past its deadline keeps its slot until the client library
# gives up (one DANMAKU_BROKER_TIMEOUT_MS later); with every slot taken,
# enqueue falls back at once instead of queueing behind stuck publishes.
PUBLISH_SLOTS = 8
# While the broker stays down, one warning per task name this often, with the
# number of fallbacks in between, instead of one line per request.
WARN_INTERVAL_SECONDS = 30.0


class PublishTimeout(Exception):
    """The broker did not take the message within the publish deadline."""


class PublishSlotsBusy(Exception):
    """Every publish slot is held by a publish that has not returned yet."""


class _Publisher:
    """A bounded thread pool; one per process (rebuilt after a fork)."""

    def __init__(self, slots: int) -> None:
        self.pid = os.getpid()
        self.slots = threading.BoundedSemaphore(slots)
        self.executor = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="celery-publish")

    def publish(self, task: Task, args: tuple, kwargs: dict, deadline_s: float) -> None:
        if not self.slots.acquire(blocking=False):
            raise PublishSlotsBusy(f"all {PUBLISH_SLOTS} publish slots are held by unfinished publishes")
        try:
            future = self.executor.submit(self._run, task, args, kwargs)
        except BaseException:
            self.slots.release()
            raise
        try:
            future.result(timeout=deadline_s)
        except FutureTimeout:
            raise PublishTimeout(f"no answer from the broker within {deadline_s * 1000:.0f} ms") from None

    def _run(self, task: Task, args: tuple, kwargs: dict) -> None:
        try:
            # retry=False repeats the settings: never retry a publish here.
            task.apply_async(args, kwargs, retry=False)
        finally:
            self.slots.release()


_publisher: _Publisher | None = None
_publisher_lock = threading.Lock()


def _get_publisher() -> _Publisher:
    global _publisher
    publisher = _publisher
    if publisher is None or publisher.pid != os.getpid():
        with _publisher_lock:
            publisher = _publisher
            if publisher is None or publisher.pid != os.getpid():
                # A forked child inherits the parent's pool without its threads.
                publisher = _publisher = _Publisher(PUBLISH_SLOTS)
    return publisher


_warn = RateLimitedLog(logger, every_seconds=WARN_INTERVAL_SECONDS)


def enqueue(task: Task, *args: object, fallback: Callable[[], object] | None = None, **kwargs: object) -> bool:
    """Run ``task`` inline (no broker) or publish it; on failure run ``fallback``.

    Returns True when the task ran inline or the broker took it, False when
    the fallback was used. Arguments must be JSON values (ids, not models).
    """
    if task.app.conf.task_always_eager:
        # Task errors are logged by Celery's tracer and kept in the result.
        task.apply(args, kwargs)
        return True
    try:
        _get_publisher().publish(task, args, kwargs, settings.DANMAKU_PUBLISH_DEADLINE_MS / 1000)
    except EncodeError:
        # Not the broker's fault: a caller passed something JSON cannot carry.
        raise
    except Exception as exc:
        # kombu, redis-py, py-amqp, socket and our own deadline errors all
        # mean the same here: the broker did not take the message.
        _fall_back(task.name, exc, fallback)
        return False
    return True


def enqueue_on_commit(
    task: Task, *args: object, fallback: Callable[[], object] | None = None, using: str | None = None, **kwargs: object
) -> None:
    """``enqueue`` once the current transaction commits (now, outside one).

    The task then sees the rows this transaction wrote; a rollback drops it.
    """
    transaction.on_commit(lambda: enqueue(task, *args, fallback=fallback, **kwargs), using=using, robust=True)


def _fall_back(where: str, exc: BaseException, fallback: Callable[[], object] | None) -> None:
    FALLBACKS.labels(dependency="broker", where=where).inc()
    # One message per task name, so each task's outage is said once per interval.
    _warn.warning(
        f"broker unavailable, {where} not published (%s: %s); fallback {'used' if fallback else 'none'}",
        type(exc).__name__,
        exc,
    )
    if fallback is None:
        return
    try:
        fallback()
    except Exception:
        logger.exception("fallback for %s failed", where)
