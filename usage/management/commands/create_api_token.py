"""Create an API token for a user and print it; the raw token is shown only this once."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from usage.problems import Problem
from usage.tokens import create_token


class Command(BaseCommand):
    help = "Create an API token for USERNAME. The raw token is the last line of output."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="API token", help="A label, e.g. 'Work laptop'.")

    def handle(self, *args, username: str, name: str, **options):
        User = get_user_model()
        try:
            owner = User.objects.get_by_natural_key(username)
        except User.DoesNotExist:
            raise CommandError(f"No user named {username!r}.") from None
        name = name.strip()
        if not 1 <= len(name) <= 100:
            raise CommandError("--name must be 1 to 100 characters.")
        try:
            new = create_token(owner, name)
        except Problem as problem:  # the owner already has as many active tokens as allowed
            raise CommandError(problem.message) from None
        self.stdout.write(
            f"Created token {new.token.display_prefix} ({new.token.name}) for {username}."
        )
        self.stdout.write("Copy it now: it is not stored and cannot be shown again.")
        self.stdout.write(new.raw)
