"""A room kept lively: one comment a second through the send API, by token.

The senders take turns, so each one sends every ``len(tokens)`` seconds and
none meets the room's slow mode (2 s by default) with three or more.
Every send goes straight to the server, never through a weak network: it is
the viewers' network that is on trial. Each accepted comment is recorded as
``harness.crowd.Sent`` (monotonic times of the request and its 201).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import requests

from harness.crowd import Sent

SEND_TIMEOUT_SECONDS = 10


def warm_up(url: str, tokens: list[str]) -> int:
    """One comment by the last sender, so the room is lively (not quiet)
    before viewers join: a quiet room tells a joiner to come back after its
    quiet interval (10 s by default), not its poll interval. ``feed`` with
    the same tokens gives that sender its next turn 3 comments later,
    clear of slow mode. Returns the comment's id."""
    return send(requests, url, tokens[-1], "warm up")


def send(session, url: str, token: str, text: str) -> int:
    """One comment; any answer but 201 fails loudly."""
    answer = session.post(
        url,
        json={"text": f"{text} {uuid.uuid4().hex[:6]}", "client_id": uuid.uuid4().hex},
        headers={"Authorization": f"Bearer {token}"},
        timeout=SEND_TIMEOUT_SECONDS,
    )
    if answer.status_code != 201:
        raise RuntimeError(f"{text!r} answered {answer.status_code}: {answer.text}")
    return answer.json()["id"]


def feed(
    url: str,
    tokens: list[str],
    *,
    count: int,
    every_seconds: float = 1.0,
    before: Callable[[int], None] | None = None,
) -> list[Sent]:
    """Send ``count`` comments to the room's danmaku ``url``, one every
    ``every_seconds``; ``before(n)`` runs before the n-th (from 0), e.g. to
    start an outage."""
    sent: list[Sent] = []
    session = requests.Session()
    begin = time.monotonic()
    for number in range(count):
        time.sleep(max(0.0, begin + number * every_seconds - time.monotonic()))
        if before is not None:
            before(number)
        started = time.monotonic()
        comment_id = send(session, url, tokens[number % len(tokens)], f"comment {number}")
        sent.append(Sent(comment_id, started, time.monotonic()))
    session.close()
    return sent
