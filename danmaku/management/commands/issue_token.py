from django.core.management.base import BaseCommand, CommandError

from danmaku.errors import InvalidInput
from danmaku.models import ApiToken
from danmaku.tokens import PLAYER_DEFAULT_LIFETIME_S, token_issue


class Command(BaseCommand):
    help = (
        "Print a new bearer token for USERNAME (the user is created if missing). "
        "--scope player makes one fit for a third party's page: it may only send, "
        "optionally in one room or on one broadcast's recording, and it expires."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--label", default="", help="What the token is for.")
        parser.add_argument("--scope", choices=ApiToken.Scope.values, default=ApiToken.Scope.FULL)
        parser.add_argument("--room", metavar="SLUG", help="Player tokens: only this room.")
        parser.add_argument("--broadcast", type=int, metavar="ID", help="Player tokens: only this recording.")
        parser.add_argument(
            "--expires-in",
            type=int,
            metavar="SECONDS",
            help=f"Lifetime (player tokens: {PLAYER_DEFAULT_LIFETIME_S} s unless given; full ones: never).",
        )

    def handle(self, *args, username: str, label: str, scope: str, room, broadcast, expires_in, **options):
        try:
            token, raw, created = token_issue(
                username=username,
                label=label,
                scope=scope,
                room_slug=room,
                broadcast_id=broadcast,
                expires_in_s=expires_in,
            )
        except InvalidInput as exc:
            raise CommandError(exc.detail) from None
        if created:
            self.stderr.write(f"created user {username}")
        if token.expires_at is not None:
            self.stderr.write(f"expires at {token.expires_at.isoformat()}")
        self.stdout.write(raw)
