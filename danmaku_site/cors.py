"""CORS for sends from other sites' players (DANMAKU_CORS_ORIGINS).

Public reads need none of this: their shared answers carry
``Access-Control-Allow-Origin: *`` themselves (danmaku.pull.response), the
same bytes for every origin. A send is another matter: its JSON body makes
the browser ask first (a preflight), and only the listed origins are told
yes. Never with credentials: a third party's page sends with a player
token, not a visitor's session.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers

# The sends a player page may make: DPlayer's, ours live and on a recording.
SEND_PATHS = re.compile(r"/api/(?:dplayer/v3/|v1/rooms/[^/]+/danmaku|v1/broadcasts/[0-9]+/danmaku)")
PREFLIGHT_MAX_AGE_S = 600


def cors_sends(get_response):
    def middleware(request: HttpRequest) -> HttpResponse:
        origin = request.headers.get("Origin")
        if origin is None or request.method not in ("OPTIONS", "POST") or not SEND_PATHS.fullmatch(request.path_info):
            return get_response(request)
        allowed = origin in settings.DANMAKU_CORS_ORIGINS
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            if not allowed:
                return HttpResponse(status=403)
            response = HttpResponse(status=204)
            response["Access-Control-Allow-Methods"] = "POST"
            response["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_S)
        else:
            response = get_response(request)
        if allowed:
            response["Access-Control-Allow-Origin"] = origin
            patch_vary_headers(response, ("Origin",))
        return response

    return middleware
