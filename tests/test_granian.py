"""granian serving the pull role (deploy/granian-pull.sh), next to gunicorn.

Both servers run the same application over one SQLite file, so they seal the
same seconds from the same store: whenever they answer with the same cursor,
the answer must be the same bytes, headers included.
"""

from __future__ import annotations

import gzip
import http.client
import json
import resource
import time
from urllib.parse import urlsplit

import pytest
import requests

from harness import local

pytestmark = pytest.mark.slow

ROOM = "granian"
REQUEST_TIMEOUT_SECONDS = 5
# Longest wait for a sent comment to be sealed and pulled.
DELIVERY_TIMEOUT_SECONDS = 10
# Attempts at catching both servers on the same sealed second.
SAME_SECOND_ATTEMPTS = 20
# Headers the server itself writes, not the application.
SERVER_HEADERS = {"date", "server", "connection", "keep-alive"}


def get(url: str, **headers: str) -> requests.Response:
    """The answer with its body exactly as sent (``raw_bytes``): requests
    would otherwise ask for gzip and unpack it behind our back."""
    headers = {"Accept-Encoding": "identity"} | headers
    response = requests.get(url, headers=headers, timeout=REQUEST_TIMEOUT_SECONDS, stream=True)
    response.raw_bytes = response.raw.read(decode_content=False)
    return response


def pull_json(url: str) -> dict:
    return json.loads(get(url).raw_bytes)


def ask_both(first: str, second: str, path: str, headers: dict[str, str]):
    for _ in range(SAME_SECOND_ATTEMPTS):
        ours, theirs = get(first + path, **headers), get(second + path, **headers)
        if ours.headers.get("ETag") == theirs.headers.get("ETag"):
            return ours, theirs
        time.sleep(0.1)  # one of them sealed a second more: ask again
    pytest.fail(f"the servers never answered from the same second in {SAME_SECOND_ATTEMPTS} attempts")


DOCUMENT_ONLY_HEADERS = {"x-frame-options", "referrer-policy", "cross-origin-opener-policy"}


def app_headers(response: requests.Response) -> dict[str, str]:
    return {name.lower(): value for name, value in response.headers.items() if name.lower() not in SERVER_HEADERS}


