"""Other players' formats for a broadcast's comments: DPlayer's v3 API and
Bilibili's XML (which ArtPlayer's danmuku plugin reads).

Pure Python (no Django): it turns replay segments' columns (the
``items`` of ``danmaku.segments.build_segment``) into bytes.
"""

from __future__ import annotations

import heapq
import html
import re
from collections.abc import Iterable, Iterator
from xml.sax.saxutils import escape, quoteattr

import orjson

# Our modes (0 scroll, 1 top, 2 bottom) as DPlayer types (0 right-to-left,
# 1 top, 2 bottom: the same numbers) and as Bilibili modes (1 scroll, 5 top,
# 4 bottom).
BILIBILI_MODES = (1, 5, 4)
DPLAYER_TYPES = {"right": 0, "top": 1, "bottom": 2}
# Bilibili's default font size.
FONT_SIZE = 25
# Characters XML 1.0 cannot carry at all, even escaped; the send path
# refuses control characters, but older rows may hold them.
# A parser reads a raw CR as a line feed; written as a reference it stays.
CARRIAGE_RETURN = {"\r": "&#13;"}
XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def comments(segments: Iterable[dict]) -> Iterator[tuple[int, int, int, int, int, str, str]]:
    """(progress_ms, id, mode, color, user, nick, text) of every item, in playback order."""
    for items in segments:
        yield from zip(
            items["progress_ms"],
            items["id"],
            items["mode"],
            items["color"],
            items["user"],
            items["nick"],
            items["text"],
            strict=True,
        )


def dplayer_read(segments: Iterable[dict], limit: int | None) -> bytes:
    """DPlayer's read answer: ``{"code": 0, "data": [[time_s, type, color, author, text], ...]}``,
    the ``limit`` most recent comments (by id: the order they were accepted) in playback order,
    author and text HTML-escaped."""
    rows = list(comments(segments))
    if limit is not None and len(rows) > limit:
        kept = {row[1] for row in heapq.nlargest(limit, rows, key=lambda row: row[1])}
        rows = [row for row in rows if row[1] in kept]
    # DPlayer puts author and text into the page with innerHTML: in its
    # format they are HTML, so ours are escaped (a comment is plain text).
    data = [
        [progress / 1000, mode, color, html.escape(nick), html.escape(text)]
        for progress, _, mode, color, _, nick, text in rows
    ]
    return orjson.dumps({"code": 0, "data": data})


def bilibili_xml(segments: Iterable[dict], *, broadcast_id: int, started_at_ms: int, offset_ms: int) -> bytes:
    """Bilibili's XML: ``<d p="time,mode,size,color,ts,pool,uid,id">text</d>`` per comment.

    ``ts`` is when in the broadcast the comment plays (its send time, for
    one sent live), in Unix seconds; ``uid`` is the sender's id.
    """
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?><i><chatserver>danmaku</chatserver>',
        f"<chatid>{int(broadcast_id)}</chatid><source>k-v</source>",
    ]
    for progress, danmaku_id, mode, color, user, _, text in comments(segments):
        ts = (started_at_ms + progress - offset_ms) // 1000
        p = f"{progress / 1000:.3f},{BILIBILI_MODES[mode]},{FONT_SIZE},{color},{ts},0,{user},{danmaku_id}"
        parts.append(f"<d p={quoteattr(p)}>{escape(XML_ILLEGAL.sub('', text), CARRIAGE_RETURN)}</d>")
    parts.append("</i>")
    return "".join(parts).encode()
