"""Moderation writes and verdicts.

- ``filter_fast``: the send path's inline check (exact and wildcard terms).
- ``moderate_decision``: the full verdict on a stored comment (every term
  kind, links, repeated-message spam); pure decision, writes nothing.
- ``moderate_full`` / ``moderate_fast``: decide and retract a published
  comment the verdict does not allow; the Celery task and its fallback.
- ``blocked_term_save`` / ``blocked_term_create`` / ``blocked_term_delete``;
  ``blocked_term_disable``: the system switching off a stored term the
  matcher cannot use (a regex RE2 refuses), with the reason, audited.

Each process keeps one ``TermMatcher``; a change to the terms reaches every
process within ``TERMS_RELOAD_SECONDS`` (see ``MatcherCache``).

Terms are global (``room`` null) or for one room; expired terms do nothing;
shadow terms only count hits. Hits are counted in process memory and added
to ``BlockedTerm.hits`` with one ``F()`` update per distinct count at the
matcher's version check (at most every ``TERMS_RELOAD_SECONDS``, only when
there are hits), so a send never writes for them. Exact and wildcard hits
are counted on the send path (``filter_fast``), regex hits by the task
(``moderate_decision``), so each comment counts once per term. Hits not yet
added when a process dies are lost: at most ~2 s of them.

A regex rule that runs over its CPU budget on one comment never switches
the rule off (a sender could do that on purpose): that comment is held for
a moderator (``moderate_decision``), and the rule keeps working.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.db.models import Count, F, Max, Q
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from danmaku.models import Danmaku
from danmaku.publishing import danmaku_deny, danmaku_hold, danmaku_release, danmaku_retract
from infra.ratelimitlog import RateLimitedLog
from moderation.audit import audit_record
from moderation.matcher import (
    ACTIONS,
    REGEX_BUDGET_SECONDS,
    Match,
    Overrun,
    Rule,
    TermMatcher,
    mask,
    most_severe,
    rule_problem,
)
from moderation.models import BlockedTerm
from moderation.normalize import fold_mapped, match_form, normalize
from moderation.recent import RecentComments

logger = logging.getLogger(__name__)
# One slow pattern on a flood of comments: say so every few seconds, not per comment.
overrun_log = RateLimitedLog(logger, every_seconds=10)

ALLOW = "allow"
# What MODERATION_LINK_ACTION may say; "allow" turns link checks off.
LINK_ACTIONS = (ALLOW, "mask", "hold", "block")
DEFAULT_LINK_ACTION = "hold"
# How stale a process's term list may get: at most this often each process
# asks the database for the terms' version (one indexed aggregate), so a
# saved term reaches every process within about 2 s and no restart.
TERMS_RELOAD_SECONDS = 2.0
# Repeated-message spam: this many comments with the same match form
# from one user in one room within the window (the comment itself included)
# gets the latest one blocked. Three, so saying something twice is fine.
REPEAT_LIMIT = 3
REPEAT_WINDOW_MS = 60_000
# Earlier comments read for the repeat check; far more than any slow mode
# lets one user send in the window.
REPEAT_SCAN_LIMIT = 50
# A flood: the same text from this many different users in one room within
# the window (a raid pasting one line). Chants ("666", "gg") are short and
# common, so only texts of at least FLOOD_MIN_CHARS count.
FLOOD_USERS = 5
FLOOD_WINDOW_MS = 10_000
FLOOD_MIN_CHARS = 8
FLOOD_SCAN_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with a comment.

    ``action``: "allow", "mask", "hold" or "block" (the most severe finding).
    ``text``: the text to store and show: the original with every span a
    mask rule matched replaced by "*" (same length), else the original.
    ``terms``: the blocked terms that matched, in order of appearance.
    ``reason``: a short human account of the findings, "" when allowed.
    """

    action: str
    text: str
    terms: tuple[str, ...] = ()
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.action == ALLOW


# -- The per-process matcher ------------------------------------------------------------


