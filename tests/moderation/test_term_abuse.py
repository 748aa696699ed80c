"""Blocked terms under abuse, through the public interface: the send API and the admin.

A wildcard term that froze the worker matching it; a regex term a sender
could make slow and so switch off; regexes RE2 cannot run, refused when
typed and switched off (with the reason, audited) when already stored; a
blocked word wrapped in markup or punctuation. The moderate task runs
inline here (no broker), so a send shows its verdict at once.
"""

from __future__ import annotations

import html
import json
import time

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse

from danmaku.models import ApiToken, Danmaku, Room
from moderation import matcher, services
from moderation.models import AuditEntry, BlockedTerm
from moderation.selectors import MODERATORS_GROUP
from moderation.services import blocked_term_create

pytestmark = pytest.mark.django_db

URL = "/api/v1/rooms/live/danmaku"
ADMIN_FORM = {"note": "", "is_active": "on", "expires_at_0": "", "expires_at_1": ""}


def send(client, headers, text: str):
    return client.post(URL, json.dumps({"text": text}), content_type="application/json", **headers)


def stored(response) -> Danmaku:
    assert response.status_code == 201, response.content
    return Danmaku.objects.get(pk=response.json()["id"])


def send_cpu_seconds(client, headers, text: str):
    started = time.process_time()
    response = send(client, headers, text)
    return response, time.process_time() - started


# -- wildcards ----------------------------------------------------------------------------


def test_a_wildcard_term_cannot_make_a_send_slow(client, room, auth_headers):
    blocked_term_create(term="a*a*a*a*a*a*z", kind="wildcard", action="block")
    send(client, auth_headers, "warm up")

    response, seconds = send_cpu_seconds(client, auth_headers, "z" + "a" * 23)

    assert stored(response).status == "published"
    # Python's re backtracked for seconds of CPU on this comment (the send
    # and the task each ran the pattern); CPU time, so a busy machine does
    # not count. The bound only catches backtracking.
    assert seconds < 0.5
    assert send(client, auth_headers, "a" * 23 + "z").status_code == 400


# -- regexes ------------------------------------------------------------------------------

SLOW_IN_RE = r"[b-z]*[b-z]*[b-z]*[b-z]*[b-z]*[b-z]*a"


def test_a_sender_cannot_make_a_regex_term_slow_or_switch_it_off(client, room, auth_headers):
    blocked_term_create(term=SLOW_IN_RE, kind="regex", action="hold")
    send(client, auth_headers, "warm up")

    # Built to make a backtracking engine try every split; in re it took
    # about a second and switched the rule off in this process.
    response, seconds = send_cpu_seconds(client, auth_headers, "b" * 40)

    assert stored(response).status == "published"
    assert seconds < 0.5
    # The rule still acts: the task holds (takes down) the next match.
    assert stored(send(client, auth_headers, "bbb a")).status == "hidden"


def test_a_regex_run_over_budget_holds_that_comment_and_the_rule_stays_on(client, room, auth_headers, monkeypatch):
    blocked_term_create(term=r"qq\s*\d{5,}", kind="regex", action="block")
    # Every run counts as over budget: what a pathological pattern would do.
    monkeypatch.setattr(matcher, "REGEX_BUDGET_SECONDS", -1.0)

    innocent = stored(send(client, auth_headers, "hello there"))
    spam = stored(send(client, auth_headers, "add qq 123456"))

    # The task could not vouch for it, so it came down for a moderator.
    assert innocent.status == "hidden"
    held = AuditEntry.objects.get(action="moderate.retract", target_id=str(innocent.pk))
    assert held.reason.startswith(r"regex term 'qq\\s*\\d{5,}' took ")
    assert held.reason.endswith("ms budget: held for review")
    # And the rule was not switched off by it.
    assert spam.status == "hidden"
    assert "blocked term qq" in AuditEntry.objects.get(action="moderate.retract", target_id=str(spam.pk)).reason


def test_in_a_pre_room_a_regex_run_over_budget_puts_the_comment_in_the_held_queue(
    client, room, auth_headers, monkeypatch
):
    # "pre" with fallback "allow": a comment the task could not vouch for
    # must wait for a moderator, neither go out unchecked nor be denied.
    room.moderation_policy = Room.Policy.PRE
    room.save()
    blocked_term_create(term=r"qq\s*\d{5,}", kind="regex", action="block")
    monkeypatch.setattr(matcher, "REGEX_BUDGET_SECONDS", -1.0)
    moderator = get_user_model().objects.create_user("mod", password="pw-for-tests-only", is_staff=True)
    moderator.groups.add(Group.objects.get(name=MODERATORS_GROUP))
    _, token = ApiToken.issue(moderator)
    moderator_headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    waiting = stored(send(client, auth_headers, "hello there"))

    assert waiting.status == "held"
    held = AuditEntry.objects.get(action="moderate.hold", target_id=str(waiting.pk))
    assert held.reason.endswith("ms budget: held for review")
    queue = client.get("/api/v1/moderation/rooms/live/held", **moderator_headers).json()
    assert [c["id"] for c in queue] == [waiting.pk]
    approved = client.post(
        f"/api/v1/moderation/held/{waiting.pk}/approve",
        json.dumps({"reason": "fine"}),
        content_type="application/json",
        **moderator_headers,
    )
    assert (approved.status_code, approved.json()["status"]) == (200, "published")


