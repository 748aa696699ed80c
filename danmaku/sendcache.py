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


def _load_token_user(key_hash: str) -> int | None:
    # The sender comes in the same query: a new sender costs one read, not two.
    generation = feed.generation
    row = (
        ApiToken.objects.filter(key_hash=key_hash, revoked=False)
        .values_list("user_id", *(f"user__{name}" for name in SENDER_FIELDS))
        .first()
    )
    if row is None:
        return None
    senders.offer(row[0], _sender(*row), generation=generation)
    return row[0]


def _load_sender(user_id: int) -> Sender | None:
    row = get_user_model().objects.filter(pk=user_id).values_list(*SENDER_FIELDS).first()
    return None if row is None else _sender(user_id, *row)


rooms: LookupCache[str, Room | None] = LookupCache(feed, "room", _load_room)
token_users: LookupCache[str, int | None] = LookupCache(feed, "token", _load_token_user)
senders: LookupCache[int, Sender | None] = LookupCache(feed, "user", _load_sender)


def room_by_slug(slug: str) -> Room | None:
    return rooms.get(slug)


def sender_by_token(raw: str) -> Sender | None:
    """The active sender a bearer token belongs to, or None."""
    user_id = token_users.get(ApiToken.hash(raw))
    if user_id is None:
        return None
    sender = senders.get(user_id)
    return sender if sender is not None and sender.is_active else None


def sender_by_id(user_id: int) -> Sender | None:
    return senders.get(user_id)
