"""Which comments still need the full check, and recording that it ran.

``Danmaku.checked`` is the durable mark: False on every new row, set True
by the batch task (``moderation.tasks.moderate_batch_task``) in one UPDATE
for the ids it decided. A comment whose check never ran (its id was in the
review buffer of a process that was killed, or the buffer was full) keeps
False, and ``unchecked_due`` finds it for the sweep
(``moderation.reviewsweep``).

Some unchecked comments are owed no automatic check any more, and are
marked checked without one, so the sweep never hands them over again and
they leave the partial index: those held for a moderator (the send path
reviews none of them: a moderator decides), those hidden (nothing left to
decide), and those a moderator has acted on (approved, unhidden: the check
must not overrule that).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Case, F, Value, When

from danmaku.models import Danmaku
from moderation.models import AuditEntry

# Only these statuses can still change by a verdict (retract a published
# comment, decide one waiting under a ``pre`` policy).
DECIDABLE = (Danmaku.Status.PUBLISHED, Danmaku.Status.SENDER_ONLY)


def unchecked(*, danmaku_ids: Iterable[int]) -> list[Danmaku]:
    """The comments of ``danmaku_ids`` whose full check has not run, read
    whole in one query (the check needs them: reading the ids first and the
    rows after was a second query per batch, 8 % of the worker's CPU):
    comments waiting for their verdict (``pre``) first, then by id."""
    ids = set(danmaku_ids)
    if not ids:
        return []
    waiting_first = Case(When(status=Danmaku.Status.SENDER_ONLY, then=Value(0)), default=Value(1))
    return list(Danmaku.objects.filter(pk__in=ids, checked=False).order_by(waiting_first, "pk"))


def mark_checked(*, danmaku_ids: Iterable[int], on_stream: Iterable[int] = ()) -> int:
    """Record in one UPDATE that the full check decided these comments, and
    that those ``on_stream`` are on their room's stream; returns how many changed."""
    ids = set(danmaku_ids)
    if not ids:
        return 0
    changes: dict = {"checked": True}
    published = set(on_stream) & ids
    if published:
        changes["in_stream"] = Case(When(pk__in=published, then=Value(True)), default=F("in_stream"))
    return Danmaku.objects.filter(pk__in=ids, checked=False).update(**changes)


def unchecked_due(*, now_ms: int, grace_ms: int, horizon_ms: int, limit: int) -> list[int]:
    """Comments whose full check is overdue: not checked, with a timestamp
    older than ``grace_ms`` and at most ``horizon_ms`` old; at most
    ``limit``, oldest first. Those owed no check any more (see the module
    notes) among them are marked checked instead of returned.

    Three queries on the partial index ``danmaku_unchecked`` (and the audit
    log's target index), however many rows there are.
    """
    window = Danmaku.objects.filter(checked=False, ts_ms__gte=now_ms - horizon_ms, ts_ms__lt=now_ms - grace_ms)
    window.exclude(status__in=DECIDABLE).update(checked=True)
    due = list(window.filter(status__in=DECIDABLE).order_by("ts_ms", "pk").values_list("pk", flat=True)[:limit])
    if not due:
        return []
    acted_on = {
        int(target)
        for target in AuditEntry.objects.filter(
            target_type="danmaku", target_id__in=[str(pk) for pk in due], actor__isnull=False
        ).values_list("target_id", flat=True)
    }
    if acted_on:
        mark_checked(danmaku_ids=acted_on)
    return [pk for pk in due if pk not in acted_on]
