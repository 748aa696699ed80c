"""infra.jobs: the background jobs loop each server process runs."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import REGISTRY

from infra import jobs
from infra.jobs import Job, JobLoop

# Each run closes the database connections it left old or broken, as a
# request would: that touches the test database.
pytestmark = pytest.mark.django_db


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def job(name: str, every_seconds: float, run, roles=("all",)) -> Job:
    return Job(name=name, every_seconds=every_seconds, run=run, roles=frozenset(roles))


def test_each_job_runs_at_once_and_then_at_its_own_interval():
    clock, ran = Clock(), []
    loop = JobLoop(
        [job("fast", 1.0, lambda: ran.append("fast")), job("slow", 2.0, lambda: ran.append("slow"))], clock=clock
    )

    assert loop.run_due() == ["fast", "slow"]
    clock.now += 0.5
    assert loop.run_due() == []
    assert loop.seconds_to_next() == pytest.approx(0.5)
    clock.now += 0.5
    assert loop.run_due() == ["fast"]
    clock.now += 1.0
    assert loop.run_due() == ["fast", "slow"]
    assert ran == ["fast", "slow", "fast", "fast", "slow"]


def errors(name: str) -> float:
    return REGISTRY.get_sample_value("danmaku_job_errors_total", {"job": name}) or 0.0


def test_a_job_that_raises_is_counted_logged_and_runs_again_while_the_others_go_on(caplog):
    clock, ran = Clock(), []

    def broken():
        raise RuntimeError("the database said no")

    loop = JobLoop([job("broken", 1.0, broken), job("fine", 1.0, lambda: ran.append(clock.now))], clock=clock)
    before = errors("broken")

    loop.run_due()
    clock.now += 1.0
    loop.run_due()

    assert errors("broken") == before + 2
    assert ran == [100.0, 101.0]
    assert "background job broken failed" in caplog.text
    assert "the database said no" in caplog.text


def test_the_thread_runs_the_jobs_and_stops_when_asked():
    ran = threading.Event()
    loop = JobLoop([job("tick", 0.05, ran.set)])

    loop.start()
    try:
        assert ran.wait(5)
        assert loop.running()
        assert any(thread.name == "danmaku-jobs" for thread in threading.enumerate())
    finally:
        started = time.monotonic()
        loop.stop()
    assert time.monotonic() - started < 2.0
    assert not loop.running()
    assert not any(thread.name == "danmaku-jobs" for thread in threading.enumerate())


def test_each_role_runs_the_jobs_registered_for_it():
    # The apps register theirs when Django starts (AppConfig.ready).
    names = {role: {j.name for j in jobs.jobs_for(role)} for role in ("all", "pull", "send")}

    assert names["all"] == {
        "moderation.pre_deadlines",
        "moderation.review_sweep",
        "danmaku.cache_changes",
        "danmaku.mark_stream_publishes",
        "danmaku.prune_cache_changes",
        "danmaku.republish_held_back",
        "danmaku.republish_room_settings",
    }
    # A send node runs no refresher: its request counts are written by a job.
    assert names["send"] == names["all"] | {"metrics.flush_tallies"}
    assert names["pull"] == {"danmaku.republish_room_settings"}
