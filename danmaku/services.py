"""Writes: sending a danmaku, issuing tokens, creating rooms."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import DatabaseError, IntegrityError, transaction

from danmaku import limits
from danmaku.errors import Forbidden, InvalidInput, NotFound, RateLimited, Unavailable
from danmaku.models import ApiToken, Danmaku, Room
from danmaku.republish import display_identity
from danmaku.store import StoreUnavailable, database_store, redis_store, room_row_from_model
from danmaku.textrules import length_problem
from danmaku.wire import MODE_CODES
from danmaku_site.metrics import FALLBACKS
from danmaku_site.ratelimitlog import RateLimitedLog
from danmaku_site.tasks import enqueue
from moderation.actions import audit_record, sender_block_reason
from moderation.services import filter_fast
from moderation.tasks import moderate_fallback, moderate_task

logger = logging.getLogger(__name__)
fallback_log = RateLimitedLog(logger, every_seconds=10)

# How long a client should wait before retrying when the database is down.
DB_DOWN_RETRY_MS = 2000
# Comments the pre-moderation deadline sweep looks at per run.
PRE_SWEEP_BATCH = 500


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
    # Before the limits: a sanctioned user uses up no slot.
    blocked = sender_block_reason(user=user, room=room)
    if blocked:
        raise Forbidden(blocked)
    problem = length_problem(text, room.max_text_length)
    if problem:
        raise InvalidInput(f"text: {problem}", field="text")

    now_ms = database_store().now_ms()
    verdict = limits.take_send(
        room_id=room.id,
        user_id=user.id,
        interval_ms=room.user_send_interval_ms,
        cap_per_second=room.room_send_cap_per_second,
        now_ms=now_ms,
    )
    if verdict.retry_after_ms:
        raise RateLimited("slow mode: wait before sending again", retry_after_ms=verdict.retry_after_ms)
    if verdict.room_busy:
        return SendOutcome(danmaku=None)
    # After the slow-mode slot is taken, so probing the filter costs a slot.
    screened = filter_fast(text=text, room_id=room.id)
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
                ts_ms=database_store().now_ms(),
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
        _publish(stream, danmaku, user)
    # The full rule set runs in a worker: it may retract a published comment,
    # and it gives a pre-moderated one its verdict. With the broker down the
    # fast path runs here instead (terms may have changed since the filter).
    enqueue(moderate_task, danmaku.id, fallback=lambda: moderate_fallback(danmaku.id))
    return SendOutcome(danmaku=danmaku)


def _initial_status(room: Room, action: str) -> str:
    if action == "hold" or room.moderation_policy == Room.Policy.MANUAL:
        return Danmaku.Status.HELD
    if room.moderation_policy == Room.Policy.PRE:
        # The sender's client shows its own copy; nobody else sees it yet.
        return Danmaku.Status.SENDER_ONLY
    return Danmaku.Status.PUBLISHED


def danmaku_release(*, danmaku_id: int, reason: str, actor=None) -> bool:
    """Publish a comment that was waiting (pre-moderation or held) now.

    It takes the current time as its timestamp, so viewers see it arrive now.
    False if it was not waiting (already published, hidden, or missing).
    """
    stream = redis_store()
    changed = Danmaku.objects.filter(
        pk=danmaku_id, status__in=(Danmaku.Status.SENDER_ONLY, Danmaku.Status.HELD)
    ).update(status=Danmaku.Status.PUBLISHED, ts_ms=database_store().now_ms(), in_stream=stream is None)
    if not changed:
        return False
    logger.info("danmaku %s released by %s: %s", danmaku_id, actor or "system", reason)
    if stream is not None:
        # After commit (at once outside a transaction): a caller that rolls
        # back, e.g. when its audit row fails, must not have published it.
        transaction.on_commit(lambda: _publish_stored(stream, danmaku_id))
    return True


def _publish_stored(stream, danmaku_id: int) -> None:
    danmaku = Danmaku.objects.select_related("user").get(pk=danmaku_id)
    _publish(stream, danmaku, danmaku.user)


def danmaku_deny(*, danmaku_id: int, reason: str, actor=None) -> bool:
    """Keep a waiting comment from ever being shown. False if it was not waiting."""
    changed = Danmaku.objects.filter(
        pk=danmaku_id, status__in=(Danmaku.Status.SENDER_ONLY, Danmaku.Status.HELD)
    ).update(status=Danmaku.Status.HIDDEN)
    if changed:
        logger.info("danmaku %s denied by %s: %s", danmaku_id, actor or "system", reason)
    return bool(changed)


def pre_deadline_sweep(*, now_ms: int | None = None) -> int:
    """Apply each pre-moderated room's fallback to comments whose verdict is late.

    Runs in every process's refresher (so it works with every Celery worker
    down); releasing and denying only act on comments still waiting, so two
    processes sweeping at once decide each comment once.
    """
    now_ms = database_store().now_ms() if now_ms is None else now_ms
    waiting = Danmaku.objects.filter(status=Danmaku.Status.SENDER_ONLY).values_list(
        "id", "ts_ms", "room__pre_deadline_ms", "room__pre_fallback"
    )[:PRE_SWEEP_BATCH]
    applied = 0
    for danmaku_id, ts_ms, deadline_ms, fallback in waiting:
        if ts_ms + deadline_ms > now_ms:
            continue
        reason = f"no moderation verdict within {deadline_ms} ms: fallback {fallback}"
        if fallback == Room.Fallback.ALLOW:
            done = danmaku_release(danmaku_id=danmaku_id, reason=reason)
        else:
            done = danmaku_deny(danmaku_id=danmaku_id, reason=reason)
        if done:
            applied += 1
            logger.warning("danmaku %s: %s", danmaku_id, reason)
            audit_record(
                actor=None,
                action=f"pre.fallback_{fallback}",
                target_type="danmaku",
                target_id=danmaku_id,
                reason=reason,
            )
    return applied


def _publish(stream, danmaku: Danmaku, user) -> None:
    """Put an accepted comment on its room's stream, or leave it for the sweep.

    The comment is already durable; if Redis cannot take it now it stays
    ``in_stream=False`` and the refresher's sweep publishes it (exactly once)
    when Redis is back. Meanwhile the refreshers read it from the database.
    """
    nick, avatar = display_identity(user)
    try:
        ts_ms = stream.publish(danmaku, nick=nick, avatar=avatar)
    except StoreUnavailable as exc:
        FALLBACKS.labels(dependency="redis", where="send").inc()
        fallback_log.warning("comment kept for republishing, store unavailable: %s", exc)
        return
    # Redis time decides the comment's slot; keep the record in step with it.
    Danmaku.objects.filter(pk=danmaku.pk).update(in_stream=True, ts_ms=ts_ms)
    danmaku.in_stream, danmaku.ts_ms = True, ts_ms


def danmaku_retract(*, danmaku_id: int, reason: str, actor=None) -> bool:
    """Withdraw a comment from every viewer's screen; False if it already was.

    The database records it first; the retraction reaches the stream now, or
    through the sweep once Redis is back. Either way the next pulls carry
    the id in ``deleted``.
    """
    now_ms = database_store().now_ms()
    changed = Danmaku.objects.filter(pk=danmaku_id, retracted_at_ms__isnull=True).update(
        status=Danmaku.Status.HIDDEN, retracted_at_ms=now_ms
    )
    if not changed:
        return False
    logger.info("danmaku %s retracted by %s: %s", danmaku_id, actor or "system", reason)
    stream = redis_store()
    if stream is None:
        return True
    room_id = Danmaku.objects.filter(pk=danmaku_id).values_list("room_id", flat=True).first()
    try:
        stream.publish_retraction(room_id=room_id, danmaku_id=danmaku_id)
    except StoreUnavailable as exc:
        FALLBACKS.labels(dependency="redis", where="retract").inc()
        fallback_log.warning("retraction kept for republishing, store unavailable: %s", exc)
        return True
    Danmaku.objects.filter(pk=danmaku_id).update(retraction_in_stream=True)
    return True


def room_settings_publish(*, room: Room) -> None:
    """Tell every process about a room's settings (Redis mode); the refresher's
    sweep repeats it, so a failure here only delays the change."""
    stream = redis_store()
    if stream is None:
        return
    try:
        stream.publish_room(room_row_from_model(room))
    except StoreUnavailable as exc:
        fallback_log.warning("room settings not published yet, store unavailable: %s", exc)


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
    room_settings_publish(room=room)
    return room, created


# The emergency preset: what a room switches to during a spike (slow mode,
# slower polling, a tighter screen, comments checked before anyone sees them).
EMERGENCY_FIELDS = ("user_send_interval_ms", "poll_interval_ms", "display_cap_per_second", "moderation_policy")


def _emergency_values(room: Room) -> dict:
    return {
        "user_send_interval_ms": max(room.user_send_interval_ms, 10_000),
        "poll_interval_ms": min(max(room.poll_interval_ms * 2, 6000), 60_000),
        "display_cap_per_second": min(room.display_cap_per_second, 10),
        "moderation_policy": Room.Policy.PRE,
    }


def room_emergency_apply(*, room: Room) -> bool:
    """Switch a room to the emergency preset, remembering what it replaced.
    False if the preset is already on."""
    if room.emergency_backup is not None:
        return False
    room.emergency_backup = {field: getattr(room, field) for field in EMERGENCY_FIELDS}
    for field, value in _emergency_values(room).items():
        setattr(room, field, value)
    room_save(room=room)
    return True


def room_emergency_undo(*, room: Room) -> bool:
    """Restore the settings the preset replaced. False if it is not on."""
    if room.emergency_backup is None:
        return False
    for field, value in room.emergency_backup.items():
        setattr(room, field, value)
    room.emergency_backup = None
    room_save(room=room)
    return True


def room_save(*, room: Room) -> Room:
    """Save a room edited by staff and spread its settings to every process."""
    room.full_clean()
    room.save()
    room_settings_publish(room=room)
    return room
