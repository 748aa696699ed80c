"""Pinned notices: one line a moderator fixes above a room's stream for a while.

- ``pin_comment``: a published live comment of the room, with its sender's
  display nick.
- ``pin_notice``: a text the moderator writes. It passes the checks any
  comment passes: the text rules and the room's length bound
  (``danmaku.textrules``), then the full term set (exact, wildcard and
  regex terms of the room and global ones) and the link check. A comment
  gets the regex and link checks after it is shown and is retracted if they
  object; a pin stays up for up to two hours with no later check, so it
  gets all of them before it is shown. "block" or "hold" refuses it (400,
  with the reason; no moderator reviews a held notice, the writer rewords
  it), "mask" pins the masked text. Its nick is "": viewers' pages label
  it as a notice themselves.
- ``pin_current``: the room's live pin, or None.
- ``unpin``: take it down before it expires.

One pin per room: pinning replaces the current one, and its audit row says
what it replaced. Hiding the pinned comment unpins it
(``danmaku.rooms.room_pin_clear_for``, called by the retraction). The pin
lives in the Room row (``pinned_*``), saved with ``updated_at`` so that
every process's refresher picks it up with the room's settings
(``room_settings_publish`` in Redis mode, the changed ``updated_at`` in the
embedded store); pulls then carry it with no query. The expiry is server
time in ms (``infra.clock``), the clock the pulls compare it with.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from danmaku.errors import InvalidInput, NotFound
from danmaku.identity import display_nick
from danmaku.models import Danmaku, Room
from danmaku.pull.cache import Pin
from danmaku.rooms import PINNED_FIELDS, room_settings_publish
from danmaku.textrules import length_problem, text_problem
from infra import clock
from moderation import services
from moderation.actions import Conflict
from moderation.audit import audit_record
from moderation.matcher import mask, most_severe
from moderation.services import ALLOW, DEFAULT_LINK_ACTION, find_links

# The range, 1 min to 2 h: a shorter pin is gone before a viewer
# polling every few seconds (slower in a quiet or busy room) has read it; a
# longer one outlives the moment it was about and should be pinned again.
PIN_MIN_SECONDS = 60
PIN_MAX_SECONDS = 2 * 60 * 60


def as_detail(pin: Pin) -> dict:
    """A pin as its audit rows record it."""
    return {"danmaku_id": pin.danmaku_id, "text": pin.text, "nick": pin.nick, "until_ms": pin.until_ms}


def pin_of(room: Room, *, now_ms: int) -> Pin | None:
    """The pin ``room`` carries at ``now_ms``: None if none, or expired."""
    until = room.pinned_until_ms
    if until is None or until <= now_ms:
        return None
    return Pin(room.pinned_danmaku_id, room.pinned_text, room.pinned_nick, until)


def pin_current(*, room: Room) -> Pin | None:
    return pin_of(room, now_ms=clock.now_ms())


def pin_comment(*, room: Room, danmaku_id: int, duration_s: int, actor, reason: str = "") -> Pin:
    """Pin a published live comment of ``room`` for ``duration_s`` seconds."""
    _check_duration(duration_s)
    with transaction.atomic():
        locked = _locked(room)
        danmaku = (
            Danmaku.objects.select_related("user__viewer_profile").filter(pk=danmaku_id, room_id=locked.pk).first()
        )
        if danmaku is None:
            raise NotFound("comment not found in this room")
        if danmaku.broadcast_id is not None:
            raise Conflict("comment belongs to a recording, not the live room")
        if danmaku.status != Danmaku.Status.PUBLISHED:
            raise Conflict(f"comment is {danmaku.status}, not published")
        profile = getattr(danmaku.user, "viewer_profile", None)
        nick = display_nick(profile.nickname if profile else "", danmaku.user.username)
        pin = Pin(danmaku.pk, danmaku.text, nick, clock.now_ms() + duration_s * 1000)
        _set(locked, pin, actor=actor, reason=reason)
    _adopt(room, locked)
    return pin


def pin_notice(*, room: Room, text: str, duration_s: int, actor, reason: str = "") -> Pin:
    """Pin a moderator's own text for ``duration_s`` seconds, once it passed the filters."""
    _check_duration(duration_s)
    text = _notice_text(text, room=room)
    with transaction.atomic():
        locked = _locked(room)
        pin = Pin(None, text, "", clock.now_ms() + duration_s * 1000)
        _set(locked, pin, actor=actor, reason=reason)
    _adopt(room, locked)
    return pin


