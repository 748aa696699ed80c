"""DPlayer and ArtPlayer from npm, on someone else's page, against a real gunicorn.

A site on another origin (tests/players/conftest.py) embeds the players:

- DPlayer reading an ended broadcast through /api/dplayer/v3/ shows its
  comments at their playback times, as literal text, and its own comment box
  sends one on the recording (a player token; the CORS preflight our server
  answers for DANMAKU_CORS_ORIGINS), which then is in the replay and in the
  moderators' listing. From an origin not listed the browser refuses the send.
- ArtPlayer's danmuku plugin loading the broadcast's Bilibili XML shows the
  same comments at their times; its own send box, wired to our API by
  danmaku/static/danmaku/artplayer-send.js (its beforeEmit), sends one at
  the video's time, which then is in the replay and in the moderators'
  listing; a comment the server refuses is not shown and stays in the box.
- DPlayer's live mode fed by our adapter (danmaku/static/danmaku/dplayer-live.js)
  shows a comment sent to the room within the poll interval, polling no
  faster than next_ms; its comment box sends to the room, shown once.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from dataclasses import dataclass

import pytest
import requests
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from danmaku.pull.spread import JITTER_SHARE
from harness import local
from tests.pages.conftest import send_comment

pytestmark = pytest.mark.slow

ROOM = "show"
REQUEST_TIMEOUT_SECONDS = 10
# The room polls every 3 s even when quiet, so the live test's bound is short.
QUIET_INTERVAL_MS = 3000
ROOM_FIELDS = {"user_send_interval_ms": 0, "quiet_interval_ms": QUIET_INTERVAL_MS, "room_send_cap_per_second": 1000}
# The live comment is sent this long after the broadcast starts, so it plays
# clear of the video's first frames.
LIVE_COMMENT_AFTER_SECONDS = 1.2
# How long the broadcast lasts: comments may be sent on its recording up to
# that far into its playback.
BROADCAST_SECONDS = 4.3
# Comments sent on the recording: text, progress_ms, mode, colour.
ON_RECORDING = [
    ("top of the show", 2500, "top", "#e54256"),
    ('<img src=x onerror="window.pwned=1"> & </d>', 3300, "scroll", "#ffffff"),
    ("bottom line", 4000, "bottom", "#39ccff"),
]
# A player shows a comment on the first animation frame after the video
# passes its time (DPlayer), or within 0.1 s of it (ArtPlayer's plugin, which
# then asks a worker for a free row): a frame or two, and a loaded machine.
TIME_TOLERANCE_SECONDS = 0.35
# Watched this far past the last comment's time, every comment has been shown.
WATCH_PAST_SECONDS = 0.6
# Video seconds take wall seconds (the longest watch is about 5); starting
# the video costs a little more.
PLAYBACK_TIMEOUT_MS = 15_000
LOAD_TIMEOUT_MS = 10_000
# The adapter spreads an answer's comments over at most 1 s (as our viewer page).
ADAPTER_SPREAD_MS = 1000
# A sent comment reaches the room's ring within the refresher's interval (1 s);
# then a request and a frame. Over the next_ms of the answers.
LIVE_MARGIN_MS = 2500
# Longest wait for it in any case: the quiet interval with its jitter and all of the above.
LIVE_TIMEOUT_MS = QUIET_INTERVAL_MS * (1 + JITTER_SHARE) + ADAPTER_SPREAD_MS + LIVE_MARGIN_MS + 2000
# How long a refused send may take to fail in the browser.
REFUSAL_TIMEOUT_MS = 5000


@dataclass
class Show:
    server: local.LocalServer
    broadcast: int
    # text -> (progress_ms, mode 0/1/2, colour 0xRRGGBB) as our segment API has them
    comments: dict[str, tuple[int, int, int]]
    player_token: str  # the viewer's, for this broadcast (DPlayer's `token`)
    room_token: str  # the viewer's, for the room (the live adapter)
    mod_token: str

    @property
    def origin(self) -> str:
        return self.server.base_url

    @property
    def watch_until(self) -> float:
        return max(progress_ms for progress_ms, _, _ in self.comments.values()) / 1000 + WATCH_PAST_SECONDS


def _api(server, method: str, path: str, *, token: str | None = None, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(
        method, f"{server.base_url}{path}", headers=headers, timeout=REQUEST_TIMEOUT_SECONDS, **kwargs
    )


def segment_items(server, broadcast: int) -> list[dict]:
    answer = _api(server, "GET", f"/api/v1/broadcasts/{broadcast}/danmaku?segment=0")
    assert answer.status_code == 200, answer.text
    columns = answer.json()["items"]
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _broadcast_id(out: str) -> int:
    # "broadcast 7 of room show: live"
    return int(out.split()[1])


# The moderator and the viewer's two player tokens, in one manage.py process
# (each costs a Django start): the tokens as JSON.
PEOPLE_CODE = """
import io, json
from django.contrib.auth.models import Group, User
from django.core.management import call_command
mod = User.objects.get(username="mod")
mod.groups.add(Group.objects.get(name="Moderators"))
def player_token(*scope):
    out = io.StringIO()
    call_command("issue_token", "viewer", "--scope", "player", *scope, stdout=out, stderr=io.StringIO())
    return out.getvalue().strip()
