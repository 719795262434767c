"""SQLite, the zero-install default of ``./dev.py run``: an insert, then the rollups by id.

SQLite has no data-modifying CTE, so a batch is one insert that returns the ids it really
inserted, then the two rollup upserts of those ids (``usage.rollups.count_records``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import connection, transaction

from usage import rollups
from usage.dialects import RECORD_COLUMNS, Buckets
from usage.models import ModelPrice, UsageRecord

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.utils import CursorWrapper

    from usage.ingest import CleanRecord

# SQLite stores UTC datetimes as 'YYYY-MM-DD HH:MM:SS[.ffffff]' text.
BUCKETS = Buckets(
    hour="substr(occurred_at, 1, 13) || ':00:00'",
    quarter="(CAST(substr(occurred_at, 15, 2) AS INTEGER) / 15)",
    day="substr(occurred_at, 1, 10)",
    hour_of_day="CAST(substr(occurred_at, 12, 2) AS INTEGER)",
)

# SQLite has no GROUPING SETS: the two sums one after the other.
BY_BUCKET_AND_TOKEN = (
    "SELECT bucket, model, SUM(images) AS images, SUM(events) AS events, NULL AS token_id "
    "FROM pieces GROUP BY bucket, model HAVING SUM(events) > 0 UNION ALL "
    "SELECT NULL, NULL, SUM(images), SUM(events), token_id "
    "FROM pieces GROUP BY token_id HAVING SUM(events) > 0"
)


def insert_and_count(
    owner_id: int, token_id: int | None, records: Sequence[CleanRecord], now: datetime
) -> int:
    """Insert the records, then count the rows really inserted into both rollups, in one
    transaction."""
    with transaction.atomic():
        inserted = _insert(owner_id, token_id, records, now)
        rollups.count_records(inserted)
    return len(inserted)


def _insert(
    owner_id: int, token_id: int | None, records: Sequence[CleanRecord], now: datetime
) -> list[int]:
    """Insert the records; returns the ids of the rows inserted."""
    adapt = connection.ops.adapt_datetimefield_value
    row = "(" + ", ".join(["%s"] * len(RECORD_COLUMNS)) + ")"
    params: list[Any] = []
    for r in records:
        params += [owner_id, r.model, r.image_count, adapt(r.occurred_at)]
        params += [adapt(now), r.event_id, token_id]
    sql = (
        f"INSERT INTO {connection.ops.quote_name(UsageRecord._meta.db_table)} "
        f"({', '.join(RECORD_COLUMNS)}) VALUES {', '.join([row] * len(records))} "
        "ON CONFLICT (owner_id, event_id) DO NOTHING RETURNING id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def count_records(ids: list[int], sign: int) -> None:
    """The two upserts, one after the other: SQLite has no data-modifying CTE, and one
    writer at a time, so the order they take does not matter."""
    with connection.cursor() as cursor:
        for statement in rollups.count_in_sql(rollups.records_by_id(len(ids)), sign=sign):
            cursor.execute(statement, ids)


def fold(limit: int) -> int:
    """Nothing is ever left uncounted here: each insert counts its records at once."""
    return 0


def repeating_cursor(database: BaseDatabaseWrapper = connection) -> CursorWrapper:
    """Django's own cursor: Python's sqlite3 module keeps the statements it last ran
    compiled by itself."""
    return database.cursor()


def moment(value: datetime) -> str:
    # As Django stores it: UTC, no offset, microseconds only when there are some (a time
    # with none sorts first among its second's, as it should).
    return f"'{value.astimezone(UTC):%Y-%m-%d %H:%M:%S}'"


def prices(database: BaseDatabaseWrapper) -> list[tuple[str, datetime, Decimal]]:
    """Every price, through the ORM: SQLite keeps decimals and times as floats and text,
    which Django's converters read back exactly (to the field's decimals)."""
    return list(
        ModelPrice.objects.using(database.alias).values_list(
            "model", "valid_from", "price_per_image"
        )
    )


def lock_records_for_rebuild(cursor: CursorWrapper) -> None:
    """Nothing to take: SQLite lets one connection write at a time, and the rebuild's first
    DELETE makes it that writer until it commits, so new records wait anyway."""
