"""One simulated viewer (harness.crowd.viewer) against a scripted server on
127.0.0.1: it follows its cursor chain at the server's next_ms, sends a
request again at once when a kept-alive connection was closed before any
answer byte (counted), and backs off on a 503 for at least Retry-After; on
asyncio's own loop and on uvloop, which the crowd bench can run on."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import random
import socket

import orjson
import pytest
import uvloop

from harness.crowd.answers import AnswerCache
from harness.crowd.viewer import Recorder, Viewer

# Longer than a scheduling hiccup under a loaded suite (0.35 s seen), so
# "again at once" and "after next_ms" stay apart.
NEXT_MS = 500
# Bounds that catch a hang, not speed targets.
RUN_SECONDS = 5.0
CLOCK_SLACK_SECONDS = 0.002


def answer(number: int) -> bytes:
    body = gzip.compress(
        orjson.dumps(
            {
                "cursor": f"1-{number}",
                "next_ms": NEXT_MS,
                "reason": "normal",
                "gap": False,
                "missed": 2,
                "items": {"id": [number]},
                "deleted": [],
                "viewers": 7,
            }
        )
    )
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


async def serve_script(script, requests: list[tuple[float, str]], done: asyncio.Event, *, until: int):
    """Answers each request line per ``script(number)``: "answer", "close" or
    "busy" (a 503 with Retry-After: 1); sets ``done`` after ``until`` requests."""
    loop = asyncio.get_running_loop()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ")[1].decode()
                requests.append((loop.time(), path))
                number = len(requests)
                if number >= until:
                    done.set()
                action = script(number)
                if action == "close":
                    writer.close()
                    return
                if action == "busy":
                    writer.write(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n")
                else:
                    writer.write(answer(number))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.fixture(params=["asyncio", "uvloop"])
def event_loop_factory(request):
    return uvloop.new_event_loop if request.param == "uvloop" else None


def new_viewer(port: int, loop: asyncio.AbstractEventLoop) -> tuple[Viewer, Recorder]:
    recorder = Recorder()
    viewer = Viewer(
        0,
        host="127.0.0.1",
        port=port,
        path="/api/v1/rooms/r/danmaku",
        recorder=recorder,
        answers=AnswerCache(),
        rng=random.Random(1),
        loop=loop,
    )
    return viewer, recorder


def run_viewer(script, *, until: int, loop_factory) -> tuple[Viewer, Recorder, list[tuple[float, str]]]:
    requests: list[tuple[float, str]] = []

    async def main():
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        server = await serve_script(script, requests, done, until=until)
        port = server.sockets[0].getsockname()[1]
        viewer, recorder = new_viewer(port, loop)
        viewer.start(loop.time())
        try:
            await asyncio.wait_for(done.wait(), RUN_SECONDS)
            await asyncio.sleep(0.05)  # the last answer read
        finally:
            viewer.stop()
            server.close()
            await server.wait_closed()
        return viewer, recorder

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        viewer, recorder = runner.run(main())
    return viewer, recorder, requests


def test_viewer_follows_its_cursor_chain_at_next_ms(event_loop_factory):
    viewer, recorder, requests = run_viewer(lambda number: "answer", until=4, loop_factory=event_loop_factory)
    paths = [path for _, path in requests]
    assert paths == [
        "/api/v1/rooms/r/danmaku",
        "/api/v1/rooms/r/danmaku?after=1-1",
        "/api/v1/rooms/r/danmaku?after=1-2",
        "/api/v1/rooms/r/danmaku?after=1-3",
    ]
    waits = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(requests)]
    # uvloop's clock is libuv's, in whole milliseconds and read once a turn:
    # its timers may fire up to a millisecond or so early.
    assert all(NEXT_MS / 1000 - CLOCK_SLACK_SECONDS <= wait < 1.0 for wait in waits), waits
    assert viewer.ledger.seen == {1, 2, 3, 4}
    assert (viewer.ledger.duplicates, recorder.errors) == (0, [])
    assert len(recorder.first_latency) == 1


def test_viewer_sends_again_at_once_when_a_kept_alive_connection_closes_unanswered(event_loop_factory):
    viewer, recorder, requests = run_viewer(
        lambda number: "close" if number == 2 else "answer", until=4, loop_factory=event_loop_factory
    )
    paths = [path for _, path in requests]
    # The second request went unanswered: the same cursor again, at once, on a new connection.
    assert paths[1:3] == ["/api/v1/rooms/r/danmaku?after=1-1"] * 2
    assert requests[2][0] - requests[1][0] < NEXT_MS / 1000
    assert [kind for _, kind in recorder.errors] == ["eof"]
    assert recorder.retried == {"eof": 1}
    assert viewer.ledger.seen == {1, 3, 4}


def test_viewer_backs_off_at_least_retry_after_and_resumes_its_cursor(event_loop_factory):
    _viewer, recorder, requests = run_viewer(
        lambda number: "busy" if number == 2 else "answer", until=3, loop_factory=event_loop_factory
    )
    assert [path for _, path in requests][1:] == ["/api/v1/rooms/r/danmaku?after=1-1"] * 2
    assert requests[2][0] - requests[1][0] >= 1.0
    assert [kind for _, kind in recorder.errors] == ["http-503"]
    assert list(recorder.status) == [200, 503, 200]


def test_viewer_counts_a_refused_connect_and_backs_off(event_loop_factory):
    async def main():
        loop = asyncio.get_running_loop()
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        viewer, recorder = new_viewer(port, loop)
        viewer.start(loop.time())
        deadline = loop.time() + RUN_SECONDS
        while not recorder.errors and loop.time() < deadline:
            await asyncio.sleep(0.01)
        viewer.stop()
        await asyncio.sleep(0.05)
        return viewer, recorder

    with asyncio.Runner(loop_factory=event_loop_factory) as runner:
        viewer, recorder = runner.run(main())
    assert [kind for _, kind in recorder.errors] == ["refused"]
    # poller.js's first back-off: 1 s with jitter, at least half of it.
    assert [wait >= 500 for _, wait in viewer.ledger.backoffs] == [True]
    assert recorder.open_connections == 0


def test_a_viewer_that_leaves_closes_its_connection_and_polls_no_more(event_loop_factory):
    requests: list[tuple[float, str]] = []

    async def main():
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        server = await serve_script(lambda number: "answer", requests, done, until=2)
        viewer, recorder = new_viewer(server.sockets[0].getsockname()[1], loop)
        viewer.start(loop.time())
        try:
            await asyncio.wait_for(done.wait(), RUN_SECONDS)
            await asyncio.sleep(0.05)  # the second answer read
            viewer.leave()
            await asyncio.sleep(3 * NEXT_MS / 1000)
        finally:
            viewer.stop()
            server.close()
            await server.wait_closed()
        return viewer, recorder

    with asyncio.Runner(loop_factory=event_loop_factory) as runner:
        viewer, recorder = runner.run(main())
    assert len(requests) == 2
    assert recorder.open_connections == 0
    assert viewer.ledger.left_at is not None
    assert list(recorder.left_at) == [viewer.ledger.left_at]
    # Every answer recorded with what it said, in step with its time and status.
    assert list(recorder.status) == [200, 200]
    assert (list(recorder.next_ms), list(recorder.reason), list(recorder.items)) == ([NEXT_MS] * 2, [0, 0], [1, 1])
    assert (list(recorder.missed), list(recorder.viewers), viewer.ledger.reported_missed) == ([2, 2], [7, 7], 4)
    assert all(size > len(b"HTTP/1.1 200 OK\r\n\r\n") for size in recorder.size)