print(json.dumps([player_token("--broadcast", "BROADCAST"), player_token("--room", "ROOM")]))
"""


@pytest.fixture(scope="module")
def show(site):
    """An ended broadcast of ROOM: one comment sent live, three on the recording."""
    env = {"DANMAKU_CORS_ORIGINS": site.origin}
    with local.gunicorn(
        room=ROOM, users=("sender", "mod"), room_fields=ROOM_FIELDS, extra_env=env
    ) as server:  # fmt: skip
        sender, mod = server.tokens
        broadcast = _broadcast_id(server.manage("broadcast", "start", ROOM))
        started = time.monotonic()
        time.sleep(LIVE_COMMENT_AFTER_SECONDS)
        send_comment(server, ROOM, "said live", token=sender, mode="scroll", color="#ffe133")
        code = PEOPLE_CODE.replace("BROADCAST", str(broadcast)).replace("ROOM", ROOM)
        player_token, room_token = json.loads(server.manage("shell", "-c", code).strip().splitlines()[-1])
        # Comments on the recording may play anywhere within the broadcast's length.
        time.sleep(max(0.0, started + BROADCAST_SECONDS - time.monotonic()))
        server.manage("broadcast", "stop", ROOM)
        for text, progress_ms, mode, color in ON_RECORDING:
            answer = _api(
                server,
                "POST",
                f"/api/v1/broadcasts/{broadcast}/danmaku",
                token=sender,
                json={"text": text, "color": color, "mode": mode, "progress_ms": progress_ms},
            )
            assert answer.status_code == 201, answer.text
        comments = {i["text"]: (i["progress_ms"], i["mode"], i["color"]) for i in segment_items(server, broadcast)}
        assert len(comments) == 1 + len(ON_RECORDING), comments
        yield Show(server, broadcast, comments, player_token=player_token, room_token=room_token, mod_token=mod)


# -- the pages someone else's site would have ------------------------------------------

# Records every comment a player puts on screen, with the video's time then:
# what a viewer would see, and when. DPlayer adds a new element per comment;
# ArtPlayer's plugin reuses its elements and marks one shown with data-state=emit.
WATCH_LAYER = """
window.seen = [];
function record(n, video) {
  seen.push({text: n.textContent, html: n.innerHTML, t: video.currentTime, cls: n.className,
             color: n.style.color, images: n.querySelectorAll('img').length});
}
function watchAdded(layer, video, selector) {
  new MutationObserver(records => records.forEach(r => r.addedNodes.forEach(n => {
    if (n.nodeType === 1 && n.matches(selector)) record(n, video);
  }))).observe(layer, {childList: true});
}
function watchEmitted(layer, video) {
  new MutationObserver(records => records.forEach(r => {
    if (r.target.dataset.state === 'emit' && r.oldValue !== 'emit') record(r.target, video);
  })).observe(layer, {subtree: true, attributes: true, attributeFilter: ['data-state'], attributeOldValue: true});
}
"""


def _page(config: dict, scripts: list[str], body: str) -> str:
    tags = "\n".join(f'<script src="{src}"></script>' for src in scripts)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>someone else's site</title></head>
<body style="margin:0">
<div id="player" style="width:800px;height:450px"></div>
{tags}
<script>
const CONFIG = {json.dumps(config)};
{WATCH_LAYER}
{body}
</script>
</body></html>"""


