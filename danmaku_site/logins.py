"""Login throttling per account, by django-axes (see settings: AXES_*).

Behind nginx every login comes from nginx's address, so the app counts
failures per account; per-address limits are nginx's (deploy/nginx.conf).
Both the site's login page and the admin's go through ``authenticate()``
with the request, which is what axes watches. Bearer tokens are issued by a
management command, not over HTTP, and are too long to guess.
"""

from __future__ import annotations

from axes.backends import AxesBackend
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from infra.csp import PAGE_CSP


class LoginThrottleBackend(AxesBackend):
    """axes' backend, except that an ``authenticate()`` without a request
    (the test client's ``login()``, a shell) is not an HTTP login: it is
    neither counted nor refused, where axes would raise."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def lockout_response(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """What a locked-out account's login gets: 429, how long, and no form."""
    seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    response = render(
        request,
        "registration/locked_out.html",
        {"minutes": max(1, round(seconds / 60)), "failure_limit": settings.AXES_FAILURE_LIMIT},
        status=429,
    )
    # An upper bound: the lock ends this long after the last counted failure.
    response["Retry-After"] = str(seconds)
    response["Content-Security-Policy"] = PAGE_CSP
    return response
