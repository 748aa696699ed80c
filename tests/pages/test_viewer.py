"""The viewer page in headless Chromium against a real gunicorn: the viewer's
own comment (local echo), lanes that do not overlap, the viewer's controls,
and a stored XSS corpus shown as literal text.
"""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from harness import local
from tests.pages.conftest import log_in, make_user, send_comment

pytestmark = pytest.mark.slow

ROOM = "lanes"
REQUEST_TIMEOUT_SECONDS = 10
# A comment the page has been sent is on screen within the poll interval
# + 2 s; the page's own comment at once. The interval is 3 s, growing once
# the room is quiet (sparse control): 4.1 s after 10 quiet seconds, which
# is what a test waits between two sends at most; jittered up to 20 %.
ARRIVAL_MS = 4100 * 1.2 + 2000
ECHO_MS = 300
COMMENT = "#stage .dm"


@pytest.fixture(scope="module")
def server():
    # No slow mode and a quiet interval no longer than the poll interval, so
    # a fresh room is polled every 3 s like a lively one.
    fields = {"user_send_interval_ms": 0, "quiet_interval_ms": 3000, "room_send_cap_per_second": 1000}
    with local.gunicorn(room=ROOM, users=("sender", "viewer"), room_fields=fields) as server:
        make_user(server, "viewer")
        yield server


def send(server, text: str, *, mode: str = "scroll", color: str = "#ffcc00") -> int:
    return send_comment(server, ROOM, text, token=server.tokens[0], mode=mode, color=color)["id"]


def open_room(page, server) -> None:
    with page.expect_response(lambda r: r.url.startswith(server.danmaku_url(ROOM)) and r.request.method == "GET"):
        page.goto(f"{server.base_url}/rooms/{ROOM}/")
    page.wait_for_selector("#conn[data-state=live]", state="attached", timeout=5000)


def texts_on_screen(page) -> list[str]:
    return page.locator(COMMENT).all_text_contents()


def test_own_comment_appears_at_once_outlined_and_only_once(server, page, js_problems, screenshot):
    log_in(page, server, "viewer", next_path=f"/rooms/{ROOM}/")
    open_room(page, server)
    text = f"mine {uuid.uuid4().hex[:8]}"
    # Count every element ever put on the stage with this text, so a second
    # copy is caught even after the first has flown off.
    page.evaluate(
        """text => {
             window.copies = 0;
             new MutationObserver(records => records.forEach(r => r.addedNodes.forEach(n => {
               if (n.textContent === text) window.copies++;
             }))).observe(document.getElementById('stage'), {childList: true});
           }""",
        text,
    )
    page.fill("#send input[name=text]", text)
    started = time.monotonic()
    page.click("#send button")
    echo = page.locator(f"{COMMENT}.mine").filter(has_text=text)
    echo.wait_for(state="attached", timeout=ECHO_MS)
    echo_ms = (time.monotonic() - started) * 1000
    outline = echo.evaluate("e => getComputedStyle(e).outlineStyle")
    # The server numbers it; then two pulls carry it back to the page.
    page.wait_for_function(
        "text => [...document.querySelectorAll('#stage .dm.mine')].some(e => e.textContent === text && e.dataset.id)",
        arg=text,
        timeout=5000,
    )
    for _ in range(2):
        with page.expect_response(lambda r: r.url.startswith(server.danmaku_url(ROOM)), timeout=ARRIVAL_MS):
            pass
    page.wait_for_timeout(1100)  # the replay spread
    assert page.evaluate("window.copies") == 1
    assert page.input_value("#send input[name=text]") == ""
    assert outline == "solid"
    print(f"\nlocal echo on screen {echo_ms:.0f} ms after the click")
    assert js_problems.all() == []


