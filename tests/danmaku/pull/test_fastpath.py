"""The WSGI pull fast path against the ninja endpoint it stands in for.

Both are driven through WSGI, as a server would: the same environ to
``PullFastPath(django)`` and to Django's own handler, and the answers compared
whole (status line, every header in order, body). The fast path either gives
exactly Django's answer or hands the request to Django.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import socket
import threading
import time
from dataclasses import dataclass

import orjson
import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.db import DatabaseError
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from danmaku import runtime
from danmaku.models import Danmaku
from danmaku.pull import cache as pull_cache
from danmaku.pull import response as pullhttp
from danmaku.pull.fastpath import PullFastPath
from danmaku.pull.wire import encode_cursor
from danmaku.store import DatabaseStore
from danmaku_site import settings as site_settings
from harness.wsgi import connections_kept_open, wsgi_environ

EPOCH = DatabaseStore.epoch
PATH = "/api/v1/rooms/{}/danmaku"


@dataclass
class Answer:
    status: str
    headers: list[tuple[str, str]]
    body: bytes


environ = wsgi_environ


def call(app, env: dict) -> Answer:
    seen: dict = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, list(headers)

    result = app(env, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return Answer(seen["status"], seen["headers"], body)


class Recorder:
    """Django's handler, noting every request handed to it."""

    def __init__(self, app) -> None:
        self.app = app
        self.calls = 0

    def __call__(self, env, start_response):
        self.calls += 1
        return self.app(env, start_response)


@pytest.fixture(params=["all", "pull"])
def apps(request, settings):
    """(fast path, Django) over the middleware of each role.

    Like Django's test client, the handler must not close the test's
    connection at the end of a request (it lives in the test's transaction).
    """
    if request.param == "pull":
        settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m not in site_settings.MIDDLEWARE_NOT_ON_PULL_NODES]
    settings.DANMAKU_SERVED_BY_HEADER = True
    with connections_kept_open():
        django_app = WSGIHandler()
        recorder = Recorder(django_app)
        yield PullFastPath(recorder, runtime.PROCESS), django_app, recorder


@pytest.fixture
def comments(room, user):
    now_ms = int(time.time() * 1000)
    texts = ("\u54c8\u54c8\u54c8 first comment", "second one, a little longer than the first", "\u7b2c\u4e09 third")
    return [
        Danmaku.objects.create(room=room, user=user, ts_ms=now_ms - 2500 + 10 * n, text=text)
        for n, text in enumerate(texts * 3)
    ]


def both(apps, path: str, query: str = "", **headers: str) -> tuple[Answer, Answer, bool]:
    """(fast path's answer, Django's answer, whether the fast path answered itself).

    The fast path goes first, so it also builds answers (not only finds them)."""
    fast_app, django_app, recorder = apps
    before = recorder.calls
    fast = call(fast_app, environ(path, query, **headers))
    answered_itself = recorder.calls == before
    return fast, call(django_app, environ(path, query, **headers)), answered_itself


def _cursor(answer: Answer) -> str:
    return orjson.loads(answer.body)["cursor"]


GZIP = {"ACCEPT_ENCODING": "gzip, deflate, br"}