class MatcherCache:
    """One ``TermMatcher`` per process, rebuilt when the terms change.

    At most every ``interval_seconds`` one caller reads the terms' version
    (row count and newest ``updated_at``); other threads keep using the
    current matcher meanwhile. ``invalidate`` makes the next call check,
    which the term services do so their own process sees a change at once.
    Hits counted by ``record_hits`` are written at the same check.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        interval_seconds: float = TERMS_RELOAD_SECONDS,
    ) -> None:
        self._clock = clock
        # Epoch seconds, for term expiry.
        self.wall_clock = wall_clock
        self._interval = interval_seconds
        self._lock = threading.Lock()
        self._matcher: TermMatcher | None = None
        self._version: tuple | None = None
        self._checked_at = float("-inf")
        self._hits_lock = threading.Lock()
        self._hits: dict[int, int] = {}

    def record_hits(self, term_ids: Sequence[int]) -> None:
        """Count one hit for each term; added to the database at the next version check."""
        if not term_ids:
            return
        with self._hits_lock:
            for term_id in term_ids:
                self._hits[term_id] = self._hits.get(term_id, 0) + 1

    def flush_hits(self) -> None:
        """Add the counted hits to the database: one update per distinct count.
        On a database error they are kept for the next try."""
        with self._hits_lock:
            pending, self._hits = self._hits, {}
        if not pending:
            return
        by_count: dict[int, list[int]] = {}
        for term_id, count in pending.items():
            by_count.setdefault(count, []).append(term_id)
        now = timezone.now()
        for count, term_ids in by_count.items():
            try:
                # Greatest: another process may have written a later time.
                BlockedTerm.objects.filter(pk__in=term_ids).update(
                    hits=F("hits") + count, last_hit_at=Greatest(Coalesce(F("last_hit_at"), now), now)
                )
            except DatabaseError as exc:
                logger.warning("blocked term hits not saved, kept for the next try: %s", exc)
                with self._hits_lock:
                    for term_id in term_ids:
                        self._hits[term_id] = self._hits.get(term_id, 0) + count

    def get(self) -> TermMatcher:
        matcher = self._matcher
        if matcher is not None and self._clock() - self._checked_at < self._interval:
            return matcher
        if matcher is None:
            with self._lock:
                return self._refresh()
        if not self._lock.acquire(blocking=False):
            return matcher  # another thread is checking; this one is fresh enough
        try:
            return self._refresh()
        finally:
            self._lock.release()

    def invalidate(self) -> None:
        self._checked_at = float("-inf")

    def _refresh(self) -> TermMatcher:
        now = self._clock()
        if self._matcher is not None and now - self._checked_at < self._interval:
            return self._matcher
        self.flush_hits()
        try:
            version = _terms_version()
            if self._matcher is None or version != self._version:
                self._matcher = _build_matcher(now=self.wall_clock())
                self._version = version
        except DatabaseError as exc:
            if self._matcher is None:
                raise
            logger.warning("blocked terms not reloaded, database unavailable; keeping the current list: %s", exc)
        self._checked_at = now
        return self._matcher


def _terms_version() -> tuple:
    found = BlockedTerm.objects.aggregate(count=Count("id"), latest=Max("updated_at"))
    return found["count"], found["latest"]


def _build_matcher(*, now: float) -> TermMatcher:
    # Terms that expire later are loaded with their expiry; the matcher
    # skips them from then on, with no reload needed.
    rows = (
        BlockedTerm.objects.filter(is_active=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=_datetime(now)))
        .values_list("id", "term", "kind", "action", "room_id", "shadow", "expires_at")
    )
    matcher = TermMatcher(
        Rule(
            term,
            kind,
            action,
            id=term_id,
            room_id=room_id,
            shadow=shadow,
            expires_at=expires_at.timestamp() if expires_at else None,
        )
        for term_id, term, kind, action, room_id, shadow, expires_at in rows
    )
    for rule, problem in matcher.rejected:
        logger.warning("blocked term %r (%s) skipped: %s", rule.term, rule.kind, problem)
        if rule.id is not None:
            blocked_term_disable(term_id=rule.id, reason=problem)
    return matcher


def _datetime(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, tz=UTC)


matcher_cache = MatcherCache()


# -- Verdicts -------------------------------------------------------------------------------

# Links: explicit URLs, bare domains under common TLDs, IPv4 addresses.
# Runs on the light form, so full-width letters and zero-width tricks
# are folded first; "。" counts as a dot.
_TLDS = (
    "com|net|org|info|biz|io|co|cn|me|tv|cc|xyz|top|gg|ru|de|uk|jp|kr|tw|hk|us|in|be|to|ly|gl"
    "|app|dev|link|site|online|club|vip|shop|live|fun|icu|wang|ink|pw|tk|ml|ga|cf"
)
LINK_PATTERN = re.compile(
    r"(?:https?://|www[.。])\S+"
    rf"|(?<![\w-])(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?[.。])+(?:{_TLDS})(?![a-z0-9-])(?:/\S*)?"
    r"|(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])",
    re.ASCII,
)


def filter_fast(*, text: str, room_id: int | None = None) -> Verdict:
    """The send path's check: global exact and wildcard terms plus those of
    ``room_id`` (None: global terms only), no database query while the
    matcher is fresh. Shadow terms' hits are counted and change nothing."""
    return _filter(text, room_id, count_hits=True)


