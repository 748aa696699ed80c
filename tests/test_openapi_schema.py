"""The published contract: each role's OpenAPI schema, byte for byte.

Client generators name their methods after the operation ids and read every
field from this schema, so a change to it must be deliberate: regenerate the
snapshot (the command is in harness/openapi.py) in the commit that means it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

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