def cases(cursor: str, etag: str) -> list[tuple[str, str, dict, bool]]:
    """(name, query, headers, answered by the fast path itself)."""
    now = int(time.time())
    return [
        ("join", "", {}, True),
        ("join gzip", "", GZIP, True),
        ("join gzip with weights", "", {"ACCEPT_ENCODING": "br;q=1.0, gzip;q=0.8"}, True),
        ("gzip refused by weight", "", {"ACCEPT_ENCODING": "gzip;q=0"}, True),
        ("cursor", f"after={cursor}", {}, True),
        ("cursor gzip", f"after={cursor}", GZIP, True),
        ("cursor inside the window", f"after={encode_cursor(EPOCH, now - 5)}", GZIP, True),
        ("stale cursor: gap", f"after={encode_cursor(EPOCH, now - 3600)}", GZIP, True),
        ("other epoch: gap", f"after={encode_cursor(EPOCH + 1, now - 3)}", {}, True),
        ("far ahead: gap", f"after={encode_cursor(EPOCH, now + 3600)}", {}, True),
        ("bad cursor: 400", "after=zz", {}, True),
        ("bad cursor with leading zero: 400", "after=01-2", GZIP, True),
        ("if-none-match: 304", "", {"IF_NONE_MATCH": etag}, True),
        ("if-none-match gzip: 304", "", {"IF_NONE_MATCH": etag, **GZIP}, True),
        ("if-none-match weak in a list: 304", "", {"IF_NONE_MATCH": f'"x", W/{etag}'}, True),
        ("if-none-match other: 200", "", {"IF_NONE_MATCH": '"other"'}, True),
        ("cursor needing decoding: to Django", "after=1%2D2", {}, False),
        ("cursor too long: to Django", "after=" + "1" * 65, {}, False),
        ("empty cursor: to Django", "after=", {}, False),
        ("other parameter: to Django", "x=1", {}, False),
        ("extra parameter: to Django", f"after={cursor}&x=1", {}, False),
        ("repeated parameter: to Django", f"after={cursor}&after={cursor}", {}, False),
    ]


def test_fast_path_answers_byte_for_byte_like_the_ninja_endpoint(apps, comments, monkeypatch):
    # Compared pull by pull, both paths must hand out the same form of the
    # answer: its crowd variants (many pulls of one question) are off.
    monkeypatch.setattr(pull_cache, "CROWD_STEP", 10**9)
    _, django_app, _ = apps
    joined = call(django_app, environ(PATH.format("live")))
    etag = dict(joined.headers)["ETag"]
    cursor = _cursor(joined)

    for name, query, headers, by_fast_path in cases(cursor, etag):
        fast, django, answered_itself = both(apps, PATH.format("live"), query, **headers)

        assert fast == django, name
        assert answered_itself is by_fast_path, name
    assert gzip.decompress(both(apps, PATH.format("live"), "", **GZIP)[0].body) == joined.body


@pytest.mark.parametrize(
    ("path", "method"),
    [
        (PATH.format("nowhere"), "GET"),  # never activated here: Django's 404
        (PATH.format("live") + "/", "GET"),
        ("/api/v1/rooms//danmaku", "GET"),
        ("/api/v1/rooms/danmaku", "GET"),
        ("/api/v1/rooms/a/b/danmaku", "GET"),
        ("/api/v1/rooms/live/Danmaku", "GET"),
        (PATH.format("live"), "HEAD"),
        (PATH.format("live"), "POST"),
        (PATH.format("live"), "OPTIONS"),
    ],
)
def test_everything_but_a_plain_pull_of_an_active_room_goes_to_django(apps, room, path, method):
    fast_app, django_app, recorder = apps
    call(django_app, environ(PATH.format("live")))  # activates the room
    before = recorder.calls

    fast = call(fast_app, environ(path, method=method))

    assert recorder.calls == before + 1
    assert fast == call(django_app, environ(path, method=method))


@pytest.mark.parametrize("host", ["evil.example", "", None])
def test_a_host_django_refuses_goes_to_django(apps, room, host):
    fast_app, django_app, recorder = apps
    call(django_app, environ(PATH.format("live")))
    env = environ(PATH.format("live"))
    if host is None:
        del env["HTTP_HOST"]
    else:
        env["HTTP_HOST"] = host
    before = recorder.calls

    fast = call(fast_app, dict(env))

    assert recorder.calls == before + 1
    assert fast == call(django_app, dict(env))


def test_unknown_room_answers_like_ninja_every_time(apps, room):
    for _ in range(2):
        fast, django, answered_itself = both(apps, PATH.format("nowhere"))

        assert fast == django
        assert fast.status == "404 Not Found"
        assert not answered_itself


