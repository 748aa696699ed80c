"""Operations: liveness, readiness and Prometheus metrics.

Plain Django views, outside the ninja API, cheap enough to be probed every
second:

- ``/healthz``: the process is alive. No database, no session, no I/O.
- ``/readyz``: each dependency checked (concurrently, each under a hard
  deadline) and reported one by one. Degraded is not down: the answer is 503
  only when the process cannot do its role's job at all (see ``overall``).
- ``/metrics``: the Prometheus exposition; under gunicorn with
  PROMETHEUS_MULTIPROC_DIR set, summed over every worker of the instance.

Also here: ``count_api_outcomes``, the middleware counting pulls by status
(``infra.pullcounts``, which the WSGI fast path counts into too) and sends by
outcome.
"""

from __future__ import annotations

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

from danmaku.audience import DeliveryCollector
from infra import clock
from infra.metrics import SENDS
from infra.pullcounts import count_pull
from infra.redis import get_redis
from infra.tallies import Tally, flush_tallies

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
    now_ms = clock.now_ms() if now_ms is None else now_ms
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
    flush_tallies()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Every gunicorn worker writes its own files; add them all up. A fresh
        # registry per scrape, as prometheus-client's multiprocess docs say.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    # Figures the node's processes share each second, added up here.
    delivery = CollectorRegistry()
    delivery.register(DeliveryCollector())
    return HttpResponse(generate_latest(registry) + generate_latest(delivery), content_type=CONTENT_TYPE_LATEST)


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
                count_send(status)
        return response

    return middleware


def count_send(status: int) -> None:
    """Count one send's answer by outcome (the middleware, and the send fast path)."""
    _sends.inc(status)


def _send_outcome(status: int) -> str:
    return SEND_OUTCOMES.get(status, "error" if status >= 500 else "refused")


# Counted per thread by status and written by outcome by flush_tallies
# (infra.tallies): the library's own increment was 4 % of a refused send's
# CPU on the loop.
_sends = Tally(SENDS, "sends", label_of=_send_outcome)
