"""Rollups of usage records: kept in step on every insert and delete, rebuilt on demand.

Two tables, so that summaries cost what their date range costs, not what the table holds:

- ``UsageRollup``: one row per owner, model and UTC hour, split into quarter hours,
  because local midnight falls on a quarter hour in every zone in use today (India at
  +05:30, Nepal at +05:45).
- ``DailyUsageRollup``: one row per owner, model and UTC day, holding running totals by
  hour, so that the part of a day before or after any whole hour is one subtraction.

``usage.summary.daily_totals`` reads the daily rows and, in zones whose midnight is not on
a whole hour, the hourly rows of the hours a midnight cuts.
"""

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection, models, transaction
from django.db.models import QuerySet

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
DELETE_CHUNK = 5000


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def add(owner_id: int, records: Iterable[tuple[str, int, datetime]], sign: int = 1) -> None:
    """Count ``(model, image_count, occurred_at)`` records in (or out, with ``sign=-1``).

    One upsert per table, inside the transaction that inserted (or deleted) the records,
    and only for the rows really inserted, so that a duplicate never counts twice.
    """
    hours: dict[tuple[datetime, str], list[int]] = defaultdict(lambda: [0] * 8)
    for model, images, occurred_at in records:
        occurred_at = occurred_at.astimezone(UTC)
        quarter = occurred_at.minute // 15
        row = hours[(hour_of(occurred_at), model)]
        row[quarter] += sign * images
        row[4 + quarter] += sign
    if not hours:
        return
    days: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0] * 48)
    for (hour, model), row in hours.items():
        images, events = sum(row[:4]), sum(row[4:])
        running = days[(hour.date(), model)]
        for by in range(hour.hour, 24):  # every running total through this hour and after
            running[by] += images
            running[24 + by] += events
    # Sorted keys make concurrent writers lock rows in the same order: no deadlocks.
    _upsert(UsageRollup, owner_id, ("hour", "model"), _COUNTERS, sorted(hours.items()))
    _upsert(DailyUsageRollup, owner_id, ("day", "model"), _DAY_COUNTERS, sorted(days.items()))


def delete_records(records: QuerySet) -> int:
    """Delete records (the admin's delete) and take them out of the rollups; returns how many."""
    with transaction.atomic():
        rows = list(
            records.select_for_update().values_list(
                "pk", "owner_id", "model", "image_count", "occurred_at"
            )
        )
        # By the rows locked above, not by ``records`` again: a record stored meanwhile
        # that matches the same filter was not counted out, so it must stay.
        pks = [row[0] for row in rows]
        for start in range(0, len(pks), DELETE_CHUNK):
            UsageRecord.objects.filter(pk__in=pks[start : start + DELETE_CHUNK]).delete()
        by_owner: dict[int, list[tuple[str, int, datetime]]] = defaultdict(list)
        for _, owner_id, model, images, occurred_at in rows:
            by_owner[owner_id].append((model, images, occurred_at))
        for owner_id in sorted(by_owner):
            add(owner_id, by_owner[owner_id], sign=-1)
        empty = {column: 0 for column in EVENT_COLUMNS}
        UsageRollup.objects.filter(owner_id__in=list(by_owner), **empty).delete()
        DailyUsageRollup.objects.filter(owner_id__in=list(by_owner), events_by_24=0).delete()
    return len(rows)


