"""Roles: the groups the data migration creates, and who may open which admin page."""

from __future__ import annotations

import time

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from danmaku.models import Danmaku
from moderation.models import AuditEntry, Sanction
from moderation.selectors import MODERATORS_GROUP, PRODUCT_STAFF_GROUP

ROLES = ("anonymous", "viewer", "moderator", "product_staff", "superuser")

# Every model in the admin; a new registration must be added here (and its cells decided).
ADMIN_MODELS = (
    "auth.user",
    "auth.group",
    "danmaku.room",
    "danmaku.danmaku",
    "danmaku.viewerprofile",
    "danmaku.apitoken",
    "danmaku.broadcast",
    "moderation.blockedterm",
    "moderation.sanction",
    "moderation.auditentry",
    "moderation.report",
    # django-axes (login throttling): superusers unlock an account here.
    "axes.accessattempt",
    "axes.accesslog",
    "axes.accessfailurelog",
)
# Records only the app writes (broadcasts: the room's start action): nobody may add one.
NOT_ADDABLE = {
    "danmaku.broadcast:add",
    "moderation.auditentry:add",
    # Viewers file reports through the API.
    "moderation.report:add",
    "axes.accessattempt:add",
    "axes.accesslog:add",
    "axes.accessfailurelog:add",
}
# (role, page) -> allowed. Pages not listed for a role answer 403 for staff
# and redirect to the login page for anonymous and plain users.
ALLOWED = {
    "moderator": {
        "danmaku.danmaku:changelist",
        "moderation.blockedterm:changelist",
        "moderation.blockedterm:add",
        "moderation.sanction:changelist",
        "moderation.sanction:add",
        "moderation.auditentry:changelist",
        "moderation.report:changelist",
    },
    # Broadcasts start and stop from the rooms list; their recording and
    # offset are edited under Broadcasts.
    "product_staff": {"danmaku.room:changelist", "danmaku.broadcast:changelist"},
    # Everything but adding the records only the app writes.
    "superuser": {f"{model}:{page}" for model in ADMIN_MODELS for page in ("changelist", "add")} - NOT_ADDABLE,
}
PAGES = [f"{model}:{page}" for model in ADMIN_MODELS for page in ("changelist", "add")]


def make_user(role: str):
    if role == "anonymous":
        return None
    users = get_user_model().objects
    if role == "superuser":
        return users.create_superuser(role, password="pw-for-tests-only")
    user = users.create_user(role, password="pw-for-tests-only", is_staff=role != "viewer")
    group = {"moderator": MODERATORS_GROUP, "product_staff": PRODUCT_STAFF_GROUP}.get(role)
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


def client_for(role: str) -> Client:
    client = Client()
    user = make_user(role)
    if user is not None:
        client.force_login(user)
    return client


def page_url(page: str) -> str:
    model, name = page.split(":")
    app_label, model_name = model.split(".")
    return reverse(f"admin:{app_label}_{model_name}_{name}")


def test_the_matrix_covers_every_admin_model():
    registered = {f"{m._meta.app_label}.{m._meta.model_name}" for m in admin.site._registry}
    assert registered == set(ADMIN_MODELS)


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("role", ROLES)
def test_admin_page_access(db, role, page):
    response = client_for(role).get(page_url(page))
    if role in ("anonymous", "viewer"):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    elif page in ALLOWED[role]:
        assert response.status_code == 200
    else:
        assert response.status_code == 403


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        (
            MODERATORS_GROUP,
            {
                "danmaku.view_danmaku",
                "danmaku.change_danmaku",
                "moderation.add_blockedterm",
                "moderation.change_blockedterm",
                "moderation.delete_blockedterm",
                "moderation.view_blockedterm",
                "moderation.add_sanction",
                "moderation.change_sanction",
                "moderation.view_sanction",
                "moderation.view_auditentry",
                "moderation.view_report",
                "moderation.change_report",
            },
        ),
        (
            PRODUCT_STAFF_GROUP,
            {"danmaku.view_room", "danmaku.change_room", "danmaku.view_broadcast", "danmaku.change_broadcast"},
        ),
    ],
)
def test_migration_creates_the_groups(db, group, expected):
    permissions = Group.objects.get(name=group).permissions.values_list("content_type__app_label", "codename")
    assert {f"{app}.{codename}" for app, codename in permissions} == expected


# -- admin actions write one audit row per comment ----------------------------------