def _filter(text: str, room_id: int | None, *, count_hits: bool) -> Verdict:
    matcher = matcher_cache.get()
    if not len(matcher):
        return Verdict(ALLOW, text)
    result = matcher.match_fast(text, room_id=room_id, now=matcher_cache.wall_clock())
    if count_hits:
        matcher_cache.record_hits(result.hit_ids)
    return _decide(text, result.matches)


def moderate_decision(*, danmaku: Danmaku, recent: RecentComments | None = None) -> Verdict:
    """The full verdict on a stored comment: every term kind, links and
    repeated-message spam. Reads only; the same comment always gets the same
    verdict (later comments do not count towards its repeats). ``recent``:
    the earlier comments a batch read once (``recent_comments``)."""
    text = danmaku.text
    result = matcher_cache.get().match_full(text, room_id=danmaku.room_id, now=matcher_cache.wall_clock())
    # Exact and wildcard hits were counted when the comment was sent.
    matcher_cache.record_hits(
        [m.rule.id for m in (*result.matches, *result.shadowed) if m.rule.kind == "regex" and m.rule.id is not None]
    )
    matches = list(result.matches)
    link_action = _link_action()
    if link_action != ALLOW:
        matches.extend(find_links(text, action=link_action))
    flags: list[tuple[str, str]] = [_overrun_flag(o) for o in result.overran if not o.rule.shadow]
    for overrun in result.overran:
        overrun_log.warning(
            "regex term %r took %.0f ms on one comment (budget %.0f ms)",
            overrun.rule.term,
            overrun.seconds * 1000,
            REGEX_BUDGET_SECONDS * 1000,
        )
    if recent is None:
        repeats, senders = _repeat_count(danmaku), _flood_senders(danmaku)
    else:
        repeats = recent.repeat_count(danmaku, window_ms=REPEAT_WINDOW_MS, scan_limit=REPEAT_SCAN_LIMIT)
        senders = 1
        if len(recent.key_of(danmaku.id, danmaku.text)) >= FLOOD_MIN_CHARS:
            senders = recent.flood_senders(danmaku, window_ms=FLOOD_WINDOW_MS, scan_limit=FLOOD_SCAN_LIMIT)
    if repeats >= REPEAT_LIMIT:
        flags.append(("block", f"repeated message ({repeats} times in {REPEAT_WINDOW_MS // 1000} s)"))
    if senders >= FLOOD_USERS:
        flags.append(("block", f"flood of the same text ({senders} users in {FLOOD_WINDOW_MS // 1000} s)"))
    return _decide(text, matches, flags)


def _overrun_flag(overrun: Overrun) -> tuple[str, str]:
    # Held, not allowed: the rule did not get to say; not blocked: the
    # comment may be fine. The rule stays on for the next comment.
    return (
        "hold",
        f"regex term {overrun.rule.term!r} took {overrun.seconds * 1000:.0f} ms,"
        f" over its {REGEX_BUDGET_SECONDS * 1000:.0f} ms budget: held for review",
    )


def recent_comments(batch: Sequence[Danmaku]) -> RecentComments:
    """The earlier comments the full checks of ``batch`` read, read once for all of them."""
    return RecentComments(
        batch,
        key=_repeat_key,
        query_flood=_flood_senders,
        flood_window_ms=FLOOD_WINDOW_MS,
        flood_min_chars=FLOOD_MIN_CHARS,
        repeat_window_ms=REPEAT_WINDOW_MS,
    )


