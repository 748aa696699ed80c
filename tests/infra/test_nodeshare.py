"""Processes of one node sharing their figures (infra.nodeshare)."""

from __future__ import annotations

import os

from infra.nodeshare import REMOVE_AFTER_SECONDS, STALE_SECONDS, NodeShare


def test_each_process_reads_every_live_siblings_share(tmp_path):
    one, two = NodeShare(tmp_path, name="load-1.json"), NodeShare(tmp_path, name="load-2.json")
    two.write({"polls": 2}, now=1000.0)

    seen = one.exchange({"polls": 1}, now=1000.5)

    assert seen == [{"polls": 1}, {"polls": 2}]
    assert sorted(share["polls"] for share in two.everyone(now=1000.5)) == [1, 2]


def test_a_process_that_stopped_writing_is_left_out_then_removed(tmp_path):
    one, gone = NodeShare(tmp_path, name="load-1.json"), NodeShare(tmp_path, name="load-9.json")
    gone.write({"polls": 9}, now=1000.0)

    assert one.siblings(now=1000.0 + STALE_SECONDS + 1) == []
    assert (tmp_path / "load-9.json").exists()
    one.siblings(now=1000.0 + REMOVE_AFTER_SECONDS + 1)
    assert not (tmp_path / "load-9.json").exists()


def test_a_torn_or_foreign_file_is_skipped(tmp_path):
    (tmp_path / "load-5.json").write_bytes(b'{"at": 10')
    (tmp_path / "load-6.json").write_bytes(b"[]")

    assert NodeShare(tmp_path, name="load-1.json").siblings(now=10.0) == []


def test_by_default_a_process_writes_under_its_own_pid(tmp_path):
    share = NodeShare(tmp_path)
    share.write({}, now=1.0)

    assert (tmp_path / f"load-{os.getpid()}.json").exists()
    share.forget()
    assert not (tmp_path / f"load-{os.getpid()}.json").exists()
