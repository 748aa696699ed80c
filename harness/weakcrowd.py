"""Viewers on a weak network: a crowd behind ``harness.weaknet`` while the
room gets a comment a second, with outages at chosen seconds.

Shared by tests/test_weak_network.py (a short run) and bench/weaknet.py (a
long one). The viewers (``harness.crowd``) connect through the proxy; the
comments go straight to the server (``harness.feed``). Every viewer joins
before the first comment, so every viewer is owed every comment.

Recovery: after an outage ends (``back_at``), a viewer is back at its first
answer. It may take as long as the wait in force when the network came
back (the back-off its last failure scheduled; the poll interval if its
last exchange was an answer) + ``RECOVERY_SLACK_SECONDS``.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from danmaku.pull.spread import JITTER_SHARE
from harness.crowd import Crowd, CrowdResult, CrowdSpec, Delivery, Ledger, delivery
from harness.feed import feed, warm_up
from harness.weaknet import NetStats, Weakness, weak_net

# Viewers connect within this long of the start, and the first comment
# comes after this long: every viewer has had its joining answer by then
# (300 ms of round trip and a 64 KB/s cap take well under a second).
CONNECT_SECONDS = 1.0
JOIN_SECONDS = 4.0
# After the last comment: its slot sealed (~2 s), one poll interval, the
# round trip, and a back-off step if a random reset hit that poll.
TAIL_SECONDS = 10.0
RECOVERY_SLACK_SECONDS = 1.0


@dataclass(frozen=True)
class Outage:
    before_comment: int  # it starts just before this comment (from 0) is sent
    seconds: float
    mode: str = "stall"  # harness.weaknet.OUTAGE_MODES


@dataclass(frozen=True)
class WeakSpec:
    viewers: int
    comments: int
    weakness: Weakness
    outages: tuple[Outage, ...] = ()
    poll_interval_ms: int = 3000  # the room's, for the wait in force after an answer
    seed: int = 1

    def __post_init__(self) -> None:
        check_outages(self.outages, self.comments)


def check_outages(outages: tuple[Outage, ...], comments: int) -> None:
    """Outages in order, each over before the next begins (a new one would
    replace it), each beginning before a comment that is sent."""
    ends = -1.0
    for outage in outages:
        if outage.before_comment < ends or not 0 <= outage.before_comment < comments:
            raise ValueError(f"outages must be in order, apart, and within the {comments} comments: {outages}")
        ends = outage.before_comment + outage.seconds


@dataclass(frozen=True)
class ViewerRecovery:
    index: int
    seconds: float  # from the network's return to the first answer (inf: never)
    limit: float  # the wait in force at the return + the slack
    # Failures between the return and that answer: a random reset or stall
    # of the weak network hit the first tries, and each one is a new back-off.
    faults_after: int = 0


@dataclass
class OutageRecovery:
    outage: Outage
    back_at: float
    viewers: list[ViewerRecovery] = field(default_factory=list)

    @property
    def late(self) -> list[ViewerRecovery]:
        """Back later than the limit with no fault after the return to explain it."""
        return [viewer for viewer in self.viewers if viewer.seconds > viewer.limit and not viewer.faults_after]

    @property
    def hit_again(self) -> list[ViewerRecovery]:
        """Back later than the limit because a fresh fault hit a try after the return."""
        return [viewer for viewer in self.viewers if viewer.seconds > viewer.limit and viewer.faults_after]

    @property
    def worst(self) -> float:
        return max((viewer.seconds for viewer in self.viewers), default=math.nan)


@dataclass
class WeakResult:
    spec: WeakSpec
    sent: int
    delivery: Delivery
    recoveries: list[OutageRecovery]
    net: NetStats
    errors: Counter
    crowd: CrowdResult

    @property
    def every_viewer_owed_everything(self) -> bool:
        return self.delivery.owed == self.spec.viewers * self.sent


def recovery(ledger: Ledger, back_at: float, *, poll_interval_ms: int) -> ViewerRecovery:
    """How soon ``ledger``'s viewer answered after ``back_at``, and its limit."""
    answers = ledger.answered_at
    after = bisect.bisect_left(answers, back_at)
    seconds = answers[after] - back_at if after < len(answers) else math.inf
    last_answer = answers[after - 1] if after else -math.inf
    failures = [(at, wait) for at, wait in ledger.backoffs if at < back_at]
    if failures and failures[-1][0] > last_answer:
        in_force = failures[-1][1] / 1000
    else:
        in_force = poll_interval_ms * (1 + JITTER_SHARE) / 1000
    faults_after = sum(1 for at, _ in ledger.backoffs if back_at <= at < back_at + seconds)
    return ViewerRecovery(ledger.index, seconds, in_force + RECOVERY_SLACK_SECONDS, faults_after)


def run(*, base_url: str, room: str, send_url: str, tokens: list[str], spec: WeakSpec) -> WeakResult:
    """The crowd behind a weak network in front of ``base_url``, for ``spec``."""
    parts = urlsplit(base_url)
    outages = {outage.before_comment: outage for outage in spec.outages}
    back_at: dict[int, float] = {}
    with weak_net(parts.hostname, parts.port, spec.weakness) as net:
        duration = JOIN_SECONDS + spec.comments + TAIL_SECONDS
        crowd_spec = CrowdSpec(
            url=net.base_url,
            room=room,
            viewers=spec.viewers,
            duration_seconds=duration,
            connect_seconds=CONNECT_SECONDS,
            seed=spec.seed,
        )
        with Crowd(crowd_spec) as crowd:
            warm_up(send_url, tokens)
            start_at = crowd.start()

            def before(number: int) -> None:
                if number in outages:
                    back_at[number] = net.outage(outages[number].seconds, outages[number].mode)

            time.sleep(max(0.0, start_at + JOIN_SECONDS - time.monotonic()))
            sent = feed(send_url, tokens, count=spec.comments, before=before)
            result = crowd.join()
        stats = net.stats()
    recoveries = []
    for number, outage in outages.items():
        recovered = OutageRecovery(outage, back_at[number])
        for ledger in result.ledgers:
            recovered.viewers.append(recovery(ledger, back_at[number], poll_interval_ms=spec.poll_interval_ms))
        recoveries.append(recovered)
    return WeakResult(
        spec,
        len(sent),
        delivery(result.ledgers, sent),
        recoveries,
        stats,
        Counter(kind for _, kind in result.errors),
        result,
    )
