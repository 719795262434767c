"""On an empty database, create the ``demo`` user and a token, and say how to use them."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from usage.demo import DEMO_USERNAME, create_demo_user, manage_hint
from usage.tokens import create_token


class Command(BaseCommand):
    help = (
        "Create the 'demo' user with a random password and an API token when the database has "
        "no users yet, and print both with a curl command that posts a record."
    )

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="The site's address.")

    def handle(self, *args, url: str, **options):
        if get_user_model().objects.exists():
            self.stdout.write(
                f"Users exist already; log in as '{DEMO_USERNAME}' with the password printed on "
                "the first run, or set a new one with:\n\n  "
                + manage_hint(f"changepassword {DEMO_USERNAME}")
                + "\n"
            )
            return
        user, password = create_demo_user()
        raw = create_token(user, "Demo token").raw
        self.stdout.write(
            self.style.SUCCESS("Created the demo account.")
            + f"\n\n  username    {DEMO_USERNAME}\n  password    {password}\n  API token   {raw}\n"
            f"\nLog in at {url}/ to see the dashboard.\n"
            "\nPost a record:\n\n"
            f"  curl -sS -X POST {url}/api/model-usage \\\n"
            f"    -H 'Authorization: Bearer {raw}' \\\n"
            "    -H 'Content-Type: application/json' \\\n"
            """    -d '{"modelName": "Stable Diffusion", "imageCount": 4}'\n"""
            f"\nRead your records back: {url}/api/model-usage/summary (same header), or browse "
            f"the API at {url}/api/docs/.\nThe admin at {url}/admin/ needs a staff account; "
            f"from this folder, in another terminal:\n\n  {manage_hint('createsuperuser')}\n\n"
            "The password and token are shown only now; keep them.\n"
        )