def moderate_full(*, danmaku_id: int, danmaku: Danmaku | None = None, recent: RecentComments | None = None) -> Verdict:
    """Decide on a stored comment and retract it if it is published and not allowed.

    A batch passes the comment it loaded (``danmaku``) and what it read of
    the comments before (``recent``)."""
    if danmaku is None:
        danmaku = Danmaku.objects.filter(pk=danmaku_id).first()
    if danmaku is None:
        return Verdict(ALLOW, "")
    verdict = moderate_decision(danmaku=danmaku, recent=recent)
    _retract_if_needed(danmaku, verdict)
    return verdict


def moderate_fast(*, danmaku_id: int) -> Verdict:
    """``moderate_full`` with only the send-time filter: the fallback when the
    task cannot be queued. The terms may have changed since the send."""
    danmaku = Danmaku.objects.filter(pk=danmaku_id).first()
    if danmaku is None:
        return Verdict(ALLOW, "")
    # Not counted again: the send already counted this comment's hits.
    verdict = _filter(danmaku.text, danmaku.room_id, count_hits=False)
    _retract_if_needed(danmaku, verdict)
    return verdict


def find_links(text: str, *, action: str = DEFAULT_LINK_ACTION) -> list[Match]:
    """Links in ``text``, as matches of a rule with ``action`` (spans in ``text``)."""
    form = fold_mapped(text)
    rule = Rule("link", "link", action)
    matches = []
    for found in LINK_PATTERN.finditer(form.text):
        start, end = form.span(found.start(), found.end() - 1)
        matches.append(Match(rule, start, end))
    return matches


def _retract_if_needed(danmaku: Danmaku, verdict: Verdict) -> None:
    # A published comment cannot be edited in place, so any finding (mask
    # and hold included) takes it down; one waiting for its verdict (room
    # policy "pre") is released, put in the held queue for a moderator
    # (hold), or denied; held or hidden ones stay as they are.
    pk = danmaku.pk
    if danmaku.status == Danmaku.Status.SENDER_ONLY:
        if verdict.allowed:
            apply, action, reason = partial(danmaku_release, danmaku_id=pk, reason="allowed"), "moderate.release", ""
        elif verdict.action == "hold":
            apply = partial(danmaku_hold, danmaku_id=pk, reason=verdict.reason)
            action, reason = "moderate.hold", verdict.reason
        else:
            apply = partial(danmaku_deny, danmaku_id=pk, reason=verdict.reason)
            action, reason = "moderate.deny", verdict.reason
    elif not verdict.allowed and danmaku.status == Danmaku.Status.PUBLISHED:
        apply = partial(danmaku_retract, danmaku_id=pk, reason=f"moderation: {verdict.reason}")
        action, reason = "moderate.retract", verdict.reason
    else:
        return  # most comments: published and allowed, nothing to change, no transaction
    # One transaction with its audit row, as the moderators' actions: if the
    # row cannot be written nothing changed, and no screen was told.
    with transaction.atomic():
        if apply():
            # The task acted on its own: one audit row, with no actor.
            audit_record(
                actor=None,
                action=action,
                target_type="danmaku",
                target_id=pk,
                room_id=danmaku.room_id,
                reason=reason,
                detail={"user_id": danmaku.user_id},
            )


def _decide(text: str, matches: Sequence[Match], flags: Sequence[tuple[str, str]] = ()) -> Verdict:
    """Combine span findings (``matches``) and whole-comment ones (``flags``: action, reason)."""
    action = most_severe([m.rule.action for m in matches] + [a for a, _ in flags])
    if action is None:
        return Verdict(ALLOW, text)
    ordered = sorted(matches, key=lambda m: (m.start, m.end))
    terms = tuple(dict.fromkeys(m.rule.term for m in ordered if m.rule.kind != "link"))
    reasons = []
    if terms:
        reasons.append("blocked term " + ", ".join(terms))
    if any(m.rule.kind == "link" for m in ordered):
        reasons.append("link")
    reasons.extend(reason for _, reason in flags)
    masked = mask(text, [m for m in ordered if m.rule.action == "mask"])
    return Verdict(action, masked, terms, "; ".join(reasons))


def _repeat_key(text: str) -> str:
    # The match form ignores the punctuation spammers vary ("buy now!",
    # "buy now!!"); text that is only punctuation keeps it.
    return match_form(text) or normalize(text)


