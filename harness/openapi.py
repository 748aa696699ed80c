"""Print one role's OpenAPI schema exactly as the service serves it.

    DANMAKU_ROLE=pull .venv/bin/python -m harness.openapi > tests/snapshots/openapi-pull.json

Each role mounts its own operations when the URL configuration is imported,
so every role needs a process of its own; tests/test_openapi_schema.py runs
this once per role and compares the bytes with the pinned snapshots.
"""

from __future__ import annotations

import os
import sys
import tempfile


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "danmaku_site.settings")
    with tempfile.TemporaryDirectory(prefix="danmaku-openapi-") as var_dir:
        os.environ.setdefault("DANMAKU_VAR_DIR", var_dir)
        import django

        django.setup()
        from django.test import Client

        response = Client().get("/api/v1/openapi.json")
        if response.status_code != 200:
            sys.exit(f"/api/v1/openapi.json answered {response.status_code}")
        sys.stdout.buffer.write(response.content)


if __name__ == "__main__":
    main()
