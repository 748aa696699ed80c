"""Two real gunicorn workers, each with its own rings: a comment sent through one
worker must reach viewers pulling from the other within a few seconds.

Starts gunicorn on a free 127.0.0.1 port over a SQLite file in a tmp dir, and
always stops it (the whole process group) afterwards.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
import requests

from harness import local

pytestmark = pytest.mark.slow

ROOM = "workers"
# Longest wait for both workers to have answered at least once.
WARM_TIMEOUT_SECONDS = 10
# The contract: a comment reaches every process's pulls within a few seconds
# (sealed 400 ms after its second ends, refreshed about once a second).
DELIVERY_LIMIT_SECONDS = 3.0
POLL_SECONDS = 0.05
# Comments sent after the first one, one every EXTRA_EVERY polls (~0.3 s).
EXTRA_COMMENTS = 6
EXTRA_EVERY = 6
REQUEST_TIMEOUT_SECONDS = 5


@pytest.fixture
def server(tmp_path):
    try:
        with local.gunicorn(room=ROOM, var_dir=tmp_path, room_fields={"user_send_interval_ms": 0}) as running:
            yield running
            # Shown by pytest only when the test failed.
            print(running.log_tail())
    except local.LocalServerError as exc:
        pytest.fail(str(exc))


def _pull(
    server: local.LocalServer, after: str | None = None, session: requests.Session | None = None
) -> tuple[str, dict]:
    """One pull; without a session it goes over a new connection. Returns (worker, body)."""
    params = {"after": after} if after else {}
    if session is None:
        response = requests.get(
            server.danmaku_url(ROOM), params=params, headers={"Connection": "close"}, timeout=REQUEST_TIMEOUT_SECONDS
        )
    else:
        response = session.get(server.danmaku_url(ROOM), params=params, timeout=REQUEST_TIMEOUT_SECONDS)
    assert response.status_code == 200, response.text
    return response.headers["X-Served-By"], response.json()


def _send(server: local.LocalServer, session: requests.Session, text: str, client_id: str) -> tuple[str, int]:
    """Send over ``session``; returns (the worker that took it, the new id)."""
    response = session.post(
        server.danmaku_url(ROOM),
        json={"text": text, "client_id": client_id},
        headers={"Authorization": f"Bearer {server.tokens[0]}"},
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    assert response.status_code == 201, response.text
    return response.headers["X-Served-By"], response.json()["id"]


@dataclass
class Chain:
    """A viewer that keeps one connection to one worker and follows its cursor."""

    worker: str
    session: requests.Session
    cursor: str
    seen: Counter = field(default_factory=Counter)

    def pull(self, server: local.LocalServer) -> dict:
        answered_by, body = _pull(server, after=self.cursor, session=self.session)
        assert answered_by == self.worker, "a keep-alive connection moved to another worker"
        self.cursor = body["cursor"]
        self.seen.update(body["items"]["id"])
        return body


def _warm_workers(server: local.LocalServer) -> Counter:
    """Pull over new connections until both workers answered; count answers per worker.

    Each worker builds its rings and starts its refresher on its first pull.
    The kernel picks the worker per connection, often one far more than the
    other, so this keeps opening new ones (bounded).
    """
    workers: Counter = Counter()
    deadline = time.monotonic() + WARM_TIMEOUT_SECONDS
    for _ in range(500):
        if len(workers) >= 2 or time.monotonic() > deadline:
            break
        worker, _ = _pull(server)
        workers[worker] += 1
    return workers


def _chains(server: local.LocalServer, workers: set[str]) -> dict[str, Chain]:
    """One chain per worker: gunicorn keeps an idle connection 5 s, so a
    session polling every 50 ms stays on the worker that first answered it."""
    chains: dict[str, Chain] = {}
    deadline = time.monotonic() + WARM_TIMEOUT_SECONDS
    for _ in range(200):
        if set(chains) == workers or time.monotonic() > deadline:
            break
        session = requests.Session()
        worker, body = _pull(server, session=session)
        if worker in chains:
            session.close()
        else:
            chains[worker] = Chain(worker=worker, session=session, cursor=body["cursor"])
    return chains


def test_comment_sent_through_one_worker_reaches_the_other(server):
    workers = _warm_workers(server)
    assert len(workers) == 2, f"only {dict(workers)} answered in {WARM_TIMEOUT_SECONDS} s"
    chains = _chains(server, set(workers))
    assert set(chains) == set(workers), f"could not hold a connection to each worker: {set(chains)}"
    # Send over the connection held to the worker the kernel favours least, so
    # the new connections below mostly reach the other one.
    sender = min(workers, key=workers.__getitem__)
    order = sorted(chains)

    try:
        sent_at = time.monotonic()
        served_by, comment_id = _send(server, chains[sender].session, "hello from one worker", "cross-worker-0")
        assert served_by == sender
        # More comments through both workers while the chains run, so each
        # chain spans several seconds of traffic.
        sent = [comment_id]
        other_seen_at = delivered_at = None
        deadline = sent_at + EXTRA_COMMENTS * EXTRA_EVERY * POLL_SECONDS + DELIVERY_LIMIT_SECONDS + 3
        for step in range(1, 2000):
            if time.monotonic() > deadline:
                break
            if step % EXTRA_EVERY == 0 and len(sent) <= EXTRA_COMMENTS:
                via = chains[order[len(sent) % len(order)]]
                sent.append(_send(server, via.session, f"extra {len(sent)}", f"cross-worker-{len(sent)}")[1])
            answers = [_pull(server)] + [(chain.worker, chain.pull(server)) for chain in chains.values()]
            now = time.monotonic()
            if other_seen_at is None and any(w != sender and comment_id in b["items"]["id"] for w, b in answers):
                other_seen_at = now
            all_sent = len(sent) > EXTRA_COMMENTS
            if delivered_at is None and all_sent and all(set(sent) <= c.seen.keys() for c in chains.values()):
                delivered_at = now
            # Follow the chains a second past full delivery, so a repeat would show.
            if delivered_at is not None and now > delivered_at + 1:
                break
            time.sleep(POLL_SECONDS)
    finally:
        for chain in chains.values():
            chain.session.close()

    assert other_seen_at is not None, f"no worker but the sender returned comment {comment_id}"
    assert other_seen_at - sent_at <= DELIVERY_LIMIT_SECONDS, f"took {other_seen_at - sent_at:.2f} s"
    for chain in chains.values():
        assert set(sent) <= chain.seen.keys(), f"{chain.worker} never handed out {set(sent) - chain.seen.keys()}"
        assert all(n == 1 for n in chain.seen.values()), f"{chain.worker} repeated ids: {chain.seen}"