def test_comments_in_flight_never_overlap(server, page, js_problems, screenshot):
    open_room(page, server)
    modes = ["scroll"] * 16 + ["top"] * 3 + ["bottom"] * 3
    colors = ["#ffcc00", "#66ddff", "#ff6688", "#aaff66"]
    for i, mode in enumerate(modes):
        send(server, f"{mode} {i} " + "wave " * (i % 5), mode=mode, color=colors[i % len(colors)])
    page.locator(COMMENT).nth(10).wait_for(state="attached", timeout=ARRIVAL_MS)
    overlaps, most = [], 0
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        boxes = page.evaluate(
            """() => [...document.querySelectorAll('#stage .dm')].map(e => {
                 const r = e.getBoundingClientRect();
                 return {text: e.textContent, fixed: !e.classList.contains('scroll'),
                         x: r.left, y: r.top, w: r.width, h: r.height};
               })"""
        )
        most = max(most, len(boxes))
        if len(boxes) >= 12:
            screenshot(page, "viewer")
        # Top/bottom comments may cover scroll ones only after waiting 2 s for a clear row.
        overlaps += [(a["text"], b["text"]) for a, b in _pairs(boxes) if a["fixed"] == b["fixed"] and _overlap(a, b)]
        page.wait_for_timeout(100)
    assert most >= 12, most
    assert overlaps == []
    assert js_problems.all() == []


def _pairs(boxes):
    return [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :]]


def _overlap(a, b) -> bool:
    # One pixel of tolerance for subpixel layout.
    return (
        a["x"] + a["w"] > b["x"] + 1
        and b["x"] + b["w"] > a["x"] + 1
        and a["y"] + a["h"] > b["y"] + 1
        and (b["y"] + b["h"] > a["y"] + 1)
    )


def test_blocked_word_hides_comments_and_survives_a_reload(server, page, js_problems):
    open_room(page, server)
    page.fill("#blockword", "Spoiler")
    page.click("#block button")
    assert page.locator("#blocklist li span").all_text_contents() == ["Spoiler"]
    page.reload()
    page.wait_for_selector("#conn[data-state=live]", state="attached", timeout=5000)
    assert page.locator("#blocklist li span").all_text_contents() == ["Spoiler"]
    tag = uuid.uuid4().hex[:6]
    send(server, f"big SPOILER ahead {tag}", mode="top")
    send(server, f"harmless {tag}", mode="top")
    page.locator(COMMENT).filter(has_text=f"harmless {tag}").wait_for(state="attached", timeout=ARRIVAL_MS)
    page.wait_for_timeout(1100)
    assert not [t for t in texts_on_screen(page) if "SPOILER" in t]
    page.click("#blocklist button")
    assert page.locator("#blocklist li").count() == 0
    assert page.evaluate("JSON.parse(localStorage.getItem('danmaku.viewer')).blocked") == []
    assert js_problems.all() == []


def test_density_opacity_and_pause(server, page, js_problems):
    open_room(page, server)
    page.select_option("#density", "10")
    page.fill("#opacity", "40")
    page.dispatch_event("#opacity", "input")
    assert page.evaluate("getComputedStyle(document.getElementById('stage')).opacity") == "0.4"
    for i in range(25):
        send(server, f"dense {i}", mode="scroll")
    page.locator(COMMENT).first.wait_for(state="attached", timeout=ARRIVAL_MS)
    most = 0
    for _ in range(20):
        most = max(most, page.locator(COMMENT).count())
        page.wait_for_timeout(100)
    assert 1 <= most <= 10
    # Kept for the next visit.
    page.reload()
    assert page.input_value("#density") == "10"
    assert page.input_value("#opacity") == "40"

    # Paused: what is on screen stops moving, nothing new is shown, no pulls go out.
    page.wait_for_selector("#conn[data-state=live]", state="attached", timeout=5000)
    send(server, "before pause", mode="scroll")
    page.locator(COMMENT).filter(has_text="before pause").wait_for(state="attached", timeout=ARRIVAL_MS)
    page.check("#paused")
    # The stage stops at its next animation frame.
    page.wait_for_timeout(100)
    where = _x(page, "before pause")
    pulls = []
    page.on("request", lambda request: pulls.append(request.url) if "/danmaku" in request.url else None)
    send(server, "during pause", mode="top")
    page.wait_for_timeout(4500)
    assert _x(page, "before pause") == where
    assert "during pause" not in texts_on_screen(page)
    assert pulls == []
    page.uncheck("#paused")
    page.wait_for_timeout(500)
    assert _x(page, "before pause") < where
    assert len(pulls) >= 1
    assert js_problems.all() == []


