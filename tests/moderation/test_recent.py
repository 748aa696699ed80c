"""A batch's one read of earlier comments counts repeats and floods as the per-comment queries do."""

from __future__ import annotations

import random

from django.contrib.auth import get_user_model

from danmaku.models import Danmaku
from moderation import recent as recent_module
from moderation import services


def test_batch_counts_equal_the_per_comment_queries(room):
    rng = random.Random(7)
    users = [get_user_model().objects.create_user(f"flood-{n}") for n in range(8)]
    texts = ["buy cheap followers now", "buy cheap followers now!!", "hello there friends", "gg", "gg!"]
    start = 1_000_000_000_000
    rows = [
        Danmaku(room=room, user=rng.choice(users), text=rng.choice(texts), ts_ms=start + rng.randrange(0, 80_000))
        for _ in range(300)
    ]
    Danmaku.objects.bulk_create(rows)
    batch = list(Danmaku.objects.order_by("?")[:60])

    recent = services.recent_comments(batch)

    for danmaku in batch:
        assert recent.repeat_count(
            danmaku, window_ms=services.REPEAT_WINDOW_MS, scan_limit=services.REPEAT_SCAN_LIMIT
        ) == services._repeat_count(danmaku)
        if len(services._repeat_key(danmaku.text)) >= services.FLOOD_MIN_CHARS:
            assert recent.flood_senders(
                danmaku, window_ms=services.FLOOD_WINDOW_MS, scan_limit=services.FLOOD_SCAN_LIMIT
            ) == services._flood_senders(danmaku)


def test_batch_and_single_verdicts_agree(room):
    users = [get_user_model().objects.create_user(f"raider-{n}") for n in range(6)]
    now = 2_000_000_000_000
    made = [
        Danmaku.objects.create(room=room, user=user, text="join my raid channel today", ts_ms=now + n)
        for n, user in enumerate(users)
    ]
    recent = services.recent_comments(made)

    batch = [services.moderate_decision(danmaku=d, recent=recent).action for d in made]
    single = [services.moderate_decision(danmaku=d).action for d in made]

    assert batch == single
    assert batch[-1] == "block"  # the fifth sender and on: a flood


def test_flood_counts_from_the_index_equal_the_scan_past_its_limit(room):
    """A room with more rows in the window than the scan reads: comments
    whose same-text rows lie beyond the first 500 fall back to the scan,
    the rest are counted from the index; every count is the query's."""
    flood_texts = ["same text every time", "another repeated line", "third common phrase"]
    _busy_room(room, seed=11, senders=30, texts=flood_texts, repeated_share=0.08, rows=1_400, span_ms=9_000)
    repeated = list(Danmaku.objects.filter(text__in=flood_texts).order_by("?")[:40])
    batch = repeated + list(Danmaku.objects.exclude(text__in=flood_texts).order_by("?")[:40])

    recent = services.recent_comments(batch)

    window, limit = services.FLOOD_WINDOW_MS, services.FLOOD_SCAN_LIMIT
    rows_of_room = recent._by_room[room.id]
    paths = set()
    for danmaku in batch:
        key = recent.key_of(danmaku.id, danmaku.text)
        from_index = recent._flood_from_index(danmaku, rows_of_room, key, window_ms=window, scan_limit=limit)
        paths.add("scan" if from_index is None else "index" if from_index == 1 else "index, counted")
        assert recent.flood_senders(danmaku, window_ms=window, scan_limit=limit) == services._flood_senders(danmaku)
    # Both ways were taken, and the index counted other senders.
    assert paths == {"scan", "index", "index, counted"}


def test_a_batch_reads_part_of_a_busy_window_and_asks_the_database_where_that_is_not_enough(room, monkeypatch):
    """Rows before the batch's span are read up to ROWS_BEFORE: a comment
    whose scan could run past them is counted by the per-comment query,
    the others from what was read; every count is the query's."""
    monkeypatch.setattr(recent_module, "ROWS_BEFORE", 700)
    flood_texts = ["same text every time", "another repeated line"]
    start = _busy_room(room, seed=5, senders=40, texts=flood_texts, repeated_share=0.1, rows=1_500, span_ms=9_500)
    # The batch: the last second's comments, the window behind them busy.
    batch = list(Danmaku.objects.filter(ts_ms__gte=start + 8_500).order_by("?")[:60])
    asked = []

    def query_flood(danmaku):
        asked.append(danmaku.id)
        return services._flood_senders(danmaku)

    recent = recent_module.RecentComments(
        batch,
        key=services._repeat_key,
        query_flood=query_flood,
        flood_window_ms=services.FLOOD_WINDOW_MS,
        flood_min_chars=services.FLOOD_MIN_CHARS,
        repeat_window_ms=services.REPEAT_WINDOW_MS,
    )
    window, limit = services.FLOOD_WINDOW_MS, services.FLOOD_SCAN_LIMIT
    flood_checked = [d for d in batch if len(services._repeat_key(d.text)) >= services.FLOOD_MIN_CHARS]
    for danmaku in flood_checked:
        assert recent.flood_senders(danmaku, window_ms=window, scan_limit=limit) == services._flood_senders(danmaku)
    # The window was read in part, and both ways were taken.
    assert len(recent._by_room[room.id]) < 1_500
    assert 0 < len(asked) < len(flood_checked)
    # A comment of the span outside the batch (its form and sender not indexed) counts alike.
    in_batch = {danmaku.id for danmaku in batch}
    span = Danmaku.objects.filter(
        ts_ms__gte=min(d.ts_ms for d in batch), ts_ms__lte=max(d.ts_ms for d in batch), text__in=flood_texts
    ).order_by("-ts_ms")
    outsider = next(danmaku for danmaku in span if danmaku.id not in in_batch)
    assert recent.flood_senders(outsider, window_ms=window, scan_limit=limit) == services._flood_senders(outsider)


def _busy_room(
    room, *, seed: int, senders: int, texts: list[str], repeated_share: float, rows: int, span_ms: int
) -> int:
    """``rows`` comments within ``span_ms`` of a start time (returned): a
    share of them one of ``texts``, the rest each its own."""
    rng = random.Random(seed)
    users = [get_user_model().objects.create_user(f"busy-{seed}-{n}") for n in range(senders)]
    start = 1_000_000_000_000 * seed
    made = []
    for n in range(rows):
        text = rng.choice(texts) if rng.random() < repeated_share else f"unique comment number {n}"
        made.append(Danmaku(room=room, user=rng.choice(users), text=text, ts_ms=start + rng.randrange(0, span_ms)))
    Danmaku.objects.bulk_create(made)
    return start
