"""The crowd generator's pure parts (harness.crowd): reading a response head
and a pull answer, the back-off schedule, per-second figures, delivery."""

from __future__ import annotations

import gzip
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from danmaku.pull import wire
from danmaku.pull.ringbuffer import Item, Slot
from harness.crowd import (
    REASONS,
    AnswerCache,
    CrowdSpec,
    Ledger,
    ResponseError,
    Sent,
    answers_per_second,
    delivery,
    parse_answer,
    parse_head,
    per_second,
)
from harness.crowd.stats import percentile
from harness.crowd.viewer import BACKOFF_MAX_MS, NO_REASON, Recorder, backoff_ms

ids = st.lists(st.integers(min_value=1, max_value=2**53), max_size=30, unique=True)


def encoded(
    item_ids: list[int], *, gap: bool = False, next_ms: int = 3000, reason: str = "normal", missed: int = 0
) -> bytes:
    items = tuple(Item(i, 1_000_500, 0xFFFFFF, 0, 7, "nick", "", f"text {i}") for i in item_ids)
    return wire.encode_pull(
        cursor="1-abc", next_ms=next_ms, reason=reason, gap=gap, slots=[Slot(second=1000, items=items, missed=missed)]
    )


@given(
    item_ids=ids,
    gap=st.booleans(),
    next_ms=st.integers(min_value=1, max_value=600_000),
    reason=st.sampled_from(REASONS),
    missed=st.integers(min_value=0, max_value=10_000),
    zipped=st.booleans(),
)
def test_parse_answer_reads_what_the_server_encodes(item_ids, gap, next_ms, reason, missed, zipped):
    body = encoded(item_ids, gap=gap, next_ms=next_ms, reason=reason, missed=missed)
    answer = parse_answer(gzip.compress(body) if zipped else body, gzipped=zipped)
    assert (answer.cursor, answer.next_ms, answer.gap, answer.ids) == ("1-abc", next_ms, gap, tuple(item_ids))
    assert (REASONS[answer.reason], answer.missed) == (reason, missed)


def test_parse_answer_reads_the_viewers_estimate_and_zero_without_one():
    fields = b'"cursor": "1-a", "next_ms": 3000, "reason": "busy", "gap": false, "missed": 0, "items": {"id": [1]}'
    told = parse_answer(b"{" + fields + b', "viewers": 9000}', gzipped=False)
    assert (REASONS[told.reason], told.viewers) == ("busy", 9000)
    assert parse_answer(b"{" + fields + b"}", gzipped=False).viewers == 0


@given(body=st.binary(max_size=200), zipped=st.booleans())
def test_parse_answer_raises_only_response_error_on_any_bytes(body, zipped):
    with pytest.raises(ResponseError):
        parse_answer(body, gzipped=zipped)


@pytest.mark.parametrize(
    "body",
    [
        b'{"cursor": 5, "next_ms": 3000, "gap": false, "items": {"id": []}}',
        b'{"cursor": "1-a", "next_ms": 0, "gap": false, "items": {"id": []}}',
        b'{"cursor": "1-a", "next_ms": 3000, "gap": 0, "items": {"id": []}}',
        b'{"cursor": "1-a", "next_ms": 3000, "gap": false, "items": {"id": ["7"]}}',
        b'{"cursor": "1-a", "next_ms": 3000, "gap": false}',
        b"[]",
        b'{"cursor": "1-a", "next_ms": 3000, "reason": "sleepy", "gap": false, "missed": 0, "items": {"id": []}}',
        b'{"cursor": "1-a", "next_ms": 3000, "reason": "normal", "gap": false, "missed": -1, "items": {"id": []}}',
        b'{"cursor": "1-a", "next_ms": 3000, "reason": "normal", "gap": false, "items": {"id": []}}',
        b'{"cursor": "1-a", "next_ms": 3000, "reason": "normal", "gap": false, "missed": 0, "items": {"id": []},'
        b' "viewers": 2.5}',
    ],
)
def test_parse_answer_rejects_a_body_that_breaks_the_contract(body):
    with pytest.raises(ResponseError):
        parse_answer(body, gzipped=False)


