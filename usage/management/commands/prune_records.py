"""Drop raw records older than RECORD_RETENTION_MONTHS; the rollups keep their history."""

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from usage import retention


class Command(BaseCommand):
    help = (
        "Drop the raw records older than RECORD_RETENTION_MONTHS months before the current "
        "one (whole monthly partitions on PostgreSQL: a moment each; row by row on SQLite), "
        "and forget event ids older than ingestion accepts. Dashboards, summaries and daily "
        "totals keep their history from the rollups. Each server's folding thread does this "
        "once a day; run it daily from cron when the thread is off."
    )

    def handle(self, *args, **options):
        result = retention.prune(timezone.now())
        for name in result.dropped:
            self.stdout.write(f"Dropped {name}.")
        if not settings.RECORD_RETENTION_MONTHS:
            kept = "RECORD_RETENTION_MONTHS is off: every raw record is kept"
        else:
            kept = f"raw records are kept from {result.kept_from:%Y-%m-%d}"
        self.stdout.write(
            self.style.SUCCESS(
                f"Dropped {len(result.dropped)} monthly partitions and deleted {result.deleted} "
                f"records; forgot {result.keys_forgotten} old event ids; {kept}."
            )
        )