def _x(page, text: str) -> float:
    return page.locator(COMMENT).filter(has_text=text).evaluate("e => e.getBoundingClientRect().left")


XSS_CORPUS = [
    "<img src=x onerror=alert(1)>",
    "</script><script>alert(2)</script>",
    "javascript:alert(3)",
    '"><svg onload=alert(4)>',
    '<a href="javascript:alert(5)">click</a>',
    "{{ 7*7 }} ${alert(6)} `alert(7)`",
    "&lt;b&gt;bold&lt;/b&gt; &amp;",
    # Bidi: marks the API lets through, mixed with markup.
    "\u200fRLM <b onmouseover=alert(8)>x</b>",
    "abc\u061cdef <iframe src=javascript:alert(9)>",
]
# Refused by the API today; stored as a legacy row to check the page alone,
# which drops the override so nothing on screen is reversed.
STORED_ONLY = "\u202egnp.exe <img src=x onerror=alert(10)>"
STORED_ONLY_SHOWN = "gnp.exe <img src=x onerror=alert(10)>"
NASTY_NICK = "<img src=x onerror=alert(11)>"


def test_stored_xss_corpus_shows_as_literal_text(server, page, js_problems, screenshot):
    nick_token = server.manage("issue_token", NASTY_NICK).strip()
    open_room(page, server)
    for i, text in enumerate(XSS_CORPUS):
        send(server, text, mode=["scroll", "top", "bottom"][i % 3])
    requests.post(
        server.danmaku_url(ROOM),
        json={"text": "from a nasty nick", "mode": "top"},
        headers={"Authorization": f"Bearer {nick_token}"},
        timeout=REQUEST_TIMEOUT_SECONDS,
    ).raise_for_status()
    server.manage(
        "shell",
        "-c",
        "from danmaku.models import Danmaku, Room; from danmaku.store import DatabaseStore\n"
        "from django.contrib.auth.models import User\n"
        f"Danmaku.objects.create(room=Room.objects.get(slug={ROOM!r}), user=User.objects.get(username='sender'), "
        f"text={STORED_ONLY!r}, status='published', color=0xffffff, mode=1, ts_ms=DatabaseStore().now_ms(), "
        "in_stream=True)",
    )
    expected = [*XSS_CORPUS, "from a nasty nick", STORED_ONLY_SHOWN]
    page.wait_for_function(
        "texts => texts.every(t => [...document.querySelectorAll('#stage .dm')].some(e => e.textContent === t))",
        arg=expected,
        timeout=ARRIVAL_MS + 4000,
    )
    screenshot(page, "viewer-xss")
    markup = page.evaluate(
        "() => [...document.querySelectorAll('#stage .dm')].map(e => e.children.length + e.attributes.length)"
    )
    # No element was parsed out of any text; attributes: class, style, data-id, title.
    assert all(count <= 4 for count in markup), markup
    assert page.locator("#stage img, #stage svg, #stage iframe, #stage a, #stage b, #stage script").count() == 0
    nick = page.locator(COMMENT).filter(has_text="from a nasty nick").get_attribute("title")
    assert nick == NASTY_NICK
    page.mouse.move(640, 300)  # over the comments: an on* attribute would fire now
    page.wait_for_timeout(500)
    assert js_problems.all() == []
