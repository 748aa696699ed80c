"""Viewers' reports in headless Chromium against a real gunicorn.

A viewer sees a comment fly past, opens the report dialog with the keyboard,
picks a reason and reports the comment; Esc closes the dialog and gives focus
back to the button. A moderator's console lists the report; the moderator
dismisses it, and the viewer's next page load says what came of it. No
script error, console error or dialog on either page.
"""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import expect

from harness import local
from tests.pages.conftest import log_in, make_user, send_comment

pytestmark = pytest.mark.slow

ROOM = "reports"
# A comment reaches the screen within the poll interval (3 s here) plus the
# page's replay spread and slack.
ON_SCREEN_MS = 3000 + 5000
# The console polls its queue every 3 s.
CONSOLE_WAIT_MS = 3000 + 3000


@pytest.fixture(scope="module")
def server():
    fields = {"user_send_interval_ms": 0, "quiet_interval_ms": 3000}
    with local.gunicorn(room=ROOM, users=("sender", "viewer", "mod"), room_fields=fields) as server:
        make_user(server, "viewer")
        make_user(server, "mod", groups=("Moderators",))
        yield server


def test_viewer_reports_a_comment_by_keyboard_and_the_console_lists_it(server, page, second_page, js_problems):
    log_in(page, server, "viewer", f"/rooms/{ROOM}/")
    page.wait_for_selector("#conn[data-state=live]", state="attached", timeout=5000)
    text = f"report me {uuid.uuid4().hex[:6]}"
    comment_id = send_comment(server, ROOM, text, token=server.tokens[0], mode="top")["id"]
    page.locator("#stage .dm").filter(has_text=text).wait_for(state="attached", timeout=ON_SCREEN_MS)

    # Open by keyboard; focus lands in the dialog, on the reason.
    page.focus("#report-open")
    page.keyboard.press("Enter")
    expect(page.locator("#report-dialog")).to_be_visible()
    assert page.evaluate("document.activeElement.id") == "report-reason"
    page.keyboard.press("ArrowDown")  # spam -> abuse
    assert page.input_value("#report-reason") == "abuse"
    button = page.get_by_role("button", name=f"Report “{text}”")
    button.focus()
    with page.expect_response(lambda r: r.url.endswith(f"/danmaku/{comment_id}/report")) as answer:
        page.keyboard.press("Enter")
    assert answer.value.status == 201
    expect(page.locator("#report-status")).to_have_text("Thank you: the moderators have your report.")
    expect(button).to_be_disabled()
    page.keyboard.press("Escape")
    expect(page.locator("#report-dialog")).to_be_hidden()
    assert page.evaluate("document.activeElement.id") == "report-open"

    moderator = second_page.page
    log_in(moderator, server, "mod", f"/moderate/{ROOM}/")
    row = moderator.locator(f'#reports-table tr.report[data-id="{comment_id}"]')
    row.wait_for(timeout=CONSOLE_WAIT_MS)
    expect(row).to_contain_text(text)
    expect(row).to_contain_text("abuse \u00d71")
    with moderator.expect_response(lambda r: r.url.endswith(f"/reports/{comment_id}/resolve")) as resolved:
        row.get_by_role("button", name="Dismiss").click()
    assert resolved.value.status == 200
    expect(moderator.locator("#reports-empty")).to_be_visible(timeout=CONSOLE_WAIT_MS)

    page.reload()
    expect(page.locator("#report-outcomes")).to_contain_text(f"Your report of “{text}”: left up", timeout=5000)

    assert js_problems.all() == []
    assert second_page.js_problems.all() == []
