"""Viewers' reports hide a comment from every screen, end to end: a real
gunicorn, a viewer page in Chromium holding the comment, five viewers in
good standing reporting it over HTTP in a room whose threshold is five; a
moderator's unhide puts it back on that page."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from harness import local
from tests.pages.conftest import make_user, send_comment

pytestmark = pytest.mark.slow

ROOM = "reported"
SENDER, MODERATOR = "sender", "mod"
REPORTERS = tuple(f"eyes{n}" for n in range(5))
REQUEST_TIMEOUT_SECONDS = 10
POLL_MS = 1000
# The poll interval (jittered up to 20 %) + 2 s, plus the refresher's tick
# that reads the retraction into the rings.
ARRIVAL_MS = POLL_MS * 1.2 + 2000 + 1000
# The least time a scroll comment is on screen (overlay.js SCROLL_MS).
SCROLL_SECONDS = 8


@pytest.fixture(scope="module")
def server():
    fields = {
        "poll_interval_ms": POLL_MS,
        "quiet_interval_ms": POLL_MS,
        "user_send_interval_ms": 0,
        "report_hide_threshold": 5,
        # Accounts made for the test: standing by age and history is
        # tested through the API (tests/moderation/test_reports.py).
        "report_min_account_age_hours": 0,
        "report_min_published": 0,
    }
    with local.gunicorn(room=ROOM, users=(SENDER, MODERATOR, *REPORTERS), room_fields=fields) as server:
        make_user(server, MODERATOR, groups=("Moderators",))
        yield server


def bearer(server, username: str) -> dict[str, str]:
    token = dict(zip((SENDER, MODERATOR, *REPORTERS), server.tokens, strict=True))[username]
    return {"Authorization": f"Bearer {token}"}


def report(server, danmaku_id: int, reporter: str) -> int:
    answer = requests.post(
        f"{server.base_url}/api/v1/rooms/{ROOM}/danmaku/{danmaku_id}/report",
        json={"reason": "abuse"},
        headers=bearer(server, reporter),
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    assert answer.status_code in (200, 201), answer.text
    return answer.status_code


def on_stage(page, text: str):
    return page.locator("#stage .dm", has_text=text)


def test_five_reports_take_a_comment_off_the_page_and_an_unhide_brings_it_back(server, page, js_problems):
    page.goto(f"{server.base_url}/rooms/{ROOM}/")
    page.wait_for_selector("#conn[data-state=live]", state="attached", timeout=5000)
    text = f"reported comment {time.monotonic_ns()}"
    danmaku_id = send_comment(server, ROOM, text, token=bearer(server, SENDER)["Authorization"][7:])["id"]
    on_stage(page, text).wait_for(timeout=ARRIVAL_MS)
    shown_at = time.monotonic()

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=5) as pool:
        statuses = list(pool.map(lambda reporter: report(server, danmaku_id, reporter), REPORTERS))
    assert statuses == [201] * 5
    on_stage(page, text).wait_for(state="detached", timeout=ARRIVAL_MS)
    gone_after_s = time.monotonic() - started
    # Taken off, not flown off: a scroll comment crosses the stage in 8 s or more.
    assert time.monotonic() - shown_at < SCROLL_SECONDS
    audit = server.manage(
        "shell",
        "-c",
        "from moderation.models import AuditEntry\n"
        f"print(AuditEntry.objects.filter(action='report.auto_hide', target_id='{danmaku_id}').count())",
    )
    assert audit.strip().splitlines()[-1] == "1"

    undone = requests.post(
        f"{server.base_url}/api/v1/moderation/danmaku/{danmaku_id}/unhide",
        json={"reason": "the reports were wrong"},
        headers=bearer(server, MODERATOR),
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    assert undone.status_code == 200, undone.text
    started = time.monotonic()
    on_stage(page, text).wait_for(timeout=ARRIVAL_MS)
    back_after_s = time.monotonic() - started
    print(f"\noff the page {gone_after_s:.2f} s after the reports; back {back_after_s:.2f} s after the unhide")
    assert js_problems.all() == []
