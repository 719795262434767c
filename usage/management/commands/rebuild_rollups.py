"""Recount the rollups from the raw records: for recovery, or after a bulk load."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from usage.management.progress import show_progress
from usage.models import UsageRecord, UsageRollup
from usage.rollups import rebuild


class Command(BaseCommand):
    help = (
        "Rebuild the hourly rollups that summaries and dashboards read, from the raw usage "
        "records. Each user's rollups are replaced in one short transaction; that user's new "
        "records wait for it, everyone else carries on."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "usernames", nargs="*", help="Only these users (default: everyone with records)."
        )

    def handle(self, *args, usernames: list[str], **options):
        owner_ids = self.owners(usernames)
        rows = 0
        for done, owner_id in enumerate(owner_ids, start=1):
            rows += rebuild(owner_id)
            show_progress(self.stdout, done, len(owner_ids), "users")
        self.stdout.write(
            self.style.SUCCESS(f"Rebuilt {rows} rollup rows for {len(owner_ids)} users.")
        )

    def owners(self, usernames: list[str]) -> list[int]:
        if not usernames:
            # Users with rollups but no records left too: their rollups must go.
            # order_by(): the models' default orderings would make DISTINCT see whole rows.
            with_records = UsageRecord.objects.order_by().values_list("owner_id", flat=True)
            with_rollups = UsageRollup.objects.order_by().values_list("owner_id", flat=True)
            return sorted(set(with_records.distinct()) | set(with_rollups.distinct()))
        users = dict(
            get_user_model().objects.filter(username__in=usernames).values_list("username", "pk")
        )
        unknown = sorted(set(usernames) - set(users))
        if unknown:
            raise CommandError(f"No such user: {', '.join(unknown)}")
        return sorted(users.values())
