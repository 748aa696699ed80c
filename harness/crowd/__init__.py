"""A crowd of viewers for benchmarks and tests.

    with Crowd(CrowdSpec(url=..., room=..., viewers=2000, duration_seconds=10)) as crowd:
        crowd.start()
        ...                      # send comments, signal the server
        result = crowd.join()    # CrowdResult: every poll, error and viewer ledger

``answers`` reads the wire (pure), ``viewer`` is one viewer's connection and
schedule, ``runner`` deals a crowd over processes, ``stats`` turns a run into
figures (pure).
"""

from harness.crowd.answers import REASONS, Answer, AnswerCache, ResponseError, parse_answer, parse_head
from harness.crowd.runner import VIEWERS_PER_PROCESS, Crowd, CrowdResult, CrowdSpec, loopback_sources
from harness.crowd.stats import (
    AnswerSecond,
    Delivery,
    Second,
    Sent,
    answers_per_second,
    delivery,
    per_second,
    percentile,
)
from harness.crowd.viewer import Ledger

__all__ = [
    "REASONS",
    "VIEWERS_PER_PROCESS",
    "Answer",
    "AnswerCache",
    "AnswerSecond",
    "Crowd",
    "CrowdResult",
    "CrowdSpec",
    "Delivery",
    "Ledger",
    "ResponseError",
    "Second",
    "Sent",
    "answers_per_second",
    "delivery",
    "loopback_sources",
    "parse_answer",
    "parse_head",
    "per_second",
    "percentile",
]
