"""Operations: liveness, readiness and Prometheus metrics.

Plain Django views, outside the ninja API, cheap enough to be probed every
second:

- ``/healthz``: the process is alive. No database, no session, no I/O.
- ``/readyz``: each dependency checked (concurrently, each under a hard
  deadline) and reported one by one. Degraded is not down: the answer is 503
  only when the process cannot do its role's job at all (see ``overall``).
- ``/metrics``: the Prometheus exposition; under gunicorn with
  PROMETHEUS_MULTIPROC_DIR set, summed over every worker of the instance.

Also here: ``count_api_outcomes`` (middleware counting pulls by status and
sends by outcome), ``count_pull`` (the same count for pulls the WSGI fast
path answers before Django sees them) and ``observe_refresher`` (ring and lag gauges, called by
the refresher at the end of each tick).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from typing import Any

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from danmaku_site.metrics import PULLS, REFRESH_LAG, RING_ITEMS, RING_ROOMS, SENDS
from danmaku_site.redis import get_redis

logger = logging.getLogger(__name__)

OK = "ok"
DEGRADED = "degraded"
DOWN = "down"
NOT_CONFIGURED = "not_configured"
NOT_STARTED = "not_started"

# The whole readiness answer waits at most this long for its checks, however
# many dependencies are frozen: probers commonly give up after 1-2 s, and a
# check that has not answered by then is as good as down.
CHECK_DEADLINE_SECONDS = 1.0
# Connect and answer timeout for the broker check. Publishing a task gives up
# after about as long, so a broker slower than this is down for our purposes.
BROKER_TIMEOUT_SECONDS = 0.5
# The refresher ticks about once a second; five missed ticks in a row means
# the rings are going stale (pulls answer "degraded").
REFRESHER_STALE_MS = 5000
# Components whose failure makes the role unable to serve at all. A pull node
# answers from its rings whatever is down; a send node cannot store a comment
# without the database. "all" keeps answering pulls with the database down,
# and every node shares one database: a 503 there would take the whole fleet,
# pulls included, out of the load balancer.
CRITICAL = {"all": frozenset(), "pull": frozenset(), "send": frozenset({"database"})}


# -- liveness -------------------------------------------------------------------

_HEALTHY = b'{"status":"ok"}'


@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse(_HEALTHY, content_type="application/json", headers={"Cache-Control": "no-store"})


# -- readiness ------------------------------------------------------------------


@require_safe
def readyz(request: HttpRequest) -> HttpResponse:
    status_code, body = readiness(role=settings.DANMAKU_ROLE)
    return JsonResponse(body, status=status_code, headers={"Cache-Control": "no-store"})


def readiness(*, role: str, deadline_s: float = CHECK_DEADLINE_SECONDS) -> tuple[int, dict]:
    """(HTTP status, body) for /readyz: every dependency, then the verdict."""
    probes: dict[str, tuple[str, Callable[[], None]]] = {"database": (_database_target(), check_database)}
    if settings.REDIS_URL:
        probes["redis"] = (settings.REDIS_URL, check_redis)
    if settings.CELERY_BROKER_URL:
        probes["broker"] = (settings.CELERY_BROKER_URL, check_broker)
    checks = run_checks(probes, deadline_s=deadline_s)
    checks.setdefault("redis", {"status": NOT_CONFIGURED, "ms": None})
    checks.setdefault("broker", {"status": NOT_CONFIGURED, "ms": None})
    checks["refresher"] = refresher_check()
    _log_transitions(checks)
    status = overall(role, checks)
    body = {"status": status, "role": role, "checks": {name: checks[name] for name in sorted(checks)}}
    return (503 if status == DOWN else 200), body


def overall(role: str, checks: dict[str, dict]) -> str:
    """down: the role cannot serve; degraded: it serves with something missing."""
    statuses = {name: check["status"] for name, check in checks.items()}
    if any(statuses.get(name) == DOWN for name in CRITICAL[role]):
        return DOWN
    if any(status in (DOWN, DEGRADED) for status in statuses.values()):
        return DEGRADED
    return OK


def check_database(alias: str = "default") -> None:
    # Runs in its own thread, so on its own connection; closed afterwards so
    # probes never pile up connections (an in-memory SQLite ignores close()).
    connection = connections[alias]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()


def check_redis() -> None:
    get_redis().ping()


def check_broker() -> None:
    url = settings.CELERY_BROKER_URL
    if url.startswith(("redis://", "rediss://", "unix://")):
        get_redis(url, timeout_s=BROKER_TIMEOUT_SECONDS).ping()
        return
    from kombu import Connection

    with Connection(url, connect_timeout=BROKER_TIMEOUT_SECONDS) as conn:
        # max_retries=0: one attempt, no retry loop; the deadline in
        # run_checks bounds it even if the transport ignores the timeout.
        conn.ensure_connection(max_retries=0, timeout=BROKER_TIMEOUT_SECONDS)


def refresher_check(*, now_ms: int | None = None) -> dict:
    """The refresher as /readyz reports it; touches no I/O."""
    from danmaku import runtime

    # Read, never build: building the runtime here would start work a probe
    # should only look at.
    refresher = runtime.current_refresher()
    if refresher is None:
        # Built on the first API request of the process: nothing to refresh yet.
        return {"status": NOT_STARTED, "ms": None}
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    entries = list(refresher.cache.rooms.values())
    last = refresher.last_success_ms
    age_ms = None if last is None else max(0, now_ms - last)
    degraded_rooms = sum(1 for entry in entries if entry.degraded)
    stale = bool(entries) and (age_ms is None or age_ms > REFRESHER_STALE_MS)
    return {
        "status": DEGRADED if degraded_rooms or stale else OK,
        "ms": None,
        "rooms": len(entries),
        "degraded_rooms": degraded_rooms,
        "last_success_age_ms": age_ms,
        "errors": refresher.errors,
    }


# Each dependency has at most one check in flight per process: concurrent
# probes share it, and a check stuck on a frozen dependency is not started
# again and again (its thread ends when the client's own timeout fires).
_inflight: dict[tuple[str, str], Future] = {}
_inflight_lock = threading.Lock()


def run_checks(probes: dict[str, tuple[str, Callable[[], None]]], *, deadline_s: float) -> dict[str, dict]:
    """Run ``{name: (target, probe)}`` concurrently; a probe passes by returning.

    Never waits longer than ``deadline_s``: a probe still running then is
    reported down ("timeout") and left to finish on its daemon thread.
    """
    started = time.monotonic()
    futures = {name: _start_probe((name, target), probe) for name, (target, probe) in probes.items()}
    wait_futures(futures.values(), timeout=deadline_s)
    waited_ms = round((time.monotonic() - started) * 1000, 1)
    results = {}
    for name, future in futures.items():
        if future.done():
            results[name] = future.result()
        else:
            results[name] = {"status": DOWN, "ms": waited_ms, "error": "timeout"}
    return results


def _start_probe(key: tuple[str, str], probe: Callable[[], None]) -> Future:
    with _inflight_lock:
        future = _inflight.get(key)
        if future is not None and not future.done():
            return future
        future = _inflight[key] = Future()
    thread = threading.Thread(target=_run_probe, args=(probe, future), name=f"readyz-{key[0]}", daemon=True)
    thread.start()
    return future


def _run_probe(probe: Callable[[], None], future: Future) -> None:
    started = time.monotonic()
    try:
        probe()
    except Exception as exc:  # any failure of a dependency is "down", never a 500
        result: dict[str, Any] = {"status": DOWN, "error": type(exc).__name__}
    else:
        result = {"status": OK}
    result["ms"] = round((time.monotonic() - started) * 1000, 1)
    future.set_result(result)


def _database_target(alias: str = "default") -> str:
    db = connections.settings[alias]
    return f"{db['ENGINE']}:{db.get('HOST', '')}:{db.get('PORT', '')}/{db['NAME']}"


_last_status: dict[str, str] = {}


def _log_transitions(checks: dict[str, dict]) -> None:
    # Log when a component changes state, not on every probe.
    for name, check in checks.items():
        status, previous = check["status"], _last_status.get(name)
        _last_status[name] = status
        if previous is None or previous == status:
            if previous is None and status in (DOWN, DEGRADED):
                logger.warning("readiness: %s is %s (%s)", name, status, check.get("error", ""))
            continue
        if status in (DOWN, DEGRADED):
            logger.warning("readiness: %s went from %s to %s (%s)", name, previous, status, check.get("error", ""))
        else:
            logger.info("readiness: %s went from %s to %s", name, previous, status)


# -- metrics --------------------------------------------------------------------


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    flush_pull_counts()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Every gunicorn worker writes its own files; add them all up. A fresh
        # registry per scrape, as prometheus-client's multiprocess docs say.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def observe_refresher(refresher: Any, *, now_ms: int | None = None) -> None:
    """Set the ring and lag gauges from a refresher's rings.

    Call it from the refresher thread at the end of every tick (it reads the
    rings the refresher writes, so it is cheapest and consistent there).
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    entries = list(refresher.cache.rooms.values())
    items = 0
    newest: int | None = None
    for entry in entries:
        ring = entry.ring
        items += ring.item_count
        sealed = ring.sealed_through
        if sealed is not None and (newest is None or sealed > newest):
            newest = sealed
    RING_ROOMS.set(len(entries))
    RING_ITEMS.set(items)
    # Lag: how far the newest sealed second's end is behind now. About
    # seal_lag + up to one tick when healthy; it grows while the store is out.
    REFRESH_LAG.set(0.0 if newest is None else max(0.0, (now_ms - (newest + 1) * 1000) / 1000))


