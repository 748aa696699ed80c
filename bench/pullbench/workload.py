"""What the load asks for: rooms, comments and real cursors.

A database with the rooms, viewers and tokens is made once per benchmark
(``make_template``) and copied for every server started, so each starts
from the same state without repeating migrations. Before each load run,
``prepare_round`` gives the running server what clients would see a
moment into a live show: it takes every room's join cursor, sends comments
through the service functions (15 to the hot room, a popularity-shaped
few to the others), waits until they are sealed into the rings, and takes
the join cursors again. The load then asks with a mix of both: the older
cursor answers with the new comments (a client a few seconds behind), the
newer one with nothing new (a client that just polled).
"""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import random
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from bench.pullbench import seed
from harness import local

HOT_ROOM = seed.HOT_ROOM
# The hot answer: 15 comments, a lively room's 3 s poll (~3 KB of JSON).
HOT_COMMENTS = 15
# Comments for the room of popularity rank k: round(TOP / k ** DECAY).
# About 70 of 1,000 rooms get at least one: a long quiet tail, like a site's.
TOP_ROOM_COMMENTS = 12
POPULARITY_DECAY = 0.7
# Viewers per room fall off as 1 / rank (Zipf): the top room has ~13 %.
VIEWER_ZIPF = 1.0
# Requests drawn for the Lua script to pick from at random.
LUA_REQUESTS = 20_000
# Shares of the requests: a cursor from before the comments, a fresh one,
# and a join (no cursor).
OLD_CURSOR_SHARE = 0.45
JOIN_SHARE = 0.02
# Sends in the mixed scenario are spread over this many (room, token) pairs.
SEND_PATHS = 200
USERS = 40
# Longest wait for the seeded comments to show in a pull.
SEAL_TIMEOUT_SECONDS = 15
REQUEST_TIMEOUT_SECONDS = 5
FETCH_THREADS = 4


class WorkloadError(RuntimeError):
    pass


@dataclass
class Template:
    db_path: Path
    tokens: list[str]
    rooms: list[str]
    # Whether this checkout knows DANMAKU_PULL_FAST_PATH (else "fast" and
    # "ninja" runs measure the same code, and the report says so).
    has_fast_path_switch: bool


@dataclass
class Round:
    """One prepared load: the hot path, the rooms' request mix, the hot answer."""

    hot_path: str
    room_paths: list[str]
    hot_answer: dict
    identity_body_bytes: int


def pull_path(room: str, cursor: str | None = None) -> str:
    path = f"/api/v1/rooms/{room}/danmaku"
    return f"{path}?after={quote(cursor)}" if cursor else path