def _comments(room, user, count: int, status=Danmaku.Status.PUBLISHED) -> list[int]:
    now_ms = int(time.time() * 1000)
    return [
        Danmaku.objects.create(room=room, user=user, text=f"c{i}", ts_ms=now_ms, status=status, in_stream=True).pk
        for i in range(count)
    ]


def _run_action(client: Client, action: str, ids: list[int], reason: str = "spam wave"):
    return client.post(
        reverse("admin:danmaku_danmaku_changelist"),
        {"action": action, "_selected_action": [str(pk) for pk in ids], "reason": reason, "index": "0"},
    )


@pytest.mark.parametrize(
    ("action", "status", "code", "after"),
    [
        ("hide_selected", Danmaku.Status.PUBLISHED, "danmaku.hide", "hidden"),
        ("unhide_selected", Danmaku.Status.HIDDEN, "danmaku.unhide", "published"),
        ("approve_selected", Danmaku.Status.HELD, "held.approve", "published"),
        ("reject_selected", Danmaku.Status.HELD, "held.reject", "hidden"),
    ],
)
def test_admin_bulk_action_writes_one_audit_row_per_comment(room, user, action, status, code, after):
    ids = _comments(room, user, 3, status=status)
    response = _run_action(client_for("moderator"), action, ids)
    assert response.status_code == 302
    assert set(Danmaku.objects.filter(pk__in=ids).values_list("status", flat=True)) == {after}
    rows = AuditEntry.objects.filter(action=code)
    assert rows.count() == AuditEntry.objects.count() == 3
    assert sorted(int(r.target_id) for r in rows) == sorted(ids)
    assert {r.reason for r in rows} == {"spam wave"}


def test_admin_bulk_hide_skips_hidden_comments_without_auditing_them(room, user):
    ids = _comments(room, user, 2) + _comments(room, user, 1, status=Danmaku.Status.HIDDEN)
    _run_action(client_for("moderator"), "hide_selected", ids)
    assert AuditEntry.objects.count() == 2


def test_admin_bulk_hide_needs_a_reason(room, user):
    ids = _comments(room, user, 2)
    _run_action(client_for("moderator"), "hide_selected", ids, reason="")
    assert AuditEntry.objects.count() == 0
    assert set(Danmaku.objects.values_list("status", flat=True)) == {"published"}


def test_product_staff_cannot_hide_comments(room, user):
    ids = _comments(room, user, 1)
    response = _run_action(client_for("product_staff"), "hide_selected", ids)
    assert response.status_code == 403
    assert AuditEntry.objects.count() == 0


def test_admin_sanction_add_goes_through_the_action(room, user):
    response = client_for("moderator").post(
        reverse("admin:moderation_sanction_add"),
        {"user": str(user.pk), "room": str(room.pk), "kind": "timeout", "seconds": "600", "reason": "flooding"},
    )
    assert response.status_code == 302, response.content[:2000]
    sanction = Sanction.objects.get()
    assert (sanction.kind, sanction.room, sanction.reason) == ("timeout", room, "flooding")
    assert AuditEntry.objects.get().action == "user.timeout"


def test_admin_sanction_lift_action_audits_each(user):
    moderator = make_user("moderator")
    sanctions = [Sanction.objects.create(user=user, kind="ban", reason="r", created_by=moderator) for _ in range(2)]
    client = Client()
    client.force_login(moderator)
    client.post(
        reverse("admin:moderation_sanction_changelist"),
        {"action": "lift_selected", "_selected_action": [str(s.pk) for s in sanctions], "reason": "appeal"},
    )
    assert Sanction.objects.filter(lifted_at__isnull=False).count() == 2
    assert AuditEntry.objects.filter(action="sanction.lift").count() == AuditEntry.objects.count() == 2


def test_audit_log_cannot_be_changed_even_by_a_superuser(room, user):
    entry = AuditEntry.objects.create(action="danmaku.hide", target_type="danmaku", target_id="1", reason="r")
    client = client_for("superuser")
    url = reverse("admin:moderation_auditentry_change", args=[entry.pk])
    assert client.get(url).status_code == 200  # view only
    client.post(url, {"action": "x", "target_type": "x", "target_id": "x", "reason": "tampered"})
    entry.refresh_from_db()
    assert entry.reason == "r"
    delete = client.post(reverse("admin:moderation_auditentry_delete", args=[entry.pk]), {"post": "yes"})
    assert delete.status_code == 403
    assert AuditEntry.objects.count() == 1
