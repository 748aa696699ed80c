"""Who is sending: a bearer token (apps) or the Django session (web page)."""

from __future__ import annotations

from django.conf import settings
from ninja.security import HttpBearer, SessionAuth

from danmaku.models import ApiToken


class BearerTokenAuth(HttpBearer):
    def authenticate(self, request, token: str):
        if not token.startswith(ApiToken.PREFIX) or len(token) > 200:
            return None
        found = (
            ApiToken.objects.select_related("user")
            .filter(key_hash=ApiToken.hash(token), revoked=False, user__is_active=True)
            .first()
        )
        if found is None:
            return None
        request.user = found.user
        return found.user


class BrowserSessionAuth(SessionAuth):
    """The session cookie, with Django's CSRF check.

    A request with no session cookie is simply not authenticated (401); only
    a request that rides on a session has its CSRF token checked (403).
    """

    def _get_key(self, request):
        if settings.SESSION_COOKIE_NAME not in request.COOKIES:
            return None
        return super()._get_key(request)

    def authenticate(self, request, key):
        if key is None:
            return None
        return super().authenticate(request, key)


send_auth = [BearerTokenAuth(), BrowserSessionAuth(csrf=True)]
