"""What the send path looks up on every send, cached in the process.

Rooms by slug, bearer tokens to their user, and senders (active, name,
nickname, avatar): a few database reads per send before, none with warm
caches now. Kept honest by ``danmaku.changes``: a change reaches every
process within ``infra.changefeed.LEASE_SECONDS``, and at once the one that
made it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model

from danmaku.changes import feed
from danmaku.identity import avatar_url, display_nick
from danmaku.models import ApiToken, Room
from infra import clock
from infra.changefeed import LookupCache


@dataclass(frozen=True, slots=True)
class Sender:
    id: int
    username: str
    is_active: bool
    # As viewers see them (danmaku.identity).
    nick: str
    avatar: str

    @property
    def pk(self) -> int:
        return self.id

    def as_user(self):
        """A user instance for this request (its own: requests never share one)."""
        user = get_user_model()(pk=self.id, username=self.username, is_active=self.is_active)
        user._state.adding = False
        user._state.db = "default"
        return user


def _load_room(slug: str) -> Room | None:
    # Shared by every request of the process: read it, never change it.
    return Room.objects.filter(slug=slug).first()


SENDER_FIELDS = ("username", "is_active", "viewer_profile__nickname", "viewer_profile__avatar_thumb")


def _sender(user_id: int, username: str, is_active: bool, nickname: str | None, thumb: str | None) -> Sender:
    return Sender(user_id, username, is_active, display_nick(nickname, username), avatar_url(thumb or None))


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What a bearer token lets its user do (``ApiToken.scope``)."""

    user_id: int
    full: bool
    room_id: int | None = None
    broadcast_id: int | None = None
    # None: never expires.
    expires_at_ms: int | None = None

    def allows(self, *, room_id: int, broadcast_id: int | None) -> bool:
        """Whether it may send in this room, live (``broadcast_id`` None) or on that broadcast's recording."""
        if self.full:
            return True
        if self.broadcast_id is not None and broadcast_id != self.broadcast_id:
            return False
        return self.room_id is None or room_id == self.room_id


GRANT_FIELDS = ("scope", "room_id", "broadcast_id", "expires_at")


def _load_token_user(key_hash: str) -> TokenGrant | None:
    # The sender comes in the same query: a new sender costs one read, not two.
    generation = feed.generation
    row = (
        ApiToken.objects.filter(key_hash=key_hash, revoked=False)
        .values_list("user_id", *GRANT_FIELDS, *(f"user__{name}" for name in SENDER_FIELDS))
        .first()
    )
    if row is None:
        return None
    user_id, scope, room_id, broadcast_id, expires_at = row[:5]
    senders.offer(user_id, _sender(user_id, *row[5:]), generation=generation)
    return TokenGrant(
        user_id=user_id,
        full=scope == ApiToken.Scope.FULL,
        room_id=room_id,
        broadcast_id=broadcast_id,
        expires_at_ms=None if expires_at is None else int(expires_at.timestamp() * 1000),
    )


def _load_sender(user_id: int) -> Sender | None:
    row = get_user_model().objects.filter(pk=user_id).values_list(*SENDER_FIELDS).first()
    return None if row is None else _sender(user_id, *row)


rooms: LookupCache[str, Room | None] = LookupCache(feed, "room", _load_room)
token_users: LookupCache[str, TokenGrant | None] = LookupCache(feed, "token", _load_token_user)
senders: LookupCache[int, Sender | None] = LookupCache(feed, "user", _load_sender)


def room_by_slug(slug: str) -> Room | None:
    return rooms.get(slug)


def sender_by_token(raw: str) -> tuple[Sender, TokenGrant] | tuple[None, None]:
    """The active sender a bearer token belongs to and what it may do; (None, None) for none or expired."""
    grant = token_users.get(ApiToken.hash(raw))
    if grant is None or (grant.expires_at_ms is not None and clock.now_ms() >= grant.expires_at_ms):
        return None, None
    sender = senders.get(grant.user_id)
    return (sender, grant) if sender is not None and sender.is_active else (None, None)


def sender_by_id(user_id: int) -> Sender | None:
    return senders.get(user_id)
