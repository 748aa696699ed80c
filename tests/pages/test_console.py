"""The moderation console in headless Chromium against a real gunicorn.

A moderator watches room "demo" in the console while a guest watches it on the
viewer page (two browser contexts, two people). A comment from another user
shows up on both; the moderator hides it from the console with a reason, the
guest's next pull carries its id in ``deleted`` and it leaves the guest's
screen. In a room whose policy holds every comment, the held comments show up
in the console, and approve, reject, time out and ban work from there. Neither
page has a script error, a console error or a dialog on the way.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest
import requests
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

from danmaku.models import Room
from danmaku.pull.spread import JITTER_SHARE
from harness import local
from infra.changefeed import LEASE_SECONDS
from tests.pages.conftest import log_in, make_user, send_comment

pytestmark = pytest.mark.slow

ROOM = "demo"
HELD_ROOM = "review"
REQUEST_TIMEOUT_SECONDS = 10
POLL_INTERVAL_MS = Room._meta.get_field("poll_interval_ms").default
QUIET_INTERVAL_MS = Room._meta.get_field("quiet_interval_ms").default
# The console polls every 2 s; allow that and a slow request or two.
CONSOLE_WAIT_MS = 2000 + 3000
# How long a sent comment may take to reach the guest's screen: the quiet
# interval bounds the viewer's wait even if the room went quiet, plus the
# page's replay of comment spacing and slack. A bound for the test, not a
# latency claim (tests/pages/test_viewer_smoke.py measures that).
VIEWER_WAIT_MS = QUIET_INTERVAL_MS + 5000
# A hidden comment leaves every screen on the viewer's next pull: the room's
# poll interval with its jitter, plus 2 s for the refresher and the request.
RETRACTION_WAIT_MS = POLL_INTERVAL_MS * (1 + JITTER_SHARE) + 2000
# Chromium logs every non-2xx fetch as a console error; the one 409 the test
# provokes on purpose is expected, any other is a problem.
EXPECTED_CONFLICT = re.compile(r"^Failed to load resource: the server responded with a status of 409 \(Conflict\)")
# After the first failed poll the console waits twice its interval.
FIRST_BACKOFF_MS = 2 * 2000


@pytest.fixture(scope="module")
def server():
    with local.gunicorn(
        room=ROOM, users=("viewer", "sender", "mod"), room_fields={"user_send_interval_ms": 0}
    ) as server:
        make_user(server, "mod", groups=("Moderators",))
        server.manage("create_room", HELD_ROOM)
        server.manage(
            "shell",
            "-c",
            "from danmaku.models import Room\n"
            f"Room.objects.filter(slug={HELD_ROOM!r}).update(moderation_policy='manual', user_send_interval_ms=0)",
        )
        yield server


def send(server, room: str, text: str, *, token: str, mode: str = "top") -> dict:
    return send_comment(server, room, text, token=token, mode=mode)


def open_console(page, server, room: str) -> None:
    log_in(page, server, "mod", f"/moderate/{room}/")
    assert page.url == f"{server.base_url}/moderate/{room}/"
    expect(page.locator("#conn[data-state=live]")).to_have_text(re.compile(r"^live"), timeout=CONSOLE_WAIT_MS)


def console_row(page, comment_id: int):
    row = page.locator(f'#feed tr.comment[data-id="{comment_id}"]')
    row.wait_for(timeout=CONSOLE_WAIT_MS)
    return row


def act(page, row, comment_id: int, action: str, reason: str, *, confirm: bool = True, **choices: str):
    """Click ``action`` on a row, give the reason (and choices) in the inline form, confirm."""
    row.get_by_role("button", name=action, exact=True).click()
    form = page.locator(f'#feed tr.action[data-id="{comment_id}"]')
    expect(form.locator(".what")).to_be_visible()
    form.locator("input[name=reason]").fill(reason)
    for name, value in choices.items():
        form.locator(f"select[name={name}]").select_option(value)
    if confirm:
        form.get_by_role("button", name=action, exact=True).click()
    return form


def test_hiding_in_the_console_takes_the_comment_off_the_viewers_screen(server, page, second_page, js_problems):
    open_console(page, server, ROOM)
    sender, viewer_token, mod_token = server.tokens[1], server.tokens[0], server.tokens[2]
    # A lively room: the viewer polls at the poll interval, not the quiet one.
    background = [send(server, ROOM, f"warming up {n}", token=viewer_token)["id"] for n in range(3)]

    guest = second_page.page
    pulls: list[tuple[float, object]] = []
    guest.on(
        "response",
        lambda r: (
            r.request.method == "GET"
            and r.url.split("?")[0] == server.danmaku_url(ROOM)
            and pulls.append((time.monotonic(), r))
        ),
    )
    guest.goto(f"{server.base_url}/rooms/{ROOM}/")

    token = uuid.uuid4().hex[:8]
    text = f"please hide me {token}"
    comment_id = send(server, ROOM, text, token=sender)["id"]
    sent_at = time.monotonic()
    on_screen = guest.locator("#stage .dm").filter(has_text=text)
    try:
        on_screen.wait_for(state="attached", timeout=VIEWER_WAIT_MS)
    except PlaywrightTimeoutError:
        # Whose fault: did the guest's pulls bring the comment (then the page
        # did not show it) or not?
        raise AssertionError(
            f"comment {comment_id} not on the viewer's screen within {VIEWER_WAIT_MS} ms; "
            f"its pulls since the send: {_describe(pulls, sent_at, comment_id)}"
        ) from None

    row = console_row(page, comment_id)
    expect(row.locator("td.text")).to_have_text(text)
    expect(row.locator("td.user")).to_have_text("sender")
    expect(row.locator("td.status")).to_have_text("published")

    # The filter narrows the feed to the rows whose text or username matches.
    page.fill("#filter", token)
    expect(page.locator("#feed tr.comment:visible")).to_have_count(1)
    page.fill("#filter", "sender")
    expect(page.locator("#feed tr.comment:visible")).to_have_count(1)
    page.fill("#filter", "")
    expect(page.locator("#feed tr.comment:visible")).to_have_count(4)

    hidden_at = time.monotonic()
    form = act(page, row, comment_id, "Hide", "spam, says the test")
    expect(row.locator("td.status")).to_have_text("hidden")
    expect(form).to_have_count(0)
    expect(page.locator("#outcome")).to_have_text(f"Hidden #{comment_id} by sender.")

    on_screen.wait_for(state="detached", timeout=RETRACTION_WAIT_MS)
    # The comment may also have ended its own time on screen: what proves the
    # retraction reached the guest is a pull that told the page to delete it.
    deleted_after_ms = _wait_for_deleted(guest, pulls, comment_id, since=hidden_at, timeout_ms=RETRACTION_WAIT_MS)
    assert on_screen.count() == 0

    # Someone else hides a comment while this moderator's form is open: the
    # API's 409 is shown in words, and the form stays for another try.
    other = background[0]
    form = act(page, console_row(page, other), other, "Hide", "late to the party", confirm=False)
    answer = requests.post(
        f"{server.base_url}/api/v1/moderation/danmaku/{other}/hide",
        json={"reason": "faster moderator"},
        headers={"Authorization": f"Bearer {mod_token}"},
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    assert answer.status_code == 200, answer.text
    form.get_by_role("button", name="Hide", exact=True).click()
    expect(form.locator(".error")).to_have_text("comment is already hidden (409)")
    form.get_by_role("button", name="Cancel", exact=True).click()
    expect(form).to_have_count(0)

    expect(page.locator("#count-recent")).to_have_text("4", timeout=CONSOLE_WAIT_MS)
    expect(page.locator("#count-held")).to_have_text("0")
    expect(page.locator("#count-hidden")).to_have_text("2", timeout=CONSOLE_WAIT_MS)
    print(f"\nhidden comment's id reached the viewer in a pull {deleted_after_ms:.0f} ms after the click")

    conflicts = [p for p in js_problems.console_errors if EXPECTED_CONFLICT.match(p)]
    assert len(conflicts) == 1, js_problems.all()
    js_problems.console_errors.remove(conflicts[0])
    assert js_problems.all() == []
    assert second_page.js_problems.all() == []


def test_held_comments_are_reviewed_in_the_console(server, page, js_problems, screenshot):
    open_console(page, server, HELD_ROOM)
    viewer_token, sender = server.tokens[0], server.tokens[1]
    sent = [send(server, HELD_ROOM, f"held for review {n}", token=sender) for n in range(3)]
    sent.append(send(server, HELD_ROOM, "a word from the viewer", token=viewer_token))
    assert {s["status"] for s in sent} == {"held"}
    ids = [s["id"] for s in sent]
    rows = [console_row(page, i) for i in ids]
    for row in rows:
        expect(row.locator("td.status")).to_have_text("held")
    expect(page.locator("#count-held")).to_have_text("4", timeout=CONSOLE_WAIT_MS)
    expect(page.locator("#throttle")).to_contain_text("Policymanual")

    act(page, rows[0], ids[0], "Approve", "fine")
    expect(rows[0].locator("td.status")).to_have_text("published")
    act(page, rows[1], ids[1], "Reject", "off topic")
    expect(rows[1].locator("td.status")).to_have_text("hidden")
    expect(page.locator("#count-held")).to_have_text("2", timeout=CONSOLE_WAIT_MS)
    expect(page.locator("#count-hidden")).to_have_text("1", timeout=CONSOLE_WAIT_MS)
    expect(page.locator("#count-recent")).to_have_text("4")
    # Approved means on every screen: the pull API has it, and not the rejected one.
    assert ids[0] in _pulled_ids(server, HELD_ROOM, want=ids[0])
    assert ids[1] not in _pulled_ids(server, HELD_ROOM)

    act(page, rows[3], ids[3], "Time out", "calm down", seconds="60")
    expect(page.locator("#outcome")).to_have_text(re.compile(r"^viewer timed out in this room until \d\d:\d\d:\d\d\.$"))
    assert _refused_within_the_lease(server, HELD_ROOM, viewer_token) == 403

    # The picture: every status in the feed, the counts, and an action form open.
    act(page, rows[2], ids[2], "Ban", "spam again", confirm=False, scope="room")
    screenshot(page, "console")
    page.locator(f'#feed tr.action[data-id="{ids[2]}"]').get_by_role("button", name="Ban", exact=True).click()
    expect(page.locator("#outcome")).to_have_text("sender banned from this room.")
    assert _refused_within_the_lease(server, HELD_ROOM, sender) == 403
    assert _send_status(server, ROOM, sender) == 201

    assert js_problems.all() == []


def test_console_says_it_is_reconnecting_while_the_api_fails(server, page, js_problems):
    open_console(page, server, ROOM)
    conn = page.locator("#conn")
    page.route("**/api/v1/moderation/**", lambda route: route.abort())

    expect(conn).to_have_attribute("data-state", "reconnecting", timeout=CONSOLE_WAIT_MS)
    expect(conn).to_have_text(re.compile(r"^reconnecting… \(network error; retry in \d+ s\)$"))
    page.unroute("**/api/v1/moderation/**")
    expect(conn).to_have_attribute("data-state", "live", timeout=FIRST_BACKOFF_MS + CONSOLE_WAIT_MS)

    # Chromium logs each aborted request; nothing else may have gone wrong.
    aborted = [p for p in js_problems.console_errors if p.startswith("Failed to load resource: net::ERR_FAILED")]
    assert aborted, js_problems.all()
    for problem in aborted:
        js_problems.console_errors.remove(problem)
    assert js_problems.all() == []


def _wait_for_deleted(page, pulls: list, comment_id: int, *, since: float, timeout_ms: float) -> float:
    """ms from ``since`` to the first pull answered after it whose ``deleted`` has the id.

    Waits on the page, not with ``time.sleep``: the sync API records a response
    only while a Playwright call is running, so a sleeping loop sees no new pulls.
    """
    deadline = since + timeout_ms / 1000
    checked = 0
    while True:
        for at, response in pulls[checked:]:
            checked += 1
            if at >= since and response.status == 200 and comment_id in response.json()["deleted"]:
                return (at - since) * 1000
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no viewer pull within {timeout_ms} ms deleted {comment_id}; "
                f"its pulls since the hide: {_describe(pulls, since, comment_id)}"
            )
        page.wait_for_timeout(200)


def _describe(pulls: list, since: float, comment_id: int) -> list[str]:
    described = []
    for at, response in pulls:
        if at < since:
            continue
        body = response.json() if response.status == 200 else {}
        has = comment_id in body.get("items", {}).get("id", [])
        described.append(
            f"+{(at - since) * 1000:.0f} ms: {response.status} next_ms={body.get('next_ms')} "
            f"reason={body.get('reason')} has it: {has}"
        )
    return described


def _pulled_ids(server, room: str, *, want: int | None = None) -> list[int]:
    """The ids a viewer joining ``room`` now is given (waiting up to 5 s for ``want``)."""
    deadline = time.monotonic() + 5
    while True:
        answer = requests.get(server.danmaku_url(room), timeout=REQUEST_TIMEOUT_SECONDS)
        assert answer.status_code == 200, answer.text
        ids = answer.json()["items"]["id"]
        if want is None or want in ids or time.monotonic() > deadline:
            return ids
        time.sleep(0.25)


def _send_status(server, room: str, token: str) -> int:
    return requests.post(
        server.danmaku_url(room),
        json={"text": "still here?", "client_id": uuid.uuid4().hex},
        headers={"Authorization": f"Bearer {token}"},
        timeout=REQUEST_TIMEOUT_SECONDS,
    ).status_code


def _refused_within_the_lease(server, room: str, token: str) -> int:
    """The first refusal (403) of a send, trying until the sanction has
    reached every worker: within the send caches' lease (LEASE_SECONDS), at
    once in the worker that made it."""
    deadline = time.monotonic() + LEASE_SECONDS + 1.0
    status = _send_status(server, room, token)
    while status != 403 and time.monotonic() < deadline:
        time.sleep(0.1)
        status = _send_status(server, room, token)
    return status
