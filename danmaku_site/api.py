"""The one NinjaAPI: mounts the routers, maps every error to HTTP in one place."""

from __future__ import annotations

import logging
import math

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from danmaku.api import pull_router, router, send_router
from danmaku.broadcastapi import router as broadcasts_router
from danmaku.errors import DB_DOWN_RETRY_MS, DanmakuError, RateLimited, Unavailable
from infra.ratelimitlog import RateLimitedLog
from moderation.api import router as moderation_router
from moderation.pinapi import router as pins_router
from moderation.reportapi import moderator_router as reports_moderator_router
from moderation.reportapi import router as reports_router

logger = logging.getLogger(__name__)
database_log = RateLimitedLog(logger, every_seconds=10)


class DanmakuAPI(NinjaAPI):
    """NinjaAPI with its OpenAPI schema built once per process: building it
    walks every operation and its pydantic models (tens of milliseconds of
    CPU), which made /api/v1/openapi.json a cheap way to load a node. The
    routes are fixed once the URLconf is loaded, so the schema cannot change."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Path prefix -> schema: one key per mount point of this API.
        self._schemas: dict[str, dict] = {}

    def get_openapi_schema(self, *, path_prefix=None, path_params=None):
        if path_prefix is None:
            path_prefix = self.get_root_path(path_params or {})
        schema = self._schemas.get(path_prefix)
        if schema is None:
            schema = self._schemas[path_prefix] = super().get_openapi_schema(path_prefix=path_prefix)
        return schema


api = DanmakuAPI(
    title="Danmaku",
    version="1",
    urls_namespace="api-v1",
    description="Live bullet comments: short-poll pulls decided by the server, and sends.",
)
# Only the operations this process's role serves (DANMAKU_ROLE): on a pull
# node the POST answers 405, on a send node the GET does.
ROLE_ROUTERS = {"all": router, "pull": pull_router, "send": send_router}
api.add_router("/", ROLE_ROUTERS[settings.DANMAKU_ROLE])
# Moderators act where the admin lives: send and all nodes, never pull nodes.
if settings.DANMAKU_ROLE in ("send", "all"):
    api.add_router("/moderation/", moderation_router)
    api.add_router("/moderation/", pins_router)
    api.add_router("/moderation/", reports_moderator_router)
    api.add_router("/", reports_router)
    api.add_router("/", broadcasts_router)


def error_answer(exc: DanmakuError) -> tuple[int, dict, list[tuple[str, str]]]:
    """(status, body, extra headers) of a domain error: the one mapping, also
    used by the send fast path (danmaku_site.sendfastpath)."""
    body: dict = {"detail": exc.detail}
    if exc.field:
        body["errors"] = [{"field": exc.field, "reason": exc.detail.split(": ", 1)[-1]}]
    retry_after_ms = exc.retry_after_ms if isinstance(exc, (RateLimited, Unavailable)) else None
    headers = []
    if retry_after_ms is not None:
        body["retry_after_ms"] = retry_after_ms
        headers.append(("Retry-After", str(max(1, math.ceil(retry_after_ms / 1000)))))
    return exc.status, body, headers


@api.exception_handler(DanmakuError)
def domain_error(request: HttpRequest, exc: DanmakuError) -> HttpResponse:
    status, body, headers = error_answer(exc)
    response = api.create_response(request, body, status=status)
    for name, value in headers:
        response[name] = value
    return response


@api.exception_handler(DatabaseError)
def database_unavailable(request: HttpRequest, exc: DatabaseError) -> HttpResponse:
    # A query outside the services' own guard failed, e.g. the bearer token
    # or session lookup before a send: the database is down, not the client
    # wrong, so 503 with Retry-After rather than a 500 page.
    database_log.warning("answered 503, database unavailable: %s", exc)
    error = Unavailable("the comment store is unavailable; retry shortly", retry_after_ms=DB_DOWN_RETRY_MS)
    return domain_error(request, error)


@api.exception_handler(ValidationError)
def validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors = [_field_error(error) for error in exc.errors]
    detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors) or "invalid request"
    return api.create_response(request, {"detail": detail, "errors": errors}, status=400)


@api.exception_handler(AuthenticationError)
def unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return api.create_response(request, {"detail": "log in or send Authorization: Bearer <token>"}, status=401)


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if exc.status_code == 400 and "parse request body" in exc.message:
        reason = "must be a JSON object"
        body = {"detail": f"body: {reason}", "errors": [{"field": "body", "reason": reason}]}
        return api.create_response(request, body, status=400)
    return api.create_response(request, {"detail": exc.message}, status=exc.status_code)


def _field_error(error: dict) -> dict:
    # Ninja reports locations like ("body", "payload", "text"); clients want "text".
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "payload", "query", "path")]
    field = ".".join(loc) or "body"
    reason = str(error.get("msg", "is invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if reason.startswith(prefix):
            reason = reason[len(prefix) :]
    if error.get("type") == "extra_forbidden":
        reason = "is not a known field"
    elif error.get("type") == "missing":
        reason = "is required"
    return {"field": field, "reason": reason}
