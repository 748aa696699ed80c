"""Small response middleware."""

from __future__ import annotations

import os
import socket

from django.conf import settings


def served_by(get_response):
    """Tag API answers with host:pid when DANMAKU_SERVED_BY_HEADER is on.

    Lets a test or an operator see which worker answered; off by default
    because it tells the world about the deployment.
    """
    if not settings.DANMAKU_SERVED_BY_HEADER:
        return get_response
    # Read per process: gunicorn forks workers after this module is imported.

    def middleware(request):
        response = get_response(request)
        if request.path.startswith("/api/"):
            response["X-Served-By"] = f"{socket.gethostname()}:{os.getpid()}"
        return response

    return middleware
