"""Pinning from the moderation console in headless Chromium (keyboard only)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from harness import local
from tests.pages.conftest import log_in, make_user, send_comment

pytestmark = pytest.mark.slow
ROOM = "pins"


@pytest.fixture(scope="module")
def server():
    with local.gunicorn(room=ROOM, users=("viewer", "mod"), room_fields={"user_send_interval_ms": 0}) as server:
        make_user(server, "mod", groups=("Moderators",))
        server.manage(
            "shell",
            "-c",
            "from moderation.services import blocked_term_create\nblocked_term_create(term='forbiddenword')",
        )
        yield server


def test_pin_a_comment_write_a_notice_and_unpin_from_the_console(server, page, js_problems):
    comment = send_comment(server, ROOM, "pin me please", token=server.tokens[0])
    log_in(page, server, "mod", f"/moderate/{ROOM}/")
    row = page.locator(f'#feed tr.comment[data-id="{comment["id"]}"]')
    row.wait_for(timeout=6000)
    pin_now = page.locator("#pin-now")
    expect(pin_now).to_have_text("Nothing pinned.")

    # A comment: its row's Pin button, the duration picker, Enter.
    row.get_by_role("button", name="Pin", exact=True).focus()
    page.keyboard.press("Enter")
    form = page.locator("#pin-form")
    expect(form.locator(".what")).to_contain_text("pin me please")
    expect(form.locator("select[name=duration_s]")).to_be_focused()
    form.locator("select[name=duration_s]").select_option("60")
    page.keyboard.press("Tab")  # to reason
    page.keyboard.press("Enter")  # submits the form
    expect(pin_now).to_have_text(re.compile(r"^“pin me please” \(comment #\d+ by viewer\) · (1:00|0:5\d) left$"))
    expect(form).to_be_hidden()

    # A notice the filters refuse: the API's words, nothing changes.
    page.get_by_role("button", name="Write notice").click()
    expect(form.locator("input[name=text]")).to_be_focused()
    page.keyboard.type("a forbiddenword notice")
    page.keyboard.press("Enter")
    expect(form.locator(".error")).to_contain_text("refused by the filters")
    expect(pin_now).to_contain_text("pin me please")

    # A clean notice replaces the pinned comment.
    form.locator("input[name=text]").fill("Giveaway at 9")
    form.locator("select[name=duration_s]").select_option("7200")
    page.keyboard.press("Enter")
    expect(pin_now).to_have_text(re.compile(r"^“Giveaway at 9” \(notice\) · (2 h 0 min|1 h 59 min) left$"))

    # Unpin needs a reason; Escape cancels.
    page.get_by_role("button", name="Unpin").click()
    expect(form.locator("input[name=reason]")).to_be_focused()
    page.keyboard.press("Escape")
    expect(form).to_be_hidden()
    page.get_by_role("button", name="Unpin").click()
    page.keyboard.type("event over")
    page.keyboard.press("Enter")
    expect(pin_now).to_have_text("Nothing pinned.")
    expect(page.locator("#pin-outcome")).to_have_text("Unpinned.")
    page.screenshot(path="/tmp/exp/pins/console.png", full_page=True)
    assert [p for p in js_problems.all() if "status of 400" not in p] == []
