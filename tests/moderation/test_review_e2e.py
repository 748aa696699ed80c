"""The review buffer in real processes: gunicorn and a Celery worker on a
private redis-server broker, over one SQLite file.

- A `pre` room's comments get their verdicts from the worker (released,
  denied, held) through batch tasks, fewer tasks than comments.
- A comment left unchecked (its buffer lost with its process) is found by
  the server's sweep job and checked by the worker.
- A process that exits normally publishes what its buffer still held.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from harness import local
from harness.services import private_redis
from tests.moderation.test_review_batches import queued

pytestmark = pytest.mark.slow

# Verdicts come within ~0.1 s plus the worker's time; a loaded machine gets
# a generous margin. The sweep runs every 10 s and the worker needs its time.
VERDICT_WAIT_S = 20.0
SWEEP_WAIT_S = 40.0

ROOM_SETUP = """
from danmaku.models import Room
from moderation.services import blocked_term_create
Room.objects.filter(slug="live").update(moderation_policy="pre", pre_fallback="deny")
blocked_term_create(term=r"spam\\d{3}", kind="regex", action="block")
"""

LOST_ROW = """
from django.contrib.auth import get_user_model
from danmaku.models import Danmaku, Room
from infra import clock
row = Danmaku.objects.create(
    room=Room.objects.get(slug="live"), user=get_user_model().objects.get(username="sender"),
    text="lost: see www.spam-shop.com", status="published", in_stream=True, ts_ms=clock.now_ms() - 120_000,
)
print(row.pk)
"""


def rows(var_dir: Path, ids: list[int]) -> dict[int, tuple[str, int]]:
    with contextlib.closing(sqlite3.connect(var_dir / "db.sqlite3", timeout=10)) as database:
        marks = ",".join("?" * len(ids))
        found = database.execute(f"SELECT id, status, checked FROM danmaku_danmaku WHERE id IN ({marks})", ids)
        return {danmaku_id: (status, checked) for danmaku_id, status, checked in found}


def wait_for_rows(var_dir: Path, expected: dict[int, tuple[str, int]], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        found = rows(var_dir, list(expected))
        if found == expected or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


@pytest.fixture
def site(tmp_path):
    """gunicorn (one worker, role all) and a Celery worker sharing a broker and a database."""
    with private_redis() as broker:
        env = local.environment(
            tmp_path,
            DANMAKU_BIND=f"127.0.0.1:{local.free_port()}",
            GUNICORN_WORKERS="1",
            CELERY_BROKER_URL=broker.url,
            # Fallbacks are not under test here: a loaded machine must not
            # turn a slow publish into one.
            DANMAKU_BROKER_TIMEOUT_MS="2000",
            DANMAKU_PUBLISH_DEADLINE_MS="5000",
        )
        tokens = local.prepare_room(env, "live", ("sender",), user_send_interval_ms=0, pre_deadline_ms=600_000)
        local.manage(env, "shell", "-c", ROOM_SETUP)
        with (
            local.gunicorn_over(env, tmp_path / "gunicorn.log", tokens) as server,
            local.celery_worker(env, log_path=tmp_path / "worker.log") as worker,
        ):
            yield server, worker, tmp_path


def test_pre_policy_verdicts_come_from_batch_tasks(site):
    server, worker, var_dir = site
    headers = {"Authorization": f"Bearer {server.tokens[0]}"}
    texts = [f"fine comment {n} {uuid.uuid4().hex[:6]}" for n in range(20)]
    texts += ["buy at spam123 today", "see www.spam-shop.com now"]

    def post(text: str) -> dict:
        response = requests.post(server.danmaku_url("live"), json={"text": text}, headers=headers, timeout=10)
        assert response.status_code == 201, response.text
        return response.json()

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(post, texts))
    assert {answer["status"] for answer in answers} == {"sender_only"}
    ids = [answer["id"] for answer in answers]
    expected = {danmaku_id: ("published", 1) for danmaku_id in ids[:20]}
    expected |= {ids[20]: ("hidden", 1), ids[21]: ("held", 1)}

    found = wait_for_rows(var_dir, expected, VERDICT_WAIT_S)

    log = worker.log(200_000)
    assert found == expected, f"{log[-3000:]}\n{server.log_tail()}"
    batches = log.count("Task moderation.moderate_batch[") // 2  # received, succeeded
    assert 1 <= batches < len(ids), log[-3000:]
    assert "Task moderation.moderate[" not in log
    assert "broker unavailable" not in server.log_tail(200_000)


def test_a_comment_left_unchecked_is_swept_and_checked_by_the_worker(site):
    server, worker, var_dir = site

    lost = int(server.manage("shell", "-c", LOST_ROW).strip().splitlines()[-1])

    found = wait_for_rows(var_dir, {lost: ("hidden", 1)}, SWEEP_WAIT_S)
    assert found == {lost: ("hidden", 1)}, f"{worker.log()}\n{server.log_tail()}"
    assert "whose full check never ran handed to the workers" in server.log_tail(200_000)


EXIT_CODE = """
from moderation import hooks
hooks.REVIEW_INTERVAL_S = 60.0  # only the exit flush can publish these
for danmaku_id in (11, 12, 13):
    hooks.review(danmaku_id)
print(len(hooks.review_buffer.get()))
"""


def test_a_process_exiting_normally_publishes_what_its_buffer_held(tmp_path):
    with private_redis() as broker:
        env = local.environment(tmp_path, CELERY_BROKER_URL=broker.url)

        waiting = local.manage(env, "shell", "-c", EXIT_CODE).strip().splitlines()[-1]

        assert waiting == "3"
        assert queued(broker.url) == [("moderation.moderate_batch", [11, 12, 13])]
