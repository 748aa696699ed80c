"""/api/v1/moderation/rooms/{room}/pin: pinned notices, from the moderator's side and the viewers'."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from danmaku import runtime
from danmaku.errors import InvalidInput
from danmaku.models import ApiToken, Danmaku, Room, ViewerProfile
from danmaku.rooms import room_save
from infra import clock
from moderation import pins, services
from moderation.models import AuditEntry
from moderation.selectors import MODERATORS_GROUP
from tests.moderation.conftest import headers_for

BASE = "/api/v1/moderation"
PIN = BASE + "/rooms/{}/pin"


@pytest.fixture
def mod(db):
    return headers_for("moderator")


def comment(room, user, text="hello", status=Danmaku.Status.PUBLISHED, ts_ms=None) -> Danmaku:
    return Danmaku.objects.create(
        room=room,
        user=user,
        text=text,
        ts_ms=ts_ms if ts_ms is not None else int(time.time() * 1000),
        status=status,
        in_stream=True,
    )


def put(headers, body, room="live"):
    return Client().put(PIN.format(room), json.dumps(body), content_type="application/json", **headers)


def get(headers, room="live"):
    return Client().get(PIN.format(room), **headers)


def delete(headers, reason: str | None = "done", room="live"):
    query = "" if reason is None else "?" + urlencode({"reason": reason})
    return Client().delete(PIN.format(room) + query, **headers)


def audit(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("pk"))


def pinned_fields(room) -> tuple:
    room.refresh_from_db()
    return room.pinned_text, room.pinned_nick, room.pinned_danmaku_id, room.pinned_until_ms


NOTHING_PINNED = ("", "", None, None)


# -- pinning ----------------------------------------------------------------------------


def test_pin_comment_carries_its_text_and_the_senders_display_nick(room, user, mod):
    ViewerProfile.objects.create(user=user, nickname="Kiki")
    target = comment(room, user, text="gg everyone")
    before = clock.now_ms()

    response = put(mod, {"danmaku_id": target.pk, "duration_s": 300, "reason": "nice one"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["id"], body["text"], body["nick"]) == (target.pk, "gg everyone", "Kiki")
    assert 299_000 <= body["expires_in_ms"] <= 300_000
    assert before + 300_000 <= body["until_ms"] <= clock.now_ms() + 300_000
    assert pinned_fields(room) == ("gg everyone", "Kiki", target.pk, body["until_ms"])
    assert get(mod).json() | {"expires_in_ms": 0} == body | {"expires_in_ms": 0}
    (row,) = audit("pin.set")
    assert (row.actor.username, row.target_type, row.target_id, row.room_id, row.reason) == (
        "as-moderator",
        "danmaku",
        str(target.pk),
        room.pk,
        "nice one",
    )
    assert row.detail == {
        "danmaku_id": target.pk,
        "text": "gg everyone",
        "nick": "Kiki",
        "until_ms": body["until_ms"],
        "replaced": None,
    }


def test_pin_comment_without_a_profile_shows_the_username(room, user, mod):
    target = comment(room, user)
    assert put(mod, {"danmaku_id": target.pk, "duration_s": 60}).json()["nick"] == "viewer"


def test_pin_notice_has_no_comment_id_and_an_empty_nick(room, mod):
    response = put(mod, {"text": "  Giveaway at 9 pm  ", "duration_s": 7200})

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["id"], body["text"], body["nick"]) == (None, "Giveaway at 9 pm", "")
    assert pinned_fields(room)[:3] == ("Giveaway at 9 pm", "", None)
    (row,) = audit("pin.set")
    assert (row.target_type, row.target_id, row.detail["text"]) == ("room", str(room.pk), "Giveaway at 9 pm")


def test_pinning_moves_the_rooms_updated_at(room, mod):
    before = Room.objects.get(pk=room.pk).updated_at
    put(mod, {"text": "hello", "duration_s": 60})
    assert Room.objects.get(pk=room.pk).updated_at > before


def test_a_staff_edit_from_a_form_loaded_before_the_pin_keeps_the_pin(room, mod):
    loaded = Room.objects.get(pk=room.pk)  # the admin's form, opened before the pin
    put(mod, {"text": "giveaway at nine", "duration_s": 600})
    loaded.poll_interval_ms = 2000

    room_save(room=loaded)

    saved = Room.objects.get(pk=room.pk)
    assert (saved.poll_interval_ms, saved.pinned_text) == (2000, "giveaway at nine")
    assert loaded.pinned_text == "giveaway at nine"  # what every process is told


# -- notices pass the filters ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("term", "kind", "action", "text"),
    [
        ("badword", "exact", "block", "this is a badword here"),
        ("b*dw*rd", "wildcard", "block", "a baaadwoooord"),
        ("checkme", "exact", "hold", "please checkme now"),
        (r"spam\d{3}", "regex", "block", "buy spam123 today"),
    ],
    ids=["exact-block", "wildcard-block", "hold", "regex"],
)
def test_notice_the_filters_refuse_is_400_and_changes_nothing(room, user, mod, term, kind, action, text):
    services.blocked_term_create(term=term, kind=kind, action=action)
    earlier = comment(room, user, text="the pin before")
    put(mod, {"danmaku_id": earlier.pk, "duration_s": 600})
    before = pinned_fields(room)

    response = put(mod, {"text": text, "duration_s": 60})

    assert response.status_code == 400, response.content
    assert response.json()["errors"] == [{"field": "text", "reason": response.json()["errors"][0]["reason"]}]
    assert "refused by the filters" in response.json()["detail"]
    assert pinned_fields(room) == before
    assert len(audit("pin.set")) == 1


def test_notice_with_a_link_is_refused_as_a_comment_would_be_held(room, mod):
    response = put(mod, {"text": "see https://spam.example/now", "duration_s": 60})

    assert response.status_code == 400
    assert "link" in response.json()["detail"]
    assert pinned_fields(room) == NOTHING_PINNED


def test_notice_with_a_masked_term_pins_the_masked_text(room, mod):
    services.blocked_term_create(term="darn", action="mask")

    response = put(mod, {"text": "darn good stream", "duration_s": 60})

    assert response.status_code == 200, response.content
    assert response.json()["text"] == "**** good stream"
    assert pinned_fields(room)[0] == "**** good stream"


def test_another_rooms_terms_do_not_touch_a_notice(room, mod):
    other = Room.objects.create(slug="other", title="Other")
    services.blocked_term_create(term="local", room=other)
    assert put(mod, {"text": "local news", "duration_s": 60}).status_code == 200
    assert put(mod, {"text": "local news", "duration_s": 60}, room="other").status_code == 400


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("\u200b\u200b", "empty"),
        ("a\x00b", "NUL"),
        ("a\u202eb", "bidirectional"),
        ("line\nbreak", "control"),
        ("x" * 101, "at most 100 characters"),
        ("x" * 501, "at most 500"),
    ],
)
def test_notice_text_follows_the_comment_rules_and_the_rooms_length(room, mod, text, why):
    response = put(mod, {"text": text, "duration_s": 60})

    assert response.status_code == 400, response.content
    assert response.json()["errors"][0]["field"] == "text"
    assert why in response.json()["detail"]
    assert pinned_fields(room) == NOTHING_PINNED


def test_notice_length_is_the_rooms_own_bound(room, mod):
    Room.objects.filter(pk=room.pk).update(max_text_length=10)
    assert put(mod, {"text": "x" * 10, "duration_s": 60}).status_code == 200
    assert put(mod, {"text": "x" * 11, "duration_s": 60}).status_code == 400


# -- bad bodies -------------------------------------------------------------------------


@pytest.mark.parametrize("duration", [0, 59, 7201, -60, 10**12])
def test_duration_outside_one_minute_to_two_hours_is_400(room, mod, duration):
    response = put(mod, {"text": "hi", "duration_s": duration})
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["duration_s"]
    assert AuditEntry.objects.count() == 0


@pytest.mark.parametrize("duration", [60, 7200])
def test_duration_bounds_are_inclusive(room, mod, duration):
    response = put(mod, {"text": "hi", "duration_s": duration})
    assert response.status_code == 200
    assert response.json()["expires_in_ms"] > (duration - 2) * 1000


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"duration_s": 60}, "danmaku_id"),
        ({"danmaku_id": 1, "text": "hi", "duration_s": 60}, "text"),
        ({"text": None, "danmaku_id": None, "duration_s": 60}, "danmaku_id"),
        ({"text": "hi"}, "duration_s"),
        ({"text": "hi", "duration_s": 60, "colour": "red"}, "colour"),
        ({"danmaku_id": 0, "duration_s": 60}, "danmaku_id"),
        ({"danmaku_id": 2**63, "duration_s": 60}, "danmaku_id"),
        ({"text": 5, "duration_s": 60}, "text"),
        ({"text": "hi", "duration_s": 60, "reason": "r" * 501}, "reason"),
    ],
)
def test_exactly_one_of_danmaku_id_and_text_else_400_naming_the_field(room, mod, body, field):
    response = put(mod, body)
    assert response.status_code == 400, response.content
    assert field in [e["field"] for e in response.json()["errors"]]
    assert pinned_fields(room) == NOTHING_PINNED
    assert AuditEntry.objects.count() == 0


@pytest.mark.parametrize(
    ("status", "code"),
    [(Danmaku.Status.HIDDEN, 409), (Danmaku.Status.HELD, 409), (Danmaku.Status.SENDER_ONLY, 409)],
)
def test_only_a_published_comment_can_be_pinned(room, user, mod, status, code):
    target = comment(room, user, status=status)
    response = put(mod, {"danmaku_id": target.pk, "duration_s": 60})
    assert response.status_code == code
    assert "not published" in response.json()["detail"]
    assert pinned_fields(room) == NOTHING_PINNED


def test_another_rooms_comment_or_an_unknown_one_is_404(room, user, mod):
    other = Room.objects.create(slug="other", title="Other")
    elsewhere = comment(other, user)
    assert put(mod, {"danmaku_id": elsewhere.pk, "duration_s": 60}).status_code == 404
    assert put(mod, {"danmaku_id": 999_999, "duration_s": 60}).status_code == 404
    assert put(mod, {"text": "hi", "duration_s": 60}, room="nowhere").status_code == 404
    assert get(mod, room="nowhere").status_code == 404
    assert pinned_fields(room) == NOTHING_PINNED


# -- one pin per room ---------------------------------------------------------------------


def test_pinning_again_replaces_the_pin_and_the_audit_says_what_it_replaced(room, user, mod):
    first = comment(room, user, text="first")
    old = put(mod, {"danmaku_id": first.pk, "duration_s": 600}).json()

    new = put(mod, {"text": "second", "duration_s": 60}).json()

    assert get(mod).json()["text"] == "second"
    assert pinned_fields(room)[:3] == ("second", "", None)
    first_row, second_row = audit("pin.set")
    assert first_row.detail["replaced"] is None
    assert second_row.detail["replaced"] == {
        "danmaku_id": first.pk,
        "text": "first",
        "nick": "viewer",
        "until_ms": old["until_ms"],
    }
    assert second_row.detail["until_ms"] == new["until_ms"]


def test_an_expired_pin_is_not_shown_nor_replaced(room, mod):
    put(mod, {"text": "old", "duration_s": 60})
    Room.objects.filter(pk=room.pk).update(pinned_until_ms=clock.now_ms() - 1)

    assert get(mod).json() is None
    put(mod, {"text": "new", "duration_s": 60})
    assert audit("pin.set")[-1].detail["replaced"] is None


# -- unpinning -----------------------------------------------------------------------------


def test_unpin_takes_the_pin_down_with_one_audit_row(room, mod):
    pinned = put(mod, {"text": "going soon", "duration_s": 60}).json()

    response = delete(mod, reason="event over")

    assert response.status_code == 204
    assert get(mod).json() is None
    assert pinned_fields(room) == NOTHING_PINNED
    (row,) = audit("pin.clear")
    assert (row.reason, row.target_type, row.room_id) == ("event over", "room", room.pk)
    assert row.detail == {"danmaku_id": None, "text": "going soon", "nick": "", "until_ms": pinned["until_ms"]}


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_unpin_needs_a_reason(room, mod, reason):
    put(mod, {"text": "stays", "duration_s": 60})
    response = delete(mod, reason=reason)
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["reason"]
    assert pinned_fields(room)[0] == "stays"


def test_unpin_with_nothing_pinned_is_409(room, mod):
    assert delete(mod).status_code == 409
    assert AuditEntry.objects.count() == 0


# -- hiding the pinned comment unpins it -----------------------------------------------------


def test_hiding_the_pinned_comment_unpins_it(room, user, mod):
    target = comment(room, user)
    put(mod, {"danmaku_id": target.pk, "duration_s": 600})
    before = Room.objects.get(pk=room.pk).updated_at

    response = Client().post(
        f"{BASE}/danmaku/{target.pk}/hide", json.dumps({"reason": "spoiler"}), content_type="application/json", **mod
    )

    assert response.status_code == 200
    assert get(mod).json() is None
    assert pinned_fields(room) == NOTHING_PINNED
    # update() skips auto_now: the refreshers must still see the room changed.
    assert Room.objects.get(pk=room.pk).updated_at > before
    # The hide's own row records it; no second row.
    assert [r.action for r in AuditEntry.objects.order_by("pk")] == ["pin.set", "danmaku.hide"]


def test_hiding_another_comment_leaves_the_pin(room, user, mod):
    pinned, other = comment(room, user, text="pinned"), comment(room, user, text="other")
    put(mod, {"danmaku_id": pinned.pk, "duration_s": 600})

    Client().post(
        f"{BASE}/danmaku/{other.pk}/hide", json.dumps({"reason": "r"}), content_type="application/json", **mod
    )

    assert get(mod).json()["id"] == pinned.pk


def test_hiding_a_comment_whose_text_is_pinned_as_a_notice_leaves_it(room, user, mod):
    target = comment(room, user, text="same words")
    put(mod, {"text": "same words", "duration_s": 600})
    Client().post(
        f"{BASE}/danmaku/{target.pk}/hide", json.dumps({"reason": "r"}), content_type="application/json", **mod
    )
    assert get(mod).json()["text"] == "same words"


# -- who may ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["anonymous", "viewer", "product_staff", "moderator", "superuser"])
def test_only_moderators_may_read_or_change_pins(room, user, role):
    headers = headers_for(role)
    target = comment(room, user)
    allowed = role in ("moderator", "superuser")
    refused = 401 if role == "anonymous" else 403

    assert get(headers).status_code == (200 if allowed else refused)
    assert put(headers, {"danmaku_id": target.pk, "duration_s": 60}).status_code == (200 if allowed else refused)
    assert delete(headers).status_code == (204 if allowed else refused)
    assert AuditEntry.objects.count() == (2 if allowed else 0)


def test_a_player_token_cannot_pin(room, db):
    moderator = get_user_model().objects.create_user("mod", is_staff=True)
    moderator.groups.add(Group.objects.get(name=MODERATORS_GROUP))
    _, raw = ApiToken.issue(moderator, scope=ApiToken.Scope.PLAYER)
    assert put({"HTTP_AUTHORIZATION": f"Bearer {raw}"}, {"text": "hi", "duration_s": 60}).status_code == 401


def test_session_put_without_csrf_token_is_refused(room, db):
    moderator = get_user_model().objects.create_user("mod", is_staff=True)
    moderator.groups.add(Group.objects.get(name=MODERATORS_GROUP))
    client = Client(enforce_csrf_checks=True)
    client.force_login(moderator)
    response = client.put(
        PIN.format("live"), json.dumps({"text": "hi", "duration_s": 60}), content_type="application/json"
    )
    assert response.status_code == 403
    assert client.get(PIN.format("live")).status_code == 200
    assert pinned_fields(room) == NOTHING_PINNED


# -- no body gives a 5xx ---------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
PIN_BODIES = (
    st.fixed_dictionaries(
        {},
        optional={
            "danmaku_id": st.integers(min_value=-(2**70), max_value=2**70) | JSON,
            "text": st.text(max_size=600) | JSON,
            "duration_s": st.integers(min_value=-(2**70), max_value=2**70) | JSON,
            "reason": st.text(max_size=600) | JSON,
        },
    )
    | JSON
)


@given(body=PIN_BODIES)
@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_put_body_gives_a_server_error(room, mod, body):
    response = put(mod, body)
    assert response.status_code in (200, 400, 404, 409), response.content
    assert response["Content-Type"].startswith("application/json")


# -- what viewers pull ----------------------------------------------------------------------

PULL = "/api/v1/rooms/{}/danmaku"


def pulled_pin(client: Client):
    """The pin a pull carries once this process's refresher has read the room."""
    client.get(PULL.format("live"))  # the room is active from its first pull
    runtime.refresher().refresh_once()
    body = client.get(PULL.format("live")).json()
    return body["pinned"]


