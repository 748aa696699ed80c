"""Celery broker transport options that fail fast. No Django import: the
settings module builds CELERY_BROKER_TRANSPORT_OPTIONS with it."""

from __future__ import annotations

REDIS_SCHEMES = ("redis://", "rediss://", "sentinel://", "redis+socket://")
AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")


def transport_options(
    url: str, *, timeout_s: float, visibility_timeout_s: int = 300, restore_interval_s: int = 10
) -> dict:
    """Options for ``url``'s transport: every connect and read bounded by
    ``timeout_s``, and no retries (kombu's ensure gives up at once)."""
    options: dict = {"max_retries": 0}
    if url.startswith(REDIS_SCHEMES):
        options |= {
            "socket_connect_timeout": timeout_s,
            "socket_timeout": timeout_s,
            "retry_on_timeout": False,
            "socket_keepalive": True,
            # A message taken by a worker that died unacknowledged is handed
            # out again this long after it was taken.
            "visibility_timeout": visibility_timeout_s,
            # Each worker looks for such messages this often (one ZRANGE).
            "unacked_restore_interval": restore_interval_s,
            "unacked_restore_throttle": 1,
        }
    elif url.startswith(AMQP_SCHEMES):
        options |= {
            "read_timeout": timeout_s,
            "write_timeout": timeout_s,
            # A publish returns once the broker holds the message.
            "confirm_publish": True,
        }
    return options
