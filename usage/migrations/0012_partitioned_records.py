"""On PostgreSQL, the raw records partitioned by month, keeping every row and id; the
event ids moved to ``RecordKey`` for idempotency across months (``usage.partitions``).

On SQLite only the two new tables are made: the records stay one plain table with its
unique (owner, event id), and ``RecordKey`` stays empty.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.utils import timezone

from usage.partitions import convert

KEYS = "usage_recordkey"
RECORDS = "usage_usagerecord"


def partition(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        convert(cursor, partitioned=True, now=timezone.now())
        # The daily prune deletes keys by age; keys arrive roughly in time order, so a
        # BRIN index (a few pages, next to nothing per insert) finds them without reading
        # the whole table. Not in the model state: SQLite has no BRIN.
        cursor.execute(f"CREATE INDEX usage_recordkey_age ON {KEYS} USING brin (occurred_at)")
        # Every stored event id, unique per owner under the constraint just dropped.
        cursor.execute(
            f"INSERT INTO {KEYS} (owner_id, event_id, occurred_at) "
            f"SELECT owner_id, event_id, occurred_at FROM {RECORDS} WHERE event_id IS NOT NULL"
        )


def unpartition(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        convert(cursor, partitioned=False, now=timezone.now())


class Migration(migrations.Migration):
    dependencies = [
        ("usage", "0011_budgets"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="RecordRetention",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "kept_from",
                    models.DateTimeField(help_text="Raw records before this moment were dropped."),
                ),
            ],
            options={
                "verbose_name": "record retention",
            },
        ),
        migrations.CreateModel(
            name="RecordKey",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "owner",
                        "event_id",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("event_id", models.CharField(max_length=100)),
                ("occurred_at", models.DateTimeField()),
                (
                    "owner",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
        ),
        migrations.RunPython(partition, unpartition, elidable=False),
    ]
