"""Viewers' reports through HTTP: filing, the limit, standing, auto-hide, the
moderators' queue and its resolution, and the reporter told the outcome."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from danmaku import runtime
from danmaku.models import ApiToken, Danmaku, Room
from moderation import reportlimit
from moderation.models import AuditEntry, Report, Sanction
from moderation.reports import OUT_OF_STANDING_WEIGHT, reach_factor
from moderation.selectors import MODERATORS_GROUP

URL = "/api/v1/rooms/{room}/danmaku/{id}/report"
MINE = "/api/v1/reports/mine"
MOD = "/api/v1/moderation"
LIMIT = reportlimit.REPORTS_PER_MINUTE


def make_user(name: str, *, hours_old: float = 48, published: int = 3, room=None):
    """A user whose account is ``hours_old`` with ``published`` comments (in ``room``)."""
    user = get_user_model().objects.create_user(name, password="pw")
    get_user_model().objects.filter(pk=user.pk).update(date_joined=timezone.now() - timedelta(hours=hours_old))
    user.refresh_from_db()
    if published:
        target = room or Room.objects.get_or_create(slug="elsewhere", defaults={"title": "Elsewhere"})[0]
        Danmaku.objects.bulk_create(
            [Danmaku(room=target, user=user, text=f"mine {i}", ts_ms=now_ms() - 60_000) for i in range(published)]
        )
    return user


def now_ms() -> int:
    return int(time.time() * 1000)


def bearer(user) -> dict:
    _, raw = ApiToken.issue(user)
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def comment(room, user, text: str = "bad words") -> Danmaku:
    return Danmaku.objects.create(room=room, user=user, text=text, ts_ms=now_ms(), in_stream=True)


def post(path: str, body, headers: dict, client: Client | None = None):
    client = client or Client(enforce_csrf_checks=True)
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(path, data, content_type="application/json", **headers)


def report(room, target: Danmaku, headers: dict, reason: str = "abuse", text: str = ""):
    body = {"reason": reason} if not text else {"reason": reason, "text": text}
    return post(URL.format(room=room.slug, id=target.pk), body, headers)


@pytest.fixture
def sender(db):
    return make_user("sender")


@pytest.fixture
def target(room, sender):
    return comment(room, sender)


@pytest.fixture
def reporter(db):
    return make_user("reporter")


@pytest.fixture
def moderator(db):
    user = get_user_model().objects.create_user("mod", password="pw")
    user.groups.add(Group.objects.get(name=MODERATORS_GROUP))
    return user


# -- filing -------------------------------------------------------------------------


def test_report_is_201_with_the_report_and_writes_one_row(room, target, reporter):
    response = report(room, target, bearer(reporter), "spam")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["danmaku_id"], body["reason"], body["text"]) == (target.pk, "spam", "")
    saved = Report.objects.get()
    assert (saved.reporter, saved.room, saved.state, saved.in_good_standing) == (reporter, room, "open", True)


def test_repeat_report_answers_as_the_first_and_writes_nothing(room, target, reporter):
    headers = bearer(reporter)
    first = report(room, target, headers, "spam")
    again = report(room, target, headers, "other", "changed my mind")
    assert again.status_code == first.status_code == 201
    assert again.json() == first.json()
    assert Report.objects.count() == 1


def test_session_report_needs_the_csrf_token(room, target, reporter):
    client = Client(enforce_csrf_checks=True)
    client.force_login(reporter)
    path = URL.format(room=room.slug, id=target.pk)
    assert post(path, {"reason": "spam"}, {}, client).status_code == 403
    client.get(f"/rooms/{room.slug}/")  # the viewer page sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    assert post(path, {"reason": "spam"}, {"HTTP_X_CSRFTOKEN": token}, client).status_code == 201


def test_not_logged_in_is_401(room, target):
    assert report(room, target, {}).status_code == 401
    assert Report.objects.count() == 0


def test_player_token_may_not_report(room, target, reporter):
    _, raw = ApiToken.issue(reporter, scope=ApiToken.Scope.PLAYER, room=room)
    assert report(room, target, {"HTTP_AUTHORIZATION": f"Bearer {raw}"}).status_code == 401


def test_own_comment_is_refused_with_the_reason(room, target, sender):
    response = report(room, target, bearer(sender))
    assert response.status_code == 403
    assert response.json()["errors"] == [{"field": "id", "reason": "you cannot report your own comment"}]
    assert Report.objects.count() == 0


@pytest.mark.parametrize(
    ("case", "status"),
    [("unknown room", 404), ("unknown comment", 404), ("other room", 404), ("held", 404), ("hidden", 409)],
)
def test_comment_not_reportable(room, sender, reporter, case, status):
    other = Room.objects.create(slug="other", title="Other")
    target = comment(other if case == "other room" else room, sender)
    slug, pk = room.slug, target.pk
    if case == "unknown room":
        slug = "nowhere"
    elif case == "unknown comment":
        pk = target.pk + 1000
    elif case in ("held", "hidden"):
        Danmaku.objects.filter(pk=pk).update(status=case)
    response = post(URL.format(room=slug, id=pk), {"reason": "spam"}, bearer(reporter))
    assert response.status_code == status, response.content
    assert Report.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "reason"),
        ({"reason": "ugly"}, "reason"),
        ({"reason": 3}, "reason"),
        ({"reason": "other"}, "text"),
        ({"reason": "other", "text": "   "}, "text"),
        ({"reason": "spam", "text": "x" * 301}, "text"),
        ({"reason": "spam", "text": "a\x00b"}, "text"),
        ({"reason": "spam", "text": "a\u202eb"}, "text"),
        ({"reason": "spam", "extra": 1}, "extra"),
        ("[]", "body"),
        ("not json", "body"),
    ],
)
def test_bad_input_is_400_naming_the_field(room, target, reporter, body, field):
    response = post(URL.format(room=room.slug, id=target.pk), body, bearer(reporter))
    assert response.status_code == 400, response.content
    assert field in [error["field"] for error in response.json()["errors"]]
    assert Report.objects.count() == 0


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.dictionaries(
            st.sampled_from(["reason", "text", "x"]),
            st.one_of(st.text(max_size=400), st.integers(), st.none(), st.booleans(), st.lists(st.integers())),
        ),
        st.text(max_size=50),
        st.binary(max_size=50),
    )
)
def test_no_body_gets_a_server_error(room, target, reporter, body):
    Report.objects.all().delete()
    response = post(URL.format(room=room.slug, id=target.pk), body, bearer(reporter))
    assert response.status_code in (201, 400), response.content


# -- the reporter limit ---------------------------------------------------------------


def flood(room, sender, reporter, count: int) -> list[int]:
    comments = Danmaku.objects.bulk_create(
        [Danmaku(room=room, user=sender, text=f"c{i}", ts_ms=now_ms(), in_stream=True) for i in range(count)]
    )
    headers, client = bearer(reporter), Client()
    path = URL.format(room=room.slug, id="{}")
    return [post(path.format(target.pk), {"reason": "spam"}, headers, client).status_code for target in comments]


def test_flood_of_1000_reports_accepts_the_limit_and_writes_nothing_more(room, sender, reporter):
    statuses = flood(room, sender, reporter, 1000)
    assert statuses.count(201) == LIMIT
    assert statuses[:LIMIT] == [201] * LIMIT
    assert statuses.count(429) == 1000 - LIMIT
    assert Report.objects.count() == LIMIT


def test_limited_answer_carries_retry_after(room, sender, reporter):
    flood(room, sender, reporter, LIMIT)
    response = report(room, comment(room, sender), bearer(reporter))
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    assert 0 < response.json()["retry_after_ms"] <= 60_000


def test_limit_frees_a_place_once_the_oldest_report_is_a_minute_old(room, sender, reporter):
    flood(room, sender, reporter, LIMIT)
    Report.objects.filter(pk=Report.objects.order_by("id").first().pk).update(
        created_at=timezone.now() - timedelta(seconds=61)
    )
    assert report(room, comment(room, sender), bearer(reporter)).status_code == 201
    assert report(room, comment(room, sender), bearer(reporter)).status_code == 429


def test_flood_with_redis_accepts_the_limit_and_writes_nothing_more(redis_mode, room, sender, reporter):
    statuses = flood(room, sender, reporter, 1000)
    assert statuses.count(201) == LIMIT
    assert statuses.count(429) == 1000 - LIMIT
    assert Report.objects.count() == LIMIT
    window = redis_mode.zcard(reportlimit.window_key(reporter.pk))
    assert window == LIMIT
    assert 0 < redis_mode.pttl(reportlimit.window_key(reporter.pk)) <= reportlimit.WINDOW_MS


def test_redis_window_is_shared_and_a_refusal_adds_nothing(redis_mode, reporter):
    waits = [reportlimit.take_redis(user_id=reporter.pk) for _ in range(LIMIT + 5)]
    assert waits[:LIMIT] == [0] * LIMIT
    assert all(0 < wait <= reportlimit.WINDOW_MS for wait in waits[LIMIT:])
    assert redis_mode.zcard(reportlimit.window_key(reporter.pk)) == LIMIT


def test_redis_down_counts_in_the_database(settings, room, sender, reporter):
    from infra.redis import breaker, reset_clients

    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    reset_clients()
    try:
        assert reportlimit.take_redis(user_id=reporter.pk) is None
        statuses = flood(room, sender, reporter, LIMIT + 3)
    finally:
        reset_clients()
        breaker.succeeded()
    assert statuses.count(201) == LIMIT
    assert Report.objects.count() == LIMIT


# -- standing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hours_old", "published", "dismissed", "good"),
    [
        (48, 3, 0, True),
        (23, 3, 0, False),  # account too young (24 h by default)
        (48, 2, 0, False),  # too few published comments (3)
        (48, 3, 3, True),  # at most 3 dismissed
        (48, 3, 4, False),
    ],
)
def test_good_standing_rules(room, sender, hours_old, published, dismissed, good):
    reporter = make_user("r", hours_old=hours_old, published=published)
    for i in range(dismissed):
        old = comment(room, sender, f"old {i}")
        Report.objects.create(
            danmaku=old, room=room, reporter=reporter, reason="spam", state="dismissed", resolved_at=timezone.now()
        )
    target = comment(room, sender)
    assert report(room, target, bearer(reporter)).status_code == 201
    saved = Report.objects.get(danmaku=target)
    assert saved.in_good_standing is good
    assert saved.weight == pytest.approx((1.0 if good else OUT_OF_STANDING_WEIGHT) / (1 + dismissed))


def test_dismissals_older_than_30_days_are_forgiven(room, sender):
    reporter = make_user("r")
    for i in range(5):
        Report.objects.create(
            danmaku=comment(room, sender, f"old {i}"),
            room=room,
            reporter=reporter,
            reason="spam",
            state="dismissed",
            resolved_at=timezone.now() - timedelta(days=31),
        )
    target = comment(room, sender)
    report(room, target, bearer(reporter))
    assert Report.objects.get(danmaku=target).weight == 1.0


def test_room_standing_settings_apply(room, sender):
    Room.objects.filter(pk=room.pk).update(report_min_account_age_hours=0, report_min_published=0)
    room.refresh_from_db()
    fresh = make_user("fresh", hours_old=0, published=0)
    target = comment(room, sender)
    report(room, target, bearer(fresh))
    assert Report.objects.get().in_good_standing is True


# -- auto-hide ----------------------------------------------------------------------


def reporters(count: int, prefix: str = "r", **standing) -> list:
    return [make_user(f"{prefix}{i}", **standing) for i in range(count)]


@pytest.fixture
def threshold_room(room):
    Room.objects.filter(pk=room.pk).update(report_hide_threshold=5)
    room.refresh_from_db()
    return room


def test_five_good_reporters_hide_the_comment_once_audited_and_undoable(threshold_room, target, moderator):
    room = threshold_room
    people = reporters(5)
    for person in people[:4]:
        assert report(room, target, bearer(person)).status_code == 201
    target.refresh_from_db()
    assert target.status == "published"
    assert AuditEntry.objects.count() == 0

    report(room, target, bearer(people[4]))
    target.refresh_from_db()
    assert target.status == "hidden"
    assert target.retracted_at_ms is not None
    row = AuditEntry.objects.get()
    assert (row.actor, row.action, row.target_id, row.detail["reporters"]) == (
        None,
        "report.auto_hide",
        str(target.pk),
        5,
    )
    assert set(Report.objects.values_list("state", "resolved_by")) == {("hidden", None)}

    # A sixth report of a hidden comment is refused; nothing more is audited.
    assert report(room, target, bearer(make_user("late"))).status_code == 409
    # A repeat still answers as the first.
    assert report(room, target, bearer(people[0])).status_code == 201
    assert AuditEntry.objects.count() == 1

    undo = post(f"{MOD}/danmaku/{target.pk}/unhide", {"reason": "fine after all"}, bearer(moderator))
    assert undo.status_code == 200, undo.content
    target.refresh_from_db()
    assert target.status == "published"
    assert list(AuditEntry.objects.order_by("id").values_list("action", flat=True)) == [
        "report.auto_hide",
        "danmaku.unhide",
    ]


def test_one_user_reporting_twice_counts_once(threshold_room, target):
    people = reporters(4)
    for person in people:
        report(threshold_room, target, bearer(person))
    report(threshold_room, target, bearer(people[0]))
    target.refresh_from_db()
    assert target.status == "published"
    assert Report.objects.count() == 4


def test_five_fresh_accounts_hide_nothing(threshold_room, target):
    for person in reporters(5, hours_old=1 / 60, published=0):
        assert report(threshold_room, target, bearer(person)).status_code == 201
    target.refresh_from_db()
    assert target.status == "published"
    assert AuditEntry.objects.count() == 0
    assert Report.objects.filter(state="open", in_good_standing=False).count() == 5


def test_threshold_zero_never_hides(room, target):
    for person in reporters(8):
        report(room, target, bearer(person))
    target.refresh_from_db()
    assert target.status == "published"


def test_auto_hidden_comment_reaches_deleted_of_the_next_pull(client, threshold_room, target):
    """The acceptance: 5 reports through HTTP, and a viewer holding a cursor
    gets the id in ``deleted`` on the pull after the refresher's next tick."""
    Danmaku.objects.filter(pk=target.pk).update(ts_ms=now_ms() - 3000)
    pull_url = f"/api/v1/rooms/{threshold_room.slug}/danmaku"
    first = client.get(pull_url).json()
    assert target.pk in first["items"]["id"]
    for person in reporters(5):
        report(threshold_room, target, bearer(person))
    # The retraction's second must be sealed before a pull carries it.
    now = time.time() * 1000
    time.sleep(((now // 1000 + 1) * 1000 + runtime.refresher().seal_lag_ms + 50 - now) / 1000)
    runtime.refresher().refresh_once()
    after = client.get(pull_url, {"after": first["cursor"]}).json()
    assert target.pk in after["deleted"]


# -- the moderators' queue ------------------------------------------------------------


def test_queue_is_sorted_by_weight(room, sender, moderator):
    light, heavy, reached = comment(room, sender, "light"), comment(room, sender, "heavy"), comment(room, sender, "r")
    people = reporters(3)
    report(room, light, bearer(people[0]), "spam")
    for person in people:
        report(room, heavy, bearer(person), "other", f"says {person.username}")
    fresh = reporters(2, "fresh", hours_old=0, published=0)
    for person in fresh:
        report(room, reached, bearer(person), "hate")
    # 2 reporters out of standing, seen by 100,000: 0.5 * 6 = 3.0 against heavy's 3 * 1.
    Report.objects.filter(danmaku=reached).update(viewers=100_000)
    Report.objects.filter(danmaku=heavy).update(viewers=0)

    response = Client().get(f"{MOD}/rooms/{room.slug}/reports", **bearer(moderator))
    assert response.status_code == 200, response.content
    queue = response.json()
    assert [entry["danmaku_id"] for entry in queue] == [reached.pk, heavy.pk, light.pk]
    assert queue[0]["weight"] == pytest.approx(2 * OUT_OF_STANDING_WEIGHT * reach_factor(100_000), rel=1e-3)
    assert (queue[1]["reporters"], queue[1]["good_standing"], queue[1]["reasons"]) == (3, 3, {"other": 3})
    assert queue[1]["notes"] == [f"says {p.username}" for p in people]
    assert queue[2]["weight"] == 1.0


def test_queue_and_resolve_are_for_moderators_only(room, target, reporter):
    report(room, target, bearer(reporter))
    assert Client().get(f"{MOD}/rooms/{room.slug}/reports").status_code == 401
    assert Client().get(f"{MOD}/rooms/{room.slug}/reports", **bearer(reporter)).status_code == 403
    resolve = post(f"{MOD}/reports/{target.pk}/resolve", {"action": "hide", "reason": "r"}, bearer(reporter))
    assert resolve.status_code == 403
    assert Report.objects.get().state == "open"


@pytest.mark.parametrize(
    ("action", "state", "status", "audits"),
    [
        ("hide", "hidden", "hidden", ["report.hide"]),
        ("dismiss", "dismissed", "published", ["report.dismiss"]),
        ("sanction", "sanctioned", "hidden", ["user.timeout", "report.sanction"]),
    ],
)
def test_resolve_resolves_every_open_report_and_audits(room, target, moderator, action, state, status, audits):
    for person in reporters(3):
        report(room, target, bearer(person))
    response = post(f"{MOD}/reports/{target.pk}/resolve", {"action": action, "reason": "checked"}, bearer(moderator))
    assert response.status_code == 200, response.content
    assert response.json() == {"danmaku_id": target.pk, "action": action, "resolved": 3}
    target.refresh_from_db()
    assert target.status == status
    assert set(Report.objects.values_list("state", "resolved_by")) == {(state, moderator.pk)}
    assert list(AuditEntry.objects.order_by("id").values_list("action", flat=True)) == audits
    row = AuditEntry.objects.get(action=f"report.{action}")
    assert (row.actor, row.reason, row.detail["reports"]) == (moderator, "checked", 3)
    if action == "sanction":
        sanction = Sanction.objects.get()
        assert (sanction.user_id, sanction.room_id, sanction.kind) == (target.user_id, room.pk, "timeout")
    # Nothing left to resolve.
    again = post(f"{MOD}/reports/{target.pk}/resolve", {"action": action, "reason": "x"}, bearer(moderator))
    assert again.status_code == 409


def test_sanction_can_ban(room, target, moderator, reporter):
    report(room, target, bearer(reporter))
    body = {"action": "sanction", "sanction": "ban", "reason": "raid"}
    assert post(f"{MOD}/reports/{target.pk}/resolve", body, bearer(moderator)).status_code == 200
    assert Sanction.objects.get().kind == "ban"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "nuke", "reason": "r"}, "action"),
        ({"action": "hide"}, "reason"),
        ({"action": "hide", "reason": " "}, "reason"),
        ({"action": "sanction", "reason": "r", "seconds": 1}, "seconds"),
    ],
)
def test_resolve_bad_input_is_400_naming_the_field(room, target, moderator, reporter, body, field):
    report(room, target, bearer(reporter))
    response = post(f"{MOD}/reports/{target.pk}/resolve", body, bearer(moderator))
    assert response.status_code == 400
    assert field in [error["field"] for error in response.json()["errors"]]
    assert Report.objects.get().state == "open"


