"""Who is sending: a bearer token (apps) or the Django session (web page)."""

from __future__ import annotations

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


# Session auth checks CSRF, as a browser form post would be checked.
send_auth = [BearerTokenAuth(), SessionAuth(csrf=True)]
