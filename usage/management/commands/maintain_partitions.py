"""Create the monthly partitions of the raw records ahead of time (PostgreSQL); daily by cron."""

from django.core.management.base import BaseCommand
from django.utils import timezone

from usage import partitions, retention


class Command(BaseCommand):
    help = (
        "Create the monthly partitions of the raw records that are missing, "
        f"{partitions.AHEAD} months ahead and back as far as ingestion accepts, moving in any "
        "of their records the DEFAULT partition holds. Each server's folding thread does "
        "this once a day; run it daily from cron when the thread is off. PostgreSQL only: "
        "on SQLite there is nothing to do."
    )

    def handle(self, *args, **options):
        if not partitions.is_partitioned():
            self.stdout.write("The records table is not partitioned here (SQLite): nothing to do.")
            return
        created = partitions.ensure_partitions(timezone.now(), retention.kept_from())
        for name in created:
            self.stdout.write(f"Created {name}.")
        self.stdout.write(
            self.style.SUCCESS(
                f"Created {len(created)} partitions; "
                f"{len(partitions.monthly_partitions())} monthly partitions in all."
            )
        )
