"""PostgreSQL, what production runs: ingestion in one statement, buckets by its date functions.

Ingestion is the hot path, and most requests carry one record. A request's records are
inserted by one statement, the same whatever the batch size (a round trip costs more than
the work it carries), and the rows really inserted are, in the same statement:

- for a single record or a small batch, marked uncounted (``UncountedRecord``), for the
  next fold to count in bulk: two wide rollup rows rewritten per record cost three times
  the write of the record itself;
- for a larger batch, counted into both rollups at once, where the upserts are shared by
  the batch's records.

``fold`` counts uncounted records into the rollups, many at a time, in one statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING

import psycopg
from django.db import connection
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper

from usage import folding, rollups
from usage.dialects import RECORD_COLUMNS, Buckets
from usage.models import ModelPrice, RecordKey, UncountedRecord, UsageRecord

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

    from usage.ingest import CleanRecord

_UTC = "occurred_at AT TIME ZONE 'UTC'"
BUCKETS = Buckets(
    hour="date_trunc('hour', occurred_at, 'UTC')",
    quarter=f"(extract(minute FROM {_UTC})::int / 15)",
    day=f"({_UTC})::date",
    hour_of_day=f"extract(hour FROM {_UTC})::int",
)

# Both sums in one pass over the pieces, which are read once.
BY_BUCKET_AND_TOKEN = (
    "SELECT bucket, model, CAST(SUM(images) AS BIGINT) AS images, "
    "CAST(SUM(events) AS BIGINT) AS events, token_id FROM pieces "
    "GROUP BY GROUPING SETS ((bucket, model), (token_id)) HAVING SUM(events) > 0"
)

# Batches up to this size are left for the fold; larger ones are counted at once.
DEFER_UP_TO = 10


def insert_and_count(
    owner_id: int, token_id: int | None, records: Sequence[CleanRecord], now: datetime
) -> int:
    """Insert the batch and count the inserted rows, or mark them uncounted, in one statement.

    The batch travels as four arrays, so that the statement is the same for any batch size,
    and so it is prepared once per connection: parsing and planning the counting one's
    ~12 000 characters cost five times what executing it does. Outside a transaction (a
    request) the statement is its own: no BEGIN and COMMIT round trips around it.
    """
    deferred = len(records) <= DEFER_UP_TO
    params = [
        owner_id,
        now,
        token_id,
        [r.model for r in records],
        [r.image_count for r in records],
        [r.occurred_at for r in records],
        [r.event_id for r in records],
    ]
    with prepared_cursor() as cursor:
        cursor.execute(_insert_and_defer_sql() if deferred else _insert_and_count_sql(), params)
        inserted = cursor.fetchone()[0]
    if deferred:
        folding.keep_folding()
    return inserted


def count_records(ids: list[int], sign: int) -> None:
    """Both upserts in one statement, shaped as ingestion's and the fold's, so that every
    writer of the rollups locks their rows in the same order. (As two statements, hourly
    then daily, it deadlocked with folds, which PostgreSQL runs daily first.)"""
    hourly, daily = rollups.count_in_sql(rollups.records_by_id(len(ids)), sign=sign)
    with connection.cursor() as cursor:
        cursor.execute(f"WITH hourly AS ({hourly}), daily AS ({daily}) SELECT 1", ids * 2)


def fold(limit: int) -> int:
    """Count up to ``limit`` uncounted records into both rollups and forget them, in one
    statement; returns how many were taken.

    Rows another fold has taken are skipped, not waited for, so folds in several processes
    share the work; each row is taken by one of them, and its counts and its deletion
    commit together. A row whose record is gone is dropped without counting.
    """
    with prepared_cursor() as cursor:
        cursor.execute(_fold_sql(), [limit])
        return cursor.fetchone()[0]


class _PreparingCursor(psycopg.Cursor):
    """Binds parameters on the server and prepares every statement on its first run.

    Django's own cursors bind on the client, which cannot be prepared, and Django turns
    psycopg's automatic preparing off (for connection poolers in transaction mode, which
    this site does not use).
    """

    def execute(self, query, params=None, *, prepare=None, binary=None):
        return super().execute(query, params, prepare=True, binary=binary)


class _LoggedCursor(CursorDebugWrapper):
    """Logs a statement as written: a prepared one is not sent as text, so Django's usual
    reading of what was sent finds nothing."""

    def execute(self, sql, params=None):
        with self.debug_sql(sql, params):
            return CursorWrapper.execute(self, sql, params)


def prepared_cursor(database: BaseDatabaseWrapper = connection) -> CursorWrapper:
    """A Django cursor over a ``_PreparingCursor``: errors wrapped and queries counted and
    logged as Django's own are. The prepared statement lives as long as the (persistent)
    connection (psycopg keeps the 100 last used)."""
    return _django_cursor(database, _PreparingCursor)


def repeating_cursor(database: BaseDatabaseWrapper = connection) -> CursorWrapper:
    """A Django cursor that binds on the server, so that psycopg prepares a statement once
    it has run ``prepare_threshold`` times (5) on the connection: a summary of a range that
    many ask for (the last 30 days) is planned once, one asked for once is not kept."""
    return _django_cursor(database, psycopg.Cursor)


def moment(value: datetime) -> str:
    return f"TIMESTAMPTZ '{value.isoformat()}'"


def prices(database: BaseDatabaseWrapper) -> list[tuple[str, datetime, Decimal]]:
    """Every price, by hand rather than through the ORM: every summary and dashboard reads
    them, and building the query cost three times what running it does. psycopg reads
    ``numeric`` as ``Decimal`` and ``timestamptz`` in the connection's zone, UTC."""
    price = ModelPrice._meta
    with database.cursor() as cursor:
        cursor.execute(
            "SELECT model, valid_from, price_per_image FROM "
            f"{database.ops.quote_name(price.db_table)}"
        )
        return cursor.fetchall()


