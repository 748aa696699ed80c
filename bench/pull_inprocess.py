"""Microseconds per pull, in-process: no server, no sockets, one thread.

Calls WSGI applications directly with a ready environ and times them, all in
the same run so the figures compare:

- ``bare``: a WSGI app returning the same bytes and headers (the ceiling);
- ``fast path``: danmaku.pull.fastpath in front of Django;
- ``ninja, pull role``: Django + ninja with the pull role's middleware;
- ``ninja, all roles``: Django + ninja with the full middleware stack;
- ``ninja, no middleware``: what the middleware costs, by difference.

Each over three requests: a join and a cursor pull (gzip accepted, like the
viewers' clients) and a revalidation answered 304. The room holds 15
comments in the last 3 s (CJK and Latin). SQLite in a temporary directory,
metrics counted as under gunicorn (PROMETHEUS_MULTIPROC_DIR); the refresher
is not started (the answer stays in the memo, as it does for
a second in production).

    .venv/bin/python bench/pull_inprocess.py                 # the table
    .venv/bin/python bench/pull_inprocess.py --profile fast  # cProfile of one app
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from harness.wsgi import wsgi_environ  # noqa: E402

ROOM = "bench"
TEXTS = ("\u54c8\u54c8\u54c8\u54c8", "this song is so good", "\u524d\u65b9\u9ad8\u80fd!!!", "2333333", "nice shot")
# Timing rounds per app and case; the best round is reported (the least
# disturbed by whatever else runs on the machine), the median beside it.
ROUNDS = 5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per round for the fast apps (default 20000)")
    parser.add_argument("--profile", choices=("fast", "ninja"), help="print a cProfile of this app instead")
    args = parser.parse_args()
    if args.calls < 100:
        parser.error("--calls must be at least 100")
    with tempfile.TemporaryDirectory(prefix="danmaku-inprocess-") as var_dir:
        _setup_django(var_dir)
        apps, cases = _build()
        if args.profile:
            _profile(apps["fast path" if args.profile == "fast" else "ninja, pull role"], cases, args.calls)
            return 0
        _table(apps, cases, args.calls)
    return 0


def _setup_django(var_dir: str) -> None:
    prometheus_dir = Path(var_dir) / "prometheus"
    prometheus_dir.mkdir()
    os.environ.update(
        DJANGO_SETTINGS_MODULE="danmaku_site.settings",
        # Counted as under gunicorn and granian: into per-process files.
        PROMETHEUS_MULTIPROC_DIR=str(prometheus_dir),
        DANMAKU_VAR_DIR=var_dir,
        DANMAKU_REFRESHER_AUTOSTART="0",
        DANMAKU_LOG_LEVEL="ERROR",
        DANMAKU_DEMO="0",
    )
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DANMAKU_ROLE"):
        os.environ.pop(name, None)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def _build():
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.handlers.wsgi import WSGIHandler

    from danmaku import runtime
    from danmaku.models import Danmaku, Room
    from danmaku.pull.fastpath import PullFastPath

    room = Room.objects.create(slug=ROOM, title="Bench")
    users = [get_user_model().objects.create_user(f"viewer-{n}") for n in range(5)]
    now_ms = int(time.time() * 1000)
    for n in range(15):
        Danmaku.objects.create(
            room=room, user=users[n % 5], ts_ms=now_ms - 2900 + 190 * n, text=TEXTS[n % len(TEXTS)] + f" #{n}"
        )

    full = list(settings.MIDDLEWARE)
    pull_role = [name for name in full if name not in settings.MIDDLEWARE_NOT_ON_PULL_NODES]

    def django_app(middleware: list[str]) -> WSGIHandler:
        # The handler reads MIDDLEWARE once, when it is built.
        settings.MIDDLEWARE = middleware
        try:
            return WSGIHandler()
        finally:
            settings.MIDDLEWARE = full

    apps = {
        "fast path": PullFastPath(django_app(pull_role), runtime.PROCESS),
        "ninja, pull role": django_app(pull_role),
        "ninja, all roles": django_app(full),
        "ninja, no middleware": django_app([]),
    }
    path = f"/api/v1/rooms/{ROOM}/danmaku"
    joined = _call(apps["ninja, pull role"], _environ(path, "", ACCEPT_ENCODING="gzip"))
    headers = dict(joined[1])
    cursor_second = (now_ms - 2900) // 1000 - 1
    from danmaku.pull.wire import encode_cursor

    cases = {
        "join": _environ(path, "", ACCEPT_ENCODING="gzip, deflate, br"),
        "cursor": _environ(path, f"after={encode_cursor(0, cursor_second)}", ACCEPT_ENCODING="gzip, deflate, br"),
        "304": _environ(path, "", ACCEPT_ENCODING="gzip, deflate, br", IF_NONE_MATCH=headers["ETag"]),
    }
    apps = {"bare": _bare_app(joined[0], joined[1], joined[2]), **apps}
    return apps, cases


def _bare_app(status: str, headers: list[tuple[str, str]], body: bytes):
    chunks = [body]

    def app(environ, start_response):
        start_response(status, headers)
        return chunks

    return app


def _environ(path: str, query: str, **headers: str) -> dict:
    return wsgi_environ(path, query, host="127.0.0.1:8000", USER_AGENT="bench", **headers)


def _start_response(status, headers, exc_info=None):
    return None


def _call(app, environ: dict) -> tuple[str, list[tuple[str, str]], bytes]:
    seen = []
    result = app(dict(environ), lambda status, headers, exc_info=None: seen.extend((status, headers)))
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return seen[0], list(seen[1]), body


def _serve(app, environ: dict, calls: int) -> float:
    """CPU seconds of this thread for ``calls`` requests, driven the way a
    WSGI server drives an app. CPU time rather than wall time: on a shared
    machine the wall clock also counts the time other processes ran."""
    start_response = _start_response
    started = time.thread_time()
    for _ in range(calls):
        result = app(environ.copy(), start_response)
        for _chunk in result:
            pass
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return time.thread_time() - started


def _table(apps: dict, cases: dict, calls: int) -> None:
    statuses = {name: _call(apps["fast path"], env)[0] for name, env in cases.items()}
    print(f"in-process pulls: CPU µs per pull, best (median) of {ROUNDS} rounds; Python {sys.version.split()[0]}")
    heads = "".join(f"{case + ' ' + statuses[case].split()[0]:>22}" for case in cases)
    print(f"{'app':<22}{heads}{'x bare':>10}")
    bare: dict[str, float] = {}
    for name, app in apps.items():
        # Django is ~10x slower per call: fewer calls keep each round short.
        n = calls if name in ("bare", "fast path") else max(100, calls // 10)
        cells = []
        ratios = []
        for case, environ in cases.items():
            _serve(app, environ, min(n, 1000))  # warm up
            rounds = sorted(_serve(app, environ, n) / n * 1e6 for _ in range(ROUNDS))
            best, median = rounds[0], rounds[ROUNDS // 2]
            if name == "bare":
                bare[case] = best
            ratios.append(best / bare[case])
            cells.append(f"{best:8.2f} ({median:6.2f})")
        print(f"{name:<22}" + "".join(f"{cell:>22}" for cell in cells) + f"{sum(ratios) / len(ratios):>9.1f}x")
    print("x bare: mean over the cases of (µs per pull / the bare app's µs per pull), best rounds")


def _profile(app, cases: dict, calls: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for environ in cases.values():
        _serve(app, environ, calls)
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    sys.exit(main())
