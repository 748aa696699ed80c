"""Small response middleware."""

from __future__ import annotations

import os
import socket
from functools import wraps

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


# The HTML pages run only scripts served from our own origin: an injected
# <script> or on* attribute does nothing even if escaping ever failed. Inline
# styles stay allowed (the templates carry small <style> blocks). The admin
# is left alone: it relies on inline scripts.
PAGE_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        # Room stream URLs may live on another host.
        "media-src 'self' https:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ]
)


def content_security_policy(view):
    """Decorate a page view so its answers carry PAGE_CSP."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        response.setdefault("Content-Security-Policy", PAGE_CSP)
        return response

    return wrapped