def _django_cursor(database: BaseDatabaseWrapper, kind: type[psycopg.Cursor]) -> CursorWrapper:
    database.ensure_connection()
    cursor = kind(database.connection)
    if database.queries_logged:
        return _LoggedCursor(cursor, database)
    return database.make_cursor(cursor)


def _insert_sql(returning: str) -> str:
    """The insert of a batch (as arrays), skipping event ids the owner already has.

    The records table is partitioned by month (``usage.partitions``), so it cannot refuse
    an event id by itself: the ids go into ``RecordKey`` first, and only the records whose
    ids came back new (or that have none) are inserted. A concurrent request with the same
    id waits on the key's row until the first commits, then inserts nothing.
    """
    quote = connection.ops.quote_name
    table = quote(UsageRecord._meta.db_table)
    keys = quote(RecordKey._meta.db_table)
    return (
        "given AS (SELECT %s::integer AS owner_id, %s::timestamptz AS received_at, "
        "%s::bigint AS token_id, u.* "
        "FROM unnest(%s::varchar[], %s::int[], %s::timestamptz[], %s::varchar[]) "
        "AS u(model, image_count, occurred_at, event_id)), "
        f"keyed AS (INSERT INTO {keys} (owner_id, event_id, occurred_at) "
        "SELECT owner_id, event_id, occurred_at FROM given WHERE event_id IS NOT NULL "
        "ON CONFLICT (owner_id, event_id) DO NOTHING RETURNING event_id), "
        f"batch AS (INSERT INTO {table} ({', '.join(RECORD_COLUMNS)}) "
        f"SELECT {', '.join(RECORD_COLUMNS)} FROM given "
        "WHERE event_id IS NULL OR event_id IN (SELECT event_id FROM keyed) "
        f"RETURNING {returning})"
    )


# Each statement is built once per process, not per request: it is the same every time.
@lru_cache(maxsize=1)
def _insert_and_count_sql() -> str:
    hourly, daily = rollups.count_in_sql("batch")
    return (
        f"WITH {_insert_sql('owner_id, model, image_count, occurred_at, token_id')}, "
        f"hourly AS ({hourly}), daily AS ({daily}) "
        "SELECT count(*) FROM batch"
    )


@lru_cache(maxsize=1)
def _insert_and_defer_sql() -> str:
    uncounted = connection.ops.quote_name(UncountedRecord._meta.db_table)
    return (
        f"WITH {_insert_sql('id, owner_id')}, "
        f"marked AS (INSERT INTO {uncounted} (record_id, owner_id) "
        "SELECT id, owner_id FROM batch) "
        "SELECT count(*) FROM batch"
    )


@lru_cache(maxsize=1)
def _fold_sql() -> str:
    quote = connection.ops.quote_name
    uncounted = quote(UncountedRecord._meta.db_table)
    records = quote(UsageRecord._meta.db_table)
    hourly, daily = rollups.count_in_sql("counted")
    return (
        f"WITH taken AS (DELETE FROM {uncounted} WHERE record_id IN ("
        f"SELECT record_id FROM {uncounted} ORDER BY record_id LIMIT %s "
        "FOR UPDATE SKIP LOCKED) RETURNING record_id), "
        "counted AS (SELECT r.owner_id, r.model, r.image_count, r.occurred_at, r.token_id "
        f"FROM {records} r JOIN taken ON r.id = taken.record_id), "
        f"hourly AS ({hourly}), daily AS ({daily}) "
        "SELECT count(*) FROM taken"
    )


def lock_records_for_rebuild(cursor: CursorWrapper) -> None:
    """Make new records wait for the rebuild; SHARE mode lets readers through."""
    cursor.execute(
        f"LOCK TABLE {connection.ops.quote_name(UsageRecord._meta.db_table)} IN SHARE MODE"
    )
