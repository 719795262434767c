"""Stored model names in their normal form (``usage.model_names``), and the rollup rows of
two spellings of one model merged into one row holding their sum.

Records are renamed in place. A rollup row under an old spelling is added, counter by
counter, into the row of the normal name for the same owner and hour (or day), which it
creates if there is none, and then deleted: integer sums, so the result is exact on
PostgreSQL and SQLite alike, and equal to a rebuild from the renamed records.

Two corner cases that ingestion now refuses but that may be stored: a name that was only
invisible characters becomes ``(unnamed)``, and one that NFKC makes longer than the
column is cut to fit.
"""

from django.db import migrations

from usage.model_names import normal_model_name

MAX_LENGTH = 100  # the model column's length in this migration's state
UNNAMED = "(unnamed)"


def stored_form(name: str) -> str:
    normal = normal_model_name(name)
    while len(normal) > MAX_LENGTH:
        normal = normal_model_name(normal[:MAX_LENGTH])
    return normal or UNNAMED


def normalise_model_names(apps, schema_editor) -> None:
    record_model = apps.get_model("usage", "UsageRecord")
    rollups = [
        (apps.get_model("usage", "UsageRollup"), "hour"),
        (apps.get_model("usage", "DailyUsageRollup"), "day"),
    ]
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Writers wait (readers go on), so that no record arrives under an old spelling
            # between reading the names and renaming them. SQLite has one writer anyway.
            table = connection.ops.quote_name(record_model._meta.db_table)
            cursor.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
        names = set(record_model.objects.order_by().values_list("model", flat=True).distinct())
        for rollup, _key in rollups:
            names |= set(rollup.objects.order_by().values_list("model", flat=True).distinct())
        for old in sorted(names):
            new = stored_form(old)
            if new == old:
                continue
            record_model.objects.filter(model=old).update(model=new)
            for rollup, key in rollups:
                merge_rollup_rows(cursor, connection, rollup, key, old, new)


def merge_rollup_rows(cursor, connection, rollup, key: str, old: str, new: str) -> None:
    """Add the rows of ``old`` into those of ``new`` (same owner and hour or day); drop them."""
    quote = connection.ops.quote_name
    table = quote(rollup._meta.db_table)
    keys = {"owner", key, "model"}
    counters = [
        quote(field.column)
        for field in rollup._meta.concrete_fields
        if field.column and field.name not in keys
    ]
    columns = ", ".join(counters)
    additions = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in counters)
    cursor.execute(
        f"INSERT INTO {table} (owner_id, {key}, model, {columns}) "
        f"SELECT owner_id, {key}, %s, {columns} FROM {table} WHERE model = %s "
        f"ORDER BY owner_id, {key} "
        f"ON CONFLICT (owner_id, {key}, model) DO UPDATE SET {additions}",
        [new, old],
    )
    cursor.execute(f"DELETE FROM {table} WHERE model = %s", [old])


class Migration(migrations.Migration):
    dependencies = [("usage", "0005_audit")]

    operations = [
        # Nothing to undo going back: the normal names are valid names there too.
        migrations.RunPython(normalise_model_names, migrations.RunPython.noop, elidable=True),
    ]
