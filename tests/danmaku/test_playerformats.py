"""The other players' formats (pure): whatever a comment says, the XML
parses and gives it back, and DPlayer's answer gives it back as text."""

from __future__ import annotations

import html
import xml.etree.ElementTree as ET

import orjson
from hypothesis import given
from hypothesis import strategies as st

from danmaku.playerformats import XML_ILLEGAL, bilibili_xml, dplayer_read


def segment(texts: list[str], *, first_id: int = 1, step_ms: int = 1000) -> dict:
    n = len(texts)
    return {
        "id": list(range(first_id, first_id + n)),
        "progress_ms": [i * step_ms for i in range(n)],
        "color": [0xFFFFFF] * n,
        "mode": [i % 3 for i in range(n)],
        "user": [7] * n,
        "nick": ['a "nick" <b>'] * n,
        "text": texts,
    }


@given(st.lists(st.text(max_size=40), min_size=1, max_size=8))
def test_any_text_survives_the_xml(texts):
    root = ET.fromstring(bilibili_xml([segment(texts)], broadcast_id=3, started_at_ms=1_000_000, offset_ms=0))
    rows = list(root.iter("d"))
    assert [d.text or "" for d in rows] == [XML_ILLEGAL.sub("", text) for text in texts]
    assert [d.get("p").split(",")[1] for d in rows] == [("1", "5", "4")[i % 3] for i in range(len(texts))]


@given(st.lists(st.text(max_size=40), min_size=1, max_size=8))
def test_any_text_reaches_dplayer_as_text_not_markup(texts):
    data = orjson.loads(dplayer_read([segment(texts)], None))["data"]
    assert [html.unescape(row[4]) for row in data] == texts
    assert all("<" not in row[4] and "<" not in row[3] for row in data)


def test_the_limit_keeps_the_latest_accepted_in_playback_order():
    # Ids are accepted order; playback order differs (a late comment on the recording).
    early = {"id": [10, 11], "progress_ms": [5_000, 9_000]}
    late = {"id": [3, 12], "progress_ms": [400_000, 401_000]}
    segments = [
        {**segment(["a", "b"]), **early},
        {**segment(["c", "d"]), **late},
    ]
    data = orjson.loads(dplayer_read(segments, 3))["data"]
    assert [row[4] for row in data] == ["a", "b", "d"]
    assert [row[0] for row in data] == [5.0, 9.0, 401.0]