# -- counting API outcomes ------------------------------------------------------

_API_ROOMS_PREFIX = "/api/v1/rooms/"
_DANMAKU_SUFFIX = "/danmaku"
SEND_OUTCOMES = {
    201: "accepted",
    202: "discarded",
    400: "invalid",
    401: "refused",
    403: "refused",
    404: "refused",
    405: "refused",
    429: "rate_limited",
    503: "unavailable",
}


def count_pull(status: int) -> None:
    """Count one pull answered with ``status`` in danmaku_pulls_total.

    Called for every pull, from the fast path and from the middleware, so it
    is kept cheap (see PullCounts)."""
    counts = _pull_counts
    if counts is None:
        counts = _start_pull_counts()
    counts.inc(status)


class PullCounts:
    """danmaku_pulls_total by status, for this process.

    Under PROMETHEUS_MULTIPROC_DIR, prometheus-client's counter takes a lock,
    asks the kernel for the pid and writes its file on every increment:
    about 1 µs, a third of a fast-path pull. Here each thread tallies its
    own pulls in a dict only it writes (no lock, no race), and ``flush``
    adds the tallies up into the file: each refresher tick (so any worker's
    scrape is at most a second behind), before this process answers
    /metrics, and at exit. The file is named like the library's own counter
    files, so /metrics adds it to the same series.
    """

    def __init__(self, directory: str) -> None:
        # Continued, not restarted, if this pid already wrote one (a worker
        # recycled onto a pid number used before in this instance).
        self._file = MmapedDict(os.path.join(directory, f"counter_{os.getpid()}_pulls.db"))
        self._lock = threading.Lock()
        self._keys: dict[int, str] = {}
        self._start: dict[int, float] = {}
        self._written: dict[int, float] = {}
        self._local = threading.local()
        # Every thread's tally, kept after the thread ends: its pulls count.
        self._tallies: list[dict[int, int]] = []

    def inc(self, status: int) -> None:
        try:
            tally = self._local.tally
        except AttributeError:
            tally = self._local.tally = {}
            with self._lock:
                self._tallies.append(tally)
        tally[status] = tally.get(status, 0) + 1

    def flush(self) -> None:
        with self._lock:
            totals: dict[int, int] = {}
            for tally in self._tallies:
                # A copy is taken in one step under the GIL, even while its
                # thread adds a status to it.
                for status, count in tally.copy().items():
                    totals[status] = totals.get(status, 0) + count
            for status, count in totals.items():
                key = self._keys.get(status)
                if key is None:
                    key = self._keys[status] = _pulls_key(status)
                    self._start[status] = self._file.read_value(key)[0]
                value = self._start[status] + count
                if self._written.get(status) != value:
                    self._file.write_value(key, value, 0.0)
                    self._written[status] = value


