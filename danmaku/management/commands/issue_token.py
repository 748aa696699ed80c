from django.core.management.base import BaseCommand

from danmaku.tokens import token_issue


class Command(BaseCommand):
    help = "Print a new bearer token for USERNAME (the user is created if missing)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--label", default="", help="What the token is for.")

    def handle(self, *args, username: str, label: str, **options):
        _, raw, created = token_issue(username=username, label=label)
        if created:
            self.stderr.write(f"created user {username}")
        self.stdout.write(raw)
