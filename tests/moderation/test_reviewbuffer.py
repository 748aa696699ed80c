"""The review buffer alone (no Django): batches by size and by time, its
bound, one buffer per process across a fork, and the flush at a normal exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from moderation.reviewbuffer import PerProcess, ReviewBuffer

# Longest wait for the flusher thread to publish what is due.
WAIT_S = 5.0


class Published:
    """A ``publish`` that records each batch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.changed = threading.Condition()

    def __call__(self, ids: list[int]) -> None:
        with self.changed:
            self.batches.append(list(ids))
            self.changed.notify_all()

    def wait_for(self, count: int, timeout: float = WAIT_S) -> list[list[int]]:
        with self.changed:
            assert self.changed.wait_for(lambda: sum(map(len, self.batches)) >= count, timeout), self.batches
            return self.batches


@pytest.fixture
def published():
    return Published()


@pytest.fixture
def make_buffer(published):
    made: list[ReviewBuffer] = []

    def make(**limits) -> ReviewBuffer:
        options = {"batch_size": 200, "interval_s": 0.1, "max_pending": 2000} | limits
        buffer = ReviewBuffer(published, **options)
        made.append(buffer)
        return buffer

    yield make
    for buffer in made:
        buffer.discard()


def test_comments_added_together_go_out_as_one_batch_after_the_interval(make_buffer, published):
    buffer = make_buffer(interval_s=0.3)
    started = time.monotonic()

    for danmaku_id in range(1, 51):
        assert buffer.add(danmaku_id)

    assert published.wait_for(50) == [list(range(1, 51))]
    assert time.monotonic() - started >= 0.25
    assert len(buffer) == 0


def test_a_full_batch_goes_at_once_without_waiting_for_the_interval(make_buffer, published):
    buffer = make_buffer(batch_size=10, interval_s=60.0)
    started = time.monotonic()

    for danmaku_id in range(10):
        buffer.add(danmaku_id)

    assert published.wait_for(10) == [list(range(10))]
    assert time.monotonic() - started < WAIT_S
    # Fewer than a batch wait for their interval (or the flush at exit).
    for danmaku_id in range(10, 15):
        buffer.add(danmaku_id)
    time.sleep(0.3)
    assert len(published.batches) == 1
    assert len(buffer) == 5
    assert buffer.close() == 5
    assert published.batches[-1] == [10, 11, 12, 13, 14]


def test_a_flush_splits_what_waits_into_batches():
    published = Published()
    buffer = ReviewBuffer(published, batch_size=3, interval_s=60.0, max_pending=10)

    for danmaku_id in range(7):
        buffer._ids.append(danmaku_id)  # no thread: the flush alone
    assert buffer.flush() == 7

    assert published.batches == [[0, 1, 2], [3, 4, 5], [6]]


def test_a_buffer_that_cannot_flush_refuses_ids_past_its_bound(make_buffer):
    stuck = threading.Event()
    entered = threading.Event()

    def publish(ids):
        entered.set()
        stuck.wait(WAIT_S)  # a broker that never answers, and slow fallbacks

    buffer = ReviewBuffer(publish, batch_size=2, interval_s=0.01, max_pending=4)
    try:
        buffer.add(1)
        buffer.add(2)
        assert entered.wait(WAIT_S)  # the flusher holds [1, 2] and is stuck

        accepted = [buffer.add(danmaku_id) for danmaku_id in range(3, 10)]

        assert accepted == [True, True, True, True, False, False, False]
        assert len(buffer) == 4
    finally:
        stuck.set()
        buffer.discard()


def test_stop_ends_the_flusher_promptly_and_keeps_what_waits(make_buffer, published):
    buffer = make_buffer(interval_s=30.0)
    buffer.add(7)
    assert buffer.running()

    started = time.monotonic()
    buffer.stop()

    assert time.monotonic() - started < 1.0
    assert not buffer.running()
    assert published.batches == []
    assert buffer.close() == 1
    assert published.batches == [[7]]


def test_per_process_gives_the_same_buffer_within_a_process(published):
    holder = PerProcess(lambda: ReviewBuffer(published, batch_size=2, interval_s=1.0, max_pending=4))
    try:
        assert holder.get() is holder.get()
    finally:
        holder.reset()


def test_a_forked_child_gets_a_new_empty_buffer_and_never_sends_its_parents_ids(published):
    holder = PerProcess(lambda: ReviewBuffer(published, batch_size=100, interval_s=30.0, max_pending=1000))
    parent_buffer = holder.get()
    for danmaku_id in (1, 2, 3):
        parent_buffer.add(danmaku_id)
    read_end, write_end = os.pipe()

    pid = os.fork()
    if pid == 0:  # the child
        try:
            child_buffer = holder.get()
            child_buffer.add(99)
            report = {
                "new": child_buffer is not parent_buffer,
                "pid": child_buffer.pid == os.getpid(),
                "waiting": len(child_buffer),
                "child_flushed": child_buffer.close(),
                "published": published.batches,
            }
            os.write(write_end, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        report = json.loads(pipe.read())
    os.waitpid(pid, 0)
    try:
        assert report == {"new": True, "pid": True, "waiting": 1, "child_flushed": 1, "published": [[99]]}
        assert holder.get() is parent_buffer
        assert len(parent_buffer) == 3
        assert published.batches == []  # the child's publish happened in the child only
    finally:
        holder.reset()


EXIT_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from moderation.reviewbuffer import PerProcess, ReviewBuffer

    out = sys.argv[1]

    def publish(ids):
        with open(out, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "ids": ids}) + "\\n")

    holder = PerProcess(lambda: ReviewBuffer(publish, batch_size=100, interval_s=60.0, max_pending=1000))
    for danmaku_id in (1, 2, 3):
        holder.get().add(danmaku_id)
    pid = os.fork()
    if pid == 0:
        holder.get().add(50)
        sys.exit(0)  # a normal exit of a forked worker: its own ids only
    os.waitpid(pid, 0)
    sys.exit(0)
    """
)


def test_a_normal_exit_flushes_each_processs_own_ids_once(tmp_path):
    out = tmp_path / "published.jsonl"

    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, str(out)], capture_output=True, text=True, timeout=30, check=False
    )

    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(line["ids"] for line in lines) == [[1, 2, 3], [50]]
    assert len({line["pid"] for line in lines}) == 2


def test_an_urgent_comment_brings_its_batch_forward_with_those_already_waiting(make_buffer, published):
    buffer = make_buffer(interval_s=60.0, urgent_interval_s=0.2)
    for danmaku_id in range(1, 4):
        buffer.add(danmaku_id)
    time.sleep(0.3)
    assert published.batches == []  # ordinary comments wait for the interval

    started = time.monotonic()
    buffer.add(4, urgent=True)

    assert published.wait_for(4) == [[1, 2, 3, 4]]
    assert 0.15 <= time.monotonic() - started < WAIT_S


def test_an_urgent_comment_never_delays_a_batch_already_due_sooner(make_buffer, published):
    buffer = make_buffer(interval_s=0.2, urgent_interval_s=10.0)  # urgent is capped at the interval
    started = time.monotonic()

    buffer.add(1)
    buffer.add(2, urgent=True)

    assert published.wait_for(2) == [[1, 2]]
    assert time.monotonic() - started < 1.0
