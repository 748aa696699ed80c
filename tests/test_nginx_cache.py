"""deploy/nginx.conf, run by a real nginx in front of a real gunicorn.

Between the two sits a TcpProxy, so a test can take the upstream away
(stale answers, quick 502) or hold it (N identical misses, one upstream
request). gunicorn writes an access log: it says how many requests really
reached the app. Every key a test uses (room, cursor, encoding) is its own,
so the tests share one stack and do not depend on their order.
"""

from __future__ import annotations

import gzip
import http.client
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from harness import local
from harness.http import LocalHTTPServer
from harness.nginx import NginxServer, nginx, require_nginx
from harness.tcpproxy import TcpProxy

pytestmark = pytest.mark.slow

ROOM = "front"
# Rooms of their own for the tests that need a key nobody asked for yet.
OTHER_ROOMS = ("front-b", "front-lock", "front-stale", "front-hung", "front-gzip")
REQUEST_TIMEOUT_SECONDS = 10
# An entry lives for max-age=1 counted in whole seconds: at most 2 s.
CACHE_EXPIRY_SECONDS = 2.2
# Cache (up to 2 s) + the refresher's tick and seal lag (~1.4 s) + margin.
DELIVERY_LIMIT_SECONDS = 6.0
# nginx gives up on a refused upstream at once; allow for a loaded machine.
FAIL_FAST_SECONDS = 2.0
# deploy/nginx.conf: proxy_read_timeout for pulls.
PULL_READ_TIMEOUT_SECONDS = 5
GZIP = {"Accept-Encoding": "gzip"}
IDENTITY = {"Accept-Encoding": "identity"}


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    seconds: float

    @property
    def cache(self) -> str | None:
        return self.headers.get("X-Cache-Status")

    def json(self) -> dict:
        raw = gzip.decompress(self.body) if self.headers.get("Content-Encoding") == "gzip" else self.body
        return json.loads(raw)


# How long a request that reached gunicorn may take to show in its access log.
ACCESS_LOG_WAIT_SECONDS = 3


