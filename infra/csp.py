"""The Content-Security-Policy of the HTML pages (viewer page, console, login)."""

from __future__ import annotations

from functools import wraps

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
