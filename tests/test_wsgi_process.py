"""What a web server process holds after importing the WSGI module."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness import local

PROBE = """
import gc, json, sys
import danmaku_site.wsgi
print(json.dumps({"frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects()),
                  "api_loaded": "danmaku.api" in sys.modules}))
"""


def run_probe(code: str, var_dir, **env: str) -> dict:
    """Run ``code`` in a fresh process, as a server worker would start; its last line, as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=local.environment(var_dir, **env),
        cwd=local.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_web_process_keeps_its_startup_heap_out_of_garbage_collections(tmp_path):
    # Every worker imports the module itself (no preload). What it loaded
    # stays for the life of the process; a full collection walking it held
    # the GIL for 30-100 ms, the pull's p99 on a node with 1,000 rooms.
    heap = run_probe(PROBE, tmp_path)

    assert heap["api_loaded"], "the URL configuration should load before the freeze"
    assert heap["frozen"] > 50_000
    assert heap["tracked"] < heap["frozen"] / 10


JOBS_PROBE = """
import json, threading
import danmaku_site.wsgi as wsgi
def jobs_thread():
    return any(thread.name == "danmaku-jobs" and thread.is_alive() for thread in threading.enumerate())
imported = jobs_thread()
app = wsgi.serve()
from infra import jobs
print(json.dumps({"after_import": imported, "after_serve": jobs_thread(), "same_app": app is wsgi.application,
                  "jobs": sorted(job.name for job in jobs._loop.jobs)}))
"""


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        (
            "send",
            [
                "danmaku.cache_changes",
                "danmaku.mark_stream_publishes",
                "danmaku.prune_cache_changes",
                "danmaku.republish_held_back",
                "danmaku.republish_room_settings",
                "metrics.flush_tallies",
                "moderation.pre_deadlines",
                "moderation.review_sweep",
            ],
        ),
        ("pull", ["danmaku.republish_room_settings"]),
    ],
)
def test_serving_starts_the_roles_background_jobs_and_importing_starts_none(tmp_path, role, expected):
    process = run_probe(JOBS_PROBE, tmp_path, DANMAKU_ROLE=role)

    assert process == {"after_import": False, "after_serve": True, "same_app": True, "jobs": expected}