def needs_pull_pins():
    # The pull side of pins (danmaku.pull) lands separately; these tests wait for it.
    from danmaku.pull import wire

    with open(wire.__file__) as source:
        ready = "pinned" in source.read()
    if not ready:
        pytest.skip("the pull answer does not carry pins yet")


def test_a_pull_carries_the_pin_and_stops_after_expiry(room, user, mod):
    needs_pull_pins()
    client = Client()
    assert pulled_pin(client) is None
    target = comment(room, user, text="look here")

    put(mod, {"danmaku_id": target.pk, "duration_s": 600})
    shown = pulled_pin(client)

    assert (shown["id"], shown["text"], shown["nick"]) == (target.pk, "look here", "viewer")
    # Counted from the end of the newest sealed second, the same for every
    # pull of it (shared bytes): up to a couple of seconds over.
    assert 590_000 <= shown["expires_in_ms"] <= 603_000

    # The 60 s minimum is for the API; the row can expire sooner.
    Room.objects.filter(pk=room.pk).update(pinned_until_ms=clock.now_ms() + 300)
    runtime.refresher().refresh_once()
    time.sleep(1.5)
    assert pulled_pin(client) is None


def test_a_pull_stops_carrying_a_notice_once_unpinned(room, mod):
    needs_pull_pins()
    client = Client()
    put(mod, {"text": "notice", "duration_s": 60})
    assert pulled_pin(client)["text"] == "notice"

    delete(mod)

    assert pulled_pin(client) is None


