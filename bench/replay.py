"""Replay segments: build time, size and serving cost for a full segment.

One broadcast whose first 6-minute segment holds ``--comments`` live
comments (default 6,000) from 200 viewers with nicknames, CJK and Latin
texts. In process, on SQLite in a temporary directory or on the database
``--database-url`` names (its rows are deleted afterwards). Per round:

- ``build``: ``danmaku.segments.build_segment`` (two queries, the columns, JSON);
- ``build + gzip``: what a node does once per segment version (``replaycache.Built``);
- ``ORM objects``: the same segment read as model instances with their
  users and profiles (select_related), the obvious way: the same-run
  baseline the build is compared with;
- ``serve``: a built segment asked for by its version, from memory.

Targets (issue 17): build + gzip <= 200 ms for 6,000 comments, serving runs
0 queries, gzip at least 40 % smaller.

With ``--crowd N``: the same broadcast (over ``--segments`` segments)
behind the project's gunicorn (2 workers, SQLite), and N viewers opening
its replay at once (bench/replaycrowd.py), first against segments nobody
has built, then again against built ones; builds are counted from the
node's /metrics.

    .venv/bin/python bench/replay.py
    .venv/bin/python bench/replay.py --database-url postgres://postgres@127.0.0.1:5432/test
    (ulimit -n 20000; .venv/bin/python bench/replay.py --crowd 2000 --seconds 10)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

TEXTS = ("\u54c8\u54c8\u54c8\u54c8", "this song is so good", "\u524d\u65b9\u9ad8\u80fd!!!", "2333333", "nice shot")
VIEWERS = 200
BUILD_TARGET_MS = 200
GZIP_TARGET_SAVING = 0.40


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comments", type=int, default=6000, help="comments in the segment (default 6000)")
    parser.add_argument("--rounds", type=int, default=7, help="timing rounds (default 7)")
    parser.add_argument("--database-url", help="PostgreSQL to run on (default: SQLite in a temporary directory)")
    parser.add_argument("--crowd", type=int, default=0, help="viewers opening the replay at once behind gunicorn")
    parser.add_argument("--seconds", type=float, default=10.0, help="--crowd: seconds each run lasts after the storm")
    parser.add_argument("--segments", type=int, default=3, help="--crowd: segments the comments spread over")
    args = parser.parse_args()
    if not 1 <= args.comments <= 100_000 or not 1 <= args.rounds <= 100:
        parser.error("--comments must be 1-100000 and --rounds 1-100")
    if args.crowd:
        if not 1 <= args.crowd <= 20_000 or not 0.5 <= args.seconds <= 600 or not 1 <= args.segments <= 20:
            parser.error("--crowd must be 1-20000, --seconds 0.5-600, --segments 1-20")
        return _crowd(args.crowd, args.comments, args.segments, args.seconds)
    with tempfile.TemporaryDirectory(prefix="danmaku-replay-bench-") as var_dir:
        _setup_django(var_dir, args.database_url)
        broadcast_id = _fill(args.comments)
        try:
            return _measure(broadcast_id, args.comments, args.rounds)
        finally:
            _clean(broadcast_id)


def _setup_django(var_dir: str, database_url: str | None) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="danmaku_site.settings",
        DANMAKU_VAR_DIR=var_dir,
        DANMAKU_REFRESHER_AUTOSTART="0",
        DANMAKU_LOG_LEVEL="ERROR",
        DANMAKU_DEMO="0",
        DJANGO_SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", "bench-only"),
    )
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DANMAKU_ROLE"):
        os.environ.pop(name, None)
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def _fill(comments: int) -> int:
    from django.contrib.auth import get_user_model

    from danmaku.models import Broadcast, Danmaku, Room, ViewerProfile

    stamp = time.time_ns()
    room = Room.objects.create(slug=f"replay-bench-{stamp}", title="Replay bench")
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"rb{stamp}-{n}", password="!") for n in range(VIEWERS)
    )
    ViewerProfile.objects.bulk_create(ViewerProfile(user=user, nickname=f"viewer {n}") for n, user in enumerate(users))
    started = 1_700_000_000_000
    # Spread over the segment's 6 minutes, as a busy broadcast sends them.
    step = 360_000 / comments
    Danmaku.objects.bulk_create(
        (
            Danmaku(
                room=room,
                user=users[n % VIEWERS],
                text=f"{TEXTS[n % len(TEXTS)]} {n}",
                color=0xFFFFFF if n % 7 else 0xFF6600,
                mode=n % 3 if n % 11 == 0 else 0,
                ts_ms=started + int(n * step),
                in_stream=True,
                checked=True,
            )
            for n in range(comments)
        ),
        batch_size=2000,
    )
    return Broadcast.objects.create(room=room, started_at_ms=started, ended_at_ms=started + 3_600_000).pk


def _clean(broadcast_id: int) -> None:
    from django.contrib.auth import get_user_model

    from danmaku.models import Broadcast

    broadcast = Broadcast.objects.select_related("room").get(pk=broadcast_id)
    room = broadcast.room
    user_ids = list(room.danmaku.values_list("user_id", flat=True).distinct())
    room.delete()
    get_user_model().objects.filter(pk__in=user_ids).delete()


def _timed(function, rounds: int) -> tuple[float, float, object]:
    """(best ms, median ms, the last result)."""
    times = []
    result = None
    for _ in range(rounds):
        started = time.perf_counter()
        result = function()
        times.append((time.perf_counter() - started) * 1000)
    return min(times), statistics.median(times), result


def _measure(broadcast_id: int, comments: int, rounds: int) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from danmaku.models import Danmaku
    from danmaku.replaycache import Built, ReplayCache
    from danmaku.segments import build_segment, read_state

    state = read_state(broadcast_id)
    version = state.versions[0]
    calibration, _, _ = _timed(lambda: sum(range(10**7)), 3)

    build_best, build_median, body = _timed(lambda: build_segment(state, 0, version), rounds)
    both_best, both_median, built = _timed(
        lambda: Built(build_segment(state, 0, version), '"x"', settled=True, expires=0.0), rounds
    )

    def orm_objects():
        rows = Danmaku.objects.filter(
            room_id=state.room_id,
            status="published",
            ts_ms__gte=state.started_at_ms,
            ts_ms__lt=state.started_at_ms + 360_000,
        ).select_related("user", "user__viewer_profile")
        return [(row.id, row.ts_ms, row.text, row.user.viewer_profile.nickname) for row in rows]

    orm_best, orm_median, orm_rows = _timed(orm_objects, rounds)
    assert len(orm_rows) == comments, (len(orm_rows), comments)

    cache = ReplayCache()
    cache.segment(broadcast_id, 0, version)
    serves = 2000
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        for _ in range(serves):
            cache.segment(broadcast_id, 0, version)
        serve_us = (time.perf_counter() - started) / serves * 1e6

    raw, zipped = len(body), len(built.pinned.gzipped)
    saving = 1 - zipped / raw
    machine = f"sum(range(10**7)) {calibration:.0f} ms"
    print(f"replay segment of {comments} comments on {connection.vendor} (machine: {machine})")
    print(f"  build                {build_best:7.1f} ms best, {build_median:7.1f} ms median")
    print(f"  build + gzip         {both_best:7.1f} ms best, {both_median:7.1f} ms median")
    print(f"  ORM objects (base)   {orm_best:7.1f} ms best, {orm_median:7.1f} ms median")
    print(f"  build / ORM objects  {build_median / orm_median:7.2f} (median to median, same run)")
    print(f"  size                 {raw:,} bytes, gzip {zipped:,} bytes ({saving:.0%} smaller)")
    print(f"  serve, built         {serve_us:7.1f} µs, {len(queries)} queries in {serves} serves")
    verdicts = [
        (both_median <= BUILD_TARGET_MS, f"build + gzip {both_median:.1f} ms <= {BUILD_TARGET_MS} ms (median)"),
        (len(queries) == 0, f"serving a built segment ran {len(queries)} queries"),
        (saving >= GZIP_TARGET_SAVING, f"gzip {saving:.0%} smaller >= {GZIP_TARGET_SAVING:.0%}"),
    ]
    for ok, line in verdicts:
        print(f"[{'PASS' if ok else 'FAIL'}] {line}")
    return 0 if all(ok for ok, _ in verdicts) else 1


CROWD_FILL = """
from django.contrib.auth import get_user_model
from danmaku.models import Broadcast, Danmaku, Room, ViewerProfile
room = Room.objects.get(slug="replay")
users = get_user_model().objects.bulk_create(get_user_model()(username=f"rv{n}", password="!") for n in range(200))
ViewerProfile.objects.bulk_create(ViewerProfile(user=u, nickname=f"viewer {n}") for n, u in enumerate(users))
started, comments, segments = 1_700_000_000_000, COMMENTS, SEGMENTS
step = segments * 360_000 / (comments * segments)
Danmaku.objects.bulk_create((Danmaku(room=room, user=users[n % 200], text=f"comment {n}", ts_ms=started + int(n * step),
    in_stream=True, checked=True) for n in range(comments * segments)), batch_size=2000)
