"""What a room's pull answers say about its viewers, read once a second per node.

A thread beside a crowd: it pulls the room on every node it is given, once
a second each, and keeps each answer's ``viewers`` and ``next_ms``. Its own
polls are counted by the nodes too: a poll files a promise of ``next_ms``,
so a poller asking every second is about ``next_ms`` / 1 s viewers on each
node (``Sample.own_share`` says how many).
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass

import requests

POLL_SECONDS = 1.0
REQUEST_TIMEOUT_SECONDS = 5.0
# No run of this poller lasts longer (it stops on its own even if never told).
LONGEST_RUN_SECONDS = 3600.0


@dataclass(frozen=True)
class Sample:
    at: float  # monotonic
    node: int
    status: int | None  # None: the request failed
    viewers: int | None
    next_ms: int | None

    @property
    def own_share(self) -> float:
        """Viewers this poller adds to the node's estimate while polling every POLL_SECONDS."""
        return (self.next_ms or 0) / 1000 / POLL_SECONDS


class ViewerPoll(threading.Thread):
    """``with ViewerPoll(urls) as poll:`` polls each of ``urls`` (a node's
    pull URL for the room) until the block exits."""

    def __init__(self, urls: list[str]) -> None:
        super().__init__(name="viewer-poll", daemon=True)
        self.urls = list(urls)
        self.samples: list[Sample] = []
        self.failures: list[str] = []
        self._stop_event = threading.Event()

    def __enter__(self) -> ViewerPoll:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop_event.set()
        self.join(REQUEST_TIMEOUT_SECONDS * len(self.urls) + POLL_SECONDS)

    def run(self) -> None:
        sessions = [requests.Session() for _ in self.urls]
        started = due = time.monotonic()
        while not self._stop_event.is_set() and time.monotonic() - started < LONGEST_RUN_SECONDS:
            for node, (url, session) in enumerate(zip(self.urls, sessions, strict=True)):
                self.samples.append(self._poll(node, url, session))
            due += POLL_SECONDS
            self._stop_event.wait(max(0.0, due - time.monotonic()))
        for session in sessions:
            session.close()

    def _poll(self, node: int, url: str, session: requests.Session) -> Sample:
        at = time.monotonic()
        try:
            response = session.get(url, timeout=REQUEST_TIMEOUT_SECONDS)
        except requests.RequestException as exc:
            self.failures.append(f"node {node}: {type(exc).__name__}: {exc}")
            return Sample(at, node, None, None, None)
        if response.status_code != 200:
            self.failures.append(f"node {node}: {response.status_code} {response.text[:120]}")
            return Sample(at, node, response.status_code, None, None)
        body = response.json()
        return Sample(at, node, 200, body.get("viewers"), body.get("next_ms"))

    def between(self, start: float, end: float, node: int | None = None) -> list[Sample]:
        return [
            sample
            for sample in self.samples
            if start <= sample.at < end and sample.viewers is not None and (node is None or sample.node == node)
        ]


def own_share(samples: list[Sample]) -> float:
    """The poller's own viewers over every node it polled, from the intervals it was given."""
    by_node: dict[int, list[float]] = {}
    for sample in samples:
        by_node.setdefault(sample.node, []).append(sample.own_share)
    return sum(statistics.fmean(shares) for shares in by_node.values())