def test_granian_serves_the_pull_role_with_the_same_bytes_as_gunicorn(tmp_path):
    extra = {"DANMAKU_SERVED_BY_HEADER": "0", "GUNICORN_LOG_LEVEL": "warning"}
    with local.gunicorn(room=ROOM, var_dir=tmp_path, room_fields={"user_send_interval_ms": 0}, extra_env=extra) as gun:
        env = gun.env | {"DANMAKU_SERVED_BY_HEADER": "0"}
        with local.granian(env, tmp_path / "granian.log") as granian_url:
            pull_path = f"/api/v1/rooms/{ROOM}/danmaku"
            joined = pull_json(granian_url + pull_path)
            sent = requests.post(
                gun.danmaku_url(ROOM),
                json={"text": "\u54c8\u54c8 from gunicorn to granian"},
                headers={"Authorization": f"Bearer {gun.tokens[0]}"},
                timeout=REQUEST_TIMEOUT_SECONDS,
            )
            assert sent.status_code == 201, sent.text

            # Join, then follow the cursor until the comment arrives.
            cursor, received = joined["cursor"], []
            deadline = time.monotonic() + DELIVERY_TIMEOUT_SECONDS
            while not received and time.monotonic() < deadline:
                time.sleep(0.2)
                body = pull_json(f"{granian_url}{pull_path}?after={cursor}")
                received, cursor = body["items"]["id"], body["cursor"]
            assert received == [sent.json()["id"]]

            # The same question to both servers: the same bytes whenever
            # they answer from the same second (same ETag).
            url = f"{pull_path}?after={joined['cursor']}"
            for headers in ({}, {"Accept-Encoding": "gzip"}):
                ours, theirs = ask_both(granian_url, gun.base_url, url, headers)
                assert ours.status_code == theirs.status_code == 200
                assert ours.raw_bytes == theirs.raw_bytes
                # granian runs the pull role, gunicorn here every role: the
                # pull role leaves out the headers that only govern documents.
                assert app_headers(ours) == {
                    name: value for name, value in app_headers(theirs).items() if name not in DOCUMENT_ONLY_HEADERS
                }
                assert app_headers(theirs).keys() >= DOCUMENT_ONLY_HEADERS

            zipped = get(f"{granian_url}{pull_path}?after={joined['cursor']}", **{"Accept-Encoding": "gzip"})
            revalidated = get(
                f"{granian_url}{pull_path}?after={joined['cursor']}",
                **{"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["ETag"]},
            )
            sends_refused = requests.post(granian_url + pull_path, json={"text": "no"}, timeout=REQUEST_TIMEOUT_SECONDS)
            metrics = requests.get(f"{granian_url}/metrics", timeout=REQUEST_TIMEOUT_SECONDS).text

    assert zipped.headers["Content-Encoding"] == "gzip"
    assert int(zipped.headers["Content-Length"]) == len(zipped.raw_bytes)
    assert "from gunicorn to granian" in gzip.decompress(zipped.raw_bytes).decode()
    assert revalidated.status_code == 304
    assert revalidated.raw_bytes == b""
    assert sends_refused.status_code == 405
    assert 'danmaku_pulls_total{status="200"}' in metrics


# More kept-alive viewers than granian's own default lets one worker hold
# (backlog / workers connection slots: 2,048 with the shipped backlog of 2,048
# and local.granian's one worker).
CROWD = 2_500


def test_granian_answers_a_crowd_larger_than_its_default_backpressure_each_on_a_kept_alive_connection(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = CROWD + 500
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} open files, the hard limit is {hard}")
    env = local.environment(tmp_path, DANMAKU_SERVED_BY_HEADER="0")
    local.prepare_room(env, ROOM, ("sender",))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    viewers: list[http.client.HTTPConnection] = []
    try:
        with local.granian(env, tmp_path / "granian.log") as base_url:
            parts = urlsplit(base_url)
            path = f"/api/v1/rooms/{ROOM}/danmaku"
            statuses = []
            for _ in range(CROWD):
                viewer = http.client.HTTPConnection(parts.hostname, parts.port, timeout=REQUEST_TIMEOUT_SECONDS)
                viewers.append(viewer)
                statuses.append(_poll(viewer, path))
            # Everyone polls again on the connection they kept.
            statuses += [_poll(viewer, path) for viewer in viewers]
    finally:
        for viewer in viewers:
            viewer.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert statuses == [200] * (2 * CROWD)


def _poll(viewer: http.client.HTTPConnection, path: str) -> int:
    viewer.request("GET", path, headers={"Accept-Encoding": "gzip"})
    response = viewer.getresponse()
    response.read()
    assert not response.will_close
    return response.status


def test_granian_serves_the_send_role_through_the_send_fast_path(tmp_path):
    # deploy/granian-send.sh: sends answered as gunicorn answers them
    # (tests/test_send_fast_path.py compares the bodies), pulls refused.
    env = local.environment(tmp_path, DANMAKU_SERVED_BY_HEADER="0")
    (token,) = local.prepare_room(env, ROOM, ("sender",), user_send_interval_ms=60_000)
    with local.granian(env, tmp_path / "granian.log", role="send", workers=None) as base_url:
        url = f"{base_url}/api/v1/rooms/{ROOM}/danmaku"
        headers = {"Authorization": f"Bearer {token}"}

        def send(client_id: str) -> requests.Response:
            body = {"text": "from granian", "client_id": client_id}
            return requests.post(url, json=body, headers=headers, timeout=REQUEST_TIMEOUT_SECONDS)

        first, copy, next_one = send("g-1"), send("g-1"), send("g-2")
        pulled = requests.get(url, timeout=REQUEST_TIMEOUT_SECONDS)

    assert first.status_code == 201
    assert copy.json() == first.json()
    assert next_one.status_code == 429
    assert next_one.headers["Retry-After"] == "60"
    assert pulled.status_code == 405