print(Broadcast.objects.create(room=room, started_at_ms=started, ended_at_ms=started + segments * 360_000 - 1).pk)
"""


def _crowd(viewers: int, comments: int, segments: int, seconds: float) -> int:
    import re
    import urllib.request

    from bench.replaycrowd import run_crowd
    from harness import local

    with local.gunicorn(room="replay", workers=2, extra_env={"DANMAKU_LOG_LEVEL": "WARNING"}) as app:
        code = CROWD_FILL.replace("COMMENTS", str(comments)).replace("SEGMENTS", str(segments))
        broadcast_id = int(app.manage("shell", "-c", code).strip().splitlines()[-1])

        def builds() -> int:
            with urllib.request.urlopen(f"{app.base_url}/metrics", timeout=10) as answer:
                text = answer.read().decode()
            found = re.search(r'danmaku_replay_segment_build_seconds_count\{kind="segment"\} ([0-9.e+]+)', text)
            return int(float(found[1])) if found else 0

        print(
            f"replay crowd: {viewers} viewers, each on its own connection, opening a broadcast of "
            f"{segments} segments x {comments} comments within 1 s, then a segment every ~3 s for {seconds:g} s"
        )
        runs = {}
        for name in ("cold", "warm"):
            before = builds()
            run = runs[name] = run_crowd(app.base_url, broadcast_id, viewers=viewers, seconds=seconds)
            built = builds() - before
            print(
                f"  {name}: connected {run.connected}/{viewers}, answers {run.answers} "
                f"({run.answers / (seconds + 1):.0f}/s, {run.bytes / (seconds + 1) / 1e6:.1f} MB/s), "
                f"errors {run.errors}, statuses {dict(sorted(run.statuses.items()))}, segments built {built}; "
                f"first segment p50 {run.percentile(run.first_segment, 0.5) * 1000:.0f} ms, "
                f"p99 {run.percentile(run.first_segment, 0.99) * 1000:.0f} ms; "
                f"answer p50 {run.percentile(run.latencies, 0.5) * 1000:.1f} ms, "
                f"p99 {run.percentile(run.latencies, 0.99) * 1000:.1f} ms"
            )
        cold, warm = runs["cold"], runs["warm"]
        ratio = warm.percentile(warm.first_segment, 0.99) / cold.percentile(cold.first_segment, 0.99)
        print(f"  warm / cold first-segment p99: {ratio:.2f} (what building once, shared, costs the storm)")
        ok = all(run.connected == viewers and run.errors == 0 and set(run.statuses) == {200} for run in runs.values())
        print(f"[{'PASS' if ok else 'FAIL'}] every viewer connected and every answer was a 200, no errors")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