def test_the_admin_refuses_a_regex_re2_cannot_run_and_says_why(admin_client):
    add = reverse("admin:moderation_blockedterm_add")

    response = admin_client.post(add, {"term": r"(?<!\w)kill", "kind": "regex", "action": "block", **ADMIN_FORM})

    assert response.status_code == 200
    assert not BlockedTerm.objects.exists()
    reason = (
        "uses a lookaround ((?=, (?!, (?<=, (?<!), which RE2, the linear-time engine regex terms run on,"
        " does not support (invalid perl operator: (?<!)"
    )
    assert response.context["adminform"].form.errors["term"] == [reason]
    assert reason in html.unescape(response.content.decode())


def test_a_stored_regex_re2_cannot_run_is_switched_off_audited_and_shown(
    client, admin_client, room, auth_headers, clock
):
    # Saved before regexes ran on RE2 (or by a process still running the old code).
    old = BlockedTerm.objects.create(term=r"(?<!\w)kill", kind="regex", action="hold")
    BlockedTerm.objects.create(term="bad", action="block")

    # The first matcher load switches it off; the other terms still act.
    assert send(client, auth_headers, "so bad").status_code == 400
    clock.advance(services.TERMS_RELOAD_SECONDS)
    assert send(client, auth_headers, "kill").status_code == 201

    old.refresh_from_db()
    assert not old.is_active
    assert old.disabled_reason.startswith("uses a lookaround")
    entry = AuditEntry.objects.get(action="term.disable")  # once, not per load
    assert (entry.actor, entry.target_type, entry.target_id) == (None, "blocked_term", str(old.pk))
    assert entry.reason == old.disabled_reason
    assert entry.detail == {"term": r"(?<!\w)kill", "kind": "regex"}
    for page in (
        reverse("admin:moderation_blockedterm_changelist"),
        reverse("admin:moderation_blockedterm_change", args=[old.pk]),
    ):
        assert old.disabled_reason in html.unescape(admin_client.get(page).content.decode())


def test_saving_a_fixed_term_active_clears_the_reason(admin_client, room, auth_headers, client):
    old = BlockedTerm.objects.create(term=r"(?<!\w)kill", kind="regex", action="hold")
    send(client, auth_headers, "load the terms")
    change = reverse("admin:moderation_blockedterm_change", args=[old.pk])

    response = admin_client.post(change, {"term": r"\bkill", "kind": "regex", "action": "hold", **ADMIN_FORM})

    assert response.status_code == 302
    old.refresh_from_db()
    assert (old.term, old.is_active, old.disabled_reason) == (r"\bkill", True, "")


# -- words in markup ----------------------------------------------------------------------

WRAPPED = [
    pytest.param("so<b>bad</b>", "so<b>***</b>", id="html"),
    pytest.param("[b]bad[/b]!", "[b]***[/b]!", id="bbcode"),
    pytest.param("x(bad)x", "x(***)x", id="parentheses"),
    pytest.param("lol**bad**lol", "lol*******lol", id="bold"),
    pytest.param("ok[bad]ok", "ok[***]ok", id="brackets"),
    pytest.param("||bad||", "||***||", id="spoiler"),
]


@pytest.mark.parametrize(("text", "masked"), WRAPPED)
def test_a_blocked_word_in_markup_is_refused(client, room, auth_headers, text, masked):
    blocked_term_create(term="bad", action="block")

    response = send(client, auth_headers, text)

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["text"]
    assert not Danmaku.objects.exists()


@pytest.mark.parametrize(("text", "masked"), WRAPPED)
def test_a_masked_word_in_markup_is_masked(client, room, auth_headers, text, masked):
    blocked_term_create(term="bad", action="mask")

    assert stored(send(client, auth_headers, text)).text == masked


@pytest.mark.parametrize(("text", "masked"), WRAPPED)
def test_a_held_word_in_markup_holds_the_comment(client, room, auth_headers, text, masked):
    blocked_term_create(term="bad", action="hold")

    response = send(client, auth_headers, text)

    assert response.json()["status"] == "held"
    assert stored(response).status == "held"


def test_words_joined_by_apostrophes_and_hyphens_still_pass(client, room, auth_headers):
    blocked_term_create(term="dick", action="block")

    assert stored(send(client, auth_headers, "Moby-Dick's author")).status == "published"
