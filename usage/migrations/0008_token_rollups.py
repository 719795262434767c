"""The API token as a dimension of both rollups: ``token_id`` in their primary keys.

A primary key cannot be widened in place on SQLite, and the rows under the old key do not
say which token counted what, so both tables are dropped, created again with the new key,
and recounted from the raw records (which all exist here), with the records still marked
uncounted counted too and their marks cleared. Going back does the same with the old key.
The recount is this migration's own SQL, frozen here, not ``usage.rollups``: that module
follows the current models, and this must keep working on the tables as they are here.
On PostgreSQL new records wait for the recount (a SHARE lock); readers go on.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

# Each record's buckets, as usage.dialects wrote them when this migration was made.
BUCKETS = {
    "postgresql": {
        "hour": "date_trunc('hour', occurred_at, 'UTC')",
        "quarter": "(extract(minute FROM occurred_at AT TIME ZONE 'UTC')::int / 15)",
        "day": "(occurred_at AT TIME ZONE 'UTC')::date",
        "hour_of_day": "extract(hour FROM occurred_at AT TIME ZONE 'UTC')::int",
    },
    "sqlite": {
        "hour": "substr(occurred_at, 1, 13) || ':00:00'",
        "quarter": "(CAST(substr(occurred_at, 15, 2) AS INTEGER) / 15)",
        "day": "substr(occurred_at, 1, 10)",
        "hour_of_day": "CAST(substr(occurred_at, 12, 2) AS INTEGER)",
    },
}
RUNNING = [f"{kind}_by_{by:02d}" for kind in ("images", "events") for by in range(1, 25)]
QUARTERS = [f"{kind}_q{q}" for kind in ("images", "events") for q in range(4)]


def recount(apps, schema_editor) -> None:
    """Count every record into the (empty, just created) rollups and clear the marks."""
    connection = schema_editor.connection
    quote = connection.ops.quote_name
    records = quote(apps.get_model("usage", "UsageRecord")._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"LOCK TABLE {records} IN SHARE MODE")
        cursor.execute(
            f"DELETE FROM {quote(apps.get_model('usage', 'UncountedRecord')._meta.db_table)}"
        )
    count_all(apps, connection)


def count_all(apps, connection) -> None:
    """Count every record into the rollups of ``apps`` (a migration state), by token if
    they have it. (Also how tests make the rollups of states before this one.)"""
    quote = connection.ops.quote_name
    buckets = BUCKETS[connection.vendor]
    hourly, daily = (
        apps.get_model("usage", "UsageRollup"),
        apps.get_model("usage", "DailyUsageRollup"),
    )
    by_token = any(field.name == "token_id" for field in hourly._meta.concrete_fields)
    token_column, token = (", token_id", ", COALESCE(token_id, 0)") if by_token else ("", "")
    records = quote(apps.get_model("usage", "UsageRecord")._meta.db_table)
    quarter, hour_of_day = buckets["quarter"], buckets["hour_of_day"]
    quarters = [f"SUM(CASE WHEN {quarter} = {q} THEN image_count ELSE 0 END)" for q in range(4)]
    quarters += [f"SUM(CASE WHEN {quarter} = {q} THEN 1 ELSE 0 END)" for q in range(4)]
    running = [
        f"SUM(CASE WHEN {hour_of_day} < {by} THEN image_count ELSE 0 END)" for by in range(1, 25)
    ]
    running += [f"SUM(CASE WHEN {hour_of_day} < {by} THEN 1 ELSE 0 END)" for by in range(1, 25)]
    with connection.cursor() as cursor:
        for rollup, key, columns, sums in (
            (hourly, "hour", QUARTERS, quarters),
            (daily, "day", RUNNING, running),
        ):
            key_sql = buckets[key]
            cursor.execute(
                f"INSERT INTO {quote(rollup._meta.db_table)} "
                f"(owner_id, {key}, model{token_column}, {', '.join(columns)}) "
                f"SELECT owner_id, {key_sql}, model{token}, {', '.join(sums)} FROM {records} "
                f"GROUP BY owner_id, {key_sql}, model{token}"
            )


def counters(names: list[str]) -> list[tuple[str, models.BigIntegerField]]:
    return [(name, models.BigIntegerField(default=0)) for name in names]


def owner() -> models.ForeignKey:
    return models.ForeignKey(
        db_index=False,
        on_delete=django.db.models.deletion.CASCADE,
        related_name="+",
        to=settings.AUTH_USER_MODEL,
    )


def token_id() -> models.BigIntegerField:
    return models.BigIntegerField(
        default=0, help_text="The API token that sent the records; 0 for none."
    )


def key(*fields: str) -> models.CompositePrimaryKey:
    return models.CompositePrimaryKey(
        *fields, blank=True, editable=False, primary_key=True, serialize=False
    )


class Migration(migrations.Migration):
    dependencies = [
        ("usage", "0007_uncounted_records"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # Going back, the old tables are created again empty: this recounts them last.
        migrations.RunPython(migrations.RunPython.noop, recount),
        migrations.DeleteModel(name="UsageRollup"),
        migrations.DeleteModel(name="DailyUsageRollup"),
        migrations.CreateModel(
            name="DailyUsageRollup",
            fields=[
                ("pk", key("owner", "day", "model", "token_id")),
                ("day", models.DateField(help_text="The UTC day.")),
                ("model", models.CharField(max_length=100)),
                ("token_id", token_id()),
                *counters(RUNNING),
                ("owner", owner()),
            ],
            options={"verbose_name": "daily usage rollup"},
        ),
        migrations.CreateModel(
            name="UsageRollup",
            fields=[
                ("pk", key("owner", "hour", "model", "token_id")),
                ("hour", models.DateTimeField(help_text="The start of the UTC hour.")),
                ("model", models.CharField(max_length=100)),
                ("token_id", token_id()),
                *counters(QUARTERS),
                ("owner", owner()),
            ],
            options={"verbose_name": "hourly usage rollup"},
        ),
        migrations.RunPython(recount, migrations.RunPython.noop),
    ]
