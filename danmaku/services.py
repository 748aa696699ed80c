"""Writes: sending a danmaku, issuing tokens, creating rooms."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import DatabaseError, IntegrityError, transaction

from danmaku import limits
from danmaku.errors import Forbidden, InvalidInput, NotFound, RateLimited, Unavailable
from danmaku.models import ApiToken, Danmaku, Room
from danmaku.store import get_store
from danmaku.textrules import length_problem
from danmaku.wire import MODE_CODES

logger = logging.getLogger(__name__)

# How long a client should wait before retrying when the database is down.
DB_DOWN_RETRY_MS = 2000


@dataclass(frozen=True)
class SendOutcome:
    """``danmaku`` is None when the room cap discarded the comment."""

    danmaku: Danmaku | None
    replayed: bool = False

    @property
    def broadcast(self) -> bool:
        return self.danmaku is not None


def danmaku_send(
    *,
    room_slug: str,
    user,
    text: str,
    color: str = "#ffffff",
    mode: str = "scroll",
    client_id: str | None = None,
) -> SendOutcome:
    """Validate, limit, store and publish one comment.

    Order matters: a retry with a known ``client_id`` gets its first answer
    before any limit is charged, and the room cap discards the excess before
    anything is written.
    """
    try:
        return _send(room_slug=room_slug, user=user, text=text, color=color, mode=mode, client_id=client_id)
    except DatabaseError as exc:
        logger.warning("send refused, database unavailable: %s", exc)
        raise Unavailable("the comment store is unavailable; retry shortly", retry_after_ms=DB_DOWN_RETRY_MS) from exc


def _send(*, room_slug, user, text, color, mode, client_id) -> SendOutcome:
    room = Room.objects.filter(slug=room_slug).first()
    if room is None:
        raise NotFound("room not found")
    if client_id:
        previous = Danmaku.objects.filter(user=user, client_id=client_id).first()
        if previous is not None:
            return _replay(previous, room)
    if not room.is_open:
        raise Forbidden("room is closed")
    problem = length_problem(text, room.max_text_length)
    if problem:
        raise InvalidInput(f"text: {problem}", field="text")

    store = get_store()
    now_ms = store.now_ms()
    wait_ms = limits.take_user_slot(
        room_id=room.id, user_id=user.id, interval_ms=room.user_send_interval_ms, now_ms=now_ms
    )
    if wait_ms:
        raise RateLimited("slow mode: wait before sending again", retry_after_ms=wait_ms)
    if not limits.take_room_slot(room_id=room.id, cap_per_second=room.room_send_cap_per_second, now_ms=now_ms):
        return SendOutcome(danmaku=None)

    try:
        with transaction.atomic():
            danmaku = Danmaku.objects.create(
                room=room,
                user=user,
                text=text,
                color=int(color[1:], 16),
                mode=MODE_CODES[mode],
                # Taken again right before the write so the row commits as
                # close as possible to its timestamp (see the seal lag).
                ts_ms=store.now_ms(),
                client_id=client_id or "",
            )
    except IntegrityError:
        # The same client_id raced in from another request: answer as it did.
        previous = Danmaku.objects.filter(user=user, client_id=client_id).first()
        if previous is None:
            raise
        return _replay(previous, room)
    store.publish(danmaku)
    return SendOutcome(danmaku=danmaku)


def _replay(previous: Danmaku, room: Room) -> SendOutcome:
    if previous.room_id != room.id:
        raise InvalidInput("client_id: already used for a comment in another room", field="client_id")
    return SendOutcome(danmaku=previous, replayed=True)


def token_issue(*, username: str, label: str = "") -> tuple[ApiToken, str, bool]:
    """Return (token, raw value, whether the user was created)."""
    user, created = get_user_model().objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    token, raw = ApiToken.issue(user, label=label)
    return token, raw, created


def room_create(*, slug: str, title: str = "") -> tuple[Room, bool]:
    room, created = Room.objects.get_or_create(slug=slug, defaults={"title": title or slug})
    if not created and title and room.title != title:
        room.title = title
        room.save(update_fields=["title", "updated_at"])
    return room, created
