"""Who is sending: a bearer token (apps) or the Django session (web page)."""

from __future__ import annotations

from django.conf import settings
from ninja.security import HttpBearer, SessionAuth

from danmaku.models import ApiToken
from danmaku.sendcache import sender_by_token


class BearerTokenAuth(HttpBearer):
    """The token's user, read from the database with every field (moderators' API)."""

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


class SenderTokenAuth(BearerTokenAuth):
    """The send path's: from this process's caches (``danmaku.sendcache``), no
    database read when warm. The user carries what sending needs (id,
    username, active); a revoked token or a deactivated user stops working
    within the caches' lease, at once in the process that changed it."""

    def authenticate(self, request, token: str):
        if not token.startswith(ApiToken.PREFIX) or len(token) > 200:
            return None
        sender = sender_by_token(token)
        if sender is None:
            return None
        request.user = user = sender.as_user()
        return user


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


send_auth = [SenderTokenAuth(), BrowserSessionAuth(csrf=True)]
# Everything else a token may call (the moderation API) needs the whole user.
user_auth = [BearerTokenAuth(), BrowserSessionAuth(csrf=True)]
