"""Browser fixtures: Playwright for Python driving Debian's Chromium, headless.

Playwright's own browser download does not work here, so the tests launch the
system Chromium (``harness.services.require_chromium``). Every page records
what would mean a script misbehaved: uncaught errors, console errors and
dialogs (``alert()`` and friends, dismissed at once).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from harness.services import CHROMIUM_ARGS, require_chromium

BASE_DIR = Path(__file__).resolve().parent.parent.parent
SCREENSHOT_DIR = BASE_DIR / "artifacts" / "screenshots"
VIEWPORT = {"width": 1280, "height": 720}


@dataclass
class JsProblems:
    """What a page's scripts did wrong: uncaught errors, console errors, dialogs."""

    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def all(self) -> list[str]:
        return (
            [f"pageerror: {e}" for e in self.page_errors]
            + [f"console.error: {e}" for e in self.console_errors]
            + [f"dialog: {d}" for d in self.dialogs]
        )


@pytest.fixture(scope="package")
def playwright_driver() -> Iterator[object]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@contextlib.contextmanager
def launched_browser(playwright) -> Iterator[object]:
    """Debian's Chromium, headless, closed when the block exits."""
    browser = playwright.chromium.launch(executable_path=require_chromium(), headless=True, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="package")
def browser(playwright_driver) -> Iterator[object]:
    """One Chromium for every page test here: each test opens its pages in a
    new context of its own (cookies, storage and cache apart), so sharing
    the process costs no isolation and saves a launch per test."""
    with launched_browser(playwright_driver) as browser:
        yield browser


@pytest.fixture
def js_problems() -> JsProblems:
    return JsProblems()


def watch_js_problems(page, js_problems: JsProblems) -> None:
    """Record into ``js_problems`` what ``page``'s scripts do wrong; dismiss every dialog."""
    page.on("pageerror", lambda error: js_problems.page_errors.append(str(error)))

    def on_console(message) -> None:
        # Chromium asks for /favicon.ico on its own; its 404 is no script's doing.
        if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico"):
            js_problems.console_errors.append(f"{message.text} ({message.location.get('url', '')})")

    page.on("console", on_console)

    def on_dialog(dialog) -> None:
        js_problems.dialogs.append(f"{dialog.type}: {dialog.message}")
        with contextlib.suppress(Exception):
            dialog.dismiss()

    page.on("dialog", on_dialog)


@pytest.fixture
def page(browser, js_problems: JsProblems) -> Iterator[object]:
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        watch_js_problems(page, js_problems)
        yield page
    finally:
        context.close()


@dataclass
class WatchedPage:
    page: object
    js_problems: JsProblems


@pytest.fixture
def second_page(browser) -> Iterator[WatchedPage]:
    """A second person: a page in a browser context of its own (its own cookies),
    watched like ``page`` but with its own ``js_problems``."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        problems = JsProblems()
        page = context.new_page()
        watch_js_problems(page, problems)
        yield WatchedPage(page, problems)
    finally:
        context.close()


@pytest.fixture
def screenshot():
    """``screenshot(page, name)`` saves a PNG under artifacts/screenshots (ignored by git)."""

    def save(page, name: str) -> Path:
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOT_DIR / f"{name}.png"
        page.screenshot(path=str(path))
        return path

    return save


PASSWORD = "correct horse battery staple"


def make_user(server, username: str, *, groups: tuple[str, ...] = (), staff: bool = False) -> None:
    """Give ``username`` (created if missing) PASSWORD, the named groups and ``is_staff``."""
    server.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import Group, User\n"
        f"user, _ = User.objects.get_or_create(username={username!r})\n"
        f"user.set_password({PASSWORD!r}); user.is_staff = {staff!r}; user.save()\n"
        f"user.groups.add(*Group.objects.filter(name__in={list(groups)!r}))\n",
    )


def log_in(page, server, username: str, next_path: str = "/") -> None:
    """Log in through the login page, the way a person would, then land on ``next_path``."""
    page.goto(f"{server.base_url}/accounts/login/?next={next_path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit], input[type=submit]")


SEND_TIMEOUT_SECONDS = 10


def send_comment(server, room: str, text: str, *, token: str, mode: str = "scroll", color: str = "#ffcc00") -> dict:
    """Send ``text`` through the API with a bearer token, as another person would; it must be accepted."""
    answer = requests.post(
        server.danmaku_url(room),
        json={"text": text, "color": color, "mode": mode, "client_id": uuid.uuid4().hex},
        headers={"Authorization": f"Bearer {token}"},
        timeout=SEND_TIMEOUT_SECONDS,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()
