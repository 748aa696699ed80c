"""The published contract: each role's OpenAPI schema, byte for byte.

Client generators name their methods after the operation ids and read every
field from this schema, so a change to it must be deliberate: regenerate the
snapshot (the command is in harness/openapi.py) in the commit that means it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from danmaku_site.api import api
from harness import local

SNAPSHOTS = local.BASE_DIR / "tests" / "snapshots"


@pytest.mark.parametrize("role", ["all", "pull", "send"])
def test_each_role_serves_its_pinned_openapi_schema(role, tmp_path):
    served = subprocess.run(
        [sys.executable, "-m", "harness.openapi"],
        env=local.environment(tmp_path, DANMAKU_ROLE=role),
        cwd=local.BASE_DIR,
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout

    assert served == (SNAPSHOTS / f"openapi-{role}.json").read_bytes()


def test_the_schema_is_built_once_per_process(client, monkeypatch):
    # Building it costs tens of milliseconds of CPU: rebuilt per request,
    # /api/v1/openapi.json would be a cheap way to load a node.
    from ninja import main as ninja_main

    built = []
    real = ninja_main.get_schema
    monkeypatch.setattr(ninja_main, "get_schema", lambda **kw: built.append(kw) or real(**kw))
    monkeypatch.setattr(api, "_schemas", {})

    answers = [client.get("/api/v1/openapi.json") for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert answers[0].content == answers[1].content == answers[2].content
    assert len(built) == 1