def _repeat_count(danmaku: Danmaku) -> int:
    key = _repeat_key(danmaku.text)
    earlier = (
        Danmaku.objects.filter(
            room_id=danmaku.room_id,
            user_id=danmaku.user_id,
            ts_ms__gt=danmaku.ts_ms - REPEAT_WINDOW_MS,
            ts_ms__lte=danmaku.ts_ms,
            pk__lt=danmaku.pk,
        )
        .order_by("-ts_ms")
        .values_list("text", flat=True)[:REPEAT_SCAN_LIMIT]
    )
    return 1 + sum(1 for text in earlier if _repeat_key(text) == key)


def _flood_senders(danmaku: Danmaku) -> int:
    """Different users who sent this comment's text in its room lately (it included)."""
    key = _repeat_key(danmaku.text)
    if len(key) < FLOOD_MIN_CHARS:
        return 1
    earlier = (
        Danmaku.objects.filter(
            room_id=danmaku.room_id,
            ts_ms__gt=danmaku.ts_ms - FLOOD_WINDOW_MS,
            ts_ms__lte=danmaku.ts_ms,
            pk__lt=danmaku.pk,
        )
        .exclude(user_id=danmaku.user_id)
        .order_by("-ts_ms")
        .values_list("user_id", "text")[:FLOOD_SCAN_LIMIT]
    )
    return 1 + len({user_id for user_id, text in earlier if _repeat_key(text) == key})


def _link_action() -> str:
    value = getattr(settings, "MODERATION_LINK_ACTION", DEFAULT_LINK_ACTION)
    if value not in LINK_ACTIONS:  # moderation.checks refuses this at start
        raise ValueError(f"MODERATION_LINK_ACTION must be one of {', '.join(LINK_ACTIONS)}, got {value!r}")
    return value


# -- Blocked terms ------------------------------------------------------------------------


def blocked_term_save(*, term: BlockedTerm, actor=None) -> BlockedTerm:
    """Validate and save a new or edited term; this process sees it at once, others within ~2 s."""
    term.term = term.term.strip()
    problem = rule_problem(term.term, term.kind)
    if problem:
        raise ValidationError({"term": problem})
    if term.action not in ACTIONS:
        raise ValidationError({"action": f"must be one of {', '.join(ACTIONS)}"})
    if term.pk is None and term.created_by_id is None and getattr(actor, "is_authenticated", False):
        term.created_by = actor
    if term.is_active:
        # A moderator fixed and switched on a term the system had switched off.
        term.disabled_reason = ""
    term.full_clean()
    term.save()
    matcher_cache.invalidate()
    return term


def blocked_term_create(
    *,
    term: str,
    kind: str = "exact",
    action: str = "block",
    note: str = "",
    room=None,
    expires_at=None,
    shadow: bool = False,
    actor=None,
) -> BlockedTerm:
    """``room``: a ``danmaku.Room`` or None for every room; ``expires_at``: an aware datetime or None."""
    return blocked_term_save(
        term=BlockedTerm(
            term=term, kind=kind, action=action, note=note, room=room, expires_at=expires_at, shadow=shadow
        ),
        actor=actor,
    )


def blocked_term_delete(*, term: BlockedTerm, actor=None) -> None:
    term.delete()
    matcher_cache.invalidate()


def blocked_term_disable(*, term_id: int, reason: str) -> bool:
    """Switch off a stored term the matcher cannot use, with ``reason`` on
    the term (shown in the admin) and one audit row; False if it was off
    already (another process got there first). A database error is logged
    and the term stays skipped in this process's matcher."""
    try:
        with transaction.atomic():
            changed = BlockedTerm.objects.filter(pk=term_id, is_active=True).update(
                is_active=False, disabled_reason=reason[:500], updated_at=timezone.now()
            )
            if not changed:
                return False
            term = BlockedTerm.objects.values("term", "kind", "room_id").get(pk=term_id)
            audit_record(
                actor=None,
                action="term.disable",
                target_type="blocked_term",
                target_id=term_id,
                room_id=term["room_id"],
                reason=reason,
                detail={"term": term["term"], "kind": term["kind"]},
            )
    except DatabaseError as exc:
        logger.warning("blocked term %s not switched off, database unavailable: %s", term_id, exc)
        return False
    logger.warning("blocked term %s switched off: %s", term_id, reason)
    return True
