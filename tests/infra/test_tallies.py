"""Tallies: keys counted per thread, added up by their label at a flush."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from infra.metrics import SENDS
from infra.tallies import FileCounts


def test_keys_with_the_same_label_add_up_in_one_series(tmp_path):
    outcomes = {201: "accepted", 401: "refused", 403: "refused"}
    counts = FileCounts(SENDS, str(tmp_path), "sends", outcomes.__getitem__)
    for status in (201, 401, 403, 403):
        counts.inc(status)
    counts.flush()
    counts.inc(401)
    counts.flush()

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    assert registry.get_sample_value("danmaku_sends_total", {"outcome": "refused"}) == 4
    assert registry.get_sample_value("danmaku_sends_total", {"outcome": "accepted"}) == 1
