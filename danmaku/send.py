"""Sending a danmaku: validate, limit, screen, store and publish one comment.

Moderation takes part through the hooks it installs at start
(``danmaku.hooks``): whether the sender is sanctioned, the inline filter,
and the full check started after the comment is stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import DatabaseError, IntegrityError, transaction

from danmaku import hooks, limits
from danmaku.errors import DB_DOWN_RETRY_MS, Forbidden, InvalidInput, NotFound, RateLimited, Unavailable
from danmaku.models import Danmaku, Room
from danmaku.publishing import publish_accepted
from danmaku.pull.wire import MODE_CODES
from danmaku.store import redis_store
from danmaku.textrules import length_problem
from infra import clock

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendOutcome:
    """``danmaku`` is None when the room cap discarded the comment."""

    danmaku: Danmaku | None

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
    moderation = hooks.moderation()
    room = Room.objects.filter(slug=room_slug).first()
    if room is None:
        raise NotFound("room not found")
    if client_id:
        previous = Danmaku.objects.filter(user=user, client_id=client_id).first()
        if previous is not None:
            return _replay(previous, room)
    if not room.is_open:
        raise Forbidden("room is closed")
    # Before the limits: a sanctioned user uses up no slot.
    blocked = moderation.sender_block_reason(user=user, room=room)
    if blocked:
        raise Forbidden(blocked)
    problem = length_problem(text, room.max_text_length)
    if problem:
        raise InvalidInput(f"text: {problem}", field="text")

    allowed = limits.take_send(
        room_id=room.id,
        user_id=user.id,
        interval_ms=room.user_send_interval_ms,
        cap_per_second=room.room_send_cap_per_second,
        now_ms=clock.now_ms(),
        # A copy of a send still on its way gets that send's allowance: it
        # then meets the first copy's row at the write and answers with it.
        client_id=client_id or "",
    )
    if allowed.retry_after_ms:
        raise RateLimited("slow mode: wait before sending again", retry_after_ms=allowed.retry_after_ms)
    if allowed.room_busy:
        return SendOutcome(danmaku=None)
    # After the slow-mode slot is taken, so probing the filter costs a slot.
    screened = moderation.screen(text=text, room_id=room.id)
    if screened.action == "block":
        raise InvalidInput("text: contains blocked words", field="text")
    status = _initial_status(room, screened.action)

    stream = redis_store()
    try:
        with transaction.atomic():
            danmaku = Danmaku.objects.create(
                room=room,
                user=user,
                text=screened.text,
                status=status,
                color=int(color[1:], 16),
                mode=MODE_CODES[mode],
                # Taken again right before the write so the row commits as
                # close as possible to its timestamp (see the seal lag).
                ts_ms=clock.now_ms(),
                client_id=client_id or "",
                # Without Redis the table is the store: the row is published.
                in_stream=stream is None,
            )
    except IntegrityError:
        # The same client_id raced in from another request: answer as it did.
        previous = Danmaku.objects.filter(user=user, client_id=client_id).first()
        if previous is None:
            raise
        return _replay(previous, room)
    if status == Danmaku.Status.HELD:
        return SendOutcome(danmaku=danmaku)
    if status == Danmaku.Status.PUBLISHED and stream is not None:
        publish_accepted(stream, danmaku, user)
    # The full rule set runs in a worker: it may retract a published comment,
    # and it gives a pre-moderated one its verdict.
    moderation.review(danmaku.id)
    return SendOutcome(danmaku=danmaku)


def _initial_status(room: Room, action: str) -> str:
    if action == "hold" or room.moderation_policy == Room.Policy.MANUAL:
        return Danmaku.Status.HELD
    if room.moderation_policy == Room.Policy.PRE:
        # The sender's client shows its own copy; nobody else sees it yet.
        return Danmaku.Status.SENDER_ONLY
    return Danmaku.Status.PUBLISHED


def _replay(previous: Danmaku, room: Room) -> SendOutcome:
    if previous.room_id != room.id:
        raise InvalidInput("client_id: already used for a comment in another room", field="client_id")
    return SendOutcome(danmaku=previous)
