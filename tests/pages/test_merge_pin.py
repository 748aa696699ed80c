"""The viewer page's side of issue 18 in headless Chromium against a real
gunicorn: a burst of identical comments shown once as "text xN" whose badge
follows the pulls' ``counts``, a pinned notice above the stream until it
expires, and a comment a moderator unhid shown again on a page that had
taken it off.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from harness import local
from tests.pages.conftest import make_user, send_comment

pytestmark = pytest.mark.slow

ROOM = "merged"
FANS = tuple(f"fan{i:02d}" for i in range(40))
SENDER, MODERATOR = "sender", "mod"
REQUEST_TIMEOUT_SECONDS = 10
# A 1 s poll interval, quiet or not, so the burst, its growth and the hide
# all reach the page while the merged comment is still crossing the screen
# (a scroll comment is on screen 8 s and more, overlay.js SCROLL_MS).
POLL_MS = 1000
# Within the poll interval + 2 s (jittered up to 20 %), plus the refresher's
# tick that puts a send, a hide or a pin into the rings.
ARRIVAL_MS = POLL_MS * 1.2 + 2000 + 1000
COMMENT = "#stage .dm"
BURST_TEXT = "233333"
# The page shows a merged item as "233333 \u00d740": the text, then a badge.
TIMES = "\u00d7"
# The test's own puller, beside the page: it keeps every raw answer.
RAW_PULL_SECONDS = 0.25


@pytest.fixture(scope="module")
def server():
    fields = {
        "poll_interval_ms": POLL_MS,
        "quiet_interval_ms": POLL_MS,
        "user_send_interval_ms": 0,
        "room_send_cap_per_second": 1000,
    }
    with local.gunicorn(room=ROOM, users=(SENDER, MODERATOR, *FANS), room_fields=fields) as server:
        make_user(server, MODERATOR, groups=("Moderators",))
        yield server


def tokens(server) -> dict[str, str]:
    return dict(zip((SENDER, MODERATOR, *FANS), server.tokens, strict=True))


def open_room(page, server) -> None:
    with page.expect_response(lambda r: r.url.startswith(server.danmaku_url(ROOM)) and r.request.method == "GET"):
        page.goto(f"{server.base_url}/rooms/{ROOM}/")
    page.wait_for_selector("#conn[data-state=live]", state="attached", timeout=5000)


def moderate(server, danmaku_id: int, action: str) -> None:
    answer = requests.post(
        f"{server.base_url}/api/v1/moderation/danmaku/{danmaku_id}/{action}",
        json={"reason": "issue 18 page test"},
        headers={"Authorization": f"Bearer {tokens(server)[MODERATOR]}"},
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    assert answer.status_code == 200, answer.text


def count_copies(page, text: str) -> None:
    """From now on, window.copies counts every element ever put on the stage
    whose text (the badge aside) is ``text``, and window.shownEvents every
    danmaku:shown event for it."""
    page.evaluate(
        """text => {
             window.copies = 0;
             window.shownEvents = [];
             new MutationObserver(records => records.forEach(r => r.addedNodes.forEach(n => {
               // Connected still: placed, not only measured and taken back.
               if (n.isConnected && n.firstChild && n.firstChild.data === text) window.copies++;
             }))).observe(document.getElementById('stage'), {childList: true});
             document.addEventListener('danmaku:shown', e => {
               if (e.detail.text === text) window.shownEvents.push(e.detail);
             });
           }""",
        text,
    )


def wait_for_shown(page, shown: str, *, timeout: float) -> None:
    page.wait_for_function(
        "shown => [...document.querySelectorAll('#stage .dm')].some(e => e.textContent === shown)",
        arg=shown,
        timeout=timeout,
    )


class RawPuller:
    """Pulls the room every RAW_PULL_SECONDS from a cursor taken now, in a
    thread, keeping every answer: what any client of the API reads."""

    def __init__(self, server) -> None:
        self.url = server.danmaku_url(ROOM)
        self.session = requests.Session()
        self.cursor = self._pull(None)["cursor"]
        self.answers: list[dict] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _pull(self, cursor: str | None) -> dict:
        params = {"after": cursor} if cursor else {}
        answer = self.session.get(self.url, params=params, timeout=REQUEST_TIMEOUT_SECONDS)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def _run(self) -> None:
        while not self.stopping.is_set():
            body = self._pull(self.cursor)
            self.cursor = body["cursor"]
            self.answers.append(body)
            self.stopping.wait(RAW_PULL_SECONDS)

    def __enter__(self) -> RawPuller:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join(timeout=REQUEST_TIMEOUT_SECONDS)


def test_forty_identical_comments_show_once_as_x40_then_x30_after_ten_are_hidden(server, page, js_problems, screenshot):
    open_room(page, server)
    count_copies(page, BURST_TEXT)
    fans = tokens(server)

    def fan_sends(fan: str) -> int:
        return send_comment(server, ROOM, BURST_TEXT, token=fans[fan], mode="scroll", color="#66ddff")["id"]

    with RawPuller(server) as raw:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=20) as pool:
            sent = list(pool.map(fan_sends, FANS))
        burst_s = time.monotonic() - started
        assert burst_s < 2, burst_s
        assert len(set(sent)) == 40

        wait_for_shown(page, f"{BURST_TEXT} {TIMES}40", timeout=ARRIVAL_MS)
        shown_after_s = time.monotonic() - started
        # Marked, so the x30 below must be this very element, updated in place.
        page.locator(COMMENT).filter(has_text=f"{BURST_TEXT} {TIMES}40").evaluate("e => { e.marked = true; }")

        # Ten of them hidden, the merged item's own first comment among them
        # (its id stays the item's: the item shrinks, it does not leave).
        item_id = _merged_item_id(raw.answers)
        hidden = [item_id, *[i for i in sent if i != item_id][:9]]
        hide_started = time.monotonic()
        with ThreadPoolExecutor(max_workers=5) as pool:
            list(pool.map(lambda i: moderate(server, i, "hide"), hidden))
        page.wait_for_function(
            "shown => [...document.querySelectorAll('#stage .dm')].some(e => e.marked && e.textContent === shown)",
            arg=f"{BURST_TEXT} {TIMES}30",
            timeout=ARRIVAL_MS,
        )
        x30_after_s = time.monotonic() - hide_started
        screenshot(page, "merged-x30")
        # The raw puller has the x30 too before it stops.
        deadline = time.monotonic() + ARRIVAL_MS / 1000
        while _totals(raw.answers, item_id)[-1:] != [30] and time.monotonic() < deadline:
            time.sleep(RAW_PULL_SECONDS)

    print(
        f"\n40 sends in {burst_s:.2f} s; x40 on screen {shown_after_s:.2f} s after the first send; "
        f"x30 {x30_after_s:.2f} s after the hides began; {len(raw.answers)} raw answers"
    )
    # The raw answers: one item for the whole burst, carried once, whose
    # count and counts updates reach 40, then 30; its id never deleted.
    burst_items = [
        (index, item_id)
        for index, body in enumerate(raw.answers)
        for item_id, text in zip(body["items"]["id"], body["items"]["text"], strict=True)
        if text == BURST_TEXT
    ]
    assert [i for _, i in burst_items] == [item_id], burst_items
    totals = _totals(raw.answers, item_id)
    assert max(totals) == 40, totals
    assert totals[-1] == 30, totals
    grew, shrank = totals[: totals.index(40) + 1], totals[totals.index(40) :]
    assert grew == sorted(grew), totals
    assert shrank == sorted(shrank, reverse=True), totals
    assert not any(item_id in body["deleted"] for body in raw.answers)
    # The page: one element ever, one danmaku:shown for it.
    assert page.evaluate("window.copies") == 1
    assert page.evaluate("window.shownEvents.map(d => d.id)") == [item_id]
    badge = page.locator(COMMENT).filter(has_text=f"{BURST_TEXT} {TIMES}30").locator("span.count")
    assert badge.text_content() == f" {TIMES}30"
    assert js_problems.all() == []


def _merged_item_id(answers: list[dict]) -> int:
    for body in answers:
        for item_id, text in zip(body["items"]["id"], body["items"]["text"], strict=True):
            if text == BURST_TEXT:
                return item_id
    raise AssertionError("the raw puller never got the burst's item")


def _totals(answers: list[dict], item_id: int) -> list[int]:
    """The item's count as each answer left it: its own count where it came,
    then every ``counts`` update for it, in order."""
    totals = []
    for body in answers:
        items = body["items"]
        totals += [n for i, n in zip(items["id"], items["count"], strict=True) if i == item_id]
        if str(item_id) in body["counts"]:
            totals.append(body["counts"][str(item_id)])
    return totals


PIN_MS = 4000


def test_pinned_notice_shows_within_a_poll_and_leaves_at_expiry(server, page, js_problems, screenshot):
    open_room(page, server)
    text = f"Stream resumes at 9 {uuid.uuid4().hex[:6]}"
    assert page.locator("#pin").is_hidden()
    out = server.manage(
        "shell",
        "-c",
        "from danmaku.models import Room; from danmaku.rooms import room_settings_publish; from infra import clock\n"
        f"room = Room.objects.get(slug={ROOM!r})\n"
        f"room.pinned_text = {text!r}; room.pinned_nick = ''; room.pinned_danmaku_id = None\n"
        f"room.pinned_until_ms = clock.now_ms() + {PIN_MS}\n"
        "room.save(); room_settings_publish(room=room)\n"
        "print(room.pinned_until_ms)\n",
    )
    # The server's clock is this host's (infra.clock): times here are wall ms.
    until_ms = int(out.strip().splitlines()[-1])
    page.locator("#pin").wait_for(state="visible", timeout=ARRIVAL_MS)
    shown_ms = time.time() * 1000 - (until_ms - PIN_MS)
    assert page.locator("#pin .what").text_content() == text
    assert page.locator("#pin .who").text_content() == "Notice"
    assert page.get_attribute("#pin", "role") == "status"
    assert "notice" in page.get_attribute("#pin", "class")
    # Above the stream, covering neither the player nor the controls.
    pin_box, player_box = page.locator("#pin").bounding_box(), page.locator("#player").bounding_box()
    assert pin_box["y"] + pin_box["height"] <= player_box["y"] + 1
    screenshot(page, "pinned-notice")
    page.locator("#pin").wait_for(state="hidden", timeout=PIN_MS + POLL_MS * 1.2 + 2000)
    gone_ms = time.time() * 1000 - until_ms
    print(f"\npin on screen {shown_ms:.0f} ms after it was set; gone {gone_ms:+.0f} ms from its expiry")
    assert shown_ms <= ARRIVAL_MS
    # At its expiry: the page times it from the answer's expires_in_ms,
    # which the server counts from its newest sealed second's end (about
    # now, within a second), and a poll and 2 s at the latest.
    assert -1000 <= gone_ms <= POLL_MS * 1.2 + 2000
    page.wait_for_timeout(POLL_MS * 2)
    assert page.locator("#pin").is_hidden()
    assert js_problems.all() == []


def pin_api(server, method: str, **kwargs) -> requests.Response:
    return requests.request(
        method,
        f"{server.base_url}/api/v1/moderation/rooms/{ROOM}/pin",
        headers={"Authorization": f"Bearer {tokens(server)[MODERATOR]}"},
        timeout=REQUEST_TIMEOUT_SECONDS,
        **kwargs,
    )


def test_pin_follows_the_moderators_pin_hide_and_unpin(server, page, js_problems):
    open_room(page, server)
    text = f"pin me {uuid.uuid4().hex[:6]}"
    comment_id = send_comment(server, ROOM, text, token=tokens(server)[SENDER], mode="top")["id"]
    wait_for_shown(page, text, timeout=ARRIVAL_MS)

    # A comment pinned: its sender's nick, not the notice label.
    answer = pin_api(server, "PUT", json={"danmaku_id": comment_id, "duration_s": 60, "reason": "test"})
    assert answer.status_code == 200, answer.text
    page.wait_for_function(
        "text => !document.getElementById('pin').hidden && document.querySelector('#pin .what').textContent === text",
        arg=text,
        timeout=ARRIVAL_MS,
    )
    assert page.locator("#pin .who").text_content() == SENDER
    assert "notice" not in (page.get_attribute("#pin", "class") or "")

    # Hiding the pinned comment takes the pin down too.
    moderate(server, comment_id, "hide")
    page.locator("#pin").wait_for(state="hidden", timeout=ARRIVAL_MS)

    # A notice, then unpinned before it expires.
    notice = f"Be kind {uuid.uuid4().hex[:6]}"
    answer = pin_api(server, "PUT", json={"text": notice, "duration_s": 60, "reason": "test"})
    assert answer.status_code == 200, answer.text
    page.wait_for_function(
        "text => !document.getElementById('pin').hidden && document.querySelector('#pin .what').textContent === text",
        arg=notice,
        timeout=ARRIVAL_MS,
    )
    assert page.locator("#pin .who").text_content() == "Notice"
    answer = pin_api(server, "DELETE", params={"reason": "done"})
    assert answer.status_code == 204, answer.text
    page.locator("#pin").wait_for(state="hidden", timeout=ARRIVAL_MS)
    assert js_problems.all() == []


def test_hidden_then_unhidden_comment_shows_again_on_a_page_that_took_it_off(server, page, js_problems):
    open_room(page, server)
    text = f"back again {uuid.uuid4().hex[:6]}"
    count_copies(page, text)
    comment_id = send_comment(server, ROOM, text, token=tokens(server)[SENDER], mode="top")["id"]
    wait_for_shown(page, text, timeout=ARRIVAL_MS)

    moderate(server, comment_id, "hide")
    page.wait_for_function(
        "text => ![...document.querySelectorAll('#stage .dm')].some(e => e.textContent === text)",
        arg=text,
        timeout=ARRIVAL_MS,
    )
    assert page.evaluate("window.copies") == 1

    moderate(server, comment_id, "unhide")
    wait_for_shown(page, text, timeout=ARRIVAL_MS)
    assert page.evaluate("window.copies") == 2
    assert page.evaluate("window.shownEvents.map(d => d.id)") == [comment_id, comment_id]
    assert js_problems.all() == []


def _answer(**fields) -> dict:
    """A pull answer as the server writes it, ``items`` given as rows."""
    rows = fields.pop("rows", [])
    columns = ("id", "offset_ms", "color", "mode", "user", "nick", "avatar", "text", "count")
    items = {
        name: [row.get(name, default) for row in rows]
        for name, default in zip(columns, (0, 0, 0xFFFFFF, 0, 1, "n", "", "", 1), strict=True)
    }
    body = {
        "cursor": "c",
        "next_ms": 150,
        "reason": "normal",
        "gap": False,
        "missed": 0,
        "items": items,
        "deleted": [],
        "counts": {},
        "restored": [],
        "pinned": None,
        "viewers": 1,
    }
    body.update(fields)
    return body


def test_count_update_for_a_comment_still_waiting_reaches_it_and_unknown_ids_are_ignored(server, page, js_problems):
    """Client only, on crafted answers (the real server's timing cannot hold
    an item back on demand): a ``counts`` update that arrives while its item
    still waits for its turn is what the item shows; one for an id the page
    never had changes nothing; 0 takes the item off."""
    waiting = f"late {uuid.uuid4().hex[:6]}"
    answers = [
        # The second item plays 1 s after the first (its place in the answer).
        _answer(
            rows=[
                {"id": 9000, "text": "first", "offset_ms": 0},
                {"id": 9001, "text": waiting, "offset_ms": 1000, "count": 3},
            ]
        ),
        _answer(counts={"9001": 7, "424242": 5}),
    ]

    def fake_pull(route) -> None:
        body = answers.pop(0) if answers else _answer()
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page.route(f"{server.danmaku_url(ROOM)}*", fake_pull)
    page.goto(f"{server.base_url}/rooms/{ROOM}/")
    wait_for_shown(page, f"{waiting} {TIMES}7", timeout=3000)
    assert page.locator(COMMENT).filter(has_text="first").text_content() == "first"  # no badge for 1
    answers.append(_answer(counts={"9001": 0}))
    page.wait_for_function(
        "text => ![...document.querySelectorAll('#stage .dm')].some(e => e.textContent.startsWith(text))",
        arg=waiting,
        timeout=2000,
    )
    assert js_problems.all() == []
