"""Third-party players (DPlayer, ArtPlayer from npm) on a page of another origin.

The players come from tests/players/node_modules, which ``make test``
installs from package-lock.json (npm ci). The page that embeds them is served
by a small HTTP server of this process on its own 127.0.0.1 port, so every
request it makes to our gunicorn is cross-origin, as on a real site.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.local import free_port
from harness.recording import recording_file
from harness.services import CHROMIUM_ARGS, require_chromium, services_required
from tests.pages.conftest import js_problems, page

PLAYERS_DIR = Path(__file__).resolve().parent
NODE_MODULES = PLAYERS_DIR / "node_modules"
# The browser bundles each package ships (checked in the tarballs: each sets
# a global, DPlayer / Artplayer / artplayerPluginDanmuku).
BUNDLES = {
    "dplayer": "dplayer/dist/DPlayer.min.js",
    "artplayer": "artplayer/dist/artplayer.js",
    "danmuku": "artplayer-plugin-danmuku/dist/artplayer-plugin-danmuku.js",
}
CONTENT_TYPES = {".js": "text/javascript", ".html": "text/html; charset=utf-8", ".webm": "video/webm"}


def _missing(reason: str) -> None:
    # As harness.services does for Redis or Chromium: CI (DANMAKU_REQUIRE_SERVICES=1) fails instead.
    if services_required():
        pytest.fail(f"{reason} (DANMAKU_REQUIRE_SERVICES=1 makes this a failure)", pytrace=False)
    pytest.skip(reason)


def require_player_packages() -> Path:
    absent = [path for path in BUNDLES.values() if not (NODE_MODULES / path).is_file()]
    if absent:
        _missing(
            f"the players from npm are not installed ({', '.join(absent)} missing): "
            "npm ci --prefix tests/players (make test does it)"
        )
    return NODE_MODULES


class PlayerSite:
    """Someone else's site on http://127.0.0.1:<port>: pages put here by the
    tests, the players under /vendor/, the video at /video.webm."""

    def __init__(self, video: Path) -> None:
        self.video = video
        self.pages: dict[str, str] = {}
        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), _handler(self))
        self.httpd.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=f"site-{self.origin}", daemon=True)

    def put(self, name: str, html: str) -> str:
        """Serve ``html`` at /name; return its URL."""
        self.pages[f"/{name}"] = html
        return f"{self.origin}/{name}"

    def find(self, path: str) -> Path | bytes | None:
        if path == "/video.webm":
            return self.video
        if path in self.pages:
            return self.pages[path].encode()
        if path.startswith("/vendor/"):
            file = (NODE_MODULES / path.removeprefix("/vendor/")).resolve()
            if file.is_relative_to(NODE_MODULES) and file.is_file():
                return file
        return None


def _handler(site: PlayerSite) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            found = site.find(path)
            if found is None:
                self.send_error(404)
                return
            body = found.read_bytes() if isinstance(found, Path) else found
            status, start, end = 200, 0, len(body)
            # Chromium asks for the video in ranges; answer them, as any file server does.
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if match and start < len(body):
                status, start = 206, int(match[1])
                end = min(len(body), int(match[2]) + 1) if match[2] else len(body)
            self.send_response(status)
            self.send_header("Content-Type", CONTENT_TYPES.get(Path(path).suffix, "application/octet-stream"))
            self.send_header("Content-Length", str(end - start))
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(body)}")
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body[start:end])

        def log_message(self, *args) -> None:
            pass  # the test output is for the tests

    return Handler


@contextlib.contextmanager
def player_site(video: Path) -> Iterator[PlayerSite]:
    site = PlayerSite(video)
    site.thread.start()
    try:
        yield site
    finally:
        site.httpd.shutdown()
        site.httpd.server_close()
        site.thread.join(timeout=5)


@pytest.fixture(scope="package")
def video() -> Path:
    """The replay page's test recording (harness.recording): 20 s, silent."""
    require_player_packages()
    return recording_file()


@pytest.fixture(scope="package")
def site(video) -> Iterator[PlayerSite]:
    """The site our server lets send (its origin goes in DANMAKU_CORS_ORIGINS)."""
    with player_site(video) as site:
        yield site


@pytest.fixture(scope="package")
def stranger_site(video) -> Iterator[PlayerSite]:
    """Another site, one our server was not told about."""
    with player_site(video) as site:
        yield site


@pytest.fixture(scope="package")
def browser() -> Iterator[object]:
    require_chromium()
    require_player_packages()
    from playwright.sync_api import sync_playwright

    # Autoplay without a click: the tests press play from a script.
    args = [*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=require_chromium(), headless=True, args=args)
        try:
            yield browser
        finally:
            browser.close()


# The pages' fixtures, on this package's browser (autoplay allowed).
__all__ = ["js_problems", "page"]
