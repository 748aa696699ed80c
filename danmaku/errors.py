"""Domain errors. ``danmaku_site.api`` maps them to HTTP in one place."""

from __future__ import annotations


class DanmakuError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class InvalidInput(DanmakuError):
    status = 400
    code = "invalid"


class NotFound(DanmakuError):
    status = 404
    code = "not_found"


class Forbidden(DanmakuError):
    status = 403
    code = "forbidden"


class RateLimited(DanmakuError):
    status = 429
    code = "rate_limited"

    def __init__(self, detail: str, *, retry_after_ms: int) -> None:
        super().__init__(detail)
        self.retry_after_ms = retry_after_ms


class Unavailable(DanmakuError):
    status = 503
    code = "unavailable"

    def __init__(self, detail: str, *, retry_after_ms: int = 2000) -> None:
        super().__init__(detail)
        self.retry_after_ms = retry_after_ms
