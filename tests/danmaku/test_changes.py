"""The change channel over the database (danmaku.changes)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from danmaku import changes
from danmaku.models import CacheChange
from infra.changefeed import EVERYTHING


def test_a_row_that_commits_after_a_newer_one_was_read_is_still_applied_once(db):
    _, position = changes.read_changes(None)
    _last, read_at, recent = position
    # Stamped before the last read but committed after it: its id is below
    # what a newer row already moved the position to.
    late = CacheChange.objects.create(kind="token", key="abc", created_at=timezone.now() - timedelta(seconds=1))
    position = (late.id + 100, read_at, recent)

    first, position = changes.read_changes(position)
    again, _ = changes.read_changes(position)

    assert first == [("token", "abc")]
    assert again == []


def test_user_keys_are_ids_and_an_empty_key_means_every_key(db):
    _, position = changes.read_changes(None)
    changes.record("sanctions", 42)
    changes.record("room")

    found, _ = changes.read_changes(position)

    assert found == [("sanctions", 42), ("room", EVERYTHING)]


def test_a_reader_silent_for_half_the_keep_drops_everything(db):
    _, (last, _, recent) = changes.read_changes(None)
    found, _ = changes.read_changes((last, timezone.now() - changes.KEEP, recent))
    assert found[0] == ("*", EVERYTHING)


def test_a_login_is_not_a_change_and_a_deactivation_is(db, user):
    _, position = changes.read_changes(None)
    user.save(update_fields=["last_login"])
    assert changes.read_changes(position)[0] == []
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert changes.read_changes(position)[0] == [("user", user.pk)]


def test_old_rows_are_pruned(db):
    CacheChange.objects.create(kind="room", key="", created_at=timezone.now() - changes.KEEP - timedelta(seconds=1))
    CacheChange.objects.create(kind="room", key="", created_at=timezone.now())
    assert changes.prune_changes() == 1
    assert CacheChange.objects.count() == 1
