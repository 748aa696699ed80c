from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from danmaku.models import ApiToken, Danmaku, Room


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_issue_token_prints_a_token_that_authenticates_a_send(room):
    out, _ = run("issue_token", "alice")
    token = out.strip()

    response = Client(enforce_csrf_checks=True).post(
        "/api/v1/rooms/live/danmaku",
        {"text": "hi"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )

    assert response.status_code == 201
    assert Danmaku.objects.get().user.username == "alice"


def test_issue_token_creates_a_missing_user_without_a_usable_password(db):
    _, err = run("issue_token", "alice", "--label", "phone")

    alice = get_user_model().objects.get(username="alice")
    assert "created user alice" in err
    assert not alice.has_usable_password()
    assert ApiToken.objects.get(user=alice).label == "phone"


def test_issue_token_for_an_existing_user_adds_a_token(user):
    first, _ = run("issue_token", user.username)
    second, err = run("issue_token", user.username)

    assert err == ""
    assert first.strip() != second.strip()
    assert ApiToken.objects.filter(user=user).count() == 2
    assert get_user_model().objects.count() == 1
    assert get_user_model().objects.get(pk=user.pk).check_password("pw-for-tests-only")


def test_issue_token_stores_only_the_hash(db):
    out, _ = run("issue_token", "alice")
    token = out.strip()

    stored = ApiToken.objects.get()
    assert stored.key_hash == ApiToken.hash(token)
    assert token not in stored.key_hash


def test_create_room_creates_a_room(db):
    out, _ = run("create_room", "concert", "--title", "The Concert")

    room = Room.objects.get(slug="concert")
    assert room.title == "The Concert"
    assert room.is_open
    assert "created" in out


def test_create_room_defaults_the_title_to_the_slug(db):
    run("create_room", "concert")

    assert Room.objects.get(slug="concert").title == "concert"


def test_create_room_again_updates_the_title_only(db):
    run("create_room", "concert", "--title", "Old")
    Room.objects.filter(slug="concert").update(poll_interval_ms=5000)

    out, _ = run("create_room", "concert", "--title", "New")

    room = Room.objects.get(slug="concert")
    assert (room.title, room.poll_interval_ms) == ("New", 5000)
    assert Room.objects.count() == 1
    assert "exists" in out


@pytest.mark.parametrize("slug", ["bad slug", "bad/slug", "émission", "", "x" * 51])
def test_create_room_rejects_a_bad_slug(db, slug):
    with pytest.raises(CommandError):
        run("create_room", slug)

    assert not Room.objects.exists()