def fetch(url: str, headers: dict[str, str] | None = None, *, method: str = "GET", body: bytes | None = None) -> Answer:
    """One request on a fresh connection; the body exactly as sent (never decoded)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=REQUEST_TIMEOUT_SECONDS)
    started = time.monotonic()
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body, headers=headers or {})
        response = conn.getresponse()
        return Answer(response.status, response.headers, response.read(), time.monotonic() - started)
    finally:
        conn.close()


@dataclass
class Stack:
    app: local.LocalServer
    proxy: TcpProxy
    front: NginxServer
    access_log: Path

    def upstream_requests(self, fragment: str) -> int:
        """Requests that reached gunicorn whose request line contains ``fragment``.

        gunicorn writes the access line after the answer is on its way, so
        the client can get there first: wait (bounded) for the first line.
        """
        deadline = time.monotonic() + ACCESS_LOG_WAIT_SECONDS
        while True:
            count = sum(fragment in line for line in self.access_log.read_text(errors="replace").splitlines())
            if count or time.monotonic() >= deadline:
                return count
            time.sleep(0.02)

    def send(self, text: str) -> Answer:
        payload = json.dumps({"text": text, "client_id": uuid.uuid4().hex}).encode()
        headers = {"Authorization": f"Bearer {self.app.tokens[0]}", "Content-Type": "application/json"}
        return fetch(self.front.pull_url(ROOM), headers, method="POST", body=payload)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    require_nginx()
    access_log = tmp_path_factory.mktemp("nginx-upstream") / "gunicorn-access.log"
    with local.gunicorn(
        room=ROOM,
        workers=1,
        room_fields={"user_send_interval_ms": 0},
        extra_env={"GUNICORN_ACCESS_LOG": str(access_log)},
    ) as app:
        rooms = ", ".join(repr(slug) for slug in OTHER_ROOMS)
        app.manage(
            "shell",
            "-c",
            "from danmaku.models import Room\nfrom danmaku.rooms import room_create\n"
            f"for s in ({rooms}): room_create(slug=s)\n"
            f"Room.objects.filter(slug__in=({rooms})).update(user_send_interval_ms=0)",
        )
        port = int(urlsplit(app.base_url).port)
        proxy = TcpProxy("127.0.0.1", port)
        proxy.start()
        try:
            with nginx(upstream=f"127.0.0.1:{proxy.port}") as front:
                yield Stack(app, proxy, front, access_log)
        finally:
            proxy.stop()


def test_repeat_pull_within_a_second_is_a_byte_identical_hit(stack):
    url = stack.front.pull_url(ROOM) + "?after=0-1"
    first = fetch(url, GZIP)
    # A client asking for a fresh answer does not get past the cache.
    second = fetch(url, {**GZIP, "Cache-Control": "no-cache", "Pragma": "no-cache"})

    assert (first.status, first.cache) == (200, "MISS"), stack.front.log_tail()
    assert (second.status, second.cache) == (200, "HIT")
    assert second.body == first.body
    assert second.headers["ETag"] == first.headers["ETag"]
    assert second.headers["Cache-Control"] == "public, max-age=1"
    assert stack.upstream_requests(f"GET /api/v1/rooms/{ROOM}/danmaku?after=0-1 ") == 1


def test_unknown_room_404_is_cached_so_repeats_do_not_reach_the_app(stack):
    url = stack.front.pull_url("front-nowhere")
    first = fetch(url, GZIP)
    second = fetch(url, GZIP)

    assert (first.status, first.cache) == (404, "MISS"), stack.front.log_tail()
    assert (second.status, second.cache, second.body) == (404, "HIT", first.body)
    assert first.headers["Cache-Control"] == "public, max-age=2"
    assert stack.upstream_requests("GET /api/v1/rooms/front-nowhere/danmaku ") == 1


def test_hits_are_not_logged_misses_are(stack):
    url = stack.front.pull_url(ROOM) + "?after=0-log"
    first, second = fetch(url, GZIP), fetch(url, GZIP)
    assert (first.cache, second.cache) == ("MISS", "HIT")

    # The log is buffered (flushed every second).
    deadline = time.monotonic() + 5
    logged: list[str] = []
    while not logged and time.monotonic() < deadline:
        time.sleep(0.3)
        text = stack.front.access_log.read_text(errors="replace") if stack.front.access_log.exists() else ""
        logged = [line for line in text.splitlines() if "after=0-log " in line]
    assert len(logged) == 1, logged
    assert "cache=MISS" in logged[0]


def test_other_cursor_or_room_is_its_own_entry(stack):
    joined = fetch(stack.front.pull_url(ROOM), IDENTITY)
    cursor = joined.json()["cursor"]
    other_room = fetch(stack.front.pull_url("front-b"), IDENTITY)
    with_cursor = fetch(f"{stack.front.pull_url(ROOM)}?after={cursor}", IDENTITY)
    again = fetch(f"{stack.front.pull_url(ROOM)}?after={cursor}", IDENTITY)
    # Parameters other than the first `after` are neither in the key nor
    # passed on: they cannot split the entry or store an answer to another
    # question in it (the app would read the last `after`).
    extra = fetch(f"{stack.front.pull_url(ROOM)}?after={cursor}&after=not-a-cursor&_=1", GZIP)
    plain = fetch(f"{stack.front.pull_url(ROOM)}?after={cursor}", GZIP)

    assert (other_room.status, other_room.cache) == (200, "MISS")
    assert (with_cursor.status, with_cursor.cache) == (200, "MISS")
    assert (again.cache, again.body) == ("HIT", with_cursor.body)
    assert (extra.status, extra.cache) == (200, "MISS"), extra.body
    assert (plain.cache, plain.body) == ("HIT", extra.body)


def test_gzip_and_identity_clients_get_the_same_answer(stack):
    room = "front-gzip"
    since = fetch(stack.app.danmaku_url(room), IDENTITY).json()["cursor"]
    # Enough comments for the app to compress the answer (it skips tiny ones).
    for n in range(6):
        assert fetch(stack.app.danmaku_url(room), IDENTITY).status == 200
        payload = json.dumps({"text": f"gzip comment {n} " + "x" * 40, "client_id": uuid.uuid4().hex}).encode()
        headers = {"Authorization": f"Bearer {stack.app.tokens[0]}", "Content-Type": "application/json"}
        assert fetch(stack.app.danmaku_url(room), headers, method="POST", body=payload).status == 201
    url = f"{stack.front.pull_url(room)}?after={since}"
    deadline = time.monotonic() + DELIVERY_LIMIT_SECONDS + 2 * CACHE_EXPIRY_SECONDS
    while True:
        zipped = fetch(url, {"Accept-Encoding": "gzip, deflate, br"})
        plain = fetch(url, IDENTITY)
        # Both from the same state of the room (a second may have turned
        # between the two misses), and all six comments sealed.
        same_state = zipped.headers["ETag"] == plain.headers["ETag"]
        if same_state and len(plain.json()["items"]["id"]) == 6:
            break
        assert time.monotonic() < deadline, f"no consistent answer with 6 comments: {plain.body[:300]!r}"
        time.sleep(CACHE_EXPIRY_SECONDS)
    other_gzip_client = fetch(url, {"Accept-Encoding": "gzip"})

    assert zipped.headers["Content-Encoding"] == "gzip"
    assert "Content-Encoding" not in plain.headers
    assert gzip.decompress(zipped.body) == plain.body
    assert zipped.headers["Vary"] == "Accept-Encoding"
    # Two variants only, whatever the header's exact words.
    assert (other_gzip_client.cache, other_gzip_client.body) == ("HIT", zipped.body)


def test_if_none_match_is_answered_304_by_nginx(stack):
    url = stack.front.pull_url(ROOM) + "?after=0-0"
    first = fetch(url, GZIP)
    revalidated = fetch(url, {**GZIP, "If-None-Match": first.headers["ETag"]})
    mismatched = fetch(url, {**GZIP, "If-None-Match": '"not-the-etag"'})

    assert first.status == 200
    assert (revalidated.status, revalidated.cache, revalidated.body) == (304, "HIT", b"")
    assert revalidated.headers["ETag"] == first.headers["ETag"]
    assert (mismatched.status, mismatched.body) == (200, first.body)
    assert stack.upstream_requests(f"GET /api/v1/rooms/{ROOM}/danmaku?after=0-0 ") == 1


def test_comment_sent_through_nginx_reaches_a_viewer_pulling_through_nginx(stack):
    cursor = fetch(stack.front.pull_url(ROOM), IDENTITY).json()["cursor"]
    text = f"through the front {uuid.uuid4().hex[:8]}"
    sent = stack.send(text)
    assert sent.status == 201, sent.body
    # Sends are never cached (nor marked as if they could be).
    assert sent.cache is None
    assert stack.send(text + " again").status == 201
    started = time.monotonic()
    seen: list[str] = []
    while text not in seen:
        assert time.monotonic() - started < DELIVERY_LIMIT_SECONDS, f"not delivered; saw {seen}"
        time.sleep(0.2)
        answer = fetch(f"{stack.front.pull_url(ROOM)}?after={cursor}", GZIP)
        assert answer.status == 200
        body = answer.json()
        seen += body["items"]["text"]
        cursor = body["cursor"]
    print(f"send -> first pull through nginx: {time.monotonic() - started:.2f} s")


def test_upstream_down_serves_cached_pulls_stale_and_fails_the_rest_fast(stack):
    url = stack.front.pull_url("front-stale")
    cached = fetch(url, GZIP)
    assert cached.status == 200
    time.sleep(CACHE_EXPIRY_SECONDS)
    stack.proxy.stop()
    try:
        stale = fetch(url, GZIP)
        uncached = fetch(url, IDENTITY)
        send = stack.send("while the app is away")
    finally:
        stack.proxy.start()

    assert (stale.status, stale.cache, stale.body) == (200, "STALE", cached.body)
    assert uncached.status == 502
    assert uncached.seconds < FAIL_FAST_SECONDS
    assert send.status == 502
    assert send.seconds < FAIL_FAST_SECONDS
    assert fetch(url, IDENTITY).status == 200


def test_hung_upstream_serves_cached_pulls_stale_and_times_out_the_rest(stack):
    url = stack.front.pull_url("front-hung")
    cached = fetch(url, GZIP)
    assert cached.status == 200
    time.sleep(CACHE_EXPIRY_SECONDS)
    answers: dict[str, Answer] = {}

    def pull(name: str, headers: dict[str, str]) -> None:
        answers[name] = fetch(url, headers)

    stack.proxy.freeze()
    try:
        threads = [
            threading.Thread(target=pull, args=("cached", GZIP)),
            threading.Thread(target=pull, args=("uncached", IDENTITY)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT_SECONDS)
    finally:
        stack.proxy.thaw()

    assert (answers["cached"].status, answers["cached"].cache) == (200, "STALE")
    assert answers["cached"].body == cached.body
    assert answers["uncached"].status == 504
    for answer in answers.values():
        assert answer.seconds < PULL_READ_TIMEOUT_SECONDS + FAIL_FAST_SECONDS


def test_concurrent_identical_misses_make_one_upstream_request(stack):
    url = stack.front.pull_url("front-lock")
    clients = 8
    answers: list[Answer] = []
    errors: list[BaseException] = []

    def pull() -> None:
        try:
            answers.append(fetch(url, GZIP))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    # Held at the proxy, the first miss is still in flight while the others
    # arrive; without proxy_cache_lock each would go upstream too.
    stack.proxy.freeze()
    try:
        threads = [threading.Thread(target=pull) for _ in range(clients)]
        for thread in threads:
            thread.start()
        time.sleep(0.7)
    finally:
        stack.proxy.thaw()
    for thread in threads:
        thread.join(timeout=REQUEST_TIMEOUT_SECONDS)

    assert not errors, errors
    assert len(answers) == clients
    assert {a.status for a in answers} == {200}
    assert len({a.body for a in answers}) == 1
    assert sorted(a.cache for a in answers) == ["HIT"] * (clients - 1) + ["MISS"]
    assert stack.upstream_requests("GET /api/v1/rooms/front-lock/danmaku ") == 1


def test_only_plain_successes_are_cached_and_pulls_reach_the_app_anonymous():
    """Against a scripted upstream: what nginx refuses to store, and what it passes on."""
    require_nginx()
    seen: list[tuple[str, dict[str, str]]] = []

    def handle(request) -> None:
        seen.append((request.path, dict(request.headers)))
        status, headers = {
            "error": (503, {}),
            "cookie": (200, {"Set-Cookie": "sessionid=abc; Path=/"}),
            "plain": (200, {}),
        }[request.path.split("/")[4]]
        body = b'{"detail": "scripted"}'
        request.send_response(status)
        for name, value in {"Cache-Control": "public, max-age=60", "Content-Length": str(len(body)), **headers}.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(body)

    with LocalHTTPServer(handle) as upstream, nginx(upstream=f"127.0.0.1:{upstream.httpd.server_port}") as front:
        client_headers = {"Accept-Encoding": "br, gzip;q=1", "Cookie": "sessionid=viewer", "Authorization": "Bearer t"}
        answers = {
            room: [fetch(front.pull_url(room), client_headers) for _ in range(2)]
            for room in ("error", "cookie", "plain")
        }

    def upstream_count(room: str) -> int:
        return sum(path.startswith(f"/api/v1/rooms/{room}/") for path, _ in seen)

    assert [a.status for a in answers["error"]] == [503, 503]
    assert upstream_count("error") == 2
    assert upstream_count("cookie") == 2
    assert [a.cache for a in answers["plain"]] == ["MISS", "HIT"]
    assert upstream_count("plain") == 1
    for _, headers in seen:
        assert headers.get("Accept-Encoding") == "gzip"
        assert "Cookie" not in headers
        assert "Authorization" not in headers


def test_bench_static_file_is_answered_with_the_cached_answers_headers(stack):
    """bench/pull.py divides the cache's hits by nginx serving the same
    answer as a file: the same body and header lines, nginx's own aside."""
    url = stack.front.pull_url(ROOM) + "?after=0-4"
    fetch(url, GZIP)
    hit = fetch(url, GZIP)
    assert hit.cache == "HIT"
    own = {"server", "date", "content-length", "connection", "etag"}
    headers = {name: value for name, value in hit.headers.items() if name.lower() not in own}
    with nginx(upstream=None, static_files={"hot.json": hit.body}, static_headers=headers) as static:
        served = fetch(static.static_url("hot.json"), GZIP)
    assert served.status == 200
    assert served.body == hit.body
    assert {name: value for name, value in served.headers.items() if name.lower() not in own} == headers
    assert sorted(name.lower() for name in served.headers) == sorted(name.lower() for name in hit.headers)


