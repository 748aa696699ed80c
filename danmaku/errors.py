"""Domain errors. ``danmaku_site.api`` maps them to HTTP in one place."""

from __future__ import annotations

# How long a client should wait before retrying when the database is down.
DB_DOWN_RETRY_MS = 2000


class DanmakuError(Exception):
    status = 400

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class InvalidInput(DanmakuError):
    status = 400


class NotFound(DanmakuError):
    status = 404


class Conflict(DanmakuError):
    """The target is not in a state the request applies to."""

    status = 409


class Forbidden(DanmakuError):
    status = 403


class RateLimited(DanmakuError):
    status = 429

    def __init__(self, detail: str, *, retry_after_ms: int) -> None:
        super().__init__(detail)
        self.retry_after_ms = retry_after_ms


class Unavailable(DanmakuError):
    status = 503

    def __init__(self, detail: str, *, retry_after_ms: int = DB_DOWN_RETRY_MS) -> None:
        super().__init__(detail)
        self.retry_after_ms = retry_after_ms
