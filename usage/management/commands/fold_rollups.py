"""Count the records still marked uncounted into the rollups: once, or every second."""

import time

from django.core.management.base import BaseCommand

from usage.folding import fold_all


class Command(BaseCommand):
    help = (
        "Count single records still marked uncounted into the rollups (each server process "
        "does this by itself about once a second; this is for servers run with "
        "ROLLUP_FOLD_SECONDS=0, or to catch up by hand). Reads are exact either way."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--every",
            type=float,
            metavar="SECONDS",
            help="Keep going, folding every SECONDS, until stopped (default: fold once).",
        )

    def handle(self, *args, every: float | None, **options):
        while True:
            folded = fold_all()
            if every is None:
                self.stdout.write(self.style.SUCCESS(f"Counted {folded} records."))
                return
            time.sleep(every)
