"""The send ceiling: a bare WSGI app doing a send's unavoidable work.

Per POST: read and parse the JSON body, one prepared INSERT of a row as wide
as a stored comment into a scratch table (``create_table``, run by the
benchmark before the app starts), one XADD of it to a capped stream, and a
201 with a small JSON body. Each server thread keeps one PostgreSQL
connection (autocommit) to the project's private database and one Redis
connection to its store server, made at its first request. No
authentication, limits, filter or task: whatever the project costs beyond
this is the cost of being the project. A GET answers 200 (the readiness
probe).

BENCH_SEND_DATABASE_URL and BENCH_SEND_REDIS_URL name the servers. With
BENCH_SEND_ANSWER_ONLY=1 a POST only reads and parses its body and answers
a refusal's 202, touching neither: the server's own cost of a request, the
floor under any refused send it serves.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable

import psycopg
import redis

TABLE = "bench_send_ceiling"
STREAM = "bench:send:ceiling"
# About the project's: two streams' worth of a busy room.
STREAM_MAXLEN = 10_000
# The columns of danmaku_danmaku a send fills.
CREATE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id bigserial PRIMARY KEY,
    room_id bigint NOT NULL,
    user_id integer NOT NULL,
    text varchar(500) NOT NULL,
    color integer NOT NULL,
    mode smallint NOT NULL,
    ts_ms bigint NOT NULL,
    status varchar(16) NOT NULL,
    client_id varchar(64) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    in_stream boolean NOT NULL,
    retracted_at_ms bigint,
    retraction_in_stream boolean NOT NULL DEFAULT false
)
"""
INSERT = (
    f"INSERT INTO {TABLE} (room_id, user_id, text, color, mode, ts_ms, status, client_id, in_stream)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
)
WHITE = 0xFFFFFF
ANSWER_ONLY = os.environ.get("BENCH_SEND_ANSWER_ONLY") == "1"
OK_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", "2")]


def create_table(database_url: str) -> None:
    with psycopg.connect(_libpq(database_url), autocommit=True, connect_timeout=5) as conn:
        conn.execute(CREATE)


def _libpq(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


class _Connections(threading.local):
    database: psycopg.Connection | None = None
    redis: redis.Redis | None = None


_connections = _Connections()


def _open() -> tuple[psycopg.Connection, redis.Redis]:
    if _connections.database is None:
        _connections.database = psycopg.connect(
            _libpq(os.environ["BENCH_SEND_DATABASE_URL"]), autocommit=True, connect_timeout=5
        )
        _connections.redis = redis.Redis.from_url(
            os.environ["BENCH_SEND_REDIS_URL"], single_connection_client=True, socket_timeout=5
        )
    return _connections.database, _connections.redis


REFUSED = b'{"broadcast": false, "reason": "room_busy"}'
REFUSED_HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(REFUSED)))]


def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
    if environ["REQUEST_METHOD"] != "POST":
        start_response("200 OK", OK_HEADERS)
        return [b"ok"]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    sent = json.loads(environ["wsgi.input"].read(length))
    if ANSWER_ONLY:
        start_response("202 Accepted", REFUSED_HEADERS)
        return [REFUSED]
    database, stream = _open()
    text, client_id = sent["text"], sent.get("client_id") or ""
    row = (1, 1, text, WHITE, 0, int(time.time() * 1000), "published", client_id, True)
    (row_id,) = database.execute(INSERT, row, prepare=True).fetchone()
    stream.xadd(STREAM, {"id": row_id, "text": text}, maxlen=STREAM_MAXLEN, approximate=True)
    body = b'{"id": %d, "status": "published"}' % row_id
    start_response("201 Created", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