def test_room_that_cannot_be_activated_gets_the_same_503(apps, room, monkeypatch):
    def database_down(slug):
        raise DatabaseError("database down")

    monkeypatch.setattr(runtime.pull_cache(), "_activator", database_down)

    fast, django, _ = both(apps, PATH.format("live"))

    assert fast == django
    assert fast.status == "503 Service Unavailable"
    assert ("Retry-After", "1") in fast.headers


def test_fast_path_answers_carry_the_contract_headers(apps, comments):
    fast_app, django_app, _ = apps
    call(django_app, environ(PATH.format("live")))

    answer = call(fast_app, environ(PATH.format("live"), **GZIP))
    headers = dict(answer.headers)

    assert answer.status == "200 OK"
    assert headers["Content-Type"] == "application/json"
    assert headers["Content-Encoding"] == "gzip"
    assert int(headers["Content-Length"]) == len(answer.body)
    assert headers["Cache-Control"] == "public, max-age=1"
    assert headers["Vary"] == "Accept-Encoding"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["ETag"].startswith('"')
    assert len(answer.headers) == len(headers), "a header was sent twice"


def test_deployment_headers_are_read_again_when_settings_change(settings):
    # Worked out once per process, so a change must reset them.
    served_by = ("X-Served-By", f"{socket.gethostname()}:{os.getpid()}")
    settings.DANMAKU_SERVED_BY_HEADER = True
    assert served_by in pullhttp.deployment_headers()

    settings.DANMAKU_SERVED_BY_HEADER = False
    assert [name for name, _ in pullhttp.deployment_headers() if name == "X-Served-By"] == []


def test_pulls_touch_no_database_through_either_path(apps, comments, django_assert_num_queries):
    fast_app, django_app, _ = apps
    cursor = _cursor(call(django_app, environ(PATH.format("live"))))

    with django_assert_num_queries(0):
        for app in (fast_app, django_app):
            for query in ("", f"after={cursor}", f"after={encode_cursor(EPOCH, 1)}", "after=zz"):
                for headers in ({}, GZIP):
                    call(app, environ(PATH.format("live"), query, **headers))


def test_pulls_through_the_fast_path_are_counted_by_status(apps, room):
    fast_app, django_app, _ = apps
    call(django_app, environ(PATH.format("live")))

    def count(status: str) -> float:
        return REGISTRY.get_sample_value("danmaku_pulls_total", {"status": status}) or 0.0

    before = {status: count(status) for status in ("200", "400")}
    for query in ("", "", "after=zz"):
        call(fast_app, environ(PATH.format("live"), query))

    assert count("200") - before["200"] == 2
    assert count("400") - before["400"] == 1


def test_the_fast_path_is_installed_only_where_pulls_are_served(settings):
    app = WSGIHandler()

    assert isinstance(runtime.wrap_fast_path(app), PullFastPath)
    settings.DANMAKU_ROLE = "send"
    assert runtime.wrap_fast_path(app) is app
    settings.DANMAKU_ROLE = "pull"
    settings.DANMAKU_PULL_FAST_PATH = False
    assert runtime.wrap_fast_path(app) is app


QUERY_ALPHABET = "0123456789az-AZ_.~%+&=;# \x00\xe9"


@hypothesis_settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    query=st.one_of(
        st.text(QUERY_ALPHABET, max_size=80),
        st.text(QUERY_ALPHABET, max_size=70).map(lambda value: "after=" + value),
        # Well-formed cursors of every epoch and second, in and out of range.
        st.builds(lambda epoch, second: f"after={epoch}-{second}", st.integers(0, 40), st.integers(0, 2**41)),
    )
)
def test_any_query_string_is_answered_like_django_or_handed_to_it(apps, room, monkeypatch, query):
    # Hundreds of pulls of one question would reach its crowd variants
    # (another next_ms in turn): compared pull by pull, they are off.
    monkeypatch.setattr(pull_cache, "CROWD_STEP", 10**9)
    fast_app, django_app, recorder = apps
    call(django_app, environ(PATH.format("live")))

    before = recorder.calls
    fast = call(fast_app, environ(PATH.format("live"), query))
    if recorder.calls == before:
        assert fast == call(django_app, environ(PATH.format("live"), query))


