"""A send node's pull worker answers bearer sends on its loop.

The worker is built as in ``tests/test_pullworker.py`` (a pool that only
records its jobs), in front of the send fast path as a send node runs it.
A send the loop answers takes no pool thread and gets the bytes gunicorn's
regular path writes for the same request (Date aside); anything the fast
path leaves to Django still reaches Django, through a pool thread, with its
body.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid

import pytest
from django.db import OperationalError

from danmaku.models import Danmaku, Room
from danmaku_site import pullworker, sendfastpath
from danmaku_site.sendfastpath import SendFastPath
from tests import test_pullworker as base
from tests.test_pullworker import (
    connect,
    dispatch,
    read_answer,
    read_while_the_loop_writes,
    running,
    same_but_date,
)

PATH = "/api/v1/rooms/live/danmaku"
# The base module's fixtures, for this module's tests.
django_app = base.django_app
listener = base.listener


@pytest.fixture
def send_worker(django_app, room):
    with running(SendFastPath(django_app, served_by=False, loop_answers_sends=True)) as worker:
        yield worker


@contextlib.contextmanager
def connected(worker, listener):
    client = connect(worker, listener)
    with contextlib.closing(client.sock), contextlib.closing(client.conn.sock):
        yield client


def send(token: str | None, body: dict | bytes, *headers: str) -> bytes:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    head = [f"POST {PATH} HTTP/1.1", "Host: testserver", "Content-Type: application/json"]
    if token is not None:
        head.append(f"Authorization: Bearer {token}")
    head += [f"Content-Length: {len(data)}", *headers]
    return "\r\n".join([*head, "", ""]).encode() + data


def on_the_loop(worker, client, data: bytes) -> bytes:
    client.sock.sendall(data)
    dispatch(worker)
    assert worker.tpool.jobs == []  # no pool thread
    return read_answer(client)


def through_a_thread(worker, client, data: bytes) -> bytes:
    client.sock.sendall(data)
    dispatch(worker)
    assert len(worker.tpool.jobs) == 1
    worker.tpool.run()
    return read_while_the_loop_writes(worker, client)


def test_the_loop_answers_a_send_itself_with_gunicorns_bytes(send_worker, listener, token):
    comment = {"text": "on the loop", "client_id": uuid.uuid4().hex}
    with connected(send_worker, listener) as client:
        nr = send_worker.nr
        loop = on_the_loop(send_worker, client, send(token, comment))
        assert send_worker.nr == nr + 1
        assert loop.startswith(b"HTTP/1.1 201 Created\r\nServer: gunicorn\r\nDate: ")
        assert b"\r\nConnection: keep-alive\r\n" in loop
        stored = Danmaku.objects.get(client_id=comment["client_id"])
        assert json.loads(loop.partition(b"\r\n\r\n")[2]) == {"id": stored.id, "status": "published"}
        # Its copy, the regular way (gunicorn drops a header with "_", and the
        # loop leaves such a request to it): the same answer, the same bytes.
        regular = through_a_thread(send_worker, client, send(token, comment, "X_Hand_Over: 1"))
        same_but_date(loop, regular)
        assert Danmaku.objects.filter(client_id=comment["client_id"]).count() == 1
        # Still kept alive, on the poller.
        assert send_worker.poller.get_key(client.conn.sock)


def test_refusals_are_answered_on_the_loop_as_a_thread_would(send_worker, listener, token, room):
    Room.objects.filter(pk=room.pk).update(is_open=False)
    with connected(send_worker, listener) as client:
        loop = on_the_loop(send_worker, client, send(token, {"text": "closed"}))
        regular = through_a_thread(send_worker, client, send(token, {"text": "closed"}, "X_Hand_Over: 1"))
    assert loop.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    same_but_date(loop, regular)
    assert not Danmaku.objects.exists()


def test_slow_mode_is_kept_on_the_loop(send_worker, listener, token, room):
    Room.objects.filter(pk=room.pk).update(user_send_interval_ms=60_000)
    with connected(send_worker, listener) as client:
        first = on_the_loop(send_worker, client, send(token, {"text": "first"}))
        second = on_the_loop(send_worker, client, send(token, {"text": "second"}))
    assert first.startswith(b"HTTP/1.1 201 Created\r\n")
    assert second.startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
    assert b"\r\nRetry-After: 60\r\n" in second
    assert list(Danmaku.objects.values_list("text", flat=True)) == ["first"]


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (lambda token: send("dm_" + "x" * 43, {"text": "who?"}), b"401"),  # a token nobody has: Django's 401
        (lambda token: send(token, {"text": ""}), b"400"),  # ninja's field list
        (lambda token: send(token, b"{not json"), b"400"),
        (lambda token: send(None, {"text": "no token"}), b"401"),  # not a bearer send
    ],
    ids=["unknown-token", "empty-text", "not-json", "no-token"],
)
def test_what_the_fast_path_leaves_to_django_reaches_it_through_a_thread(send_worker, listener, token, data, status):
    with connected(send_worker, listener) as client:
        answer = through_a_thread(send_worker, client, data(token))
    assert answer.split(b" ", 2)[1] == status, answer


def test_a_worker_whose_app_keeps_sends_off_the_loop_hands_them_to_a_thread(django_app, room, listener, token):
    with running(SendFastPath(django_app, served_by=False)) as worker, connected(worker, listener) as client:
        answer = through_a_thread(worker, client, send(token, {"text": "by a thread"}))
    assert answer.startswith(b"HTTP/1.1 201 Created\r\n")


def test_after_a_database_error_sends_go_to_threads_for_a_while(send_worker, listener, token, monkeypatch):
    """A database that hangs must hold pool threads, not the loop."""
    real_send = sendfastpath.danmaku_send

    def database_gone(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(sendfastpath, "danmaku_send", database_gone)
    with connected(send_worker, listener) as client:
        failed = on_the_loop(send_worker, client, send(token, {"text": "no database"}))
        assert failed.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        monkeypatch.setattr(sendfastpath, "danmaku_send", real_send)
        paused = through_a_thread(send_worker, client, send(token, {"text": "by a thread"}))
        assert paused.startswith(b"HTTP/1.1 201 Created\r\n")
        later = time.monotonic() + sendfastpath.LOOP_PAUSE_AFTER_DATABASE_ERROR_SECONDS + 0.1
        monkeypatch.setattr(sendfastpath, "_clock", lambda: later)
        back = on_the_loop(send_worker, client, send(token, {"text": "on the loop again"}))
        assert back.startswith(b"HTTP/1.1 201 Created\r\n")


def test_sends_a_turn_reaches_late_are_told_to_come_back(send_worker, listener, token, room, monkeypatch):
    """More sends than the loop can answer: those it reaches more than
    SHED_SENDS_AFTER_SECONDS into a turn get 503 at once."""
    real_send = sendfastpath.danmaku_send

    def slow_send(**kwargs):
        time.sleep(0.2)
        return real_send(**kwargs)

    monkeypatch.setattr(pullworker, "SHED_SENDS_AFTER_SECONDS", 0.1)
    monkeypatch.setattr(sendfastpath, "danmaku_send", slow_send)
    with connected(send_worker, listener) as first, connected(send_worker, listener) as second:
        # Both whole before the loop's turn: one turn answers both.
        first.sock.sendall(send(token, {"text": "first", "client_id": uuid.uuid4().hex}))
        second.sock.sendall(send(token, {"text": "second", "client_id": uuid.uuid4().hex}))
        time.sleep(0.1)
        dispatch(send_worker)
        assert send_worker.tpool.jobs == []
        answers = sorted([read_answer(first), read_answer(second)], key=lambda answer: answer.split(b" ", 2)[1])
    assert [answer.split(b" ", 2)[1] for answer in answers] == [b"201", b"503"]
    busy = answers[1]
    assert b"\r\nRetry-After: 1\r\n" in busy
    assert json.loads(busy.partition(b"\r\n\r\n")[2])["retry_after_ms"] == sendfastpath.BUSY_RETRY_MS
    # The one told to come back wrote nothing (it never reached the send).
    assert Danmaku.objects.count() == 1
