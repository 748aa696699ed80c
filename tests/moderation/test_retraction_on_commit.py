"""A retraction reaches viewers only once the database has committed it.

Each way a comment comes off the screens (a moderator's hide or purge
through the moderation API, the full check's retraction) writes its effect
and its audit row in one transaction. When that transaction fails (here the
audit insert, refused by the database itself), the store must hold no
retraction and the comment must keep showing; once it succeeds, the next
pulls take the comment off. Both stores: the table (embedded default) and
Redis (production, the shared server).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from django.db import DatabaseError, connection
from django.test import Client

from danmaku import runtime
from danmaku.models import ApiToken, Danmaku
from moderation import services
from moderation.models import AuditEntry

pytestmark = pytest.mark.django_db(transaction=True)

PULL_URL = "/api/v1/rooms/live/danmaku"
MODERATION = "/api/v1/moderation"
SEAL_LAG_MS = 400


@pytest.fixture(params=["database", "redis"])
def store(request, settings) -> str:
    if request.param == "redis":
        request.getfixturevalue("redis_mode")
    return request.param


@pytest.fixture
def moderator_headers(db) -> dict[str, str]:
    moderator = get_user_model().objects.create_superuser("mod", password="pw-for-tests-only")
    _, raw = ApiToken.issue(moderator)
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


@contextlib.contextmanager
def audit_log_refusing_writes() -> Iterator[None]:
    """The database refuses audit rows, as a full disk or a lost lock would:
    the action's transaction fails after its effect was written."""
    assert connection.vendor == "sqlite", "the trigger below is SQLite's"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TRIGGER audit_refused BEFORE INSERT ON moderation_auditentry "
            "BEGIN SELECT RAISE(ABORT, 'audit log unavailable'); END"
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER audit_refused")


def pull(client: Client, after: str | None = None) -> dict:
    response = client.get(PULL_URL, {"after": after} if after else {})
    assert response.status_code == 200, response.content
    return response.json()


def refresh() -> None:
    runtime.refresher().refresh_once()


def wait_until_sealable() -> None:
    """Sleep until the second now running can be sealed (both stores run on this host's clock)."""
    now_ms = time.time() * 1000
    time.sleep(((now_ms // 1000 + 1) * 1000 + SEAL_LAG_MS + 50 - now_ms) / 1000)


def retractions_in_redis(settings, room) -> list[int]:
    if not settings.REDIS_URL:
        return []
    from infra.redis import get_redis

    entries = get_redis().xrange(f"{settings.DANMAKU_REDIS_PREFIX}:s:{room.pk}")
    return [int(fields[b"id"]) for _, fields in entries if fields[b"k"] == b"d"]


def shown_comment(client: Client, auth_headers: dict) -> tuple[int, str]:
    """A comment sent and on screen; returns its id and a cursor that has seen it."""
    joined = pull(client)
    sent = client.post(PULL_URL, json.dumps({"text": "fine for now"}), content_type="application/json", **auth_headers)
    assert sent.status_code == 201, sent.content
    wait_until_sealable()
    refresh()
    seen = pull(client, joined["cursor"])
    assert seen["items"]["id"] == [sent.json()["id"]]
    return sent.json()["id"], seen["cursor"]


def hide(client: Client, headers: dict, danmaku_id: int, user_id: int):
    return client.post(
        f"{MODERATION}/danmaku/{danmaku_id}/hide", {"reason": "insult"}, content_type="application/json", **headers
    )


def purge(client: Client, headers: dict, danmaku_id: int, user_id: int):
    body = {"room": "live", "minutes": 5, "reason": "spammer"}
    return client.post(f"{MODERATION}/users/{user_id}/purge", body, content_type="application/json", **headers)


def assert_still_shown(client: Client, settings, room, danmaku_id: int, cursor: str) -> None:
    assert retractions_in_redis(settings, room) == []
    row = Danmaku.objects.get(pk=danmaku_id)
    assert (row.status, row.retracted_at_ms, row.retraction_in_stream) == ("published", None, False)
    refresh()
    assert danmaku_id in pull(client)["items"]["id"]
    assert pull(client, cursor)["deleted"] == []


def assert_taken_off(client: Client, settings, room, danmaku_id: int, cursor: str) -> None:
    if settings.REDIS_URL:
        assert retractions_in_redis(settings, room) == [danmaku_id]
        assert Danmaku.objects.get(pk=danmaku_id).retraction_in_stream is True
    refresh()
    assert danmaku_id not in pull(client)["items"]["id"]
    wait_until_sealable()
    refresh()
    assert pull(client, cursor)["deleted"] == [danmaku_id]


@pytest.mark.parametrize("action", [hide, purge])
def test_moderator_action_whose_transaction_fails_leaves_the_comment_on_screen(
    store, settings, client, room, user, auth_headers, moderator_headers, action
):
    danmaku_id, cursor = shown_comment(client, auth_headers)

    with audit_log_refusing_writes():
        failed = action(client, moderator_headers, danmaku_id, user.pk)

    assert failed.status_code == 503, failed.content
    assert_still_shown(client, settings, room, danmaku_id, cursor)

    done = action(client, moderator_headers, danmaku_id, user.pk)

    assert done.status_code == 200, done.content
    assert AuditEntry.objects.count() == 1
    assert_taken_off(client, settings, room, danmaku_id, cursor)


def test_full_check_whose_transaction_fails_leaves_the_comment_on_screen(store, settings, client, room, auth_headers):
    danmaku_id, cursor = shown_comment(client, auth_headers)
    # Blocked after the send: the full check (the moderation task) retracts it.
    services.blocked_term_create(term="fine")

    with audit_log_refusing_writes(), pytest.raises(DatabaseError):
        services.moderate_full(danmaku_id=danmaku_id)

    assert_still_shown(client, settings, room, danmaku_id, cursor)

    services.moderate_full(danmaku_id=danmaku_id)

    assert list(AuditEntry.objects.values_list("action", flat=True)) == ["moderate.retract"]
    assert_taken_off(client, settings, room, danmaku_id, cursor)