def test_pulls_in_redis_mode_send_no_command_to_redis(private_redis_mode, room, user, settings):
    """Measured on the server: a redis-server of this test's own, whose
    command counter only our process moves (the refresher is not ticking)."""
    from redis import Redis

    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m not in site_settings.MIDDLEWARE_NOT_ON_PULL_NODES]
    probe = Redis.from_url(private_redis_mode.url, socket_timeout=2, socket_connect_timeout=2)
    with contextlib.closing(probe), connections_kept_open():
        django_app = WSGIHandler()
        fast_app = PullFastPath(django_app, runtime.PROCESS)
        cursor = _cursor(call(django_app, environ(PATH.format("live"))))  # activates: reads Redis

        def processed() -> int:
            return int(probe.info("stats")["total_commands_processed"])

        first, second = processed(), processed()
        per_read = second - first  # the INFO command itself
        start = processed()
        for app in (fast_app, django_app):
            for query in ("", f"after={cursor}", "after=zz"):
                for headers in ({}, GZIP):
                    assert call(app, environ(PATH.format("live"), query, **headers)).status.startswith(("200", "400"))
        end = processed()

    assert end - start == per_read


def test_pull_counts_written_for_multiprocess_scrapes_add_up(tmp_path):
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    from infra.metrics import PULLS
    from infra.tallies import FileCounts

    def scraped(status: str) -> float | None:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(tmp_path))
        return registry.get_sample_value("danmaku_pulls_total", {"status": status})

    counts = FileCounts(PULLS, str(tmp_path), "pulls")
    for status in (200, 200, 404):
        counts.inc(str(status))
    # Counted by threads of their own (as the server's threads do).
    threads = [threading.Thread(target=lambda: [counts.inc("200") for _ in range(1000)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert scraped("200") is None, "tallied, not written until a flush"
    counts.flush()
    assert scraped("200") == 4002
    assert scraped("404") == 1

    counts.inc("200")
    counts.flush()
    counts.flush()
    assert scraped("200") == 4003
    # A worker recycled onto the same pid number carries on from the file.
    again = FileCounts(PULLS, str(tmp_path), "pulls")
    again.inc("200")
    again.flush()
    assert scraped("200") == 4004


def test_on_the_event_loop_nothing_is_built_started_or_waited_for(
    settings, room, monkeypatch, django_assert_num_queries
):
    """The pull worker's loop must not block: a process whose pull cache is
    not built (that reads the store) or whose refresher must be started
    (that takes the refresher's lock) hands the pull over instead."""
    from danmaku.refresher import Refresher

    started = []
    monkeypatch.setattr(Refresher, "running", lambda self: bool(started))
    monkeypatch.setattr(Refresher, "ensure_started", lambda self: started.append(True))
    settings.DANMAKU_REFRESHER_AUTOSTART = True
    with connections_kept_open():
        fast = PullFastPath(Recorder(WSGIHandler()), runtime.PROCESS)
        env = environ(PATH.format(room.slug))
        with django_assert_num_queries(0):
            assert fast.answer(env, on_event_loop=True) is None
        assert runtime.built_pull_cache() is None
        runtime.pull_cache()  # built now, the room not active yet
        assert fast.answer(env, on_event_loop=True) is None
        assert call(fast, env).status == "200 OK"  # Django activates it and starts the refresher
        assert started
        assert fast.answer(env, on_event_loop=True) is not None
        # The refresher died; the check comes due (every REFRESHER_CHECK_EVERY pulls).
        started.clear()
        fast._until_refresher_check = 0
        assert fast.answer(env, on_event_loop=True) is None
        assert fast.answer(env) is not None  # the regular way starts it again
        assert started
        assert fast.answer(env, on_event_loop=True) is not None