def test_a_pull_stops_carrying_the_pin_once_its_comment_is_hidden(room, user, mod):
    needs_pull_pins()
    client = Client()
    target = comment(room, user)
    put(mod, {"danmaku_id": target.pk, "duration_s": 600})
    assert pulled_pin(client)["id"] == target.pk

    Client().post(
        f"{BASE}/danmaku/{target.pk}/hide", json.dumps({"reason": "r"}), content_type="application/json", **mod
    )

    assert pulled_pin(client) is None


# -- the service, for other callers ------------------------------------------------------------


def test_services_check_the_duration_themselves(room):
    with pytest.raises(InvalidInput) as raised:
        pins.pin_notice(room=room, text="hi", duration_s=59, actor=None)
    assert raised.value.field == "duration_s"


# -- production mode: the pin travels through Redis ---------------------------------------


def test_in_redis_mode_a_pin_and_its_unpinning_by_a_hide_reach_pulls(
    redis_mode, room, user, mod, django_capture_on_commit_callbacks
):
    needs_pull_pins()
    client = Client()
    target = comment(room, user, text="through redis")
    assert pulled_pin(client) is None

    with django_capture_on_commit_callbacks(execute=True):
        put(mod, {"danmaku_id": target.pk, "duration_s": 600})
    # The database changed behind Redis's back: pulls must show what Redis carries.
    Room.objects.filter(pk=room.pk).update(pinned_text="not from redis")
    assert pulled_pin(client)["text"] == "through redis"

    with django_capture_on_commit_callbacks(execute=True):
        Client().post(
            f"{BASE}/danmaku/{target.pk}/hide", json.dumps({"reason": "r"}), content_type="application/json", **mod
        )
    assert pulled_pin(client) is None


def test_the_room_admin_shows_the_pin_read_only(room, mod, admin_client):
    assert "nothing pinned" in admin_client.get(f"/admin/danmaku/room/{room.pk}/change/").content.decode()
    put(mod, {"text": "see the schedule", "duration_s": 600})

    page = admin_client.get(f"/admin/danmaku/room/{room.pk}/change/").content.decode()

    assert "“see the schedule” (notice), until 20" in page
    assert 'name="pinned_text"' not in page
