"""Bearer tokens for apps, and player tokens for third parties' pages."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.utils import timezone

from danmaku.errors import InvalidInput
from danmaku.models import ApiToken, Broadcast, Room

# A player token lives at most this long unless told otherwise: it is
# visible to everyone who opens the page it sits in.
PLAYER_DEFAULT_LIFETIME_S = 30 * 86_400


def token_issue(
    *,
    username: str,
    label: str = "",
    scope: str = ApiToken.Scope.FULL,
    room_slug: str | None = None,
    broadcast_id: int | None = None,
    expires_in_s: int | None = None,
) -> tuple[ApiToken, str, bool]:
    """Return (token, raw value, whether the user was created)."""
    if scope not in ApiToken.Scope.values:
        raise InvalidInput(f"scope: must be one of {', '.join(ApiToken.Scope.values)}", field="scope")
    room = broadcast = None
    if room_slug is not None:
        room = Room.objects.filter(slug=room_slug).first()
        if room is None:
            raise InvalidInput(f"room: no room {room_slug}", field="room")
    if broadcast_id is not None:
        broadcast = Broadcast.objects.filter(pk=broadcast_id).first()
        if broadcast is None:
            raise InvalidInput(f"broadcast: no broadcast {broadcast_id}", field="broadcast")
    if expires_in_s is None and scope == ApiToken.Scope.PLAYER:
        expires_in_s = PLAYER_DEFAULT_LIFETIME_S
    if expires_in_s is not None and expires_in_s <= 0:
        raise InvalidInput("expires_in: must be a positive number of seconds", field="expires_in")
    user, created = get_user_model().objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    token = ApiToken(
        user=user,
        label=label,
        scope=scope,
        room=room,
        broadcast=broadcast,
        expires_at=None if expires_in_s is None else timezone.now() + timedelta(seconds=expires_in_s),
    )
    try:
        token.clean()
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise InvalidInput(f"{field}: {messages[0]}", field=field) from None
    raw = ApiToken.new_raw()
    token.key_hash = ApiToken.hash(raw)
    token.save()
    return token, raw, created
