"""Rollups of usage records: kept in step on every insert and delete, rebuilt on demand.

Two tables, so that summaries cost what their date range costs, not what the table holds:

- ``UsageRollup``: one row per owner, model and UTC hour, split into quarter hours,
  because local midnight falls on a quarter hour in every zone in use today (India at
  +05:30, Nepal at +05:45).
- ``DailyUsageRollup``: one row per owner, model and UTC day, holding running totals by
  hour, so that the part of a day before or after any whole hour is one subtraction.

``usage.summary.daily_totals`` reads the daily rows and, in zones whose midnight is not on
a whole hour, the hourly rows of the hours a midnight cuts.

The SQL here serves PostgreSQL and SQLite alike; what they write differently (a record's
buckets, the rebuild's lock, ingestion) is in ``usage.dialects``.
"""

from datetime import datetime, timedelta

from django.db import connection, models, transaction
from django.db.models import QuerySet

from usage import dialects
from usage.models import DailyUsageRollup, UsageRecord, UsageRollup

QUARTER = timedelta(minutes=15)
HOUR = timedelta(hours=1)
IMAGE_COLUMNS = ("images_q0", "images_q1", "images_q2", "images_q3")
EVENT_COLUMNS = ("events_q0", "events_q1", "events_q2", "events_q3")
_COUNTERS = IMAGE_COLUMNS + EVENT_COLUMNS
# images_by_01 .. images_by_24: running totals through the end of each UTC hour.
IMAGES_BY = tuple(f"images_by_{hour:02d}" for hour in range(1, 25))
EVENTS_BY = tuple(f"events_by_{hour:02d}" for hour in range(1, 25))
_DAY_COUNTERS = IMAGES_BY + EVENTS_BY
CHUNK = 5000  # ids per statement, well under every database's limit on parameters


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def count_records(ids: list[int], sign: int = 1) -> None:
    """Count the records with these ids into both rollups (``sign=-1``: out of them).

    Call it in the transaction that inserted (or is about to delete) them, with only the
    rows really inserted, so that a duplicate never counts twice. It uses the same SQL as
    ``rebuild``, so that the rollups are counted one way only.
    """
    records = connection.ops.quote_name(UsageRecord._meta.db_table)
    with connection.cursor() as cursor:
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            source = (
                "(SELECT owner_id, model, image_count, occurred_at "
                f"FROM {records} WHERE id IN ({', '.join(['%s'] * len(chunk))})) AS counted"
            )
            for statement in count_in_sql(source, sign=sign):
                cursor.execute(statement, chunk)


def delete_records(records: QuerySet) -> int:
    """Delete records (the admin's delete) and take them out of the rollups; returns how many."""
    with transaction.atomic():
        # By the rows locked here, not by ``records`` again: a record stored meanwhile
        # that matches the same filter was not counted out, so it must stay.
        rows = list(records.select_for_update().values_list("pk", "owner_id"))
        pks = [pk for pk, _ in rows]
        count_records(pks, sign=-1)
        for start in range(0, len(pks), CHUNK):
            UsageRecord.objects.filter(pk__in=pks[start : start + CHUNK]).delete()
        owners = sorted({owner_id for _, owner_id in rows})
        empty = {column: 0 for column in EVENT_COLUMNS}
        UsageRollup.objects.filter(owner_id__in=owners, **empty).delete()
        DailyUsageRollup.objects.filter(owner_id__in=owners, events_by_24=0).delete()
    return len(rows)


def count_in_sql(source: str, where: str = "WHERE true", sign: int = 1) -> tuple[str, str]:
    """Two statements that count the records of ``source`` (a table, CTE or subquery with
    ``owner_id``, ``model``, ``image_count`` and ``occurred_at``) into the hourly and the daily
    rollups, adding to the rows already there (or, with ``sign=-1``, taking them out).

    The one way the rollups are counted: ``rebuild`` recounts everything with it, ingestion
    counts each batch (``usage.dialects``), ``delete_records`` takes records out. Rows go
    in key order, so that concurrent writers lock them in the same order.
    """
    buckets = dialects.current().BUCKETS
    quarter, hour_of_day = buckets.quarter, buckets.hour_of_day
    images, one = ("image_count", "1") if sign == 1 else ("-image_count", "-1")
    quarters = [f"SUM(CASE WHEN {quarter} = {q} THEN {images} ELSE 0 END)" for q in range(4)]
    quarters += [f"SUM(CASE WHEN {quarter} = {q} THEN {one} ELSE 0 END)" for q in range(4)]
    running = [
        f"SUM(CASE WHEN {hour_of_day} < {by} THEN {images} ELSE 0 END)" for by in range(1, 25)
    ]
    running += [f"SUM(CASE WHEN {hour_of_day} < {by} THEN {one} ELSE 0 END)" for by in range(1, 25)]
    return (
        _counting(UsageRollup, "hour", buckets.hour, _COUNTERS, quarters, source, where),
        _counting(DailyUsageRollup, "day", buckets.day, _DAY_COUNTERS, running, source, where),
    )


def _counting(
    rollup: type[models.Model],
    key: str,
    key_sql: str,
    counters: tuple[str, ...],
    sums: list[str],
    source: str,
    where: str,
) -> str:
    table = connection.ops.quote_name(rollup._meta.db_table)
    additions = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in counters)
    return (
        f"INSERT INTO {table} (owner_id, {key}, model, {', '.join(counters)}) "
        f"SELECT owner_id, {key_sql}, model, {', '.join(sums)} FROM {source} {where} "
        f"GROUP BY owner_id, {key_sql}, model ORDER BY owner_id, {key_sql}, model "
        f"ON CONFLICT (owner_id, {key}, model) DO UPDATE SET {additions}"
    )


def rebuild(owner_id: int | None = None) -> int:
    """Recount rollups from raw records, for one owner or all; returns the rows written.

    For recovery. The rollups are replaced in one transaction while new records wait (readers
    go on), so that none is counted twice or lost.
    """
    records = connection.ops.quote_name(UsageRecord._meta.db_table)
    where, params = ("WHERE owner_id = %s", [owner_id]) if owner_id is not None else ("", [])
    # SQLite needs a WHERE before an upsert's ON CONFLICT when the rows come from a SELECT.
    where = where or "WHERE true"
    written = 0
    with transaction.atomic(), connection.cursor() as cursor:
        dialects.current().lock_records_for_rebuild(cursor)
        for rollup in (UsageRollup, DailyUsageRollup):
            cursor.execute(
                f"DELETE FROM {connection.ops.quote_name(rollup._meta.db_table)} {where}", params
            )
        for statement in count_in_sql(records, where):
            cursor.execute(statement, params)
            written += cursor.rowcount
    return written