def dplayer_replay_page(show: Show) -> str:
    # DPlayer's documented `id` is a string; `api` ends with a slash (it appends "v3/").
    config = {"id": str(show.broadcast), "api": f"{show.origin}/api/dplayer/", "token": show.player_token}
    return _page(
        config,
        ["/vendor/dplayer/dist/DPlayer.min.js"],
        """
const dp = window.dp = new DPlayer({
  container: document.getElementById('player'),
  video: {url: '/video.webm'},
  danmaku: {id: CONFIG.id, api: CONFIG.api, token: CONFIG.token, user: 'someone', maximum: 1000},
});
dp.video.muted = true;
watchAdded(dp.template.danmaku, dp.video, '.dplayer-danmaku-item');
// DPlayer 1.27.1 triggers danmaku_load_end, which its dp.on() refuses (it
// lists danmaku_loaded, never triggered): its loading note going is the sign.
const loading = setInterval(() => {
  if (dp.template.danmakuLoading.style.display !== 'none') return;
  clearInterval(loading);
  window.loaded = dp.danmaku.dan.length;
}, 50);
""",
    )


def artplayer_page(show: Show, *, token: str | None = None) -> str:
    config = {
        "xml": f"{show.origin}/api/v1/broadcasts/{show.broadcast}/danmaku.xml",
        "origin": show.origin,
        "broadcast": show.broadcast,
        "token": token or show.player_token,
    }
    return _page(
        config,
        [
            "/vendor/artplayer/dist/artplayer.js",
            "/vendor/artplayer-plugin-danmuku/dist/artplayer-plugin-danmuku.js",
            f"{show.origin}/static/danmaku/artplayer-send.js",
        ],
        """
// What our script told the page of each send it refused.
window.refusals = [];
const beforeEmit = DanmakuArtplayer.beforeEmit({
  origin: CONFIG.origin, broadcast: CONFIG.broadcast, token: CONFIG.token,
  onError: (message, {status}) => refusals.push({message, status}),
});
const art = window.art = new Artplayer({
  container: '#player',
  url: '/video.webm',
  muted: true,
  plugins: [artplayerPluginDanmuku({danmuku: CONFIG.xml, speed: 5, beforeEmit})],
});
art.on('artplayerPluginDanmuku:loaded', queue => { window.loaded = queue.length; });
watchEmitted(art.template.$danmuku, art.video);
""",
    )


def dplayer_live_page(show: Show) -> str:
    config = {"origin": show.origin, "room": ROOM, "token": show.room_token}
    return _page(
        config,
        ["/vendor/dplayer/dist/DPlayer.min.js", f"{show.origin}/static/danmaku/dplayer-live.js"],
        """
// The pulls the adapter makes: when, the next_ms each answer asked for, the ids it carried.
window.pulls = [];
const realFetch = window.fetch;
window.fetch = async (url, init) => {
  const response = await realFetch(url, init);
  if (!init || !init.method) {
    const at = performance.now();
    response.clone().json().then(b => pulls.push({at, next_ms: b.next_ms, ids: b.items.id}), () => {});
  }
  return response;
};
const live = DanmakuDPlayerLive.backend({origin: CONFIG.origin, room: CONFIG.room, token: CONFIG.token});
const dp = window.dp = new DPlayer({
  container: document.getElementById('player'),
  live: true,
  danmaku: true,
  apiBackend: live,
  video: {url: '/video.webm'},
});
dp.video.muted = true;
watchAdded(dp.template.danmaku, dp.video, '.dplayer-danmaku-item');
live.attach(dp);
""",
    )


def wait_loaded(page, js_problems) -> int:
    """Wait for the player's comments to load; how many it has."""
    try:
        page.wait_for_function("window.loaded !== undefined", timeout=LOAD_TIMEOUT_MS)
    except PlaywrightTimeoutError:
        pytest.fail(f"the player did not load its comments: {js_problems.all()}")
    return page.evaluate("window.loaded")


def play_until(page, seconds: float, video: str) -> None:
    page.evaluate(f"{video}.play()")
    page.wait_for_function(f"{video}.currentTime > {seconds}", timeout=PLAYBACK_TIMEOUT_MS)


def seen(page) -> list[dict]:
    return page.evaluate("window.seen")


def assert_shown_on_time(page, show: Show) -> None:
    shown = seen(page)
    for text, (progress_ms, _, _) in show.comments.items():
        times = [s["t"] for s in shown if s["text"] == text]
        assert len(times) == 1, (text, shown)
        assert abs(times[0] - progress_ms / 1000) <= TIME_TOLERANCE_SECONDS, (text, progress_ms, times[0])


