"""Raising the open-file limit for a crowd run by the test process itself."""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Iterator

import pytest


@contextlib.contextmanager
def open_files_for(needed: int) -> Iterator[None]:
    """At least ``needed`` open files (up to twice that where the hard limit
    allows) for the block, or skip: a common default soft limit of 1,024 is
    below a crowd of generator connections plus the server's share."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} open files, the hard limit is {hard}")
    wanted = 2 * needed if hard == resource.RLIM_INFINITY else min(hard, 2 * needed)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