def test_answer_cache_parses_each_distinct_body_once():
    cache = AnswerCache(entries=2)
    first, second = encoded([1]), encoded([2])
    assert cache.parse(first, gzipped=False).ids == (1,)
    assert cache.parse(bytes(bytearray(first)), gzipped=False).ids == (1,)  # equal bytes, another object
    assert (cache.hits, cache.misses) == (1, 1)
    cache.parse(second, gzipped=False)
    cache.parse(encoded([3]), gzipped=False)  # over the bound: starts again
    assert cache.parse(first, gzipped=False).ids == (1,)
    assert cache.misses == 4


def test_parse_head_reads_status_length_encoding_close_and_retry_after():
    head = parse_head(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\ncontent-length: 12\r\n"
        b"Content-Encoding: gzip\r\nConnection: close\r\nRetry-After: 2"
    )
    assert (head.status, head.content_length, head.gzipped, head.close, head.retry_after) == (503, 12, True, True, 2)
    plain = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nRetry-After: Wed, 21 Oct 2026 07:28:00 GMT")
    assert (plain.status, plain.gzipped, plain.close, plain.retry_after) == (200, False, False, 0)


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK",  # no length: this client cannot tell where the answer ends
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1",
        b"HTTP/1.1 2000 OK\r\nContent-Length: 1",
        b"SSH-2.0-OpenSSH\r\nContent-Length: 1",
        b"HTTP/1.1 200 OK\r\nno colon here",
    ],
)
def test_parse_head_rejects_what_it_cannot_read(head):
    with pytest.raises(ResponseError):
        parse_head(head)


@given(head=st.binary(max_size=300))
def test_parse_head_raises_only_response_error_on_any_bytes(head):
    try:
        parsed = parse_head(head)
    except ResponseError:
        return
    assert 100 <= parsed.status <= 999
    assert parsed.content_length >= 0


@pytest.mark.parametrize(
    ("failures", "at_least_ms", "draw", "expected"),
    [
        (1, 0, 0.0, 500),  # poller.js: 1 s ceiling, half to all of it
        (1, 0, 0.999999, 1000),
        (2, 0, 0.0, 1000),
        (5, 0, 0.5, 12_000),  # 16 s ceiling x 0.75
        (20, 0, 0.999999, BACKOFF_MAX_MS),
        (1, 5000, 0.5, 5000),  # Retry-After wins when longer
    ],
)
def test_backoff_follows_the_viewer_page(failures, at_least_ms, draw, expected):
    assert backoff_ms(failures, at_least_ms, draw) == expected


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile(values, 1.0)) == (50, 99, 100)
    assert math.isnan(percentile([], 0.99))


def test_per_second_bins_answers_errors_and_open_connections():
    seconds = per_second(
        start_at=100.0,
        seconds=3,
        poll_at=[100.1, 100.9, 101.5, 99.0, 103.2],  # the last two are outside the run
        latency=[0.001, 0.003, 0.5, 9.0, 9.0],
        error_at=[101.2, 101.3],
        # One sample per process at each second's end (a little late).
        open_samples=[(101.01, 10), (101.02, 5), (102.01, 12), (103.0, 0)],
    )
    assert [(s.polls, s.errors, s.open_connections) for s in seconds] == [(2, 0, 15), (1, 2, 12), (0, 0, 0)]
    assert (seconds[0].p50, seconds[0].p99, seconds[1].p99) == (0.001, 0.003, 0.5)
    assert math.isnan(seconds[2].p99)


def ledger(index: int, seen: set[int], *, first: float = 10.0, last: float = 30.0, **fields) -> Ledger:
    return Ledger(index, seen=seen, first_answer_at=first, last_answer_at=last, **fields)


def test_delivery_owes_what_was_sent_after_joining_and_settled_before_the_last_answer():
    sent = [Sent(1, 5.0, 5.1), Sent(2, 11.0, 11.1), Sent(3, 20.0, 20.1), Sent(4, 28.0, 28.1)]
    # Comment 1 came before the join (may be seen), 4 too late to be owed.
    complete = ledger(0, {1, 2, 3})
    missing = ledger(1, {2})
    told = ledger(2, {2}, gaps=[25.0])  # a gap answer after 3 was sent: reported, not silent
    never = Ledger(3)
    result = delivery([complete, missing, told, never], sent)
    assert (result.owed, result.missed, result.missed_in_gap, result.viewers_never_answered) == (6, 1, 1, 1)
    assert result.examples == [(1, [3])]


