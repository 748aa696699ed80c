# ruff: noqa: RUF001  (look-alike and full-width characters are the test cases)
"""Moderation services against the database: the send-time filter, the full
verdict, the term services, the task and its fallback."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.urls import reverse

from danmaku.models import Danmaku, Room
from moderation import services
from moderation.checks import link_action_check
from moderation.models import BlockedTerm
from moderation.tasks import moderate_fallback, moderate_task

pytestmark = pytest.mark.django_db

NOW_MS = 1_800_000_000_000


def comment(room, user, text, *, seconds_ago: float = 0) -> Danmaku:
    return Danmaku.objects.create(room=room, user=user, text=text, ts_ms=NOW_MS - int(seconds_ago * 1000))


def test_filter_fast_allows_when_there_are_no_terms():
    assert services.filter_fast(text="hello") == services.Verdict("allow", "hello")


def test_filter_fast_with_a_fresh_matcher_makes_no_query(django_assert_num_queries):
    services.blocked_term_create(term="bad")
    services.filter_fast(text="warm up")
    with django_assert_num_queries(0):
        assert services.filter_fast(text="so bad").action == "block"


def test_filter_fast_picks_up_a_new_term_within_the_reload_window(clock):
    assert services.filter_fast(text="so bad").allowed
    # Written by another process: this one only learns from the version check.
    BlockedTerm.objects.create(term="bad", kind="exact", action="block")
    clock.advance(services.TERMS_RELOAD_SECONDS - 0.1)
    assert services.filter_fast(text="so bad").allowed
    clock.advance(0.1)
    assert services.filter_fast(text="so bad").action == "block"


def test_filter_fast_notices_edits_and_deletions(clock):
    term = services.blocked_term_create(term="bad", action="block")
    assert services.filter_fast(text="bad").action == "block"
    BlockedTerm.objects.filter(pk=term.pk).update(is_active=False, updated_at=term.updated_at.replace(year=2100))
    clock.advance(services.TERMS_RELOAD_SECONDS)
    assert services.filter_fast(text="bad").allowed
    BlockedTerm.objects.create(term="worse")
    clock.advance(services.TERMS_RELOAD_SECONDS)
    assert services.filter_fast(text="worse").action == "block"
    BlockedTerm.objects.filter(term="worse").delete()
    clock.advance(services.TERMS_RELOAD_SECONDS)
    assert services.filter_fast(text="worse").allowed


def test_blocked_term_save_takes_effect_in_its_own_process_at_once():
    assert services.filter_fast(text="so bad").allowed
    services.blocked_term_create(term="bad", action="mask")
    assert services.filter_fast(text="so bad") == services.Verdict("mask", "so ***", ("bad",), "blocked term bad")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("so b4d, worse", services.Verdict("hold", "so ***, worse", ("bad", "worse"), ""), id="hold"),
        pytest.param("b a d", services.Verdict("mask", "* * *", ("bad",), ""), id="mask"),
        pytest.param("worst f-u-c-k", services.Verdict("block", "worst f-u-c-k", ("f*ck",), ""), id="block"),
    ],
)
def test_filter_fast_verdicts(text, expected):
    services.blocked_term_create(term="bad", action="mask")
    services.blocked_term_create(term="worse", action="hold")
    services.blocked_term_create(term="f*ck", kind="wildcard", action="block")
    services.blocked_term_create(term=r"qq\d+", kind="regex", action="block")
    verdict = services.filter_fast(text=text)
    assert (verdict.action, verdict.text, verdict.terms) == (expected.action, expected.text, expected.terms)


def test_blocked_term_save_refuses_a_regex_re2_cannot_run_and_records_the_author(user):
    with pytest.raises(ValidationError, match="lookaround"):
        services.blocked_term_create(term="(?=a)a", kind="regex")
    term = services.blocked_term_create(term="  spaced  ", actor=user)
    assert (term.term, term.created_by) == ("spaced", user)
    with pytest.raises(ValidationError):
        services.blocked_term_create(term="spaced")


@pytest.mark.parametrize(
    ("text", "link_action", "expected_action", "expected_text"),
    [
        pytest.param("visit example.com now", "hold", "hold", None, id="bare-domain"),
        pytest.param("see https://x.y/z", "hold", "hold", None, id="url"),
        pytest.param("ｗｗｗ．evil．ｃｏｍ", "hold", "hold", None, id="fullwidth"),
        pytest.param("看这里example.com", "hold", "hold", None, id="after-cjk"),
        pytest.param("ping 10.0.0.1", "hold", "hold", None, id="ipv4"),
        pytest.param("go to evil.com", "block", "block", None, id="configured-block"),
        pytest.param("go to evil.com ok", "mask", "mask", "go to ******** ok", id="configured-mask"),
        pytest.param("go to evil.com", "allow", "allow", None, id="configured-off"),
        pytest.param("pi is 3.14, v1.2 is out", "hold", "allow", None, id="numbers-are-not-links"),
        pytest.param("end.Then we go", "hold", "allow", None, id="missing-space-is-not-a-link"),
    ],
)
def test_moderate_decision_links(settings, room, user, text, link_action, expected_action, expected_text):
    settings.MODERATION_LINK_ACTION = link_action
    verdict = services.moderate_decision(danmaku=comment(room, user, text))
    assert verdict.action == expected_action
    assert verdict.text == (expected_text or text)
    if expected_action != "allow":
        assert verdict.reason == "link"


def test_moderate_decision_runs_regex_rules(room, user):
    services.blocked_term_create(term=r"qq\s*\d{5,}", kind="regex", action="hold")
    verdict = services.moderate_decision(danmaku=comment(room, user, "add ＱＱ 12345"))
    assert (verdict.action, verdict.terms) == ("hold", (r"qq\s*\d{5,}",))


def test_moderate_decision_blocks_the_third_repeat_within_a_minute(room, user):
    first = comment(room, user, "Buy now", seconds_ago=50)
    second = comment(room, user, "BUY  NOW", seconds_ago=20)
    third = comment(room, user, "buy n0w!", seconds_ago=0)
    assert services.moderate_decision(danmaku=first).allowed
    assert services.moderate_decision(danmaku=second).allowed
    verdict = services.moderate_decision(danmaku=third)
    assert verdict.action == "block"
    assert verdict.reason == "repeated message (3 times in 60 s)"


def test_repeats_count_only_the_same_user_room_text_and_minute(room, user):
    other_user = get_user_model().objects.create_user("other")
    other_room = Room.objects.create(slug="other", title="Other")
    comment(room, user, "buy now", seconds_ago=61)
    comment(room, other_user, "buy now", seconds_ago=10)
    comment(other_room, user, "buy now", seconds_ago=10)
    comment(room, user, "buy later", seconds_ago=10)
    comment(room, user, "buy now", seconds_ago=5)
    assert services.moderate_decision(danmaku=comment(room, user, "buy now")).allowed


def test_moderate_full_and_fast_leave_an_allowed_comment_alone(room, user):
    services.blocked_term_create(term="bad")
    danmaku = comment(room, user, "hello")
    assert services.moderate_full(danmaku_id=danmaku.pk).allowed
    assert services.moderate_fast(danmaku_id=danmaku.pk).allowed
    danmaku.refresh_from_db()
    assert danmaku.status == Danmaku.Status.PUBLISHED


def test_moderating_a_missing_comment_does_nothing():
    assert services.moderate_full(danmaku_id=999_999).allowed
    moderate_fallback(999_999)
    moderate_task.delay(999_999)


def test_a_held_comment_is_decided_but_not_retracted(room, user):
    services.blocked_term_create(term="bad")
    danmaku = Danmaku.objects.create(room=room, user=user, text="bad", ts_ms=NOW_MS, status=Danmaku.Status.HELD)
    assert services.moderate_full(danmaku_id=danmaku.pk).action == "block"


def test_moderate_task_options():
    assert moderate_task.name == "moderation.moderate"
    assert moderate_task.acks_late is True
    assert moderate_task.reject_on_worker_lost is True
    assert moderate_task.ignore_result is True
    assert (moderate_task.soft_time_limit, moderate_task.time_limit) == (10, 15)


def test_a_bad_link_action_fails_the_start_up_check(settings):
    settings.MODERATION_LINK_ACTION = "hold"
    assert link_action_check(None) == []
    settings.MODERATION_LINK_ACTION = "nuke"
    assert [error.id for error in link_action_check(None)] == ["moderation.E001"]


def test_admin_saves_through_the_service(admin_client, admin_user):
    url = reverse("admin:moderation_blockedterm_add")
    fields = {"kind": "exact", "action": "mask", "note": "", "is_active": "on"}
    response = admin_client.post(url, {**fields, "term": "bad"})
    assert response.status_code == 302
    assert BlockedTerm.objects.get().created_by == admin_user
    assert services.filter_fast(text="bad").action == "mask"

    response = admin_client.post(url, {**fields, "kind": "regex", "term": r"(\w)\1"})
    assert response.status_code == 200
    assert "uses a backreference" in response.content.decode()
    assert BlockedTerm.objects.count() == 1


def flood(room, text: str, users: int, *, seconds_apart: float = 1.0) -> list[Danmaku]:
    senders = [get_user_model().objects.create_user(f"raider{n}") for n in range(users)]
    return [comment(room, sender, text, seconds_ago=(users - n) * seconds_apart) for n, sender in enumerate(senders)]


def test_the_fifth_user_pasting_the_same_line_within_ten_seconds_is_blocked(room):
    raid = flood(room, "Join my channel now", 5)

    assert all(services.moderate_decision(danmaku=c).allowed for c in raid[:4])
    verdict = services.moderate_decision(danmaku=raid[4])
    assert verdict.action == "block"
    assert verdict.reason == "flood of the same text (5 users in 10 s)"


@pytest.mark.parametrize(
    ("text", "users", "seconds_apart"),
    [("gg", 8, 0.5), ("Join my channel now", 4, 1.0), ("Join my channel now", 5, 3.0)],
    ids=["short-chant", "too-few-users", "spread-out"],
)
def test_not_a_flood(room, text, users, seconds_apart):
    raid = flood(room, text, users, seconds_apart=seconds_apart)

    assert services.moderate_decision(danmaku=raid[-1]).allowed
