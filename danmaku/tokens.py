"""Bearer tokens for apps."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from danmaku.models import ApiToken


def token_issue(*, username: str, label: str = "") -> tuple[ApiToken, str, bool]:
    """Return (token, raw value, whether the user was created)."""
    user, created = get_user_model().objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    token, raw = ApiToken.issue(user, label=label)
    return token, raw, created