def test_delivery_owes_a_viewer_that_left_nothing_after_it_left():
    sent = [Sent(1, 11.0, 11.1), Sent(2, 20.0, 20.1), Sent(3, 40.0, 40.1)]
    # Left at 30 s: its last answer (29 s) came before; comment 3 is not owed.
    left = ledger(0, {1, 2}, last=29.0, left_at=30.0)
    result = delivery([left], sent)
    assert (result.owed, result.missed) == (2, 0)


def test_delivery_counts_only_misses_beyond_what_the_answers_reported_cut():
    sent = [Sent(n, 10.0 + n, 10.1 + n) for n in range(1, 6)]
    told = ledger(0, {1, 2}, reported_missed=3)  # 3 left out by the display cap, and said so
    silent = ledger(1, {1, 2, 3}, reported_missed=1)  # 2 missing, 1 said
    result = delivery([told, silent], sent)
    assert (result.missed, result.missed_unreported) == (5, 1)


def test_recorder_keeps_what_each_answer_said_in_step_with_its_time():
    recorder = Recorder()
    recorder.poll(1.0, 0.01, 200, 300, parse_answer(encoded([1, 2], reason="busy", missed=4), gzipped=False))
    recorder.poll(2.0, 0.01, 503, 90)
    assert list(recorder.status) == [200, 503]
    assert list(recorder.reason) == [REASONS.index("busy"), NO_REASON]
    assert (list(recorder.items), list(recorder.missed), list(recorder.next_ms)) == ([2, 0], [4, 0], [3000, 0])


def test_answers_per_second_bins_bytes_reasons_next_ms_cuts_and_viewers():
    busy, normal = REASONS.index("busy"), REASONS.index("normal")
    seconds = answers_per_second(
        start_at=100.0,
        seconds=3,
        poll_at=[100.1, 100.5, 100.9, 101.5, 101.6, 103.5],  # the last one is after the run
        status=[200, 200, 503, 200, 200, 200],
        size=[400, 500, 100, 300, 300, 9],
        reason=[busy, normal, NO_REASON, normal, normal, normal],
        next_ms=[9000, 3000, 0, 3000, 2500, 1],
        missed=[4, 2, 0, 0, 0, 0],
        items=[3, 1, 0, 0, 5, 0],
        viewers=[10, 12, 0, 7, 9, 0],
        joined_at=[100.2, 100.3, 100.4],
        left_at=[101.2],
    )
    first, second, third = seconds
    assert (first.answers, first.bytes, first.busy_share, first.normal_share) == (2, 1000, 0.5, 0.5)
    assert (first.next_ms_p50, first.missed_mean, first.items_mean, first.empty) == (3000, 3.0, 2.0, 0)
    assert (first.viewers_estimate, first.viewers_true) == (10, 3)
    assert (second.answers, second.bytes, second.empty, second.viewers_true, second.next_ms_p50) == (2, 600, 1, 2, 2500)
    assert third.answers == 0
    assert math.isnan(third.busy_share)
    assert math.isnan(third.viewers_estimate)


@pytest.mark.parametrize(
    ("fields", "match"),
    [({"leave_share": 1.5}, "share"), ({"leave_at_seconds": 11.0}, "within"), ({"leave_at_seconds": -1.0}, "within")],
)
def test_crowd_spec_refuses_a_leave_outside_the_crowd_or_the_run(fields, match):
    with pytest.raises(ValueError, match=match):
        CrowdSpec(url="http://127.0.0.1:8000", room="r", viewers=10, duration_seconds=10, **fields)


def test_answer_cache_reads_each_distinct_head_once():
    cache = AnswerCache()
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 3"
    assert cache.head(head) is cache.head(bytes(bytearray(head)))
    with pytest.raises(ResponseError):
        cache.head(b"HTTP/1.1 200 OK")
