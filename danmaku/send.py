"""Sending a danmaku: validate, limit, screen, store and publish one comment.

Moderation takes part through the hooks it installs at start
(``danmaku.hooks``): whether the sender is sanctioned, the inline filter,
and the full check started after the comment is stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import DatabaseError, transaction

from danmaku import hooks, limits, rows, segments, sendcache
from danmaku.errors import DB_DOWN_RETRY_MS, Conflict, Forbidden, InvalidInput, NotFound, RateLimited, Unavailable
from danmaku.identity import display_identity
from danmaku.models import Broadcast, Danmaku, Room
from danmaku.publishing import publish_sent
from danmaku.pull.wire import MODE_CODES
from danmaku.sendcache import TokenGrant
from danmaku.store import redis_store
from danmaku.textrules import length_problem
from infra import clock

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OnRecording:
    """Where a comment sent on a recording plays: the broadcast, the playback time."""

    broadcast_id: int
    progress_ms: int


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
    grant: TokenGrant | None = None,
    text: str,
    color: str = "#ffffff",
    mode: str = "scroll",
    client_id: str | None = None,
) -> SendOutcome:
    """Validate, limit, store and publish one comment.

    ``user``: a user, or anything with its ``id`` and ``pk`` (the send fast
    path passes the cached ``sendcache.Sender``).

    Order matters: a retry with a known ``client_id`` gets its first answer
    before any limit is charged, and the room cap discards the excess before
    anything is written.
    """
    try:
        return _send(
            room_slug=room_slug, user=user, grant=grant, text=text, color=color, mode=mode, client_id=client_id
        )
    except DatabaseError as exc:
        raise _store_down(exc) from exc


def _store_down(exc: DatabaseError) -> Unavailable:
    logger.warning("send refused, database unavailable: %s", exc)
    return Unavailable("the comment store is unavailable; retry shortly", retry_after_ms=DB_DOWN_RETRY_MS)


def danmaku_send_on_recording(
    *,
    broadcast_id: int,
    progress_ms: int,
    user,
    grant: TokenGrant | None = None,
    text: str,
    color: str = "#ffffff",
    mode: str = "scroll",
    client_id: str | None = None,
) -> SendOutcome:
    """Send a comment on an ended broadcast's recording, at ``progress_ms``
    of its playback: the live send's validation, limits and moderation; it
    joins the broadcast's replay and never the room's live stream."""
    try:
        broadcast = Broadcast.objects.select_related("room").filter(pk=broadcast_id).first()
        if broadcast is None:
            raise NotFound("no such broadcast", field="broadcast_id")
        if broadcast.live:
            raise Conflict("the broadcast is live: send to its room", field="broadcast_id")
        # A recording may run past the chat's end: any time within a day.
        if not 0 <= progress_ms <= segments.MAX_PROGRESS_MS:
            raise InvalidInput(f"progress_ms: must be between 0 and {segments.MAX_PROGRESS_MS}", field="progress_ms")
        on = OnRecording(broadcast_id=broadcast.pk, progress_ms=progress_ms)
        return _send(
            room_slug=broadcast.room.slug,
            user=user,
            grant=grant,
            text=text,
            color=color,
            mode=mode,
            client_id=client_id,
            on=on,
        )
    except DatabaseError as exc:
        raise _store_down(exc) from exc


def _send(*, room_slug, user, grant, text, color, mode, client_id, on: OnRecording | None = None) -> SendOutcome:
    moderation = hooks.moderation()
    room = sendcache.room_by_slug(room_slug)
    if room is None:
        raise NotFound("room not found")
    if grant is not None and not grant.allows(room_id=room.id, broadcast_id=None if on is None else on.broadcast_id):
        raise Forbidden("this token may not send here")
    # Without Redis the database keeps the answers: look before any limit.
    if client_id and not limits.remembers_answers():
        previous = _previous(user.id, client_id)
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
    if allowed.answer is not None:
        replayed = _replay_answer(allowed.answer, room, user, client_id)
        if replayed is not None:
            return replayed
    elif allowed.retry_after_ms:
        raise RateLimited("slow mode: wait before sending again", retry_after_ms=allowed.retry_after_ms)
    elif allowed.room_busy:
        return SendOutcome(danmaku=None)
    # After the slow-mode slot is taken, so probing the filter costs a slot.
    screened = moderation.screen(text=text, room_id=room.id)
    if screened.action == "block":
        raise InvalidInput("text: contains blocked words", field="text")
    status = _initial_status(room, screened.action)

    stream = redis_store()
    danmaku = Danmaku(
        room_id=room.id,
        user_id=user.id,
        text=screened.text,
        status=status,
        color=int(color[1:], 16),
        mode=MODE_CODES[mode],
        # Redis time when the limits came from Redis: every node agrees on
        # it, and it is the second the room's cap counted the comment in.
        ts_ms=allowed.now_ms or clock.now_ms(),
        client_id=client_id or "",
        # Without Redis the table is the store: the row is published. A
        # comment on a recording owes the stream nothing.
        in_stream=stream is None or on is not None,
        broadcast_id=None if on is None else on.broadcast_id,
        progress_ms=None if on is None else on.progress_ms,
    )
    inserted = _insert_on_recording(danmaku) if on is not None else rows.insert_once(danmaku)
    if not inserted:
        # The same client_id came first from another request: answer as it did.
        previous = _previous(user.id, client_id)
        if previous is None:
            raise Unavailable("the comment store is unavailable; retry shortly", retry_after_ms=DB_DOWN_RETRY_MS)
        _remember(stream, previous)
        return _replay(previous, room)
    if status == Danmaku.Status.PUBLISHED and stream is not None and on is None:
        # The fast path's sender carries its face; a session's user is looked up.
        sender = user if isinstance(user, sendcache.Sender) else sendcache.sender_by_id(user.id)
        nick, avatar = (sender.nick, sender.avatar) if sender is not None else display_identity(user)
        publish_sent(stream, danmaku, nick=nick, avatar=avatar, answer=_answer(danmaku))
    else:
        _remember(stream, danmaku)
    if status == Danmaku.Status.HELD:
        return SendOutcome(danmaku=danmaku)
    # The full rule set runs in a worker: it may retract a published comment,
    # and it gives a pre-moderated one its verdict.
    moderation.review(danmaku.id, awaiting_verdict=status == Danmaku.Status.SENDER_ONLY)
    return SendOutcome(danmaku=danmaku)


def _insert_on_recording(danmaku: Danmaku) -> bool:
    """The row and its segment's new version commit together: a reader
    never finds the comment missing under the version that names it."""
    with transaction.atomic():
        if not rows.insert_once(danmaku):
            return False
        if danmaku.status == Danmaku.Status.PUBLISHED:
            segments.touch(danmaku.broadcast_id, [danmaku.progress_ms // segments.SEGMENT_MS])
    return True


def _previous(user_id: int, client_id: str) -> Danmaku | None:
    return Danmaku.objects.filter(user_id=user_id, client_id=client_id).first()


def _replay_answer(answer: str, room: Room, user, client_id: str) -> SendOutcome | None:
    """A copy of a send answered from what Redis kept; None: go on to the
    write (the first copy is on its way, or died before writing)."""
    if answer == "b":
        return SendOutcome(danmaku=None)
    if answer.startswith("d:"):
        _, danmaku_id, status = answer.split(":", 2)
        return SendOutcome(danmaku=Danmaku(pk=int(danmaku_id), room_id=room.id, user_id=user.id, status=status))
    return None


def _answer(danmaku: Danmaku) -> tuple[str, str] | None:
    if not danmaku.client_id:
        return None
    key = limits.answer_key(room_id=danmaku.room_id, user_id=danmaku.user_id, client_id=danmaku.client_id)
    return key, limits.answer_value(danmaku_id=danmaku.id, status=danmaku.status)


def _remember(stream, danmaku: Danmaku) -> None:
    answer = _answer(danmaku)
    if stream is not None and answer is not None:
        limits.remember_answer(*answer)


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
