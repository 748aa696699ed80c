"""Fill the demo room with comments from a few demo users.

`make run` starts it beside gunicorn when DANMAKU_DEMO is on. Every comment
goes through the real send service, so slow mode, the room cap and the
word filter apply as for anyone: the users take turns, and with four of
them at the default 1.5 s pace each sends every 6 s, above the default 2 s
slow mode. A refused comment is counted and skipped, never retried.
"""

from __future__ import annotations

import logging
import os
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from danmaku.errors import DanmakuError
from danmaku.models import Room
from danmaku.send import danmaku_send

logger = logging.getLogger(__name__)

DEMO_USERNAMES = ("demo-aiko", "demo-ben", "demo-chidi", "demo-dana")
# (text, color, mode): mostly scrolling, now and then a pinned one.
DEMO_LINES = (
    ("hello from the demo sender", "#ffffff", "scroll"),
    ("first!", "#ffd166", "scroll"),
    ("this part is great", "#ffffff", "scroll"),
    ("8888888", "#06d6a0", "scroll"),
    ("who else is watching live?", "#ffffff", "scroll"),
    ("welcome to the demo room", "#ef476f", "top"),
    ("lol", "#ffffff", "scroll"),
    ("nice colors", "#118ab2", "scroll"),
    ("try sending one yourself: log in first", "#ffd166", "bottom"),
    ("wave from the back row", "#ffffff", "scroll"),
)


class Command(BaseCommand):
    help = "Send demo comments to a room through the real send service."

    def add_arguments(self, parser):
        parser.add_argument("--room", default="demo", help="Slug of the room (default: demo).")
        parser.add_argument("--count", type=int, default=0, help="Stop after this many comments; 0: no limit.")
        parser.add_argument("--seconds", type=float, default=0, help="Stop after this long; 0: no limit.")
        parser.add_argument("--interval-ms", type=int, default=1500, help="Pause between two comments.")
        parser.add_argument(
            "--if-enabled",
            action="store_true",
            help="Exit at once unless DANMAKU_DEMO is on (what `make run` passes).",
        )
        parser.add_argument(
            "--stop-with-parent",
            action="store_true",
            help="Exit when the parent process (gunicorn under `make run`) is gone.",
        )

    def handle(self, *args, room: str, count: int, seconds: float, interval_ms: int, **options):
        if options["if_enabled"] and not settings.DANMAKU_DEMO:
            return
        if count < 0 or seconds < 0 or interval_ms < 0:
            raise CommandError("--count, --seconds and --interval-ms must not be negative")
        if not Room.objects.filter(slug=room).exists():
            raise CommandError(f"no room {room!r}; create it with: manage.py create_room {room}")
        users = [_demo_user(name) for name in DEMO_USERNAMES]
        parent = os.getppid()
        deadline = time.monotonic() + seconds if seconds else None
        sent = refused = 0
        logger.info("demo sender: room %s, one comment every %d ms", room, interval_ms)
        try:
            for n in _counter(count):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if options["stop_with_parent"] and os.getppid() != parent:
                    break
                text, color, mode = DEMO_LINES[n % len(DEMO_LINES)]
                try:
                    danmaku_send(room_slug=room, user=users[n % len(users)], text=text, color=color, mode=mode)
                    sent += 1
                except DanmakuError as exc:
                    refused += 1
                    logger.info("demo sender: comment refused: %s", exc.detail)
                if interval_ms and n + 1 != count:
                    time.sleep(interval_ms / 1000)
        except KeyboardInterrupt:
            pass
        self.stdout.write(f"demo sender: {sent} sent, {refused} refused")


def _demo_user(username: str):
    user, created = get_user_model().objects.get_or_create(username=username)
    if created:
        # Demo accounts only post; nobody logs in as them.
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def _counter(count: int):
    n = 0
    while not count or n < count:
        yield n
        n += 1
