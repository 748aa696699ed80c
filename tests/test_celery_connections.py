"""A Celery worker keeps its database connection between tasks, as a web
thread does between requests (Celery's Django fixup would close it after
every task: a new PostgreSQL backend for each moderation batch). A real
worker on a private database and broker."""

from __future__ import annotations

import contextlib
import time

import psycopg
import pytest

from harness import local
from harness.services import postgres_database, private_redis, require_postgres

pytestmark = pytest.mark.slow

TASKS = 8
WAIT_SECONDS = 30.0
# Production settings refuse to start without one.
SECRET_KEY = "test-only-secret-key-" + "x" * 40
PUBLISH = f"""
from moderation.tasks import moderate_batch_task
for n in range({TASKS}):
    moderate_batch_task.delay([10**9 + n])  # no such comment: one query each
"""


def _open_connections(database_url: str) -> list[tuple[int, object]]:
    """(pid, backend start) of the client connections to the database, but this one."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=2) as conn:
        return conn.execute(
            "SELECT pid, backend_start FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchall()


def test_a_worker_keeps_one_database_connection_across_its_tasks(tmp_path):
    require_postgres()
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(postgres_database())
        broker = stack.enter_context(private_redis())
        env = local.environment(
            tmp_path, DJANGO_SECRET_KEY=SECRET_KEY, DATABASE_URL=database_url, CELERY_BROKER_URL=broker.url
        )
        local.manage(env, "migrate", "--noinput")
        worker = stack.enter_context(local.celery_worker(env, log_path=tmp_path / "worker.log"))
        published_at = time.time()
        local.manage(env, "shell", "-c", PUBLISH)
        deadline = time.monotonic() + WAIT_SECONDS
        while worker.log(200_000).count("succeeded") < TASKS and time.monotonic() < deadline:
            time.sleep(0.2)
        assert worker.log(200_000).count("succeeded") == TASKS, worker.log()

        connections = _open_connections(database_url)

        # The worker's one connection is still open after its tasks, opened
        # for the first of them, not one per task.
        assert len(connections) == 1, connections
        ((_, backend_start),) = connections
        assert backend_start.timestamp() >= published_at - 1
