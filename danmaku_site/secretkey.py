"""The embedded default's signing key: random, made once per install, kept in the var directory.

A key written into the source is public, and anyone who knows it can forge
sessions and signed values; so an install without DJANGO_SECRET_KEY makes
its own the first time it starts and keeps it in ``<var dir>/secret_key``
(mode 0600). Production nodes share one key from the environment instead.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

KEY_FILE_NAME = "secret_key"
# 64 random bytes (86 URL-safe characters): well past Django's check for
# 50 characters and 5 distinct ones.
KEY_BYTES = 64
# A file holding less than this was not written by us: refuse it rather
# than sign with it.
MIN_KEY_CHARS = 50


def install_secret_key(var_dir: Path) -> str:
    """The key kept in ``var_dir``, made there first if there is none."""
    path = Path(var_dir) / KEY_FILE_NAME
    if not path.exists():
        _create(path)
    key = path.read_text(encoding="ascii").strip()
    if len(key) < MIN_KEY_CHARS:
        raise ImproperlyConfigured(
            f"{path} holds no usable secret key (under {MIN_KEY_CHARS} characters): "
            "delete it to have a new one made, or set DJANGO_SECRET_KEY"
        )
    return key


def _create(path: Path) -> None:
    # The key is written whole to a temporary file (mkstemp: mode 0600) and
    # then hard-linked into place. link() refuses to replace an existing
    # file, so when two workers start together on a fresh install the first
    # link wins and the other reads that key; no one ever reads half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{KEY_FILE_NAME}.")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_urlsafe(KEY_BYTES) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)