class _RegistryPullCounts:
    """Without PROMETHEUS_MULTIPROC_DIR: the process's own registry."""

    def __init__(self) -> None:
        self._children: dict[int, Any] = {}

    def flush(self) -> None:
        """Nothing to write: the registry is this process's."""

    def inc(self, status: int) -> None:
        child = self._children.get(status)
        if child is None:
            child = self._children[status] = PULLS.labels(status=str(status))
        child.inc()


def _pulls_key(status: int) -> str:
    # The key prometheus-client's multiprocess counter would use.
    metric = PULLS.describe()[0]
    return mmap_key(metric.name, f"{metric.name}_total", ["status"], [str(status)], metric.documentation)


_pull_counts: PullCounts | _RegistryPullCounts | None = None
_pull_counts_lock = threading.Lock()


def _start_pull_counts() -> PullCounts | _RegistryPullCounts:
    global _pull_counts
    with _pull_counts_lock:
        if _pull_counts is None:
            # Decided like prometheus-client decides: by the environment.
            directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
            _pull_counts = PullCounts(directory) if directory else _RegistryPullCounts()
        return _pull_counts


def flush_pull_counts() -> None:
    """Write this process's pull tallies where /metrics reads them."""
    counts = _pull_counts
    if counts is not None:
        counts.flush()


atexit.register(flush_pull_counts)


def _forget_pull_counts() -> None:
    # A forked child writes a file of its own, never its parent's.
    global _pull_counts, _pull_counts_lock
    _pull_counts = None
    _pull_counts_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_pull_counts)


def count_api_outcomes(get_response: Callable[[HttpRequest], HttpResponse]):
    """Middleware: pulls by HTTP status, sends by outcome.

    Outermost in MIDDLEWARE, so it sees every answer, including those the
    view never produced (ninja's 400s, CSRF 403s, a role's 405s). Costs one
    string test per request.
    """

    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        path = request.path
        if path.startswith(_API_ROOMS_PREFIX) and path.endswith(_DANMAKU_SUFFIX):
            status = response.status_code
            if request.method in ("GET", "HEAD"):
                count_pull(status)
            elif request.method == "POST":
                SENDS.labels(outcome=SEND_OUTCOMES.get(status, "error" if status >= 500 else "refused")).inc()
        return response

    return middleware
