"""danmaku.hooks: the one seam between the send path and moderation.

The danmaku app asks moderation through hooks that ``ModerationConfig.ready``
installs; without them it is a comment service with no moderation at all.
Each case runs both ways through the public API, so the difference is what
the hooks carry and nothing else.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model

from danmaku import hooks
from danmaku.models import Danmaku
from moderation.actions import user_ban
from moderation.models import AuditEntry
from moderation.services import blocked_term_create

URL = "/api/v1/rooms/live/danmaku"


@pytest.fixture
def without_moderation():
    installed = hooks.moderation()
    hooks.install(hooks.NO_MODERATION)
    yield
    hooks.install(installed)


@pytest.fixture
def admin_user(db):
    return get_user_model().objects.create_superuser("admin", password="pw-for-tests-only")


def send(client, headers, text: str):
    return client.post(URL, json.dumps({"text": text}), content_type="application/json", **headers)


def test_moderation_installs_its_hooks_when_django_starts():
    assert hooks.moderation() is not hooks.NO_MODERATION


@pytest.mark.parametrize("moderated", [True, False])
def test_a_banned_sender_is_refused_only_through_moderations_hook(
    request, client, room, user, auth_headers, admin_user, moderated
):
    if not moderated:
        request.getfixturevalue("without_moderation")
    user_ban(user_id=user.id, room_id=None, actor=admin_user, reason="abuse")

    response = send(client, auth_headers, "hello")

    assert response.status_code == (403 if moderated else 201)


@pytest.mark.parametrize("moderated", [True, False])
def test_blocked_terms_and_the_full_check_come_from_moderations_hooks(
    request, client, room, auth_headers, admin_user, moderated
):
    if not moderated:
        request.getfixturevalue("without_moderation")
    blocked_term_create(term="spoiler", action="mask", actor=admin_user)
    # A link: the full check (the moderate task, inline without a broker)
    # takes a published comment with one down again.
    send_link = send(client, auth_headers, "see www.example.com")
    masked = send(client, auth_headers, "big spoiler here")

    assert (send_link.status_code, masked.status_code) == (201, 201)
    stored = Danmaku.objects.get(pk=masked.json()["id"])
    linked = Danmaku.objects.get(pk=send_link.json()["id"])
    if moderated:
        assert stored.text == "big ******* here"
        assert linked.status == "hidden"
        assert AuditEntry.objects.filter(action="moderate.retract", target_id=str(linked.pk)).exists()
    else:
        assert stored.text == "big spoiler here"
        assert linked.status == "published"
        assert not AuditEntry.objects.filter(action__startswith="moderate.").exists()


@pytest.mark.parametrize("moderated", [True, False])
def test_the_viewer_page_links_the_console_for_moderators_only_through_the_hook(
    request, client, room, admin_user, moderated
):
    if not moderated:
        request.getfixturevalue("without_moderation")
    client.force_login(admin_user)

    html = client.get("/rooms/live/").content.decode()

    assert ('href="/moderate/live/"' in html) is moderated
