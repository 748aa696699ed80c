from django.core.management.base import BaseCommand, CommandError

from danmaku.broadcasts import broadcast_start, broadcast_stop
from danmaku.errors import DanmakuError
from danmaku.models import Room


class Command(BaseCommand):
    help = "Start or stop room SLUG's broadcast (its comments then replay with its recording)."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=("start", "stop"))
        parser.add_argument("slug")
        parser.add_argument("--recording-url", help="stop: the recording's https URL (editable later in the admin)")

    def handle(self, *args, action: str, slug: str, recording_url: str | None, **options):
        room = Room.objects.filter(slug=slug).first()
        if room is None:
            raise CommandError(f"no room {slug!r}")
        if action == "start" and recording_url is not None:
            raise CommandError("--recording-url goes with stop: the recording exists once the broadcast ends")
        try:
            if action == "start":
                broadcast = broadcast_start(room=room)
            else:
                broadcast = broadcast_stop(room=room, recording_url=recording_url)
        except DanmakuError as exc:
            raise CommandError(exc.detail) from None
        state = "live" if broadcast.live else f"ended, {broadcast.ended_at_ms - broadcast.started_at_ms:,} ms long"
        self.stdout.write(f"broadcast {broadcast.pk} of room {room.slug}: {state}")
