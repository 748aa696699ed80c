"""X-Served-By: which process answered, for tests and operators.

``served_by`` is the middleware (listed in MIDDLEWARE as ``MIDDLEWARE``);
``header()`` is the same header for answers built outside Django (the pull
fast path), so both carry it exactly when the middleware would add it.
"""

from __future__ import annotations

import os
import socket

from django.conf import settings

# Its dotted path, as MIDDLEWARE lists it.
MIDDLEWARE = f"{__name__}.served_by"
NAME = "X-Served-By"


def header() -> tuple[str, str]:
    """The header for this process: host:pid (read per call; gunicorn forks
    workers after this module is imported)."""
    return NAME, f"{socket.gethostname()}:{os.getpid()}"


def enabled() -> bool:
    """Whether API answers carry the header: DANMAKU_SERVED_BY_HEADER is on
    and the middleware is installed."""
    return bool(settings.DANMAKU_SERVED_BY_HEADER) and MIDDLEWARE in settings.MIDDLEWARE


def served_by(get_response):
    """Tag API answers with host:pid when DANMAKU_SERVED_BY_HEADER is on.

    Lets a test or an operator see which worker answered; off by default
    because it tells the world about the deployment.
    """
    if not settings.DANMAKU_SERVED_BY_HEADER:
        return get_response

    def middleware(request):
        response = get_response(request)
        if request.path.startswith("/api/"):
            name, value = header()
            response[name] = value
        return response

    return middleware
