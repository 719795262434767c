"""Fill the ``demo`` account with 90 days of realistic image generation, for a first look."""

import random
import uuid
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from usage import costs
from usage.demo import DEMO_USERNAME, get_or_create_demo_user, set_demo_budget, set_demo_prices
from usage.ingest import CleanRecord, store
from usage.management.progress import show_progress
from usage.models import UsageRecord
from usage.rollups import delete_records

BATCH = 1000
# Popularity, and how many images one generation of each model usually makes.
MODELS = {
    "Stable Diffusion XL": (34, (1, 2, 4, 4, 4, 8)),
    "DALL-E 3": (20, (1, 1, 1, 2, 4)),
    "Midjourney v6": (17, (4, 4, 4, 4)),
    "Flux.1 [dev]": (15, (1, 2, 2, 4)),
    "Imagen 3": (8, (1, 2, 4)),
    "Stable Diffusion 1.5": (6, (2, 4, 8, 8)),
}


class Command(BaseCommand):
    help = (
        "Create the 'demo' user if needed and replace its records with DAYS days of realistic "
        "usage ending today, so that every chart on its dashboard has something to show."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=90, help="Days of history (default 90).")
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Do nothing when the demo user already has records (used by ./dev.py run).",
        )
        parser.add_argument("--seed", type=int, default=None, help="Seed for repeatable data.")

    def handle(self, *args, days: int, if_empty: bool, seed: int | None, **options):
        user, password = get_or_create_demo_user()
        if if_empty and UsageRecord.objects.filter(owner=user).exists():
            return
        if password:
            self.stdout.write(f"Created user '{DEMO_USERNAME}' with password: {password}")
        rng = random.Random(seed)
        now = timezone.now()
        records = list(generate(rng, days, now))
        with transaction.atomic():
            delete_records(UsageRecord.objects.filter(owner=user))
            for done in range(0, len(records), BATCH):
                store(user, None, records[done : done + BATCH], now)
                show_progress(self.stdout, min(done + BATCH, len(records)), len(records), "records")
            priced = set_demo_prices(now, days)
        images = sum(record.image_count for record in records)
        budget = set_demo_budget(user)
        unit = costs.currency() if budget.unit == "money" else "images"
        self.stdout.write(f"Budget: {budget.limit} {unit} a month, 85% used so far.")
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded '{DEMO_USERNAME}': {len(records)} generations, {images} images, "
                f"over {days} days; {priced} model prices added."
            )
        )


def generate(rng: random.Random, days: int, now: datetime):
    """A working person's pattern: busier on weekdays and in the evening, growing over time,
    with a favourite model, a few bursts, and a new model tried a few weeks ago."""
    # Spread over a European working day; the dashboard shows them in the viewer's zone.
    zone = ZoneInfo("Europe/Berlin")
    today = now.astimezone(zone).date()
    names = list(MODELS)
    weights = [MODELS[name][0] for name in names]
    for offset in range(days - 1, -1, -1):
        day = today - timedelta(days=offset)
        for _ in range(sessions_on(rng, day, offset, days)):
            name = rng.choices(names, weights)[0]
            if name == "Flux.1 [dev]" and offset > days // 3:
                name = "Stable Diffusion XL"  # tried only in the last month
            hour = rng.choices(range(8, 24), [1, 2, 3, 3, 2, 2, 3, 3, 3, 2, 3, 4, 5, 5, 4, 2])[0]
            moment = datetime.combine(day, time(hour, rng.randrange(60), rng.randrange(60)))
            occurred = moment.replace(tzinfo=zone).astimezone(UTC)
            if occurred > now:
                continue
            yield CleanRecord(
                model=name,
                image_count=rng.choice(MODELS[name][1]),
                occurred_at=occurred,
                event_id=f"demo-{uuid.UUID(int=rng.getrandbits(128))}",
            )


def sessions_on(rng: random.Random, day: date, offset: int, days: int) -> int:
    base = 14 if day.weekday() < 5 else 5
    growth = 0.6 + 0.8 * (days - offset) / days
    burst = 2.2 if rng.random() < 0.06 else 1.0
    return max(0, round(rng.gauss(base * growth * burst, 3)))
