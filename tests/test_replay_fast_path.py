"""The replay fast path answers what the node has ready exactly as Django
does, and hands everything else to Django."""

from __future__ import annotations

import io
import json
import sys

from danmaku_site.replayfastpath import ReplayFastPath
from danmaku_site.wsgi import django_application
from tests.danmaku import test_replay
from tests.danmaku.test_replay import record_show

# The host clock the sends and broadcasts are stamped by.
clock = test_replay.clock


class Spy:
    def __init__(self) -> None:
        self.paths: list[str] = []

    def __call__(self, environ, start_response):
        self.paths.append(environ["PATH_INFO"] + "?" + environ.get("QUERY_STRING", ""))
        return django_application(environ, start_response)


def get(app, path: str, query: str = "", **headers):
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        **headers,
    }
    answer = {}

    def start_response(status, response_headers):
        answer["status"], answer["headers"] = int(status.split()[0]), dict(response_headers)

    answer["body"] = b"".join(app(environ, start_response))
    return answer


def test_ready_replay_reads_are_answered_before_django_and_the_rest_reach_it(client, room, auth_headers, clock):
    broadcast, _ = record_show(room, client, auth_headers, clock, {5_000: "on the tape"})
    spy = Spy()
    fast = ReplayFastPath(spy)
    detail_path = f"/api/v1/broadcasts/{broadcast.pk}"
    segment_path = f"{detail_path}/danmaku"

    first_detail = get(fast, detail_path)  # nothing ready yet: Django builds it
    version = json.loads(first_detail["body"])["segments"][0]
    query = f"segment=0&v={version}"
    first_segment = get(fast, segment_path, query, HTTP_ACCEPT_ENCODING="gzip")
    assert spy.paths == [detail_path + "?", segment_path + "?" + query]

    again_detail = get(fast, detail_path)
    again_segment = get(fast, segment_path, query, HTTP_ACCEPT_ENCODING="gzip")
    assert spy.paths == [detail_path + "?", segment_path + "?" + query]  # both answered here
    assert (again_detail["status"], again_detail["body"]) == (200, first_detail["body"])
    assert (again_segment["status"], again_segment["body"]) == (200, first_segment["body"])
    for name in ("Content-Type", "Content-Encoding", "Cache-Control", "ETag", "Access-Control-Allow-Origin"):
        assert again_segment["headers"][name] == first_segment["headers"][name], name
    not_modified = get(fast, segment_path, query, HTTP_IF_NONE_MATCH=first_segment["headers"]["ETag"])
    assert not_modified["status"] == 304

    # Not ready, or not spelt as our clients spell it: Django's.
    for other in ("segment=0", f"v={version}&segment=0", "segment=1&v=1", f"segment=0&v={version}&x=1"):
        get(fast, segment_path, other)
    assert len(spy.paths) == 2 + 4
