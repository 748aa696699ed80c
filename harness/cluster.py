"""Two gunicorn nodes in production mode sharing one PostgreSQL and one Redis.

What a deployment of several nodes looks like, on one machine: each node
has its own var dir (its own workers' share directory), both use a fresh
database on the shared PostgreSQL and the shared Redis under a prefix of
their own (removed at exit), so runs never see each other's keys.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from harness import local
from harness.services import SHARED_REDIS_URL, postgres_database

# Production mode: a fixed secret key (DEBUG is off unless asked for).
SECRET_KEY = "cluster-only-secret-key-" + "x" * 40
# Keys a run leaves in Redis are removed in batches of this many, at most
# this many batches (a run writes a few dozen keys).
FORGET_BATCH = 1000
FORGET_BATCHES = 100


@dataclass
class Cluster:
    nodes: list[local.LocalServer]
    redis_url: str
    prefix: str
    database_url: str

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=2)


@contextlib.contextmanager
def two_nodes(
    *,
    room: str,
    var_dir: Path,
    room_fields: dict[str, int] | None = None,
    workers: int | None = None,
    extra_env: dict[str, str] | None = None,
    redis_url: str = SHARED_REDIS_URL,
) -> Iterator[Cluster]:
    """Nodes a and b (``workers`` each; None: as shipped) until the block exits."""
    prefix = f"cluster-{uuid.uuid4().hex[:12]}"
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(postgres_database())
        stack.callback(_forget_keys, redis_url, prefix)
        services = {
            "DJANGO_SECRET_KEY": SECRET_KEY,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "DANMAKU_REDIS_PREFIX": prefix,
            **(extra_env or {}),
        }
        nodes = []
        for name in ("a", "b"):
            (var_dir / name).mkdir(parents=True, exist_ok=True)
            server = local.gunicorn(
                room=room, workers=workers, var_dir=var_dir / name, room_fields=room_fields, extra_env=services
            )
            nodes.append(stack.enter_context(server))
        yield Cluster(nodes=nodes, redis_url=redis_url, prefix=prefix, database_url=database_url)


def _forget_keys(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        for _ in range(FORGET_BATCHES):
            keys = list(client.scan_iter(match=f"{prefix}:*", count=FORGET_BATCH))[:FORGET_BATCH]
            if not keys:
                break
            client.delete(*keys)
    finally:
        client.close()