def _upsert(
    rollup: type[models.Model],
    owner_id: int,
    keys: tuple[str, str],
    counters: tuple[str, ...],
    rows: list[tuple[tuple[Any, str], list[int]]],
) -> None:
    """Add ``rows`` (``(key, model), counts``) to ``rollup``'s counters, in one statement."""
    table = connection.ops.quote_name(rollup._meta.db_table)
    columns = ("owner_id", *keys, *counters)
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    additions = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in counters)
    values = ", ".join([placeholders] * len(rows))
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values} "
        f"ON CONFLICT (owner_id, {', '.join(keys)}) DO UPDATE SET {additions}"
    )
    adapt = connection.ops.adapt_datetimefield_value
    params: list[object] = []
    for (key, model), values_ in rows:
        params += [owner_id, adapt(key) if isinstance(key, datetime) else key, model, *values_]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _bucket_sql() -> dict[str, str]:
    """SQL, on this database, for a record's UTC hour and its quarter (0-3), and for an
    hourly rollup's UTC day and its hour of the day."""
    if connection.vendor == "postgresql":
        return {
            "hour": "date_trunc('hour', occurred_at, 'UTC')",
            "quarter": "(extract(minute FROM occurred_at AT TIME ZONE 'UTC')::int / 15)",
            "day": "(hour AT TIME ZONE 'UTC')::date",
            "hour_of_day": "extract(hour FROM hour AT TIME ZONE 'UTC')::int",
        }
    # SQLite stores UTC datetimes as 'YYYY-MM-DD HH:MM:SS[.ffffff]' text.
    return {
        "hour": "substr(occurred_at, 1, 13) || ':00:00'",
        "quarter": "(CAST(substr(occurred_at, 15, 2) AS INTEGER) / 15)",
        "day": "substr(hour, 1, 10)",
        "hour_of_day": "CAST(substr(hour, 12, 2) AS INTEGER)",
    }


def rebuild(owner_id: int | None = None) -> int:
    """Recount rollups from raw records, for one owner or all; returns the rows written.

    For recovery. The rollups are replaced in one transaction while new records for the
    same owners wait, so that none is counted twice or lost. On PostgreSQL, locking the
    owner's user row FOR UPDATE is enough: inserting a record takes a FOR KEY SHARE lock on
    it (the foreign key check, made at once by ``usage.ingest.store``), which waits for
    ours. Readers are never blocked.
    """
    records = connection.ops.quote_name(UsageRecord._meta.db_table)
    hourly = connection.ops.quote_name(UsageRollup._meta.db_table)
    daily = connection.ops.quote_name(DailyUsageRollup._meta.db_table)
    sql = _bucket_sql()
    quarter, hour_of_day = sql["quarter"], sql["hour_of_day"]
    sums = [f"SUM(CASE WHEN {quarter} = {q} THEN image_count ELSE 0 END)" for q in range(4)]
    sums += [f"SUM(CASE WHEN {quarter} = {q} THEN 1 ELSE 0 END)" for q in range(4)]
    images, events = (" + ".join(columns) for columns in (IMAGE_COLUMNS, EVENT_COLUMNS))
    running = [
        f"SUM(CASE WHEN {hour_of_day} < {by} THEN {images} ELSE 0 END)" for by in range(1, 25)
    ]
    running += [
        f"SUM(CASE WHEN {hour_of_day} < {by} THEN {events} ELSE 0 END)" for by in range(1, 25)
    ]
    where, params = ("WHERE owner_id = %s", [owner_id]) if owner_id is not None else ("", [])
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            _lock_writers(cursor, records, owner_id)
        cursor.execute(f"DELETE FROM {hourly} {where}", params)
        cursor.execute(f"DELETE FROM {daily} {where}", params)
        cursor.execute(
            f"INSERT INTO {hourly} (owner_id, hour, model, {', '.join(_COUNTERS)}) "
            f"SELECT owner_id, {sql['hour']}, model, {', '.join(sums)} FROM {records} {where} "
            f"GROUP BY owner_id, {sql['hour']}, model",
            params,
        )
        written = cursor.rowcount
        # The days from the hours just counted: a fraction of the records' rows to read.
        cursor.execute(
            f"INSERT INTO {daily} (owner_id, day, model, {', '.join(_DAY_COUNTERS)}) "
            f"SELECT owner_id, {sql['day']}, model, {', '.join(running)} FROM {hourly} {where} "
            f"GROUP BY owner_id, {sql['day']}, model",
            params,
        )
        return written + cursor.rowcount


def _lock_writers(cursor, records: str, owner_id: int | None) -> None:
    if owner_id is None:
        cursor.execute(f"LOCK TABLE {records} IN SHARE MODE")
        return
    users = connection.ops.quote_name(get_user_model()._meta.db_table)
    cursor.execute(f"SELECT 1 FROM {users} WHERE id = %s FOR UPDATE", [owner_id])