def send_from_dplayer_box(page, text: str, *, color: str | None = None, type_: str | None = None) -> None:
    """As a viewer would: open the comment box, pick colour and type, type, press Enter."""
    page.hover("#player")
    page.click(".dplayer-comment-icon")
    if color or type_:
        page.click(".dplayer-comment-setting-icon")
        if color:
            page.click(f'.dplayer-comment-setting-color input[value="{color}"] + span')
        if type_:
            page.click(f'.dplayer-comment-setting-type input[value="{type_}"] + span')
    page.fill(".dplayer-comment-input", text)
    page.press(".dplayer-comment-input", "Enter")


def send_from_artplayer_box(page, text: str, *, color: str, mode: int) -> None:
    """As a viewer would: pick colour and mode in the plugin's style panel
    (it opens on hover), type in its box, press Enter."""
    page.hover("#player")
    page.hover(".apd-style")
    page.click(f'.apd-style-mode .apd-mode[data-mode="{mode}"]')
    page.hover(".apd-style")
    page.click(f'.apd-color[data-color="{color}"]')
    page.fill(".apd-input", text)
    page.press(".apd-input", "Enter")


def moderators_listing(show: Show) -> list[dict]:
    answer = _api(show.server, "GET", f"/api/v1/moderation/rooms/{ROOM}/recent", token=show.mod_token)
    assert answer.status_code == 200, answer.text
    return answer.json()


# -- DPlayer on an ended broadcast ------------------------------------------------------


def test_dplayer_shows_the_broadcasts_comments_at_their_playback_times(show, site, page, js_problems):
    page.goto(site.put("dplayer.html", dplayer_replay_page(show)))
    assert wait_loaded(page, js_problems) == len(segment_items(show.server, show.broadcast))
    play_until(page, show.watch_until, "dp.video")
    # DPlayer puts a comment it read in with innerHTML: the text must come HTML-escaped.
    assert [s["html"] for s in seen(page) if s["images"]] == [], "a comment's text became markup on the page"
    assert page.evaluate("window.pwned") is None, "a comment's text ran a script on the page"
    assert_shown_on_time(page, show)
    shown = {s["text"]: s for s in seen(page)}
    assert "dplayer-danmaku-top" in shown["top of the show"]["cls"]
    assert shown["top of the show"]["color"] == "rgb(229, 66, 86)"
    assert "dplayer-danmaku-bottom" in shown["bottom line"]["cls"]
    assert js_problems.all() == []


def test_dplayer_comment_box_sends_on_the_recording(show, site, page, js_problems):
    page.goto(site.put("dplayer.html", dplayer_replay_page(show)))
    wait_loaded(page, js_problems)
    play_until(page, 1.0, "dp.video")
    page.evaluate("dp.pause()")
    text = f"from dplayer {uuid.uuid4().hex[:6]}"
    send_url = f"{show.origin}/api/dplayer/v3/"
    with page.expect_response(lambda r: r.url == send_url and r.request.method == "POST") as sent:
        send_from_dplayer_box(page, text, color="#e54256", type_="1")
    body = sent.value.request.post_data_json
    # What DPlayer 1.27.1 sends: colour an integer, type 0/1/2, time in seconds.
    assert (body["color"], body["type"], body["id"], body["token"]) == (
        0xE54256,
        1,
        str(show.broadcast),
        show.player_token,
    )
    # Any 2xx with code 0 is a success to DPlayer (axios, then `code`).
    assert sent.value.ok, sent.value.text()
    assert sent.value.json()["code"] == 0, sent.value.text()
    # DPlayer clears its box on success only.
    page.wait_for_function("document.querySelector('.dplayer-comment-input').value === ''", timeout=2000)

    stored = [i for i in segment_items(show.server, show.broadcast) if i["text"] == text]
    assert len(stored) == 1, stored
    assert abs(stored[0]["progress_ms"] - body["time"] * 1000) <= 1
    assert (stored[0]["mode"], stored[0]["color"]) == (1, 0xE54256)
    listed = [c for c in moderators_listing(show) if c["text"] == text]
    # Whoever the token names sent it, whatever `author` DPlayer claims.
    assert [(c["username"], c["status"]) for c in listed] == [("viewer", "published")]
    assert js_problems.all() == []


