"""/api/v1/moderation/: moderators only, one audit row per write, declared answers."""

from __future__ import annotations

import json
import time

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from danmaku.models import Danmaku
from moderation.models import AuditEntry, Sanction
from moderation.selectors import MODERATORS_GROUP
from tests.moderation.conftest import headers_for

BASE = "/api/v1/moderation"
ROLES = ("anonymous", "viewer", "moderator", "product_staff", "superuser")
ALLOWED_ROLES = {"moderator", "superuser"}


@pytest.fixture
def moderator_headers(db):
    return headers_for("moderator")


def comment(room, user, status=Danmaku.Status.PUBLISHED, text="hello") -> Danmaku:
    return Danmaku.objects.create(
        room=room, user=user, text=text, ts_ms=int(time.time() * 1000), status=status, in_stream=True
    )


def call(method: str, path: str, headers: dict, body: dict | None = None):
    client = Client(enforce_csrf_checks=True)
    if method == "GET":
        return client.get(BASE + path, **headers)
    return client.post(BASE + path, json.dumps(body or {}), content_type="application/json", **headers)


# Each endpoint: (name, method, path, body, success status); ids filled in per test.
ENDPOINTS = [
    ("held", "GET", "/rooms/{room}/held", None, 200),
    ("recent", "GET", "/rooms/{room}/recent", None, 200),
    ("summary", "GET", "/rooms/{room}/summary", None, 200),
    ("hide", "POST", "/danmaku/{published}/hide", {"reason": "r"}, 200),
    ("unhide", "POST", "/danmaku/{hidden}/unhide", {"reason": "r"}, 200),
    ("approve", "POST", "/held/{held}/approve", {"reason": "r"}, 200),
    ("reject", "POST", "/held/{held}/reject", {"reason": "r"}, 200),
    ("timeout", "POST", "/users/{user}/timeout", {"room": "live", "seconds": 60, "reason": "r"}, 201),
    ("ban", "POST", "/users/{user}/ban", {"room": None, "reason": "r"}, 201),
    ("lift", "POST", "/sanctions/{sanction}/lift", {"reason": "r"}, 200),
    ("purge", "POST", "/users/{user}/purge", {"room": "live", "minutes": 5, "reason": "r"}, 200),
]


@pytest.mark.parametrize(("name", "method", "path", "body", "success"), ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
@pytest.mark.parametrize("role", ROLES)
def test_role_matrix(room, user, role, name, method, path, body, success):
    ids = {
        "room": room.slug,
        "user": user.pk,
        "published": comment(room, user).pk,
        "hidden": comment(room, user, status=Danmaku.Status.HIDDEN).pk,
        "held": comment(room, user, status=Danmaku.Status.HELD).pk,
        "sanction": Sanction.objects.create(user=user, kind="ban", reason="old").pk,
    }
    response = call(method, path.format(**ids), headers_for(role), body)
    expected = success if role in ALLOWED_ROLES else 401 if role == "anonymous" else 403
    assert response.status_code == expected, response.content
    writes = 1 if method == "POST" and role in ALLOWED_ROLES else 0
    assert AuditEntry.objects.count() == writes


def test_hide_answers_the_comment_and_writes_one_audit_row(room, user, moderator_headers):
    target = comment(room, user)
    response = call("POST", f"/danmaku/{target.pk}/hide", moderator_headers, {"reason": "insult"})
    assert response.status_code == 200
    assert response.json()["status"] == "hidden"
    row = AuditEntry.objects.get()
    assert (row.actor.username, row.action, row.target_id, row.reason) == (
        "as-moderator",
        "danmaku.hide",
        str(target.pk),
        "insult",
    )


def test_hide_twice_is_409(room, user, moderator_headers):
    target = comment(room, user)
    call("POST", f"/danmaku/{target.pk}/hide", moderator_headers, {"reason": "r"})
    response = call("POST", f"/danmaku/{target.pk}/hide", moderator_headers, {"reason": "r"})
    assert response.status_code == 409
    assert "already hidden" in response.json()["detail"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/danmaku/{id}/hide", {}, "reason"),
        ("/danmaku/{id}/hide", {"reason": "   "}, "reason"),
        ("/danmaku/{id}/hide", {"reason": "r", "extra": 1}, "extra"),
        ("/users/{user}/timeout", {"seconds": 5, "reason": "r"}, "seconds"),
        ("/users/{user}/timeout", {"seconds": 14 * 86400 + 1, "reason": "r"}, "seconds"),
        ("/users/{user}/purge", {"room": "live", "minutes": 0, "reason": "r"}, "minutes"),
    ],
)
def test_invalid_bodies_are_400_with_the_field(room, user, moderator_headers, path, body, field):
    target = comment(room, user)
    response = call("POST", path.format(id=target.pk, user=user.pk), moderator_headers, body)
    assert response.status_code == 400
    assert field in [error["field"] for error in response.json()["errors"]]
    assert AuditEntry.objects.count() == 0


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/danmaku/999999/hide", {"reason": "r"}),
        ("POST", "/users/999999/ban", {"reason": "r"}),
        ("POST", "/users/{user}/ban", {"room": "nowhere", "reason": "r"}),
        ("POST", "/sanctions/999999/lift", {"reason": "r"}),
        ("GET", "/rooms/nowhere/held", None),
    ],
)
def test_unknown_targets_are_404(room, user, moderator_headers, method, path, body):
    assert call(method, path.format(user=user.pk), moderator_headers, body).status_code == 404


