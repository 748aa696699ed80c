"""The replay page (/broadcasts/{id}/) in headless Chromium against a real
gunicorn, through the HTTP API the way a client would:

* a comment sent 5 s into a live broadcast shows when its recording (a
  WebM made with ffmpeg, served over loopback HTTP with byte ranges) reaches
  0:05, again after seeking back, not after seeking past it; once a
  moderator hides it, a new page load does not show it;
* a comment sent on the replay page lands at the playback time it was sent at;
* without a recording the comments play over the backdrop on the page's own
  clock, driven by keyboard;
* the page's CSP admits loopback media only with DANMAKU_RECORDING_LOOPBACK_HTTP.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from django.test import Client

from danmaku.models import Broadcast
from danmaku.views import LOOPBACK_MEDIA
from harness import local
from harness.recording import ServedFile, recording_file, serve_file
from infra.csp import PAGE_CSP
from tests.pages.conftest import log_in, make_user, send_comment

pytestmark = pytest.mark.slow

ROOM = "replay"
USERS = ("sender", "viewer", "mod")
SENDER, VIEWER, MODERATOR = range(len(USERS))
REQUEST_TIMEOUT_SECONDS = 10
# Where in the live broadcast the comment is sent, and how close to that
# playback time the page must show it.
LIVE_AT_MS = 5000
SHOW_TOLERANCE_MS = 500
# The page is ready (broadcast and first segment loaded, the video's first
# frame decoded) within this.
READY_MS = 5000
# Playback from a second and a half before the comment reaches it in this
# (plus slack for a busy machine).
PLAY_WAIT_MS = 4000
# A hidden comment's segment gets a new version: the node's version cache
# is at most 1 s old.
VERSION_WAIT_SECONDS = 5
COMMENT = "#stage .dm"


@dataclass(frozen=True)
class LiveComment:
    broadcast: int
    id: int
    text: str
    progress_ms: int


@pytest.fixture(scope="module")
def recording() -> Iterator[ServedFile]:
    with serve_file(recording_file()) as served:
        yield served


@pytest.fixture(scope="module")
def server():
    fields = {"user_send_interval_ms": 0, "room_send_cap_per_second": 1000}
    with local.gunicorn(
        room=ROOM, users=USERS, room_fields=fields, extra_env={"DANMAKU_RECORDING_LOOPBACK_HTTP": "1"}
    ) as server:
        make_user(server, USERS[VIEWER])
        make_user(server, USERS[MODERATOR], groups=("Moderators",))
        yield server


def api_get(server, path: str, **params) -> dict | list:
    answer = requests.get(f"{server.base_url}/api/v1{path}", params=params, timeout=REQUEST_TIMEOUT_SECONDS)
    assert answer.status_code == 200, answer.text
    return answer.json()


def broadcast_start(server) -> int:
    out = server.manage("broadcast", "start", ROOM)
    return int(re.search(r"broadcast (\d+)", out)[1])


def broadcast_stop(server, recording_url: str | None = None) -> None:
    server.manage("broadcast", "stop", ROOM, *(("--recording-url", recording_url) if recording_url else ()))


def send_at(server, broadcast_id: int, at_ms: int, text: str) -> int:
    """Send ``text`` live once the broadcast has been on for ``at_ms`` (server clock: this host's)."""
    started_at_ms = api_get(server, f"/broadcasts/{broadcast_id}")["started_at_ms"]
    time.sleep(max(0.0, (started_at_ms + at_ms) / 1000 - time.time()))
    return send_comment(server, ROOM, text, token=server.tokens[SENDER])["id"]


def segment_items(server, broadcast_id: int) -> dict[int, dict]:
    """Segment 0's current comments by id."""
    items = api_get(server, f"/broadcasts/{broadcast_id}/danmaku", segment=0)["items"]
    return {id_: {key: column[i] for key, column in items.items()} for i, id_ in enumerate(items["id"])}


@pytest.fixture(scope="module")
def live_comment(server, recording) -> LiveComment:
    """A broadcast with one comment sent 5 s in, ended with the test recording."""
    broadcast_id = broadcast_start(server)
    text = f"at five {uuid.uuid4().hex[:6]}"
    comment_id = send_at(server, broadcast_id, LIVE_AT_MS, text)
    broadcast_stop(server, recording.url)
    progress_ms = segment_items(server, broadcast_id)[comment_id]["progress_ms"]
    # The send's own latency on top (a busy machine's included).
    assert LIVE_AT_MS <= progress_ms <= LIVE_AT_MS + 1000, progress_ms
    return LiveComment(broadcast_id, comment_id, text, progress_ms)


# -- the page ------------------------------------------------------------------


def open_replay(page, server, broadcast_id: int):
    """Load the page and wait until it has its first segment (and the recording's first frame); the page's answer."""
    url = f"{server.base_url}/broadcasts/{broadcast_id}/"
    with page.expect_response(lambda r: "/danmaku?segment=0&v=" in r.url, timeout=READY_MS):
        answer = page.goto(url)
    page.wait_for_selector("#conn[data-state=ready]", state="attached", timeout=READY_MS)
    if page.locator("#video").count():
        page.wait_for_function("() => document.getElementById('video').readyState >= 2", timeout=READY_MS)
    return answer


def watch_for(page, text: str, *, clock: str = "video") -> None:
    """Record in window.shownAt the playback time (ms) of every element with
    ``text`` put on the stage: the video's, or (clock="scrubber") the page's own clock's."""
    page.evaluate(
        """([text, clock]) => {
             const now = clock === 'video' ? () => document.getElementById('video').currentTime * 1000
               : () => Number(document.getElementById('scrubber').value);
             window.shownAt = [];
             new MutationObserver(records => records.forEach(r => r.addedNodes.forEach(n => {
               if (n.textContent === text) window.shownAt.push(now());
             }))).observe(document.getElementById('stage'), {childList: true});
           }""",
        [text, clock],
    )


def seek(page, seconds: float, *, play: bool, rate: float = 1) -> None:
    """Move the recording to ``seconds`` (and play it, muted: no user gesture needed)."""
    page.evaluate(
        """async ([seconds, play, rate]) => {
             const video = document.getElementById('video');
             video.muted = true;
             video.playbackRate = rate;
             const seeked = new Promise(resolve => video.addEventListener('seeked', resolve, {once: true}));
             video.currentTime = seconds;
             await seeked;
             if (play) await video.play(); else video.pause();
           }""",
        [seconds, play, rate],
    )


def wait_shown(page, count: int) -> float:
    """The playback time (ms) the comment was put on screen the ``count``-th time."""
    page.wait_for_function("count => window.shownAt.length >= count", arg=count, timeout=PLAY_WAIT_MS)
    return page.evaluate(f"window.shownAt[{count - 1}]")


def on_screen(page, text: str) -> int:
    return page.locator(COMMENT).filter(has_text=text).count()


def test_live_comment_shows_at_its_time_again_after_seeking_back_and_not_once_hidden(
    server, recording, live_comment, page, js_problems, second_page, screenshot
):
    answer = open_replay(page, server, live_comment.broadcast)
    assert LOOPBACK_MEDIA in answer.headers["content-security-policy"]
    watch_for(page, live_comment.text)

    seek(page, live_comment.progress_ms / 1000 - 1.5, play=True)
    first = wait_shown(page, 1)
    assert abs(first - live_comment.progress_ms) <= SHOW_TOLERANCE_MS
    screenshot(page, "replay")
    # Chromium seeks the recording with byte ranges.
    assert recording.ranges

    # Paused with the recording: the comment stops where it is.
    page.evaluate("document.getElementById('video').pause()")
    page.wait_for_timeout(100)
    where = _x(page, live_comment.text)
    page.wait_for_timeout(300)
    assert _x(page, live_comment.text) == where

    # Past it: the screen starts over there, without the comments skipped.
    seek(page, 8, play=True)
    assert on_screen(page, live_comment.text) == 0
    page.wait_for_timeout(300)
    assert page.evaluate("window.shownAt.length") == 1

    # Back before it, at double speed: it shows again at its playback time.
    seek(page, live_comment.progress_ms / 1000 - 1, play=True, rate=2)
    again = wait_shown(page, 2)
    assert abs(again - live_comment.progress_ms) <= SHOW_TOLERANCE_MS
    print(f"\ncomment at {live_comment.progress_ms} ms shown at {first:.0f} ms, after seeking back at {again:.0f} ms")
    assert js_problems.all() == []

    # A moderator hides it: its segment gets a new version.
    version = api_get(server, f"/broadcasts/{live_comment.broadcast}")["segments"][0]
    hidden = requests.post(
        f"{server.base_url}/api/v1/moderation/danmaku/{live_comment.id}/hide",
        json={"reason": "replay page test"},
        headers={"Authorization": f"Bearer {server.tokens[MODERATOR]}"},
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    assert hidden.status_code == 200, hidden.text
    deadline = time.monotonic() + VERSION_WAIT_SECONDS
    while api_get(server, f"/broadcasts/{live_comment.broadcast}")["segments"][0] == version:
        assert time.monotonic() < deadline, "the hidden comment's segment kept its version"
        time.sleep(0.2)

    # A new page load (another browser context: nothing cached) plays past
    # its time without it.
    viewer = second_page.page
    open_replay(viewer, server, live_comment.broadcast)
    watch_for(viewer, live_comment.text)
    seek(viewer, live_comment.progress_ms / 1000 - 1, play=True, rate=2)
    end = (live_comment.progress_ms + 1000) / 1000
    viewer.wait_for_function(
        "end => document.getElementById('video').currentTime >= end", arg=end, timeout=PLAY_WAIT_MS
    )
    assert viewer.evaluate("window.shownAt") == []
    assert second_page.js_problems.all() == []


def _x(page, text: str) -> float:
    return page.locator(COMMENT).filter(has_text=text).evaluate("e => e.getBoundingClientRect().left")


def test_comment_sent_on_the_replay_lands_at_the_playback_time(server, live_comment, page, js_problems):
    log_in(page, server, USERS[VIEWER], next_path=f"/broadcasts/{live_comment.broadcast}/")
    open_replay(page, server, live_comment.broadcast)
    seek(page, 2.0, play=False)
    at_ms = page.evaluate("Math.round(document.getElementById('video').currentTime * 1000)")
    text = f"on the recording {uuid.uuid4().hex[:6]}"
    page.fill("#send input[name=text]", text)
    with page.expect_response(lambda r: r.request.method == "POST", timeout=READY_MS) as sent:
        page.click("#send button")
    # Shown at once, outlined, as on the live page.
    page.locator(f"{COMMENT}.mine").filter(has_text=text).wait_for(state="attached", timeout=300)
    assert sent.value.status == 201, sent.value.text()
    assert sent.value.request.post_data_json["progress_ms"] == at_ms
    comment_id = sent.value.json()["id"]

    deadline = time.monotonic() + VERSION_WAIT_SECONDS
    while (items := segment_items(server, live_comment.broadcast)).get(comment_id) is None:
        assert time.monotonic() < deadline, "the comment never reached segment 0"
        time.sleep(0.2)
    assert items[comment_id]["progress_ms"] == at_ms
    assert items[comment_id]["text"] == text
    assert page.input_value("#send input[name=text]") == ""
    assert js_problems.all() == []


def test_without_recording_comments_play_on_the_pages_clock_driven_by_keyboard(
    server, live_comment, page, js_problems, screenshot
):
    # After live_comment: one broadcast at a time per room.
    broadcast_id = broadcast_start(server)
    text = f"backdrop {uuid.uuid4().hex[:6]}"
    comment_id = send_at(server, broadcast_id, 1000, text)
    broadcast_stop(server)
    progress_ms = segment_items(server, broadcast_id)[comment_id]["progress_ms"]

    open_replay(page, server, broadcast_id)
    assert page.locator("#backdrop").count() == 1
    watch_for(page, text, clock="scrubber")
    page.focus("#play")
    page.keyboard.press("Enter")
    assert abs(wait_shown(page, 1) - progress_ms) <= SHOW_TOLERANCE_MS
    screenshot(page, "replay-backdrop")
    # Back to the start with the keyboard: it shows again.
    page.focus("#scrubber")
    page.keyboard.press("Home")
    assert abs(wait_shown(page, 2) - progress_ms) <= SHOW_TOLERANCE_MS
    assert js_problems.all() == []


# -- the recording and the CSP, without a browser -----------------------------------


def test_recording_server_answers_byte_ranges(recording):
    whole = requests.get(recording.url, timeout=REQUEST_TIMEOUT_SECONDS)
    part = requests.get(recording.url, headers={"Range": "bytes=100-199"}, timeout=REQUEST_TIMEOUT_SECONDS)
    tail = requests.get(recording.url, headers={"Range": "bytes=-10"}, timeout=REQUEST_TIMEOUT_SECONDS)

    assert whole.status_code == 200
    assert whole.content[:4] == b"\x1a\x45\xdf\xa3"  # EBML: a WebM
    assert (part.status_code, part.content) == (206, whole.content[100:200])
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(whole.content)}"
    assert (tail.status_code, tail.content) == (206, whole.content[-10:])


@pytest.mark.parametrize("loopback", [False, True])
def test_replay_page_admits_loopback_media_only_with_the_setting(room, settings, loopback):
    settings.DANMAKU_RECORDING_LOOPBACK_HTTP = loopback
    broadcast = Broadcast.objects.create(room=room, started_at_ms=1_000, ended_at_ms=61_000)

    response = Client().get(f"/broadcasts/{broadcast.pk}/")

    assert response.status_code == 200
    media = response["Content-Security-Policy"].split("media-src ", 1)[1].split(";", 1)[0]
    assert media == ("'self' https: " + LOOPBACK_MEDIA if loopback else "'self' https:")
    assert response["Content-Security-Policy"].replace(" " + LOOPBACK_MEDIA, "") == PAGE_CSP
    assert '<script type="module" src="/static/danmaku/replay.js"' in response.content.decode()