def run_seed(env: dict[str, str], command: str, options: dict) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "bench.pullbench.seed", command, json.dumps(options)],
        cwd=local.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode:
        raise WorkloadError(f"seed {command} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_template(work_dir: Path, *, rooms: int) -> Template:
    """Migrate a fresh SQLite database and fill it with rooms, viewers and tokens."""
    var_dir = work_dir / "template"
    var_dir.mkdir()
    env = local.environment(var_dir, DANMAKU_LOG_LEVEL="WARNING")
    local.manage(env, "migrate", "--noinput")
    made = run_seed(env, "prepare", {"rooms": rooms, "users": USERS})
    return Template(
        db_path=var_dir / "db.sqlite3",
        tokens=made["tokens"],
        rooms=seed.room_slugs(rooms),
        has_fast_path_switch=made["has_fast_path_switch"],
    )


def fresh_var_dir(template: Template, work_dir: Path, name: str) -> Path:
    var_dir = work_dir / name
    var_dir.mkdir()
    shutil.copyfile(template.db_path, var_dir / "db.sqlite3")
    return var_dir


# -- fetching real answers ------------------------------------------------------


def fetch(host_port: str, path: str, *, gzip: bool = True) -> tuple[int, list[tuple[str, str]], bytes, str]:
    """One GET; the raw (still compressed) body, as a client receives it."""
    connection = http.client.HTTPConnection(host_port, timeout=REQUEST_TIMEOUT_SECONDS)
    try:
        connection.request("GET", path, headers={"Accept-Encoding": "gzip" if gzip else "identity"})
        response = connection.getresponse()
        body = response.read()
        return response.status, response.getheaders(), body, response.reason
    finally:
        connection.close()


def pull_json(host_port: str, path: str) -> dict:
    status, _, body, _ = fetch(host_port, path, gzip=False)
    if status != 200:
        raise WorkloadError(f"GET {path} answered {status}: {body[:300]!r}")
    return json.loads(body)


def ring_rooms(host_port: str) -> int:
    """Rooms held in the rings of all live workers (the /metrics gauge); -1 if unreadable."""
    try:
        status, _, body, _ = fetch(host_port, "/metrics", gzip=False)
    except OSError:
        return -1
    if status != 200:
        return -1
    for line in body.decode(errors="replace").splitlines():
        if line.startswith("danmaku_ring_rooms "):
            return int(float(line.split()[1]))
    return -1


def join_cursors(host_port: str, rooms: list[str]) -> dict[str, str]:
    """Every room's cursor as a joining client gets it (one connection per fetch thread)."""
    local_state = threading.local()

    def one(room: str) -> tuple[str, str]:
        connection = getattr(local_state, "connection", None)
        if connection is None:
            connection = local_state.connection = http.client.HTTPConnection(host_port, timeout=REQUEST_TIMEOUT_SECONDS)
        connection.request("GET", pull_path(room), headers={"Accept-Encoding": "identity"})
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise WorkloadError(f"join {room} answered {response.status}: {body[:300]!r}")
        if response.getheader("Connection", "").lower() == "close":
            connection.close()
            local_state.connection = None
        return room, json.loads(body)["cursor"]

    with ThreadPoolExecutor(FETCH_THREADS) as pool:
        return dict(pool.map(one, rooms))


# -- one round ------------------------------------------------------------------


def comment_plan(rooms: list[str]) -> list[tuple[str, int]]:
    plan = [(HOT_ROOM, HOT_COMMENTS)]
    for rank, room in enumerate(rooms, start=1):
        count = round(TOP_ROOM_COMMENTS / rank**POPULARITY_DECAY)
        if count:
            plan.append((room, count))
    return plan


def prepare_round(host_port: str, env: dict[str, str], rooms: list[str], *, round_number: int) -> Round:
    """Seed comments into the running server's store and take real cursors around them."""
    before = join_cursors(host_port, rooms)
    # Last, so the hot cursor is as fresh as a client's that just polled.
    before.update(join_cursors(host_port, [HOT_ROOM]))
    sent = run_seed(env, "send", {"plan": comment_plan(rooms), "round_number": round_number})
    if set(sent["outcomes"]) != {"published"}:
        raise WorkloadError(f"seeded comments were not all published: {sent['outcomes']}")
    hot_path = pull_path(HOT_ROOM, before[HOT_ROOM])
    _wait_for_items(host_port, hot_path, HOT_COMMENTS)
    after = join_cursors(host_port, rooms) if rooms else {}
    room_paths = _request_mix(rooms, before, after)
    status, headers, body, reason, identity = _hot_answer(host_port, hot_path)
    hot_answer = {
        "status_line": f"{status} {reason}",
        "headers": headers,
        "body_b64": base64.b64encode(body).decode(),
    }
    return Round(hot_path=hot_path, room_paths=room_paths, hot_answer=hot_answer, identity_body_bytes=len(identity))


def _hot_answer(host_port: str, path: str) -> tuple[int, list[tuple[str, str]], bytes, str, bytes]:
    """The hot answer (gzip) and its identity body, both showing every seeded
    comment: the bare app serves it, and a shorter one (from a worker a tick
    behind) would make the baseline's answers smaller than the project's."""
    deadline = time.monotonic() + SEAL_TIMEOUT_SECONDS
    while True:
        status, headers, body, reason = fetch(host_port, path)
        if status != 200:
            raise WorkloadError(f"hot pull answered {status}")
        identity = fetch(host_port, path, gzip=False)[2]
        encoded = dict((name.lower(), value) for name, value in headers).get("content-encoding") == "gzip"
        shown = len(json.loads(identity)["items"]["id"])
        sent = len(json.loads(gzip.decompress(body) if encoded else body)["items"]["id"])
        if min(shown, sent) >= HOT_COMMENTS:
            return status, headers, body, reason, identity
        if time.monotonic() > deadline:
            raise WorkloadError(f"the hot answer showed {shown} of {HOT_COMMENTS} seeded comments")
        time.sleep(0.2)


def _wait_for_items(host_port: str, path: str, count: int) -> None:
    """Until ``path`` shows ``count`` comments, and one refresher tick more."""
    deadline = time.monotonic() + SEAL_TIMEOUT_SECONDS
    seen = 0
    while time.monotonic() < deadline:
        seen = len(pull_json(host_port, path)["items"]["id"])
        if seen >= count:
            # One refresher tick more, rooms seeded beside it or not: the
            # refresher seals every room's second in the same tick, and each
            # worker of the node has a refresher of its own; the one that
            # answered may be a tick ahead of the one the hot answer (what
            # the bare app serves) is then taken from.
            time.sleep(1.0)
            return
        time.sleep(0.2)
    raise WorkloadError(
        f"{path} showed {seen} of {count} seeded comments after {SEAL_TIMEOUT_SECONDS} s "
        "(hidden by moderation? the refresher stuck? see the server log)"
    )


def _request_mix(rooms: list[str], before: dict[str, str], after: dict[str, str]) -> list[str]:
    if not rooms:
        return []
    rng = random.Random(seed.RANDOM_SEED)
    weights = [1 / rank**VIEWER_ZIPF for rank in range(1, len(rooms) + 1)]
    paths = []
    for room in rng.choices(rooms, weights=weights, k=LUA_REQUESTS):
        draw = rng.random()
        if draw < JOIN_SHARE:
            paths.append(pull_path(room))
        elif draw < JOIN_SHARE + OLD_CURSOR_SHARE:
            paths.append(pull_path(room, before[room]))
        else:
            paths.append(pull_path(room, after[room]))
    return paths


def write_lua_data(path: Path, *, pulls: list[str], send_every: int = 0, sends: list[str] = (), tokens=()) -> None:
    """The rooms script's data: a Lua chunk returning plain tables."""

    def lua_list(items) -> str:
        # JSON strings are valid Lua strings for the ASCII paths and tokens used here.
        return "{" + ",".join(json.dumps(item) for item in items) + "}"

    path.write_text(
        f"return {{pulls={lua_list(pulls)}, send_every={int(send_every)}, "
        f"sends={lua_list(sends)}, tokens={lua_list(tokens)}}}\n"
    )


def send_paths(rooms: list[str]) -> list[str]:
    rng = random.Random(seed.RANDOM_SEED + 1)
    weights = [1 / rank**VIEWER_ZIPF for rank in range(1, len(rooms) + 1)]
    return [f"/api/v1/rooms/{room}/danmaku" for room in rng.choices(rooms, weights=weights, k=SEND_PATHS)]
