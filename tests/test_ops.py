"""/healthz, /readyz, /metrics and DANMAKU_ROLE.

Readiness is tested against real failures: a closed port, a private
redis-server frozen with SIGSTOP, and a PostgreSQL connection to a closed
port (a second ConnectionHandler, so the test database itself stays up).
Roles and multiprocess metrics are read once per process, so those tests run
a real gunicorn.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from django.db.utils import ConnectionHandler
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from danmaku import runtime
from danmaku.pull.cache import PullCache, RoomSettings
from danmaku.pull.ringbuffer import Item
from danmaku.refresher import observe_refresher
from danmaku_site import ops
from harness import local
from harness.services import private_redis
from infra.redis import reset_clients

URL = "/api/v1/rooms/{}/danmaku"
# /readyz must answer within this however frozen its dependencies are.
READYZ_LIMIT_SECONDS = 1.5
REQUEST_TIMEOUT_SECONDS = 5


@pytest.fixture(autouse=True)
def _fresh_redis_clients():
    # Clients are cached per URL; a test's frozen server must not leak into the next.
    reset_clients()
    yield
    reset_clients()


def timed_readyz(client: Client):
    started = time.monotonic()
    response = client.get("/readyz")
    return response, time.monotonic() - started


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus exposition (0 if absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


# -- /healthz -------------------------------------------------------------------


def test_healthz_answers_ok_without_touching_the_database(client, db, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


def test_healthz_refuses_post(client):
    assert client.post("/healthz").status_code == 405


# -- /readyz --------------------------------------------------------------------


def test_readyz_on_the_embedded_default_is_ok(client, db):
    response, elapsed = timed_readyz(client)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["role"] == "all"
    checks = body["checks"]
    assert checks["database"]["status"] == "ok"
    assert isinstance(checks["database"]["ms"], float)
    assert checks["redis"] == {"status": "not_configured", "ms": None}
    assert checks["broker"] == {"status": "not_configured", "ms": None}
    assert checks["refresher"] == {"status": "not_started", "ms": None}
    assert elapsed < READYZ_LIMIT_SECONDS


def test_readyz_reports_redis_on_a_closed_port_down_but_stays_ready(client, db, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{local.free_port()}/0"

    response, elapsed = timed_readyz(client)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["redis"]["status"] == "down"
    assert body["checks"]["redis"]["error"] == "ConnectionError"
    assert body["checks"]["database"]["status"] == "ok"
    assert elapsed < 0.5


def test_readyz_reports_a_frozen_redis_down_within_the_deadline(client, db, settings):
    with private_redis() as server:
        settings.REDIS_URL = server.url
        assert timed_readyz(client)[0].json()["checks"]["redis"]["status"] == "ok"
        server.freeze()

        response, elapsed = timed_readyz(client)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["redis"]["status"] == "down"
    assert elapsed < READYZ_LIMIT_SECONDS


def test_readyz_reports_a_frozen_broker_down_within_its_timeout(client, db, settings):
    with private_redis() as server:
        settings.CELERY_BROKER_URL = server.url
        assert timed_readyz(client)[0].json()["checks"]["broker"]["status"] == "ok"
        server.freeze()

        response, elapsed = timed_readyz(client)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["broker"]["status"] == "down"
    assert body["checks"]["redis"]["status"] == "not_configured"
    assert elapsed < ops.BROKER_TIMEOUT_SECONDS + 0.3


@pytest.mark.parametrize(
    ("broker_url", "expected"),
    [
        ("memory://", "ok"),
        (f"amqp://guest:guest@127.0.0.1:{local.free_port()}//", "down"),
    ],
)
def test_readyz_checks_other_brokers_through_kombu(client, db, settings, broker_url, expected):
    settings.CELERY_BROKER_URL = broker_url

    response, elapsed = timed_readyz(client)

    assert response.json()["checks"]["broker"]["status"] == expected
    assert elapsed < READYZ_LIMIT_SECONDS


@pytest.fixture
def database_down(monkeypatch):
    """The readiness check's database is PostgreSQL on a port nobody listens on."""
    handler = ConnectionHandler(
        {
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": "danmaku",
                "USER": "danmaku",
                "HOST": "127.0.0.1",
                "PORT": str(local.free_port()),
            }
        }
    )
    monkeypatch.setattr(ops, "connections", handler)
    return handler


