"""The channel that keeps every process's caches of rooms, tokens, senders
and sanctions honest (``infra.changefeed``), over the database.

A change to a cached fact is recorded as a ``CacheChange`` row in the
transaction that makes it, so it cannot be lost or seen before it commits;
the process that made it drops the fact from its own caches once it
commits. Every server process that sends (roles ``send`` and ``all``)
reads the rows added since its previous read in a background job every
``POLL_SECONDS``; where nothing reads them (a shell, a test, a database
that does not answer) the caches are not trusted past their lease and
every lookup reads the database. The database is the channel because it is
the one thing every send already needs: Redis may be down, and the
embedded default has none.

Django's own forms and the admin save users, tokens and rooms directly, so
the changes are recorded from model signals: the one place every save
passes through. Only fields the caches hold count (a login's
``last_login`` is not a change).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Max, Q
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from danmaku.models import ApiToken, CacheChange, Room, ViewerProfile
from infra import jobs
from infra.changefeed import EVERYTHING, POLL_SECONDS, ChangeFeed

logger = logging.getLogger(__name__)

# A row committed this long after it was stamped is still seen: each read
# also looks this far back (and skips what it already applied).
LOOKBACK = timedelta(seconds=10)
# Rows older than this are pruned; a process that has not read for half of
# it drops all its caches instead of trusting what is left.
KEEP = timedelta(hours=1)
# Rows one read applies; more (a bulk change) drops everything instead.
READ_LIMIT = 1000
PRUNE_EVERY_SECONDS = 60.0
# Keys that are user ids.
USER_KINDS = frozenset({"user", "sanctions"})
# User fields the caches hold: saving any other (a login) changes nothing.
USER_FIELDS = frozenset({"username", "is_active"})


def record(kind: str, key: object = "") -> None:
    """Note that the cached fact ``kind``/``key`` changed ("" for every key of the kind).

    Call it inside the transaction making the change: the row commits with it.
    """
    CacheChange.objects.create(kind=kind, key=str(key), created_at=timezone.now())
    # This process's own caches learn it as soon as the change is visible.
    local_key = EVERYTHING if key == "" else key
    transaction.on_commit(lambda: feed.changed(kind, local_key), robust=True)


def read_changes(position):
    """The feed's reader: changes since ``position`` = (last id, when read, ids of the lookback)."""
    now = timezone.now()
    changes = []
    if position is None or now - position[1] > KEEP / 2:
        # A first read (or one after a long silence: rows may be pruned):
        # from the newest row on, and whatever the lookback holds.
        if position is not None:
            changes.append(("*", EVERYTHING))
        last = CacheChange.objects.aggregate(last=Max("id"))["last"] or 0
        position = (last, now, {})
    last, read_at, recent = position
    rows = list(
        CacheChange.objects.filter(Q(id__gt=last) | Q(created_at__gte=read_at - LOOKBACK))
        .order_by("id")
        .values_list("id", "kind", "key", "created_at")[: READ_LIMIT + 1]
    )
    if len(rows) > READ_LIMIT:
        return [("*", EVERYTHING)], (max(row[0] for row in rows), now, {})
    since = now - LOOKBACK
    kept = {row_id: stamped for row_id, stamped in recent.items() if stamped >= since}
    for row_id, kind, key, stamped in rows:
        last = max(last, row_id)
        if row_id in recent:
            continue
        if stamped >= since:
            kept[row_id] = stamped
        if key == "":
            changes.append((kind, EVERYTHING))
        else:
            changes.append((kind, int(key) if kind in USER_KINDS else key))
    return changes, (last, now, kept)


feed = ChangeFeed(read_changes)


def poll_changes() -> None:
    feed.poll()


def prune_changes() -> int:
    deleted, _ = CacheChange.objects.filter(created_at__lt=timezone.now() - KEEP).delete()
    return deleted


# -- what counts as a change -------------------------------------------------------


def _room_saved(sender, instance, **kwargs) -> None:
    # Every room: a slug that changed leaves no trace of the old one.
    record("room")


def _token_saved(sender, instance, **kwargs) -> None:
    record("token", instance.key_hash)


def _user_saved(sender, instance, update_fields=None, **kwargs) -> None:
    if update_fields is not None and not USER_FIELDS.intersection(update_fields):
        return
    record("user", instance.pk)


def _profile_saved(sender, instance, **kwargs) -> None:
    record("user", instance.user_id)


def connect() -> None:
    """Record changes from model signals (``DanmakuConfig.ready``)."""
    user_model = get_user_model()
    for model, handler in (
        (Room, _room_saved),
        (ApiToken, _token_saved),
        (user_model, _user_saved),
        (ViewerProfile, _profile_saved),
    ):
        uid = f"danmaku.changes.{model._meta.label}"
        post_save.connect(handler, sender=model, dispatch_uid=uid + ".save")
        post_delete.connect(handler, sender=model, dispatch_uid=uid + ".delete")
    jobs.register("danmaku.cache_changes", every_seconds=POLL_SECONDS, run=poll_changes, roles=("send", "all"))
    jobs.register(
        "danmaku.prune_cache_changes", every_seconds=PRUNE_EVERY_SECONDS, run=prune_changes, roles=("send", "all")
    )
