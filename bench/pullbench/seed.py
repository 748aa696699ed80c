"""Rooms, viewers and comments for the pull benchmark, made through the
project's own models and service functions.

Runs inside Django in a process of its own with the server's environment
(same database, same Redis), so the server reads what a real deployment
would hold:

    python -m bench.pullbench.seed prepare '{"rooms": 1000, "users": 40}'
    python -m bench.pullbench.seed send '{"plan": [["hot", 15], ["r0007", 2]], "round_number": 1}'

Each prints one JSON line on stdout. ``prepare`` makes the rooms (limits
lifted so the mixed scenario's sends are all accepted), the users with a
nickname, an avatar thumbnail path and a bearer token. ``send`` posts
comments through ``danmaku_send``: the same validation, limits, store
write and publish as the HTTP send path.
"""

from __future__ import annotations

import json
import os
import random
import sys

HOT_ROOM = "hot"
# Rooms r0000..: the "1,000 rooms" scenarios.
ROOM_PREFIX = "r"
USER_PREFIX = "bench-u"
# Deterministic comments, so every run serves the same kind of bodies.
RANDOM_SEED = 6
# Short, mixed-script comments like a live room's: CJK, Latin, emoji.
TEXTS = (
    "233333",
    "前方高能！！",  # noqa: RUF001 (real full-width punctuation)
    "this goal was insane",
    "主播好厉害啊",
    "lol 哈哈哈哈哈",
    "第一次来，请多关照",  # noqa: RUF001 (real full-width punctuation)
    "gg wp",
    "弹幕护体 🛡️",
    "where is this stream from?",
    "awsl awsl awsl",
    "这个操作太秀了吧",
    "🔥🔥🔥",
    "前排围观，顺便打个卡",  # noqa: RUF001 (real full-width punctuation)
    "can you play that song again",
    "哈哈哈哈笑死我了",
    "nice one!",
)
NICKS = ("小明", "Lucky星", "momo", "夜猫子", "Kai", "草莓味的风", "pixel", "阿杰", "Yuki", "旅行者")
COLORS = ("#ffffff", "#ffffff", "#ffffff", "#fe0302", "#ffff00", "#00cd00", "#4266be")
MODES = ("scroll", "scroll", "scroll", "scroll", "top", "bottom")
# Lifted so a benchmark send is never refused by slow mode or the room cap.
ROOM_FIELDS = {"user_send_interval_ms": 0, "room_send_cap_per_second": 100_000}


def room_slugs(count: int) -> list[str]:
    return [f"{ROOM_PREFIX}{index:04d}" for index in range(count)]


def prepare(*, rooms: int, users: int) -> dict:
    from django.contrib.auth import get_user_model

    from danmaku.models import ApiToken, Room, ViewerProfile

    Room.objects.bulk_create(
        [Room(slug=slug, title=slug, **ROOM_FIELDS) for slug in [HOT_ROOM, *room_slugs(rooms)]],
        ignore_conflicts=True,
    )
    user_model = get_user_model()
    tokens = []
    for index in range(users):
        user, _ = user_model.objects.get_or_create(username=f"{USER_PREFIX}{index:03d}")
        ViewerProfile.objects.update_or_create(
            user=user,
            defaults={
                "nickname": f"{NICKS[index % len(NICKS)]}{index}",
                "avatar_thumb": f"avatars/{USER_PREFIX}{index:03d}.png",
            },
        )
        tokens.append(ApiToken.issue(user, label="pull benchmark")[1])
    from django.conf import settings

    return {
        "rooms": rooms,
        "users": users,
        "tokens": tokens,
        "has_fast_path_switch": hasattr(settings, "DANMAKU_PULL_FAST_PATH"),
    }


def send(*, plan: list[tuple[str, int]], round_number: int = 0) -> dict:
    """Send ``count`` comments to each room of ``plan``; count the outcomes."""
    from django.contrib.auth import get_user_model

    from danmaku.models import Danmaku
    from danmaku.send import danmaku_send

    # The same senders, texts and colours every round: answers of two rounds
    # differ only in their ids and numbers, so sizes stay comparable.
    rng = random.Random(RANDOM_SEED)
    users = list(get_user_model().objects.filter(username__startswith=USER_PREFIX).order_by("username"))
    if not users:
        raise SystemExit("no benchmark users: run prepare first")
    outcomes: dict[str, int] = {}
    ids: list[int] = []
    serial = 0
    for slug, count in plan:
        for _ in range(count):
            serial += 1
            outcome = danmaku_send(
                room_slug=slug,
                user=rng.choice(users),
                # Numbered (fixed width): the moderation task hides one
                # user's repeated text and one text pasted by many (spam
                # and raid rules), and rounds of comments would trip both.
                text=f"{rng.choice(TEXTS)} {round_number % 1000:03d}{serial % 10000:04d}",
                color=rng.choice(COLORS),
                mode=rng.choice(MODES),
                client_id=f"seed-{round_number}-{os.getpid()}-{serial}",
            )
            if outcome.broadcast:
                ids.append(outcome.danmaku.id)
            else:
                outcomes["room_busy"] = outcomes.get("room_busy", 0) + 1
    # Read back: moderation may have changed a status after the send returned.
    for status in Danmaku.objects.filter(id__in=ids).values_list("status", flat=True):
        outcomes[status] = outcomes.get(status, 0) + 1
    return {"sent": serial, "outcomes": outcomes}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("prepare", "send"):
        print(__doc__, file=sys.stderr)
        return 2
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "danmaku_site.settings")
    import django

    django.setup()
    options = json.loads(argv[2])
    result = prepare(**options) if argv[1] == "prepare" else send(**options)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