def test_dplayer_on_an_origin_not_listed_reads_but_cannot_send(show, site, stranger_site, page, js_problems):
    page.goto(stranger_site.put("dplayer.html", dplayer_replay_page(show)))
    # Reading is public, from anywhere.
    assert wait_loaded(page, js_problems) == len(segment_items(show.server, show.broadcast))
    text = f"from a stranger {uuid.uuid4().hex[:6]}"
    send_url = f"{show.origin}/api/dplayer/v3/"
    with page.expect_event("requestfailed", lambda r: r.url == send_url, timeout=REFUSAL_TIMEOUT_MS):
        send_from_dplayer_box(page, text)
    assert any("CORS" in e for e in js_problems.console_errors), js_problems.all()
    assert js_problems.page_errors == []
    assert text not in {i["text"] for i in segment_items(show.server, show.broadcast)}
    # The preflight the browser made: no permission for this origin, one for the listed site.
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    for origin, allowed in ((stranger_site.origin, None), (site.origin, site.origin)):
        answer = requests.options(send_url, headers={"Origin": origin, **preflight}, timeout=REQUEST_TIMEOUT_SECONDS)
        assert answer.headers.get("Access-Control-Allow-Origin") == allowed, (origin, answer.headers)


# -- ArtPlayer on the same broadcast -----------------------------------------------------


def test_artplayer_shows_the_broadcasts_xml_comments_at_their_playback_times(show, site, page, js_problems):
    page.goto(site.put("artplayer.html", artplayer_page(show)))
    assert wait_loaded(page, js_problems) == len(segment_items(show.server, show.broadcast))
    play_until(page, show.watch_until, "art.video")
    assert_shown_on_time(page, show)
    assert js_problems.all() == []


def test_artplayer_send_box_sends_on_the_recording_at_the_videos_time(show, site, page, js_problems):
    page.goto(site.put("artplayer.html", artplayer_page(show)))
    wait_loaded(page, js_problems)
    play_until(page, 1.0, "art.video")
    text = f"from artplayer {uuid.uuid4().hex[:6]}"
    send_url = f"{show.origin}/api/v1/broadcasts/{show.broadcast}/danmaku"
    # Sent while the video plays: the plugin reads its time at the press.
    before = page.evaluate("art.currentTime")
    with page.expect_response(lambda r: r.url == send_url and r.request.method == "POST") as sent:
        send_from_artplayer_box(page, text, color="#FE0302", mode=1)
    after = page.evaluate("art.currentTime")
    assert sent.value.status == 201, sent.value.text()
    body = sent.value.request.post_data_json
    assert sent.value.request.headers["authorization"] == f"Bearer {show.player_token}"
    # The plugin's upper-case palette colour and mode 1 (top), in our API's words.
    assert {k: body[k] for k in ("text", "color", "mode")} == {"text": text, "color": "#fe0302", "mode": "top"}
    assert before * 1000 - 1 <= body["progress_ms"] <= after * 1000 + 1, (before, body, after)
    assert 1 <= len(body["client_id"]) <= 64
    # The plugin shows it (beforeEmit said yes), clears its box and locks it for lockTime.
    page.wait_for_function("text => seen.some(s => s.text === text)", arg=text, timeout=PLAYBACK_TIMEOUT_MS)
    assert page.input_value(".apd-input") == ""
    assert "apd-lock" in page.get_attribute(".apd-send", "class")

    stored = [i for i in segment_items(show.server, show.broadcast) if i["text"] == text]
    assert len(stored) == 1, stored
    assert stored[0]["progress_ms"] == body["progress_ms"]
    assert (stored[0]["mode"], stored[0]["color"]) == (1, 0xFE0302)
    listed = [c for c in moderators_listing(show) if c["text"] == text]
    assert [(c["username"], c["status"]) for c in listed] == [("viewer", "published")]
    assert [s["text"] for s in seen(page)].count(text) == 1
    assert page.evaluate("refusals") == []
    assert js_problems.all() == []


