"""Delivery control, wired into a pull process: measure, share, decide, install.

Once a second, in the refresher's thread (never on the pull path), each
process reads its rooms' meters (``danmaku.pull.meter``), shares them with
the other processes of its node (``infra.nodeshare``), and runs the node's
``Controller`` (``danmaku.pull.control``) over the node's figures. It
installs the decisions in its own rooms: the multiplier of next_ms (in
``RoomEntry.control``, which starts a new memo of answers) and the display
cap the ring applies to the seconds it seals next. Every process of a node
sees the same figures and so decides alike.

Viewer counts are the node's; with Redis, every process also adds its own
to a cluster-wide tally per VIEWER_WINDOW_SECONDS, and the pull answer shows
the cluster's, rounded, refreshed once a window.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import NamedTuple

from danmaku.pull.cache import PullAnswer, PullCache, RoomControl, RoomEntry
from danmaku.pull.control import Controller, Decision, RoomLoad
from danmaku.pull.response import respond
from danmaku.pull.ringbuffer import RingView
from danmaku.pull.wire import encode_pull
from danmaku.store import RedisStore, StoreUnavailable
from infra.nodeshare import NodeShare
from infra.ratelimitlog import RateLimitedLog

logger = logging.getLogger(__name__)
fallback_log = RateLimitedLog(logger, every_seconds=30)

# Viewer counts shown to viewers change this often at most (an answer that
# changes is rebuilt; the count need not be fresher than this).
VIEWER_WINDOW_SECONDS = 5
# A cluster tally in Redis outlives its window by this much.
VIEWER_KEEP_SECONDS = 60
# Seconds of a room's ring that say how lively it is (comments arriving and
# shown per second): about what one answer at the normal interval covers.
RECENT_SLOTS = 4
# A reading over a shorter interval is noise (a tick right after another).
MIN_INTERVAL_SECONDS = 0.2

# Fields of a room in what a process shares with its node, shared as
# columns (one list per field, not one per room: 10,000 rooms are written
# and read by every process every second, and a list per room made each
# read allocate 10,000 containers for the garbage collector to walk).
_ID, _VIEWERS, _POLLS, _BYTES, _INTERVAL, _ARRIVALS, _SHOWN, _CAP, _MULTIPLIER, _CAP_IN_FORCE = range(10)
_FIELDS = 10
_FIGURES = itemgetter(_ID, _VIEWERS, _POLLS, _BYTES, _MULTIPLIER, _CAP_IN_FORCE)
NO_DECISION = Decision(multipliers={}, caps={}, rate_level=None, comment_level=None)


def round_viewers(count: float) -> int:
    """Viewers as a page shows them: exact below 100, else two significant digits."""
    count = round(count)
    if count < 100:
        return max(count, 0)
    digits = int(math.log10(count)) - 1
    return int(round(count, -digits))


class RoomFigures(NamedTuple):
    """A room across the node, as /metrics, the console and the admin show it.
    (A tuple: 10,000 of them are made every second.)"""

    room_id: int
    viewers: int
    polls: float
    bytes: float
    multiplier: float
    # Comments shown per second where delivery control cuts them; None: the room's own cap.
    display_cap: float | None


@dataclass(frozen=True, slots=True)
class NodeFigures:
    at: float
    polls: float
    bytes: float
    rooms: dict[str, RoomFigures] = field(default_factory=dict)


def node_figures(payloads: list[dict], *, at: float) -> tuple[NodeFigures, dict[str, list]]:
    """Add up what the node's processes shared: per room, and in total (and
    the rooms' added-up rows, for the controller)."""
    rooms: dict[str, list] = {}
    for payload in payloads:
        shared = payload.get("rooms") or {}
        columns = shared.get("columns") or []
        if len(columns) != _FIELDS:
            continue  # nothing yet, or written by another release
        # Rows rebuilt from the columns in C (zip), figures picked in C
        # (itemgetter): 34-37 ms a second for four processes' 10,000 rooms
        # with an index per field per room in Python, 24-25 ms this way.
        for slug, row in zip(shared.get("slugs") or (), zip(*columns, strict=False), strict=False):
            seen = rooms.get(slug)
            if seen is None:
                rooms[slug] = list(row)
                continue
            seen[_VIEWERS] += row[_VIEWERS]
            seen[_POLLS] += row[_POLLS]
            seen[_BYTES] += row[_BYTES]
            if row[_MULTIPLIER] > seen[_MULTIPLIER]:
                seen[_MULTIPLIER] = row[_MULTIPLIER]
            if row[_CAP_IN_FORCE] is not None:
                seen[_CAP_IN_FORCE] = min(seen[_CAP_IN_FORCE] or math.inf, row[_CAP_IN_FORCE])
    make, pick = RoomFigures._make, _FIGURES
    figures = {slug: make(pick(row)) for slug, row in rooms.items()}
    polls = sum(room.polls for room in figures.values())
    size = sum(room.bytes for room in figures.values())
    return NodeFigures(at=at, polls=polls, bytes=size, rooms=figures), rooms


