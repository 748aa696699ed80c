"""Copies of one send racing on the production stack.

A client that sends twice with the same ``client_id`` (a double click, a
retry after a timeout) while slow mode is on: every copy must get the first
copy's answer (201, the same id), one comment is stored, and none is told
to wait (429). A real gunicorn (2 workers x 4 threads) on PostgreSQL, whose
unique index on ``client_id`` makes the later copies wait for the first
copy's commit, and Redis, which keeps the slow-mode slot.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import uuid

import psycopg
import pytest
import redis
import requests

from harness import local
from harness.services import postgres_database, require_postgres, require_redis

pytestmark = pytest.mark.slow

ROOM = "copies"
# One sender per round: each round starts on a slow-mode slot nobody took.
SENDERS = ("s0", "s1", "s2", "s3", "s4")
COPIES = 6
SLOW_MODE_MS = 60_000
REQUEST_TIMEOUT_SECONDS = 10


def _send(server: local.LocalServer, token: str, client_id: str) -> requests.Response:
    return requests.post(
        server.danmaku_url(ROOM),
        json={"text": "only once", "client_id": client_id},
        headers={"Authorization": f"Bearer {token}"},
        timeout=REQUEST_TIMEOUT_SECONDS,
    )


def _send_copies(server: local.LocalServer, token: str, client_id: str) -> list[requests.Response | None]:
    """``COPIES`` copies of one send, released together, one thread each."""
    start = threading.Barrier(COPIES)
    answers: list[requests.Response | None] = [None] * COPIES

    def copy(index: int) -> None:
        start.wait(timeout=REQUEST_TIMEOUT_SECONDS)
        answers[index] = _send(server, token, client_id)

    threads = [threading.Thread(target=copy, args=(index,)) for index in range(COPIES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(2 * REQUEST_TIMEOUT_SECONDS)
    return answers


def _forget_keys(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def _stored_by_client_id(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url.replace("postgres://", "postgresql://", 1), connect_timeout=2) as conn:
        rows = conn.execute("SELECT client_id, count(*) FROM danmaku_danmaku GROUP BY client_id").fetchall()
    return dict(rows)


def test_copies_of_one_send_in_slow_mode_all_get_the_first_answer(tmp_path):
    require_postgres()
    redis_url = require_redis()
    prefix = f"copies-{uuid.uuid4().hex}"
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(postgres_database())
        stack.callback(_forget_keys, redis_url, prefix)
        services = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "DANMAKU_REDIS_PREFIX": prefix,
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        }
        try:
            server = stack.enter_context(
                local.gunicorn(
                    room=ROOM,
                    users=SENDERS,
                    var_dir=tmp_path,
                    room_fields={"user_send_interval_ms": SLOW_MODE_MS},
                    extra_env=services,
                )
            )
        except local.LocalServerError as exc:
            pytest.fail(str(exc))

        for round_number, token in enumerate(server.tokens):
            answers = _send_copies(server, token, f"round-{round_number}")
            assert None not in answers, f"a copy got no answer\n{server.log_tail()}"
            summary = [(answer.status_code, answer.text) for answer in answers]
            assert [status for status, _ in summary] == [201] * COPIES, summary
            assert len({answer.json()["id"] for answer in answers}) == 1, summary

        assert _stored_by_client_id(database_url) == {f"round-{n}": 1 for n in range(len(SENDERS))}
        # Slow mode itself still holds: another send within the interval waits.
        assert _send(server, server.tokens[0], "another").status_code == 429
