"""The embedded default's per-install key, alone (the settings side: tests/test_production_settings.py)."""

from __future__ import annotations

import threading

import pytest
from django.core.exceptions import ImproperlyConfigured

from danmaku_site.secretkey import KEY_FILE_NAME, install_secret_key

THREADS = 8
ROUNDS = 10


def test_threads_racing_on_a_fresh_dir_all_get_the_key_that_was_kept(tmp_path):
    for round_number in range(ROUNDS):
        var_dir = tmp_path / str(round_number)
        barrier = threading.Barrier(THREADS, timeout=30)
        keys: list[str] = []

        def start(barrier=barrier, var_dir=var_dir, keys=keys) -> None:
            barrier.wait()
            keys.append(install_secret_key(var_dir))

        threads = [threading.Thread(target=start) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

        assert len(keys) == THREADS
        assert set(keys) == {(var_dir / KEY_FILE_NAME).read_text().strip()}
        assert [path.name for path in var_dir.iterdir()] == [KEY_FILE_NAME]


@pytest.mark.parametrize("content", ["", "\n", "short-key"])
def test_a_file_without_a_usable_key_is_refused_not_used(tmp_path, content):
    (tmp_path / KEY_FILE_NAME).write_text(content)

    with pytest.raises(ImproperlyConfigured, match="delete it"):
        install_secret_key(tmp_path)
