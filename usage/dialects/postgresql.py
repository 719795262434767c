"""PostgreSQL, what production runs: ingestion in one statement, buckets by its date functions.

Ingestion is the hot path. A request's batch is inserted and the rows really inserted are
counted into both rollups by one statement, the same whatever the batch size: a round trip
costs more than the work it carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING

import psycopg
from django.db import connection
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper

from usage import rollups
from usage.dialects import RECORD_COLUMNS, Buckets
from usage.models import UsageRecord

if TYPE_CHECKING:
    from usage.ingest import CleanRecord

_UTC = "occurred_at AT TIME ZONE 'UTC'"
BUCKETS = Buckets(
    hour="date_trunc('hour', occurred_at, 'UTC')",
    quarter=f"(extract(minute FROM {_UTC})::int / 15)",
    day=f"({_UTC})::date",
    hour_of_day=f"extract(hour FROM {_UTC})::int",
)


def insert_and_count(
    owner_id: int, token_id: int | None, records: Sequence[CleanRecord], now: datetime
) -> int:
    """Insert the batch and count the inserted rows into both rollups, in one statement.

    The batch travels as four arrays, so that the statement is the same for any batch size,
    and so it is prepared once per connection: parsing and planning its ~12 000 characters
    cost five times what executing it does. Outside a transaction (a request) the statement
    is its own: no BEGIN and COMMIT round trips around it.
    """
    params = [
        owner_id,
        now,
        token_id,
        [r.model for r in records],
        [r.image_count for r in records],
        [r.occurred_at for r in records],
        [r.event_id for r in records],
    ]
    with _prepared_cursor() as cursor:
        cursor.execute(_insert_and_count_sql(), params)
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


def _prepared_cursor() -> CursorWrapper:
    """A Django cursor over a ``_PreparingCursor``: errors wrapped and queries counted and
    logged as Django's own are. The prepared statement lives as long as the (persistent)
    connection."""
    connection.ensure_connection()
    cursor = _PreparingCursor(connection.connection)
    if connection.queries_logged:
        return _LoggedCursor(cursor, connection)
    return connection.make_cursor(cursor)


@lru_cache(maxsize=1)
def _insert_and_count_sql() -> str:
    """Built once per process, not per request: it is the same for every batch."""
    hourly, daily = rollups.count_in_sql("batch")
    table = connection.ops.quote_name(UsageRecord._meta.db_table)
    return (
        f"WITH batch AS (INSERT INTO {table} ({', '.join(RECORD_COLUMNS)}) "
        "SELECT %s::integer, model, image_count, occurred_at, %s::timestamptz, event_id, "
        "%s::bigint FROM unnest(%s::varchar[], %s::int[], %s::timestamptz[], %s::varchar[]) "
        "AS given(model, image_count, occurred_at, event_id) "
        "ON CONFLICT (owner_id, event_id) DO NOTHING "
        "RETURNING owner_id, model, image_count, occurred_at), "
        f"hourly AS ({hourly}), daily AS ({daily}) "
        "SELECT count(*) FROM batch"
    )


def lock_records_for_rebuild(cursor: CursorWrapper) -> None:
    """Make new records wait for the rebuild; SHARE mode lets readers through."""
    cursor.execute(
        f"LOCK TABLE {connection.ops.quote_name(UsageRecord._meta.db_table)} IN SHARE MODE"
    )
