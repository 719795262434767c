"""Rollups of usage records: kept in step with every insert and delete, rebuilt on demand.

Two tables, so that summaries cost what their date range costs, not what the table holds:

- ``UsageRollup``: one row per owner, model, API token and UTC hour, split into quarter hours,
  because local midnight falls on a quarter hour in every zone in use today (India at
  +05:30, Nepal at +05:45).
- ``DailyUsageRollup``: one row per owner, model, API token and UTC day, holding running totals by
  hour, so that the part of a day before or after any whole hour is one subtraction.

``usage.summary.daily_totals`` reads the daily rows and, in zones whose midnight is not on
a whole hour, the hourly rows of the hours a midnight cuts.

The token (``token_id``, ``NO_TOKEN`` for a record without one) is in both keys so that
usage can be told apart by the desktop app or machine that sent it (``usage.devices``);
summaries of all of a user's usage add the tokens' rows up.

A record is in the rollups, or marked uncounted (``UncountedRecord``: single records on
PostgreSQL, until ``usage.folding`` counts them in bulk), never both and never neither:
deleting one takes it out of whichever it is in, and a rebuild counts every record and
clears the marks, in one transaction.

The SQL here serves PostgreSQL and SQLite alike; what they write differently (a record's
buckets, the rebuild's lock, ingestion) is in ``usage.dialects``.
"""

from datetime import datetime, timedelta

from django.db import connection, models, transaction
from django.db.models import QuerySet

from usage import dialects
from usage.models import (
    NO_TOKEN,
    DailyUsageRollup,
    RecordKey,
    RecordRetention,
    UncountedRecord,
    UsageRecord,
    UsageRollup,
)

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
# A record's token in the rollups' keys: its token, or NO_TOKEN (0) when it has none.
TOKEN_KEY = f"COALESCE(token_id, {NO_TOKEN})"


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    """The first whole hour at or after ``moment``."""
    hour = hour_of(moment)
    return hour if hour == moment else hour + HOUR


def count_records(ids: list[int], sign: int = 1) -> None:
    """Count the records with these ids into both rollups (``sign=-1``: out of them).

    Call it in the transaction that inserted (or is about to delete) them, with only the
    rows really inserted, so that a duplicate never counts twice. It uses the same SQL as
    ``rebuild`` (``count_in_sql``), so that the rollups are counted one way only; how it
    is sent is the database's (``usage.dialects``).
    """
    for start in range(0, len(ids), CHUNK):
        dialects.current().count_records(ids[start : start + CHUNK], sign)


def records_by_id(count: int) -> str:
    """A subquery of the records with ``count`` ids (parameters), as ``count_in_sql`` reads."""
    records = connection.ops.quote_name(UsageRecord._meta.db_table)
    return (
        "(SELECT owner_id, model, image_count, occurred_at, token_id "
        f"FROM {records} WHERE id IN ({', '.join(['%s'] * count)})) AS counted"
    )


def delete_records(records: QuerySet) -> int:
    """Delete records (the admin's delete) and take them out of the rollups; returns how many."""
    with transaction.atomic():
        # By the rows locked here, not by ``records`` again: a record stored meanwhile
        # that matches the same filter was not counted out, so it must stay.
        rows = list(records.select_for_update().values_list("pk", "owner_id"))
        pks = [pk for pk, _ in rows]
        uncounted = _unmark(pks)  # waits for a fold that has taken them, then finds them gone
        counted = [pk for pk in pks if pk not in uncounted]
        count_records(counted, sign=-1)
        _delete_emptied_rows(counted)
        _forget_keys(pks)
        for start in range(0, len(pks), CHUNK):
            UsageRecord.objects.filter(pk__in=pks[start : start + CHUNK]).delete()
    return len(rows)


def _forget_keys(ids: list[int]) -> None:
    """Forget the event ids of these records, so that a deleted record can be sent again
    (as when the records' own unique constraint decided; ``RecordKey``)."""
    records = connection.ops.quote_name(UsageRecord._meta.db_table)
    keys = connection.ops.quote_name(RecordKey._meta.db_table)
    with connection.cursor() as cursor:
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            cursor.execute(
                f"DELETE FROM {keys} WHERE (owner_id, event_id) IN (SELECT owner_id, event_id "
                f"FROM {records} WHERE id IN ({', '.join(['%s'] * len(chunk))}))",
                chunk,
            )