def test_artplayer_send_box_keeps_a_refused_comment_off_the_screen(show, site, page, js_problems):
    page.goto(site.put("artplayer.html", artplayer_page(show, token="not-a-token")))
    wait_loaded(page, js_problems)
    play_until(page, 0.5, "art.video")
    text = f"refused {uuid.uuid4().hex[:6]}"
    send_url = f"{show.origin}/api/v1/broadcasts/{show.broadcast}/danmaku"
    with page.expect_response(lambda r: r.url == send_url and r.request.method == "POST") as sent:
        send_from_artplayer_box(page, text, color="#FFFFFF", mode=0)
    assert sent.value.status == 401, sent.value.text()
    # Either way beforeEmit settles: a refusal is told, an acceptance locks the send button.
    settled = "refusals.length > 0 || document.querySelector('.apd-send').classList.contains('apd-lock')"
    page.wait_for_function(settled, timeout=REFUSAL_TIMEOUT_MS)
    # The server's own words reach the page; the plugin keeps the text and stays unlocked.
    assert page.evaluate("refusals") == [{"message": sent.value.json()["detail"], "status": 401}]
    assert page.input_value(".apd-input") == text
    assert "apd-lock" not in page.get_attribute(".apd-send", "class")
    # The plugin would show an accepted comment within a frame or two of the answer.
    page.wait_for_timeout(500)
    assert text not in [s["text"] for s in seen(page)]
    assert text not in {i["text"] for i in segment_items(show.server, show.broadcast)}
    # Chromium itself logs the refused request; nothing else went wrong.
    assert js_problems.page_errors == []
    assert all("status of 401" in e for e in js_problems.console_errors), js_problems.all()


# -- DPlayer's live mode through our adapter ----------------------------------------------


def test_dplayer_live_shows_a_room_comment_within_next_ms(show, site, page, js_problems):
    page.goto(site.put("live.html", dplayer_live_page(show)))
    page.wait_for_function("window.pulls.length >= 1", timeout=LOAD_TIMEOUT_MS)
    page.evaluate("dp.play()")
    text = f"live {uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    send_comment(show.server, ROOM, text, token=show.server.tokens[0], mode="top", color="#64dd17")
    page.wait_for_function("text => seen.some(s => s.text === text)", arg=text, timeout=LIVE_TIMEOUT_MS)
    waited_ms = (time.monotonic() - started) * 1000
    pulls = page.evaluate("pulls")
    # The wait the server asked for (jitter included) bounds the arrival.
    next_ms = max(p["next_ms"] for p in pulls)
    assert waited_ms <= next_ms + ADAPTER_SPREAD_MS + LIVE_MARGIN_MS, (waited_ms, pulls)
    # And the adapter never asked sooner.
    for before, after in itertools.pairwise(pulls):
        assert after["at"] - before["at"] >= before["next_ms"] - 5, pulls
    shown = next(s for s in seen(page) if s["text"] == text)
    assert "dplayer-danmaku-top" in shown["cls"]
    assert shown["color"] == "rgb(100, 221, 23)"
    print(f"\nlive comment on DPlayer's screen {waited_ms:.0f} ms after the send (next_ms up to {next_ms})")
    assert js_problems.all() == []


def test_dplayer_live_comment_box_sends_to_the_room_and_shows_it_once(show, site, page, js_problems):
    page.goto(site.put("live.html", dplayer_live_page(show)))
    page.wait_for_function("window.pulls.length >= 1", timeout=LOAD_TIMEOUT_MS)
    text = f"mine live {uuid.uuid4().hex[:6]}"
    send_url = show.server.danmaku_url(ROOM)
    with page.expect_response(lambda r: r.url == send_url and r.request.method == "POST") as sent:
        send_from_dplayer_box(page, text, color="#39ccff", type_="2")
    assert sent.value.status == 201, sent.value.text()
    assert json.loads(sent.value.request.post_data) == {"text": text, "color": "#39ccff", "mode": "bottom"}
    page.wait_for_function("document.querySelector('.dplayer-comment-input').value === ''", timeout=2000)
    # DPlayer showed it at once; the pull that carries it back must not show
    # it again (the adapter would within its spread).
    sent_id = sent.value.json()["id"]
    page.wait_for_function("id => pulls.some(p => p.ids.includes(id))", arg=sent_id, timeout=LIVE_TIMEOUT_MS)
    page.wait_for_timeout(ADAPTER_SPREAD_MS)
    assert [s["text"] for s in seen(page)].count(text) == 1
    listed = [c for c in moderators_listing(show) if c["text"] == text]
    assert [(c["username"], c["status"]) for c in listed] == [("viewer", "published")]
    assert js_problems.all() == []
