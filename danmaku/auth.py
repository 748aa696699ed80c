"""Who is sending: a bearer token (apps) or the Django session (web page)."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from ninja.security import HttpBearer, SessionAuth

from danmaku.models import ApiToken
from danmaku.sendcache import sender_by_token


class BearerTokenAuth(HttpBearer):
    """A bearer token's user.

    ``cached`` (the send path): from this process's caches
    (``danmaku.sendcache``), no database read when warm; the user carries
    what sending needs (id, username, active), and a revoked token or a
    deactivated user stops working within the caches' lease, at once in the
    process that changed it. Otherwise (the moderators' API) the user is
    read from the database with every field. One class either way: the
    OpenAPI schema names its security scheme after it.
    """

    def __init__(self, *, cached: bool = False) -> None:
        super().__init__()
        self.cached = cached

    def authenticate(self, request, token: str):
        if not token.startswith(ApiToken.PREFIX) or len(token) > 200:
            return None
        if self.cached:
            sender, grant = sender_by_token(token)
            user = sender.as_user() if sender is not None else None
            if user is not None:
                # The send checks where the token may send (danmaku.send).
                user.token_grant = grant
        else:
            # The rest of the API is for full tokens only: a player token
            # sits in a third party's page, seen by every visitor.
            found = (
                ApiToken.objects.select_related("user")
                .filter(key_hash=ApiToken.hash(token), revoked=False, user__is_active=True, scope=ApiToken.Scope.FULL)
                .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
                .first()
            )
            user = found.user if found is not None else None
        if user is not None:
            request.user = user
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


send_auth = [BearerTokenAuth(cached=True), BrowserSessionAuth(csrf=True)]
# Everything else a token may call (the moderation API) needs the whole user.
user_auth = [BearerTokenAuth(), BrowserSessionAuth(csrf=True)]
