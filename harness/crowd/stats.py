"""A crowd run turned into figures: per-second timeline, latency percentiles,
delivery against the comments sent. Pure: arrays and ledgers in, numbers out."""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harness.crowd.answers import REASON_CODES
from harness.crowd.viewer import Ledger

# A comment whose send was answered this long before a viewer's last answer
# must be in it: the refresher reads the store about once a second and a
# slot is sealed once read past its end (~2 s), plus a margin.
SETTLE_SECONDS = 3.0


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in [0, 1]) of unsorted values; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class Second:
    """One second of the run, counted from its start."""

    second: int
    polls: int
    p50: float
    p99: float
    errors: int
    open_connections: int


def per_second(
    *,
    start_at: float,
    seconds: int,
    poll_at: Sequence[float],
    latency: Sequence[float],
    error_at: Iterable[float] = (),
    open_samples: Iterable[tuple[float, int]] = (),
) -> list[Second]:
    """Answers, their p50/p99, errors and open connections in each whole
    second [start_at + s, start_at + s + 1). Open connections: the sum of
    every sample taken in that second (one per process)."""
    latencies: list[list[float]] = [[] for _ in range(seconds)]
    for at, took in zip(poll_at, latency, strict=True):
        slot = int(at - start_at)
        if 0 <= slot < seconds:
            latencies[slot].append(took)
    errors = Counter(int(at - start_at) for at in error_at)
    connections: Counter[int] = Counter()
    for at, count in open_samples:
        # A sample is taken at its second's end (the tick, a little late):
        # it tells how that second ended.
        connections[min(seconds - 1, max(0, round(at - start_at) - 1))] += count
    return [
        Second(
            second,
            len(latencies[second]),
            percentile(latencies[second], 0.5),
            percentile(latencies[second], 0.99),
            errors[second],
            connections[second],
        )
        for second in range(seconds)
    ]


@dataclass(frozen=True)
class AnswerSecond:
    """What the pull answers whole in one second of the run said, and how
    many viewers were really there at its end."""

    second: int
    answers: int  # pull answers (200s)
    bytes: int  # on the wire, every answer (any status): heads and bodies
    busy_share: float  # of the pull answers, reason busy
    normal_share: float
    next_ms_p50: float
    missed_mean: float  # comments the display cap left out, per answer
    items_mean: float
    empty: int  # pull answers carrying no comment
    viewers_estimate: float  # the median ``viewers`` the answers reported
    viewers_true: int  # viewers that had connected and not left


def answers_per_second(
    *,
    start_at: float,
    seconds: int,
    poll_at: Sequence[float],
    status: Sequence[int],
    size: Sequence[int],
    reason: Sequence[int],
    next_ms: Sequence[int],
    missed: Sequence[int],
    items: Sequence[int],
    viewers: Sequence[int],
    joined_at: Iterable[float],
    left_at: Iterable[float] = (),
) -> list[AnswerSecond]:
    """Per whole second [start_at + s, start_at + s + 1): the answers'
    bytes, reasons, next_ms, cuts and viewer estimates (the recorder's
    parallel arrays); true viewers counted from each viewer's first
    connect() to its leaving."""
    busy, normal = REASON_CODES["busy"], REASON_CODES["normal"]
    count = [0] * seconds
    wire = [0] * seconds
    busy_count = [0] * seconds
    normal_count = [0] * seconds
    missed_total = [0] * seconds
    items_total = [0] * seconds
    empty = [0] * seconds
    intervals: list[list[int]] = [[] for _ in range(seconds)]
    estimates: list[list[int]] = [[] for _ in range(seconds)]
    for index, at in enumerate(poll_at):
        slot = int(at - start_at)
        if not 0 <= slot < seconds:
            continue
        wire[slot] += size[index]
        if status[index] != 200:
            continue
        count[slot] += 1
        code = reason[index]
        busy_count[slot] += code == busy
        normal_count[slot] += code == normal
        missed_total[slot] += missed[index]
        items_total[slot] += items[index]
        empty[slot] += not items[index]
        intervals[slot].append(next_ms[index])
        estimates[slot].append(viewers[index])
    joined, left = sorted(joined_at), sorted(left_at)
    out = []
    for second in range(seconds):
        answers = count[second]
        end = start_at + second + 1
        there = bisect.bisect_right(joined, end) - bisect.bisect_right(left, end)
        out.append(
            AnswerSecond(
                second,
                answers,
                wire[second],
                busy_count[second] / answers if answers else math.nan,
                normal_count[second] / answers if answers else math.nan,
                percentile(intervals[second], 0.5),
                missed_total[second] / answers if answers else math.nan,
                items_total[second] / answers if answers else math.nan,
                empty[second],
                percentile(estimates[second], 0.5),
                there,
            )
        )
    return out


@dataclass(frozen=True)
class Sent:
    id: int
    started: float
    finished: float


@dataclass
class Delivery:
    viewers: int
    # Viewers that were owed at least one comment (joined before the last sends).
    owed_viewers: int
    owed: int  # comments owed, summed over viewers
    missed: int  # owed and never seen
    # Owed, not seen, but a gap answer told the viewer after it was sent.
    missed_in_gap: int
    # Missed (gap apart) beyond the comments the viewer's answers said the
    # display cap left out (their ``missed``, summed): a count, not ids.
    missed_unreported: int
    duplicates: int
    repeats_in_gap: int
    gaps: int
    viewers_never_answered: int
    # (viewer, first few missed ids) of the worst viewers, for the report.
    examples: list[tuple[int, list[int]]]


def delivery(ledgers: Iterable[Ledger], sent: Iterable[Sent], *, settle_seconds: float = SETTLE_SECONDS) -> Delivery:
    """Each viewer owes every comment sent after its first answer and settled
    before its last one: none missed, none twice (a gap answer's repeats
    apart), through its cursor chain. A viewer that left the room is owed
    nothing after it left (its last answer came before)."""
    sent = sorted(sent, key=lambda s: s.started)
    result = Delivery(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, [])
    for ledger in ledgers:
        result.viewers += 1
        result.duplicates += ledger.duplicates
        result.repeats_in_gap += ledger.repeats
        result.gaps += len(ledger.gaps)
        if ledger.first_answer_at is None:
            result.viewers_never_answered += 1
            continue
        joined, last = ledger.first_answer_at, ledger.last_answer_at
        owed = [s for s in sent if s.started > joined and s.finished + settle_seconds < last]
        if owed:
            result.owed_viewers += 1
        result.owed += len(owed)
        missing = [s for s in owed if s.id not in ledger.seen]
        in_gap = [s for s in missing if any(s.started < gap for gap in ledger.gaps)]
        result.missed += len(missing) - len(in_gap)
        result.missed_in_gap += len(in_gap)
        result.missed_unreported += max(0, len(missing) - len(in_gap) - ledger.reported_missed)
        if len(missing) > len(in_gap) and len(result.examples) < 5:
            result.examples.append((ledger.index, [s.id for s in missing if s not in in_gap][:10]))
    return result