@pytest.mark.parametrize(
    ("role", "status_code", "status"),
    [
        ("send", 503, "down"),  # a send node cannot store anything
        ("all", 200, "degraded"),  # it still answers pulls from its rings
        ("pull", 200, "degraded"),
    ],
)
def test_readyz_with_the_database_down(client, db, settings, database_down, role, status_code, status):
    settings.DANMAKU_ROLE = role

    response, elapsed = timed_readyz(client)

    assert response.status_code == status_code
    body = response.json()
    assert body["status"] == status
    assert body["role"] == role
    assert body["checks"]["database"]["status"] == "down"
    assert body["checks"]["database"]["error"] == "OperationalError"
    assert elapsed < READYZ_LIMIT_SECONDS


def test_readyz_on_a_pull_node_stays_ready_with_everything_down(client, db, settings, database_down):
    settings.DANMAKU_ROLE = "pull"
    settings.REDIS_URL = f"redis://127.0.0.1:{local.free_port()}/0"
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{local.free_port()}/1"

    response, elapsed = timed_readyz(client)

    assert response.status_code == 200
    checks = response.json()["checks"]
    assert {name: checks[name]["status"] for name in ("database", "redis", "broker")} == {
        "database": "down",
        "redis": "down",
        "broker": "down",
    }
    assert elapsed < READYZ_LIMIT_SECONDS


def test_a_hung_check_is_cut_at_the_deadline_and_not_started_again():
    release = threading.Event()
    calls = []

    def hangs() -> None:
        calls.append(1)
        release.wait(5)

    try:
        started = time.monotonic()
        first = ops.run_checks({"stuck": ("target", hangs)}, deadline_s=0.2)
        second = ops.run_checks({"stuck": ("target", hangs)}, deadline_s=0.2)
        elapsed = time.monotonic() - started
    finally:
        release.set()

    assert first["stuck"]["status"] == second["stuck"]["status"] == "down"
    assert first["stuck"]["error"] == "timeout"
    assert len(calls) == 1  # the second probe waited on the first instead of piling up
    assert elapsed < 0.6


def test_readyz_reports_the_refresher(client, db, room):
    assert client.get(URL.format(room.slug)).status_code == 200
    refresher = runtime.refresher()

    # Activated by the pull but no refresher tick since (this test drives the
    # refresher itself): nothing keeps the rings fresh, so it reads as degraded.
    assert client.get("/readyz").json()["checks"]["refresher"]["status"] == "degraded"

    refresher.refresh_once()
    check = client.get("/readyz").json()["checks"]["refresher"]
    assert check["status"] == "ok"
    assert check["rooms"] == 1
    assert check["degraded_rooms"] == 0

    runtime.pull_cache().rooms[room.slug].degraded = True
    assert client.get("/readyz").json()["checks"]["refresher"]["status"] == "degraded"


def test_refresher_check_goes_degraded_when_its_last_success_is_stale(db, room, client):
    client.get(URL.format(room.slug))
    refresher = runtime.refresher()
    refresher.refresh_once()
    last = refresher.last_success_ms

    assert ops.refresher_check(now_ms=last + ops.REFRESHER_STALE_MS)["status"] == "ok"
    assert ops.refresher_check(now_ms=last + ops.REFRESHER_STALE_MS + 1)["status"] == "degraded"


# -- /metrics -------------------------------------------------------------------


def test_metrics_count_pulls_and_sends(client, db, room, auth_headers):
    before = client.get("/metrics").content.decode()

    assert client.get(URL.format(room.slug)).status_code == 200
    assert client.get(URL.format("no-such-room")).status_code == 404
    sent = client.post(
        URL.format(room.slug), json.dumps({"text": "hello"}), content_type="application/json", **auth_headers
    )
    assert sent.status_code == 201
    assert client.post(URL.format(room.slug), "{}", content_type="application/json").status_code == 401
    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    after = response.content.decode()
    for name in (
        "danmaku_pulls_total",
        "danmaku_sends_total",
        "danmaku_refresher_errors_total",
        "danmaku_refresher_tick_seconds_bucket",
        "danmaku_refresher_lag_seconds",
        "danmaku_ring_rooms",
        "danmaku_ring_items",
    ):
        assert f"\n{name}" in after, name

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("danmaku_pulls_total", status="200") == 1
    assert delta("danmaku_pulls_total", status="404") == 1
    assert delta("danmaku_sends_total", outcome="accepted") == 1
    assert delta("danmaku_sends_total", outcome="refused") == 1


