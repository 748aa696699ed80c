"""Blocked terms' scope, expiry, shadow flag and hit counters, through the services and the admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone

from danmaku.models import Danmaku, Room
from moderation import services
from moderation.models import BlockedTerm

pytestmark = pytest.mark.django_db


@pytest.fixture
def other_room(db):
    return Room.objects.create(slug="other", title="Other")


def test_room_terms_act_only_in_their_room_and_global_terms_everywhere(room, other_room):
    services.blocked_term_create(term="bad")
    services.blocked_term_create(term="worse", room=room, action="hold")
    assert services.filter_fast(text="bad worse", room_id=room.pk).terms == ("bad", "worse")
    assert services.filter_fast(text="worse", room_id=other_room.pk).allowed
    assert services.filter_fast(text="bad", room_id=other_room.pk).action == "block"
    # The old call, without a room: global terms only.
    assert services.filter_fast(text="worse").allowed
    assert services.filter_fast(text="bad").action == "block"


def test_moderate_decision_uses_the_comment_s_room(room, other_room, user):
    services.blocked_term_create(term=r"qq\d{5,}", kind="regex", room=room)
    here = Danmaku.objects.create(room=room, user=user, text="qq12345", ts_ms=1)
    there = Danmaku.objects.create(room=other_room, user=user, text="qq12345", ts_ms=1)
    assert services.moderate_decision(danmaku=here).action == "block"
    assert services.moderate_decision(danmaku=there).allowed


def test_the_same_term_may_be_global_and_per_room_but_not_twice_in_one_scope(room):
    services.blocked_term_create(term="bad")
    services.blocked_term_create(term="bad", room=room)
    with pytest.raises(ValidationError):
        services.blocked_term_create(term="bad")
    with pytest.raises(ValidationError):
        services.blocked_term_create(term="bad", room=room)


def test_an_expired_term_does_not_act():
    services.blocked_term_create(term="bad", expires_at=timezone.now() - timedelta(seconds=1))
    services.blocked_term_create(term="worse", expires_at=timezone.now() + timedelta(hours=1))
    assert services.filter_fast(text="bad").allowed
    assert services.filter_fast(text="worse").action == "block"


def test_a_loaded_term_stops_acting_when_it_expires_without_a_reload(matcher_cache):
    expires = timezone.now() + timedelta(hours=1)
    services.blocked_term_create(term="bad", expires_at=expires)
    assert services.filter_fast(text="bad").action == "block"
    matcher_cache.wall_clock = lambda: expires.timestamp()
    assert services.filter_fast(text="bad").allowed


def test_a_shadow_term_counts_hits_but_never_acts(room, clock):
    term = services.blocked_term_create(term="bad", shadow=True, action="block")
    assert services.filter_fast(text="so bad", room_id=room.pk) == services.Verdict("allow", "so bad")
    services.filter_fast(text="bad bad", room_id=room.pk)
    services.filter_fast(text="fine", room_id=room.pk)
    clock.advance(services.TERMS_RELOAD_SECONDS)
    services.filter_fast(text="fine", room_id=room.pk)
    term.refresh_from_db()
    assert term.hits == 2  # one per comment, not per occurrence
    assert term.last_hit_at is not None


def test_counting_hits_costs_a_send_no_query(clock, django_assert_num_queries):
    term = services.blocked_term_create(term="bad", action="mask")
    services.filter_fast(text="warm up")
    with django_assert_num_queries(0):
        for _ in range(50):
            services.filter_fast(text="bad")
    clock.advance(services.TERMS_RELOAD_SECONDS)
    # One version check plus one update for every term that was hit 50 times.
    with django_assert_num_queries(2):
        services.filter_fast(text="ok")
    term.refresh_from_db()
    assert term.hits == 50


def test_hit_counting_never_reloads_the_matcher(clock, matcher_cache):
    services.blocked_term_create(term="bad")
    services.filter_fast(text="bad")
    matcher = matcher_cache.get()
    clock.advance(services.TERMS_RELOAD_SECONDS)
    services.filter_fast(text="bad")
    clock.advance(services.TERMS_RELOAD_SECONDS)
    assert matcher_cache.get() is matcher
    assert BlockedTerm.objects.get().hits == 2


def test_regex_hits_are_counted_by_the_task_and_send_hits_only_once(room, user, clock):
    regex = services.blocked_term_create(term=r"qq\d{5,}", kind="regex", action="hold")
    exact = services.blocked_term_create(term="bad", action="hold")
    text = "bad qq12345"
    services.filter_fast(text=text, room_id=room.pk)
    danmaku = Danmaku.objects.create(room=room, user=user, text=text, ts_ms=1)
    services.moderate_full(danmaku_id=danmaku.pk)
    services.moderate_fast(danmaku_id=danmaku.pk)
    clock.advance(services.TERMS_RELOAD_SECONDS)
    services.filter_fast(text="ok")
    regex.refresh_from_db()
    exact.refresh_from_db()
    assert (regex.hits, exact.hits) == (1, 1)


def test_the_admin_lists_hits_sortable_and_read_only(admin_client, room):
    term = services.blocked_term_create(term="bad", shadow=True, room=room)
    BlockedTerm.objects.filter(pk=term.pk).update(hits=7)
    changelist = reverse("admin:moderation_blockedterm_changelist")
    fields = ("term", "kind", "action", "room", "shadow", "is_active", "disabled_reason", "expires_at", "hits")
    ordering = fields.index("hits") + 1
    response = admin_client.get(changelist, {"o": f"-{ordering}"})
    assert response.status_code == 200
    assert "column-hits" in response.content.decode()
    assert "sortable column-hits" in response.content.decode()

    change = reverse("admin:moderation_blockedterm_change", args=[term.pk])
    data = {"term": "bad", "kind": "exact", "action": "block", "room": room.pk, "note": "", "is_active": "on"}
    response = admin_client.post(change, {**data, "hits": "0", "expires_at_0": "", "expires_at_1": ""})
    assert response.status_code == 302
    term.refresh_from_db()
    assert (term.hits, term.shadow, term.room_id) == (7, False, room.pk)


def test_hits_are_kept_when_the_database_refuses_them(clock, matcher_cache, monkeypatch):
    term = services.blocked_term_create(term="bad")
    services.filter_fast(text="bad")

    def refuse(*args, **kwargs):
        raise DatabaseError("database is locked")

    with monkeypatch.context() as patched:
        patched.setattr(QuerySet, "update", refuse)
        matcher_cache.flush_hits()
    matcher_cache.flush_hits()
    term.refresh_from_db()
    assert term.hits == 1
