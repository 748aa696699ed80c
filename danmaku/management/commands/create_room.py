from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_slug

from danmaku.rooms import room_create


class Command(BaseCommand):
    help = "Create the room SLUG (or update its title if it exists)."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--title", default="", help="Shown on the viewer page; defaults to the slug.")

    def handle(self, *args, slug: str, title: str, **options):
        try:
            validate_slug(slug)
        except ValidationError as exc:
            raise CommandError(f"bad slug {slug!r}: {exc.messages[0]}") from None
        if len(slug) > 50:
            raise CommandError("slug must be at most 50 characters")
        room, created = room_create(slug=slug, title=title)
        self.stdout.write(f"{'created' if created else 'exists'}: room {room.slug} ({room.title})")