def test_observe_refresher_sets_ring_gauges(client):
    # observe_refresher reads only refresher.cache: a cache with two rooms will do.
    cache = PullCache()
    now_ms = 1_700_000_000_400
    newest = now_ms // 1000 - 1
    for room_id, texts in ((1, ("one", "two")), (2, ("three",))):
        entry = cache.install(RoomSettings(room_id=room_id, slug=f"room-{room_id}"))
        entry.ring.add(
            Item(room_id * 10 + n, newest * 1000 + n, 0xFFFFFF, 0, 1, "nick", "", t) for n, t in enumerate(texts)
        )
        # An item in the open second is not counted: readers cannot see it yet.
        entry.ring.add([Item(room_id * 10 + 9, now_ms, 0xFFFFFF, 0, 1, "nick", "", "open")])
        entry.ring.seal_through(newest)
        cache.publish(entry)

    observe_refresher(SimpleNamespace(cache=cache), now_ms=now_ms)

    text = client.get("/metrics").content.decode()
    assert sample(text, "danmaku_ring_rooms") == 2
    assert sample(text, "danmaku_ring_items") == 3
    assert sample(text, "danmaku_refresher_lag_seconds") == pytest.approx(0.4)

    observe_refresher(SimpleNamespace(cache=PullCache()), now_ms=now_ms)

    text = client.get("/metrics").content.decode()
    assert sample(text, "danmaku_ring_rooms") == sample(text, "danmaku_ring_items") == 0
    assert sample(text, "danmaku_refresher_lag_seconds") == 0


# -- roles and multiprocess metrics under a real gunicorn -----------------------

ROOM = "ops"


def _server(tmp_path: Path, **extra_env: str):
    return local.gunicorn(
        room=ROOM, var_dir=tmp_path, room_fields={"user_send_interval_ms": 0}, extra_env=extra_env or None
    )


def _send(server: local.LocalServer, text: str) -> requests.Response:
    return requests.post(
        server.danmaku_url(ROOM),
        json={"text": text},
        headers={"Authorization": f"Bearer {server.tokens[0]}"},
        timeout=REQUEST_TIMEOUT_SECONDS,
    )


def _get(server: local.LocalServer, path: str) -> requests.Response:
    return requests.get(f"{server.base_url}{path}", timeout=REQUEST_TIMEOUT_SECONDS)


@pytest.mark.slow
def test_pull_role_serves_pulls_and_probes_but_not_sends_or_admin(tmp_path):
    with _server(tmp_path, DANMAKU_ROLE="pull") as server:
        pulled = _get(server, f"/api/v1/rooms/{ROOM}/danmaku")
        sent = _send(server, "nobody takes this")
        admin = _get(server, "/admin/login/")
        page = _get(server, f"/rooms/{ROOM}/")
        probes = [_get(server, path).status_code for path in ("/healthz", "/readyz", "/metrics")]
        readiness = _get(server, "/readyz").json()

    assert pulled.status_code == 200, pulled.text
    # JSON carries nosniff; the headers that only govern documents are not sent.
    assert pulled.headers["X-Content-Type-Options"] == "nosniff"
    assert {"X-Frame-Options", "Referrer-Policy", "Cross-Origin-Opener-Policy"}.isdisjoint(pulled.headers)
    assert sent.status_code == 405
    assert admin.status_code == 404
    assert page.status_code == 404
    assert probes == [200, 200, 200]
    assert readiness["role"] == "pull"


@pytest.mark.slow
def test_send_role_serves_sends_and_admin_but_not_pulls(tmp_path):
    with _server(tmp_path, DANMAKU_ROLE="send") as server:
        sent = _send(server, "hello from a send node")
        pulled = _get(server, f"/api/v1/rooms/{ROOM}/danmaku")
        admin = _get(server, "/admin/login/")
        readiness = _get(server, "/readyz")

    assert sent.status_code == 201, sent.text
    assert pulled.status_code == 405
    assert admin.status_code == 200
    assert readiness.status_code == 200
    assert readiness.json()["role"] == "send"