def test_an_answer_larger_than_the_hit_buffer_is_a_byte_identical_hit():
    """Hits go out through a small buffer (deploy/nginx.conf: output_buffers):
    a large answer is sent a buffer at a time, whole."""
    require_nginx()
    body = bytes(range(256)) * 1200  # 300 KB: many buffers, not a multiple of one

    def handle(request) -> None:
        request.send_response(200)
        request.send_header("Cache-Control", "public, max-age=60")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    with LocalHTTPServer(handle) as upstream, nginx(upstream=f"127.0.0.1:{upstream.httpd.server_port}") as front:
        answers = [fetch(front.pull_url("large") + "?after=0-9", GZIP) for _ in range(2)]
    assert [a.cache for a in answers] == ["MISS", "HIT"]
    assert [a.body for a in answers] == [body, body]


def test_replay_reads_are_shared_for_as_long_as_the_app_says(stack):
    """A versioned segment is kept (immutable); an unversioned one and the
    listing for the app's 2 s; a send on the recording passes untouched."""
    made = stack.app.manage(
        "shell",
        "-c",
        "from danmaku.models import Broadcast, Danmaku, Room\nfrom infra import clock\n"
        f"room = Room.objects.get(slug={ROOM!r})\nnow = clock.now_ms()\n"
        "b = Broadcast.objects.create(room=room, started_at_ms=now - 120_000, ended_at_ms=now - 60_000)\n"
        "user = Danmaku.objects.filter(room=room).values_list('user_id', flat=True).first()\n"
        "from django.contrib.auth import get_user_model\n"
        "user = user or get_user_model().objects.first().pk\n"
        "Danmaku.objects.create(room=room, user_id=user, text='on the tape', ts_ms=now - 110_000, in_stream=True)\n"
        "print(b.pk)",
    )
    broadcast_id = int(made.strip().splitlines()[-1])
    base = stack.front.base_url
    listing = fetch(f"{base}/api/v1/rooms/{ROOM}/broadcasts", GZIP)
    assert (listing.status, listing.cache) == (200, "MISS"), stack.front.log_tail()
    assert listing.headers["Cache-Control"] == "public, max-age=2"
    version = next(row for row in listing.json() if row["id"] == broadcast_id)["segments"][0]

    url = f"{base}/api/v1/broadcasts/{broadcast_id}/danmaku?segment=0&v={version}"
    first, second = fetch(url, GZIP), fetch(url, GZIP)
    assert (first.status, first.cache, second.cache) == (200, "MISS", "HIT")
    assert first.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert first.headers["Access-Control-Allow-Origin"] == "*"
    assert second.json()["items"]["text"] == ["on the tape"]
    assert stack.upstream_requests(f"/api/v1/broadcasts/{broadcast_id}/danmaku?segment=0&v={version} ") == 1

    xml = f"{base}/api/v1/broadcasts/{broadcast_id}/danmaku.xml"
    assert [fetch(xml, GZIP).cache for _ in range(2)] == ["MISS", "HIT"]
    dplayer = f"{base}/api/dplayer/v3/?id={broadcast_id}&max=10"
    assert [fetch(dplayer, IDENTITY).cache for _ in range(2)] == ["MISS", "HIT"]

    refused = fetch(
        f"{base}/api/v1/broadcasts/{broadcast_id}/danmaku",
        {"Content-Type": "application/json"},
        method="POST",
        body=json.dumps({"text": "no token", "progress_ms": 1}).encode(),
    )
    assert refused.status == 401  # reached the app, not the cache
    assert refused.cache is None