def test_held_queue_lists_only_held_comments_oldest_first(room, user, moderator_headers):
    first = comment(room, user, status=Danmaku.Status.HELD, text="first")
    comment(room, user, text="visible")
    second = comment(room, user, status=Danmaku.Status.HELD, text="second")
    body = call("GET", "/rooms/live/held", moderator_headers).json()
    assert [item["id"] for item in body] == [first.pk, second.pk]
    assert body[0] | {"ts_ms": 0} == {
        "id": first.pk,
        "room": "live",
        "user_id": user.pk,
        "username": "viewer",
        "text": "first",
        "status": "held",
        "ts_ms": 0,
        "retracted_at_ms": None,
    }


def test_recent_lists_every_status_newest_first(room, user, moderator_headers):
    ids = [comment(room, user, status=status).pk for status in ("published", "hidden", "held")]
    body = call("GET", "/rooms/live/recent?limit=2", moderator_headers).json()
    assert [item["id"] for item in body] == ids[::-1][:2]


def test_timeout_answers_the_sanction(room, user, moderator_headers):
    response = call(
        "POST", f"/users/{user.pk}/timeout", moderator_headers, {"room": "live", "seconds": 60, "reason": "r"}
    )
    assert response.status_code == 201
    body = response.json()
    assert (body["kind"], body["room"], body["user_id"], body["lifted_at"]) == ("timeout", "live", user.pk, None)
    assert body["until"]


def test_session_post_without_csrf_token_is_refused(room, user):
    moderator = get_user_model().objects.create_user("mod", is_staff=True)
    moderator.groups.add(Group.objects.get(name=MODERATORS_GROUP))
    client = Client(enforce_csrf_checks=True)
    client.force_login(moderator)
    target = comment(room, user)
    response = client.post(
        f"{BASE}/danmaku/{target.pk}/hide", json.dumps({"reason": "r"}), content_type="application/json"
    )
    assert response.status_code == 403
    assert client.get(f"{BASE}/rooms/live/held").status_code == 200
    assert AuditEntry.objects.count() == 0


# Operations whose roles their own modules test (test_pins.py, test_reports.py).
OWN_TESTS = {
    ("/rooms/{room}/pin", "get"),
    ("/rooms/{room}/pin", "put"),
    ("/rooms/{room}/pin", "delete"),
    ("/rooms/{room}/reports", "get"),
    ("/reports/{danmaku_id}/resolve", "post"),
}


def test_every_operation_declares_its_statuses(db):
    schema = Client().get("/api/v1/openapi.json").json()
    operations = [
        (path, method, op)
        for path, item in schema["paths"].items()
        if path.startswith(BASE)
        for method, op in item.items()
    ]
    listed = {(path.removeprefix(BASE), method) for path, method, _ in operations}
    assert len(operations) == len(ENDPOINTS) + len(OWN_TESTS)
    assert listed >= OWN_TESTS
    for path, method, op in operations:
        declared = set(op["responses"])
        assert {"400", "401", "403", "404", "503"} <= declared, (path, method)
        if method == "post":
            assert "409" in declared