def test_dismissals_lower_the_reporters_standing(room, sender, moderator):
    reporter = make_user("often-wrong")
    for i in range(4):
        target = comment(room, sender, f"fine {i}")
        report(room, target, bearer(reporter))
        post(f"{MOD}/reports/{target.pk}/resolve", {"action": "dismiss", "reason": "fine"}, bearer(moderator))
    target = comment(room, sender, "next")
    report(room, target, bearer(reporter))
    saved = Report.objects.get(danmaku=target)
    assert saved.in_good_standing is False
    assert saved.weight == pytest.approx(OUT_OF_STANDING_WEIGHT / 5)


# -- the reporter told ------------------------------------------------------------------


def test_reporter_is_told_each_outcome_once(room, sender, reporter, moderator):
    hidden, dismissed, pending = (comment(room, sender, t) for t in ("hide me", "keep me", "wait"))
    headers = bearer(reporter)
    for target in (hidden, dismissed, pending):
        report(room, target, headers)
    post(f"{MOD}/reports/{hidden.pk}/resolve", {"action": "hide", "reason": "r"}, bearer(moderator))
    post(f"{MOD}/reports/{dismissed.pk}/resolve", {"action": "dismiss", "reason": "r"}, bearer(moderator))

    first = Client().get(MINE, **headers)
    assert first.status_code == 200
    assert [(o["danmaku_id"], o["comment"], o["outcome"]) for o in first.json()] == [
        (hidden.pk, "hide me", "hidden"),
        (dismissed.pk, "keep me", "dismissed"),
    ]
    assert Client().get(MINE, **headers).json() == []
    assert Client().get(MINE).status_code == 401


# -- the admin ----------------------------------------------------------------------


def test_admin_lists_reports_heaviest_comment_first_and_hides_by_action(room, sender, moderator):
    light, heavy = comment(room, sender, "light one"), comment(room, sender, "heavy one")
    people = reporters(3)
    report(room, light, bearer(people[0]))
    for person in people:
        report(room, heavy, bearer(person))
    moderator.is_staff = True
    moderator.save()
    client = Client()
    client.force_login(moderator)
    page = client.get("/admin/moderation/report/")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.index("heavy one") < html.index("light one")

    pk = Report.objects.filter(danmaku=heavy).first().pk
    done = client.post(
        "/admin/moderation/report/",
        {"action": "hide_selected", "_selected_action": [pk], "reason": "from the admin"},
    )
    assert done.status_code == 302
    heavy.refresh_from_db()
    assert heavy.status == "hidden"
    assert set(Report.objects.filter(danmaku=heavy).values_list("state", flat=True)) == {"hidden"}
    assert AuditEntry.objects.get().action == "report.hide"
