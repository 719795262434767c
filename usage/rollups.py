"""Hourly rollups of usage records: kept in step on every insert and delete, rebuilt on demand.

A summary reads at most one row per model and UTC hour in its range, so its cost follows
the length of the range, not the number of records stored. Each row splits its hour into
quarters, because local midnight falls on a quarter hour in every zone in use today
(India at +05:30, Nepal at +05:45): ``usage.summary`` puts each quarter in its local day.
"""

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import QuerySet

from usage.models import UsageRecord, UsageRollup

QUARTER = timedelta(minutes=15)
HOUR = timedelta(hours=1)
IMAGE_COLUMNS = ("images_q0", "images_q1", "images_q2", "images_q3")
EVENT_COLUMNS = ("events_q0", "events_q1", "events_q2", "events_q3")
_COUNTERS = IMAGE_COLUMNS + EVENT_COLUMNS
DELETE_CHUNK = 5000


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def add(owner_id: int, records: Iterable[tuple[str, int, datetime]], sign: int = 1) -> None:
    """Count ``(model, image_count, occurred_at)`` records in (or out, with ``sign=-1``).

    One upsert, inside the transaction that inserted (or deleted) the records, and only
    for the rows that really were inserted, so that a duplicate never counts twice.
    """
    counts: dict[tuple[datetime, str], list[int]] = defaultdict(lambda: [0] * 8)
    for model, images, occurred_at in records:
        occurred_at = occurred_at.astimezone(UTC)
        quarter = occurred_at.minute // 15
        row = counts[(hour_of(occurred_at), model)]
        row[quarter] += sign * images
        row[4 + quarter] += sign
    if counts:
        # Sorted keys make concurrent writers lock rows in the same order: no deadlocks.
        _upsert(owner_id, sorted(counts.items()))


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
    return len(rows)


def _upsert(owner_id: int, rows: list[tuple[tuple[datetime, str], list[int]]]) -> None:
    table = connection.ops.quote_name(UsageRollup._meta.db_table)
    columns = ("owner_id", "hour", "model", *_COUNTERS)
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    additions = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in _COUNTERS)
    values = ", ".join([placeholders] * len(rows))
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values} "
        f"ON CONFLICT (owner_id, hour, model) DO UPDATE SET {additions}"
    )
    adapt = connection.ops.adapt_datetimefield_value
    params: list[object] = []
    for (hour, model), values in rows:
        params += [owner_id, adapt(hour), model, *values]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _bucket_sql() -> tuple[str, str]:
    """SQL for a record's UTC hour and its quarter (0-3), on this database."""
    if connection.vendor == "postgresql":
        return (
            "date_trunc('hour', occurred_at, 'UTC')",
            "(extract(minute FROM occurred_at AT TIME ZONE 'UTC')::int / 15)",
        )
    # SQLite stores UTC datetimes as 'YYYY-MM-DD HH:MM:SS[.ffffff]' text.
    return (
        "substr(occurred_at, 1, 13) || ':00:00'",
        "(CAST(substr(occurred_at, 15, 2) AS INTEGER) / 15)",
    )


def rebuild(owner_id: int | None = None) -> int:
    """Recount rollups from raw records, for one owner or all; returns the rows written.

    For recovery. The rollups are replaced in one transaction while new records for the
    same owners wait, so that none is counted twice or lost. On PostgreSQL, locking the
    owner's user row FOR UPDATE is enough: inserting a record takes a FOR KEY SHARE lock on
    it (the foreign key check), which waits for ours. Readers are never blocked.
    """
    records = connection.ops.quote_name(UsageRecord._meta.db_table)
    rollups = connection.ops.quote_name(UsageRollup._meta.db_table)
    hour, quarter = _bucket_sql()
    sums = [f"SUM(CASE WHEN {quarter} = {q} THEN image_count ELSE 0 END)" for q in range(4)]
    sums += [f"SUM(CASE WHEN {quarter} = {q} THEN 1 ELSE 0 END)" for q in range(4)]
    where, params = ("WHERE owner_id = %s", [owner_id]) if owner_id is not None else ("", [])
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            _lock_writers(cursor, records, owner_id)
        cursor.execute(f"DELETE FROM {rollups} {where}", params)
        cursor.execute(
            f"INSERT INTO {rollups} (owner_id, hour, model, {', '.join(_COUNTERS)}) "
            f"SELECT owner_id, {hour}, model, {', '.join(sums)} FROM {records} {where} "
            f"GROUP BY owner_id, {hour}, model",
            params,
        )
        return cursor.rowcount


def _lock_writers(cursor, records: str, owner_id: int | None) -> None:
    if owner_id is None:
        cursor.execute(f"LOCK TABLE {records} IN SHARE MODE")
        return
    users = connection.ops.quote_name(get_user_model()._meta.db_table)
    cursor.execute(f"SELECT 1 FROM {users} WHERE id = %s FOR UPDATE", [owner_id])