def unpin(*, room: Room, actor, reason: str) -> Pin:
    """Take the room's pin down; returns what it was. Conflict if nothing is pinned."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("reason: is required", field="reason")
    with transaction.atomic():
        locked = _locked(room)
        pin = pin_of(locked, now_ms=clock.now_ms())
        if pin is None:
            raise Conflict("nothing is pinned")
        _store(locked, None)
        audit_record(
            actor=actor,
            action="pin.clear",
            target_type="room",
            target_id=locked.pk,
            room_id=locked.pk,
            reason=reason,
            detail=as_detail(pin),
        )
    _adopt(room, locked)
    return pin


# -- internals ----------------------------------------------------------------------


def _check_duration(duration_s) -> None:
    if not isinstance(duration_s, int) or not PIN_MIN_SECONDS <= duration_s <= PIN_MAX_SECONDS:
        raise InvalidInput(f"duration_s: must be {PIN_MIN_SECONDS} to {PIN_MAX_SECONDS} seconds", field="duration_s")


def _notice_text(text: str, *, room: Room) -> str:
    text = (text or "").strip()
    problem = text_problem(text) or length_problem(text, room.max_text_length)
    if problem:
        raise InvalidInput(f"text: {problem}", field="text")
    action, shown, why = _screen(text, room_id=room.pk)
    if action in ("block", "hold"):
        raise InvalidInput(f"text: refused by the filters ({why})", field="text")
    return shown


def _screen(text: str, *, room_id: int) -> tuple[str, str, str]:
    """(action, text to show, reason) of the full term set and the link check on ``text``."""
    # The process's matcher, as the send path's filter uses it (exact and
    # wildcard hits counted here too: a notice is not checked again later).
    cache = services.matcher_cache
    result = cache.get().match_full(text, room_id=room_id, now=cache.wall_clock())
    cache.record_hits(result.hit_ids)
    matches = list(result.matches)
    link_action = getattr(settings, "MODERATION_LINK_ACTION", DEFAULT_LINK_ACTION)
    if link_action != ALLOW:
        matches.extend(find_links(text, action=link_action))
    actions = [m.rule.action for m in matches]
    reasons = [m.rule.term for m in matches if m.rule.kind != "link"]
    if any(m.rule.kind == "link" for m in matches):
        reasons.append("a link")
    if result.overran:
        # A regex term ran out of time on it: nobody knows what it would
        # have said, and no moderator reviews a notice later. Refused.
        actions.append("hold")
        reasons.append("a pattern took too long on it")
    action = most_severe(actions) or ALLOW
    if action == ALLOW:
        return ALLOW, text, ""
    shown = mask(text, [m for m in matches if m.rule.action == "mask"])
    return action, shown, ", ".join(dict.fromkeys(reasons))


def _locked(room: Room) -> Room:
    # Two moderators pinning at once: the second waits and replaces the first.
    locked = Room.objects.select_for_update().filter(pk=room.pk).first()
    if locked is None:
        raise NotFound("room not found")
    return locked


def _set(room: Room, pin: Pin, *, actor, reason: str) -> None:
    replaced = pin_of(room, now_ms=clock.now_ms())
    _store(room, pin)
    audit_record(
        actor=actor,
        action="pin.set",
        target_type="danmaku" if pin.danmaku_id is not None else "room",
        target_id=pin.danmaku_id if pin.danmaku_id is not None else room.pk,
        room_id=room.pk,
        reason=reason.strip() if reason else "",
        detail={**as_detail(pin), "replaced": as_detail(replaced) if replaced else None},
    )


def _store(room: Room, pin: Pin | None) -> None:
    room.pinned_text = pin.text if pin else ""
    room.pinned_nick = pin.nick if pin else ""
    room.pinned_danmaku_id = pin.danmaku_id if pin else None
    room.pinned_until_ms = pin.until_ms if pin else None
    # updated_at: the refreshers of the embedded store read rooms whose
    # settings changed by it.
    room.save(update_fields=[*PINNED_FIELDS, "updated_at"])
    # After commit: other processes must not show a pin the database does
    # not have (an audit row that fails rolls the pin back).
    transaction.on_commit(lambda: room_settings_publish(room=room))


def _adopt(room: Room, saved: Room) -> None:
    # The caller's instance shows what was saved.
    for name in (*PINNED_FIELDS, "updated_at"):
        setattr(room, name, getattr(saved, name))