# Longest wait for both workers to have answered a pull.
BOTH_WORKERS_TIMEOUT_SECONDS = 15
# Longest wait for gunicorn to replace a killed worker.
RESPAWN_TIMEOUT_SECONDS = 15


def _pull_until_both_workers_answered(server: local.LocalServer) -> tuple[int, set[str]]:
    workers: set[str] = set()
    pulls = 0
    deadline = time.monotonic() + BOTH_WORKERS_TIMEOUT_SECONDS
    while len(workers) < 2 or pulls < 20:
        if time.monotonic() > deadline:
            pytest.fail(f"only {workers} answered {pulls} pulls within {BOTH_WORKERS_TIMEOUT_SECONDS} s")
        # A new connection each time, so the kernel hands it to either worker.
        response = requests.get(
            server.danmaku_url(ROOM), headers={"Connection": "close"}, timeout=REQUEST_TIMEOUT_SECONDS
        )
        assert response.status_code == 200, response.text
        workers.add(response.headers["X-Served-By"])
        pulls += 1
    return pulls, workers


@pytest.mark.slow
def test_metrics_add_up_every_gunicorn_worker_and_survive_a_dead_one(tmp_path):
    with _server(tmp_path) as server:
        pulls, workers = _pull_until_both_workers_answered(server)
        # Each worker writes its pull tallies on its refresher's tick: a
        # scrape answered by one worker is at most a second behind the other.
        deadline = time.monotonic() + 5
        while True:
            text = _get(server, "/metrics").text
            if sample(text, "danmaku_pulls_total", status="200") == pulls or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        counter_files = {path.name for path in (tmp_path / "prometheus").glob("counter_*.db")}
        victim = int(sorted(workers)[0].rsplit(":", 1)[1])
        live_gauges = tmp_path / "prometheus" / f"gauge_livesum_{victim}.db"
        assert live_gauges.exists()
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + RESPAWN_TIMEOUT_SECONDS
        while live_gauges.exists():
            assert time.monotonic() < deadline, "child_exit did not drop the dead worker's live gauges"
            time.sleep(0.05)
        after_kill = _get(server, "/metrics").text

    # Every worker wrote its own counters, and the scrape (answered by one of
    # them) added them up.
    assert {f"counter_{worker.rsplit(':', 1)[1]}.db" for worker in workers} <= counter_files
    assert sample(text, "danmaku_pulls_total", status="200") == pulls
    # The per-process default registry (gc, process collectors) is not what was served.
    assert "python_gc_objects_collected_total" not in text
    # The dead worker's counters stay in the total.
    assert sample(after_kill, "danmaku_pulls_total", status="200") == pulls
    assert (tmp_path / "prometheus" / f"counter_{victim}.db").exists()


@pytest.mark.slow
def test_a_send_node_writes_every_workers_send_counts_within_a_second_or_two(tmp_path):
    # A send node runs no refresher: its job writes what its workers counted.
    with _server(tmp_path, DANMAKU_ROLE="send") as server:
        workers: set[str] = set()
        sends = 0
        deadline = time.monotonic() + BOTH_WORKERS_TIMEOUT_SECONDS
        while len(workers) < 2 or sends < 20:
            assert time.monotonic() < deadline, f"only {workers} answered {sends} sends"
            response = requests.post(
                server.danmaku_url(ROOM),
                json={"text": f"counted {sends}"},
                # A new connection each time, so the kernel hands it to either worker.
                headers={"Authorization": f"Bearer {server.tokens[0]}", "Connection": "close"},
                timeout=REQUEST_TIMEOUT_SECONDS,
            )
            assert response.status_code == 201, response.text
            workers.add(response.headers["X-Served-By"])
            sends += 1
        # Every scrape on one kept-alive connection: answered by one worker,
        # which writes its own counts first; the other's come from its job.
        scraper = requests.Session()
        deadline = time.monotonic() + 5
        while True:
            text = scraper.get(f"{server.base_url}/metrics", timeout=REQUEST_TIMEOUT_SECONDS).text
            if sample(text, "danmaku_sends_total", outcome="accepted") == sends or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        scraper.close()

    assert sample(text, "danmaku_sends_total", outcome="accepted") == sends
