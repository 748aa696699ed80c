"""How a sender appears to viewers: nickname and avatar URL, decided once.

The nickname is the profile's, else the username; the avatar is the
profile's thumbnail, else the default avatar. The store (rows read from the
database), the publisher (entries written to Redis) and the profile pages
all ask here, so the fallback cannot differ between them.
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.storage import default_storage


def display_nick(nickname: str | None, username: str) -> str:
    return nickname or username


def avatar_url(thumb_name: str | None) -> str:
    """The URL of a thumbnail stored under ``thumb_name``, or the default avatar."""
    return default_storage.url(thumb_name) if thumb_name else settings.DANMAKU_DEFAULT_AVATAR_URL


def avatar_url_for(profile) -> str:
    """The URL a client shows for a ``ViewerProfile`` (or None): its thumbnail, or the default avatar."""
    thumb = profile.avatar_thumb if profile is not None else None
    return avatar_url(thumb.name if thumb else None)


def display_identity(user) -> tuple[str, str]:
    """(nickname, avatar URL) of ``user`` as viewers see them."""
    profile = getattr(user, "viewer_profile", None)
    return display_nick(profile.nickname if profile else "", user.username), avatar_url_for(profile)