def _delete_emptied_rows(ids: list[int]) -> None:
    """Delete the rollup rows of these records that counting them out left at zero.

    Only rows this transaction has just updated, and so holds locks on already: taking
    another row's lock now, out of key order, could deadlock with a fold or an insert.
    """
    buckets = dialects.current().BUCKETS
    records = connection.ops.quote_name(UsageRecord._meta.db_table)
    hourly = connection.ops.quote_name(UsageRollup._meta.db_table)
    daily = connection.ops.quote_name(DailyUsageRollup._meta.db_table)
    no_events = " AND ".join(f"{column} = 0" for column in EVENT_COLUMNS)
    with connection.cursor() as cursor:
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            of_records = f"FROM {records} WHERE id IN ({', '.join(['%s'] * len(chunk))})"
            cursor.execute(
                f"DELETE FROM {hourly} WHERE (owner_id, hour, model, token_id) IN "
                f"(SELECT owner_id, {buckets.hour}, model, {TOKEN_KEY} {of_records}) "
                f"AND {no_events}",
                chunk,
            )
            cursor.execute(
                f"DELETE FROM {daily} WHERE (owner_id, day, model, token_id) IN "
                f"(SELECT owner_id, {buckets.day}, model, {TOKEN_KEY} {of_records}) "
                "AND events_by_24 = 0",
                chunk,
            )


def _unmark(ids: list[int]) -> set[int]:
    """Delete the uncounted marks of these records; returns the ids that had one."""
    table = connection.ops.quote_name(UncountedRecord._meta.db_table)
    unmarked: set[int] = set()
    with connection.cursor() as cursor:
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            cursor.execute(
                f"DELETE FROM {table} WHERE record_id IN ({', '.join(['%s'] * len(chunk))}) "
                "RETURNING record_id",
                chunk,
            )
            unmarked.update(row[0] for row in cursor.fetchall())
    return unmarked


def count_in_sql(source: str, where: str = "WHERE true", sign: int = 1) -> tuple[str, str]:
    """Two statements that count the records of ``source`` (a table, CTE or subquery with
    ``owner_id``, ``model``, ``image_count``, ``occurred_at`` and ``token_id``) into the hourly
    and the daily
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
    keys = f"owner_id, {key_sql}, model, {TOKEN_KEY}"
    return (
        f"INSERT INTO {table} (owner_id, {key}, model, token_id, {', '.join(counters)}) "
        f"SELECT {keys}, {', '.join(sums)} FROM {source} {where} "
        f"GROUP BY {keys} ORDER BY {keys} "
        f"ON CONFLICT (owner_id, {key}, model, token_id) DO UPDATE SET {additions}"
    )


def rebuild(owner_id: int | None = None) -> int:
    """Recount rollups from raw records, for one owner or all; returns the rows written.

    For recovery. The rollups are replaced in one transaction while new records wait (readers
    go on), so that none is counted twice or lost. After retention has dropped old records
    (``usage.retention``), only the months kept are recounted: the rollups before them are
    the only history left, and stay as they are.
    """
    quote = connection.ops.quote_name
    records = quote(UsageRecord._meta.db_table)
    where, params = ("WHERE owner_id = %s", [owner_id]) if owner_id is not None else ("", [])
    # SQLite needs a WHERE before an upsert's ON CONFLICT when the rows come from a SELECT.
    where = where or "WHERE true"
    kept_from = RecordRetention.objects.values_list("kept_from", flat=True).first()
    since = {rollup: ("", []) for rollup in (UncountedRecord, UsageRollup, DailyUsageRollup)}
    counted_since = ("", [])
    if kept_from is not None:
        adapt = connection.ops.adapt_datetimefield_value
        since[UsageRollup] = (" AND hour >= %s", [adapt(kept_from)])
        since[DailyUsageRollup] = (" AND day >= %s", [kept_from.date()])
        # Marks of older records (stored after a prune, not yet folded) stay for the fold.
        since[UncountedRecord] = (
            f" AND NOT EXISTS (SELECT 1 FROM {records} r WHERE r.id = record_id "
            "AND r.occurred_at < %s)",
            [adapt(kept_from)],
        )
        counted_since = (" AND occurred_at >= %s", [adapt(kept_from)])
    written = 0
    with transaction.atomic(), connection.cursor() as cursor:
        dialects.current().lock_records_for_rebuild(cursor)
        # The recount counts the marked records too. Deleting their marks waits for a fold
        # that has taken some; what it counted is then deleted below with the rest.
        for rollup, (condition, extra) in since.items():
            cursor.execute(
                f"DELETE FROM {quote(rollup._meta.db_table)} {where}{condition}", params + extra
            )
        for statement in count_in_sql(records, where + counted_since[0]):
            cursor.execute(statement, params + counted_since[1])
            written += cursor.rowcount
    return written
