"""The real viewer page on a weak network: Chromium opens the room through
``harness.weaknet`` while the room gets a comment a second, with outages.

Shared by tests/pages/test_viewer_weak_network.py and bench/weaknet.py.
What the page showed comes from ``harness.viewerpage``'s recorder (the
page's DOM, not its code): each comment placed on the stage, each change
of the connection badge. From it:

* ``shown``: how often each comment sent was placed on the stage;
* recovery per outage: from the network's return to the badge's first
  "live" (an answer), against the wait in force at the return (the
  back-off the badge announced, "reconnecting in N s", or the poll interval
  if it was live) + ``RECOVERY_SLACK_SECONDS``;
* stutter (``harness.stutter``): seconds with comments due on screen and
  none there.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from danmaku.pull.spread import JITTER_SHARE
from harness.crowd import Sent
from harness.feed import feed, warm_up
from harness.local import LocalServer
from harness.stutter import stutter_seconds
from harness.viewerpage import RECORDER_SCRIPT, PageRecord, page_record
from harness.weakcrowd import RECOVERY_SLACK_SECONDS, Outage, check_outages
from harness.weaknet import NetStats, Weakness, weak_net

# Longest wait for the page to load through the weak network and go live.
OPEN_TIMEOUT_MS = 20_000
# After the last comment: its slot sealed (~2 s), a poll interval and the
# page's back-off. Where half the answers are cut, four failures in a row
# (one run in 16) back off up to 15 s in all and five up to 31 s; the
# window keeps a comment 60 s. The wait ends as soon as every comment has
# been shown.
TAIL_SECONDS = 45.0
# Stutter's "due on screen" (harness.stutter): a comment is due from one
# poll interval with its jitter + the second its slot takes to be sealed +
# the page's replay spread (REPLAY_SPREAD_MS in room.js) after its send was
# answered, for as long as a scroll comment crosses the stage (SCROLL_MS in
# overlay.js).
SEAL_SECONDS = 1.0
REPLAY_SPREAD_SECONDS = 1.0
SCROLL_SECONDS = 8.0
RECONNECTING = re.compile(r"reconnecting in (\d+) s")


@dataclass(frozen=True)
class PageSpec:
    comments: int
    weakness: Weakness
    outages: tuple[Outage, ...] = ()
    poll_interval_ms: int = 3000

    def __post_init__(self) -> None:
        check_outages(self.outages, self.comments)


@dataclass(frozen=True)
class PageRecovery:
    outage: Outage
    seconds: float  # from the return to the first answer (inf: never)
    limit: float
    faults_after: int = 0  # failures between the return and that answer (harness.weakcrowd)


@dataclass
class PageRun:
    spec: PageSpec
    sent: list[Sent]
    record: PageRecord
    warm: int = 0  # the warm-up comment's id, which the page may show too
    recoveries: list[PageRecovery] = field(default_factory=list)
    stutter_seconds: float = 0.0
    measured_seconds: float = 0.0
    net: NetStats | None = None

    @property
    def shown(self) -> Counter:
        return Counter(item.id for item in self.record.shown)

    @property
    def missed(self) -> list[int]:
        return [s.id for s in self.sent if self.shown[s.id] == 0]

    @property
    def twice(self) -> list[int]:
        return [s.id for s in self.sent if self.shown[s.id] > 1]

    @property
    def strangers(self) -> list[int]:
        """Ids shown that were never sent in this run."""
        ids = {s.id for s in self.sent} | {self.warm}
        return [shown for shown in self.shown if shown not in ids]


def due_after_seconds(poll_interval_ms: int) -> float:
    return poll_interval_ms * (1 + JITTER_SHARE) / 1000 + SEAL_SECONDS + REPLAY_SPREAD_SECONDS


def page_recovery(record: PageRecord, back_at: float, *, poll_interval_ms: int) -> tuple[float, float, int]:
    """(seconds to the first answer after ``back_at``, the limit, failures
    in between) from the badge's changes (wall times)."""
    before = [change for change in record.conn if change[0] < back_at]
    after = [at for at, state, _ in record.conn if at >= back_at and state == "live"]
    in_force = poll_interval_ms * (1 + JITTER_SHARE) / 1000
    if before and before[-1][1] == "reconnecting":
        announced = RECONNECTING.search(before[-1][2])
        in_force = int(announced.group(1)) if announced else math.inf
    seconds = after[0] - back_at if after else math.inf
    faults = sum(1 for at, state, _ in record.conn if back_at <= at < back_at + seconds and state == "reconnecting")
    return seconds, in_force + RECOVERY_SLACK_SECONDS, faults


def watch(
    browser,
    server: LocalServer,
    *,
    room: str,
    spec: PageSpec,
    on_page: Callable[[object], None] | None = None,
) -> PageRun:
    """Open ``room``'s page in a new context of ``browser`` through a weak
    network in front of ``server`` (``harness.local``), feed the room with
    the server's tokens, and read what it showed. ``on_page(page)`` runs
    before the page loads (e.g. to watch its errors)."""
    send_url, tokens = server.danmaku_url(room), server.tokens
    parts = urlsplit(server.base_url)
    outages = {outage.before_comment: outage for outage in spec.outages}
    back_at: dict[int, float] = {}  # wall clock, as the page's record
    # The page loads on a network that only delays (a reset would cut its
    # scripts, not its pulls); the faults begin once it is live.
    calm = dataclasses.replace(spec.weakness, reset_probability=0.0, stall_probability=0.0)
    with weak_net(parts.hostname, parts.port, calm) as net:
        context = browser.new_context(viewport={"width": 1280, "height": 720})
        try:
            warm = warm_up(send_url, tokens)
            page = context.new_page()
            page.add_init_script(RECORDER_SCRIPT)
            if on_page is not None:
                on_page(page)
            page.goto(f"{net.base_url}/rooms/{room}/", timeout=OPEN_TIMEOUT_MS)
            page.wait_for_selector("#conn[data-state=live]", state="attached", timeout=OPEN_TIMEOUT_MS)
            net.set_weakness(spec.weakness)

            def before(number: int) -> None:
                if number in outages:
                    ends = net.outage(outages[number].seconds, outages[number].mode)
                    back_at[number] = ends - time.monotonic() + time.time()

            started = time.time()
            sent = feed(send_url, tokens, count=spec.comments, before=before)
            wanted = {s.id for s in sent}
            deadline = time.monotonic() + TAIL_SECONDS
            while time.monotonic() < deadline:
                page.wait_for_timeout(500)
                if wanted <= {item.id for item in page_record(page).shown}:
                    break
            # Whatever is still on its way shows up now, or never.
            page.wait_for_timeout(1000)
            record = page_record(page)
            ended = time.time()
        finally:
            context.close()
        stats = net.stats()
    run = PageRun(spec, sent, record, warm=warm, net=stats)
    for number, outage in outages.items():
        seconds, limit, faults = page_recovery(record, back_at[number], poll_interval_ms=spec.poll_interval_ms)
        run.recoveries.append(PageRecovery(outage, seconds, limit, faults))
    to_wall = time.time() - time.monotonic()
    accepted = [s.finished + to_wall for s in sent]
    run.measured_seconds = ended - started
    run.stutter_seconds = stutter_seconds(
        accepted,
        record.intervals(ended),
        due_after=due_after_seconds(spec.poll_interval_ms),
        on_screen=SCROLL_SECONDS,
        start=started,
        end=ended,
    )
    return run