def answer_overhead() -> int:
    """Bytes of a pull answer carrying no comment (head and body)."""
    body = encode_pull(cursor="x" * 10, next_ms=3000, reason="normal", gap=False, slots=(), viewers=10_000)
    answer = PullAnswer(status=200, body=body, etag='"0123456789abcdef"', cache_control="public, max-age=1")
    return respond(answer, accept_encoding="gzip", if_none_match=None).size


class Delivery:
    def __init__(
        self,
        *,
        cache: PullCache,
        controller: Controller,
        share: NodeShare | None = None,
        cluster: RedisStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.cache = cache
        self.controller = controller
        self.share = share
        self.cluster = cluster
        self.clock = clock
        self.wall = wall
        self.overhead = answer_overhead()
        self._budgeted = bool(controller.poll_budget or controller.egress_budget)
        self.figures: NodeFigures | None = None
        self._last_at: float | None = None
        self._window: int | None = None
        # Viewers shown per room id, refreshed once a window.
        self._shown: dict[int, int] = {}
        # This process's viewers per room id (as text: they travel as JSON)
        # at the start of this window and the one before.
        self._snapshots: dict[str, dict[str, int]] = {}
        # The fractional part of each cut room's cap, carried to the next
        # second (a cap of 7.5 is 7 and 8 in turn).
        self._carry: dict[str, float] = {}

    def tick(self) -> None:
        now = self.clock()
        entries = list(self.cache.rooms.values())
        elapsed = None if self._last_at is None else now - self._last_at
        if elapsed is not None and elapsed < MIN_INTERVAL_SECONDS:
            return
        self._last_at = now
        mine = {entry.settings.slug: self._measure(entry, now, elapsed) for entry in entries}
        window = int(self.wall() // VIEWER_WINDOW_SECONDS)
        new_window = window != self._window
        if new_window:
            # This process's viewers as the window began; kept with the one
            # before, which the node's processes add up during this window.
            own = {str(row[_ID]): row[_VIEWERS] for row in mine.values() if row[_VIEWERS]}
            self._snapshots = {str(window): own, **{k: v for k, v in self._snapshots.items() if k == str(window - 1)}}
        if elapsed is None:
            # Rates need an interval: the first reading has none (0), but the
            # viewers are counted already, and a crowd arriving all at once
            # is told to wait longer from this second on.
            self._window = window
        payload = {"rooms": _columns(mine), "viewers": self._snapshots}
        payloads = [payload]
        if self.share is not None:
            try:
                payloads = self.share.exchange(payload, now=self.wall())
            except OSError as exc:
                fallback_log.warning("could not share this process's load with its node: %s", exc)
        figures, rows = node_figures(payloads, at=self.wall())
        decision = NO_DECISION
        if self._budgeted:
            decision = self.controller.decide(
                (
                    RoomLoad(slug, row[_VIEWERS], row[_INTERVAL] / 1000, row[_ARRIVALS], row[_CAP])
                    for slug, row in rows.items()
                ),
                polls=figures.polls,
                egress=figures.bytes,
                answer_overhead=self.overhead,
                delivered=sum(row[_VIEWERS] * row[_SHOWN] for row in rows.values()),
            )
        if new_window:
            self._refresh_shown(window, entries, payloads)
        for entry in entries:
            slug = entry.settings.slug
            self._install(entry, decision.multipliers.get(slug, 1.0), decision.caps.get(slug))
        self.figures = figures

    def _measure(self, entry: RoomEntry, now: float, elapsed: float | None) -> list:
        reading = entry.meter.take(now)
        view = entry.ring.view
        # Without a budget only the counts are shared (viewers, /metrics):
        # the controller's inputs cost a walk of each room's ring.
        arrivals, shown = _liveliness(view) if self._budgeted else (0.0, 0.0)
        interval = self.cache.base_interval_ms(entry, view) if self._budgeted else 0.0
        settings = entry.settings
        cap = entry.ring.display_cap
        per_second = 1.0 / elapsed if elapsed else 0.0
        return [
            settings.room_id,
            reading.viewers,
            reading.polls * per_second,
            reading.bytes * per_second,
            interval,
            arrivals,
            shown,
            settings.display_cap_per_second,
            entry.control.multiplier,
            cap if cap != settings.display_cap_per_second else None,
        ]

    def _install(self, entry: RoomEntry, multiplier: float, cap: float | None) -> None:
        multiplier = round(multiplier, 2)
        viewers = self._shown.get(entry.settings.room_id, entry.control.viewers)
        if multiplier != entry.control.multiplier or viewers != entry.control.viewers:
            entry.control = RoomControl(multiplier=multiplier, viewers=viewers)
        own = entry.settings.display_cap_per_second
        slug = entry.settings.slug
        if cap is None or cap >= own:
            self._carry.pop(slug, None)
            entry.ring.display_cap = own
            return
        carried = self._carry.get(slug, 0.0) + cap
        whole = int(carried)
        self._carry[slug] = carried - whole
        entry.ring.display_cap = min(own, max(1, whole))

    def _refresh_shown(self, window: int, entries: list[RoomEntry], payloads: list[dict]) -> None:
        """Once a window: the viewers each room's answers show.

        The tally of the window before, added up over every process that
        counted then (this node's through their shares, or the cluster's in
        Redis): every process of the node reads the same numbers, so their
        answers stay byte for byte the same (one ETag across processes)."""
        self._window = window
        node: dict[int, int] = {}
        for payload in payloads:
            for room_id, count in payload.get("viewers", {}).get(str(window - 1), {}).items():
                node[int(room_id)] = node.get(int(room_id), 0) + count
        shown = node
        if self.cluster is not None:
            try:
                own = {int(room_id): count for room_id, count in self._snapshots.get(str(window), {}).items()}
                self.cluster.add_viewers(window, own, keep_seconds=VIEWER_KEEP_SECONDS)
                ids = [entry.settings.room_id for entry in entries]
                # The window before: every process has added to it by now.
                shown = {**node, **self.cluster.viewers(window - 1, ids)}
            except StoreUnavailable as exc:
                fallback_log.warning("viewer counts: the cluster's tally is unavailable, showing the node's: %s", exc)
        self._shown = {room_id: round_viewers(count) for room_id, count in shown.items()}


def _columns(rows: dict[str, list]) -> dict:
    return {"slugs": list(rows), "columns": [list(column) for column in zip(*rows.values(), strict=True)]}


def _liveliness(view: RingView) -> tuple[float, float]:
    """Comments arriving, and shown, per second in the room lately."""
    recent = view.slots[-RECENT_SLOTS:]
    if not recent:
        return 0.0, 0.0
    # A plain loop: two generator sums per room took 17-19 ms a second at
    # 10,000 rooms, this 8.
    shown = missed = 0
    for slot in recent:
        shown += len(slot.items)
        missed += slot.missed
    return (shown + missed) / len(recent), shown / len(recent)
