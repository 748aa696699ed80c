"""A batch's one read of earlier comments counts repeats and floods as the per-comment queries do."""

from __future__ import annotations

import random

from django.contrib.auth import get_user_model

from danmaku.models import Danmaku
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
