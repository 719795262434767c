"""Retention: raw records older than ``RECORD_RETENTION_MONTHS`` are dropped; rollups stay.

Every dashboard, summary, cost and daily-totals CSV reads the rollups, which are never
dropped, so they keep their history. The raw records (the records API, the records CSV,
the admin) start at ``kept_from()``, which each prune moves forward and stores
(``RecordRetention``); ``usage.rollups.rebuild`` recounts only from there, so that it never
erases months whose records are gone.

On PostgreSQL a prune detaches and drops whole monthly partitions (``usage.partitions``):
a moment's work per month, whatever it holds. Records of a month without a partition (in
the DEFAULT one) are deleted row by row, as is everything on SQLite, where the time
grows with the rows.

Each prune also forgets event ids (``RecordKey``) older than ingestion accepts.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

from usage import partitions, rollups
from usage.ingest import MAX_AGE
from usage.models import RecordKey, RecordRetention, UncountedRecord, UsageRecord

# Kept past MAX_AGE: a request checked just before a prune still finds its keys.
KEY_MARGIN = timedelta(days=1)


@dataclass
class PruneResult:
    kept_from: datetime | None = None
    dropped: list[str] = field(default_factory=list)  # monthly partitions
    deleted: int = 0  # records deleted row by row
    keys_forgotten: int = 0


def kept_from() -> datetime | None:
    """The moment raw records are kept from; None when every record is kept."""
    return RecordRetention.objects.values_list("kept_from", flat=True).first()


def cut_off(now: datetime, months: int) -> datetime:
    """The first moment kept: the start of the UTC month ``months`` before the current one."""
    return partitions.add_months(partitions.month_start(now), -months)


def maintain(now: datetime) -> tuple[list[str], PruneResult]:
    """The daily job: the partitions ahead, then the prune."""
    created = partitions.ensure_partitions(now, kept_from())
    return created, prune(now)


def prune(now: datetime) -> PruneResult:
    """Forget old event ids and, when ``RECORD_RETENTION_MONTHS`` is set, drop the raw
    records before its cut-off; the rollups are not touched."""
    result = PruneResult(keys_forgotten=_forget_keys(now - MAX_AGE - KEY_MARGIN))
    months = settings.RECORD_RETENTION_MONTHS
    if not months:
        result.kept_from = kept_from()
        return result
    # Stored first: from now on a rebuild leaves these months alone, even if a drop below
    # fails half way (the records then wait for the next prune).
    result.kept_from = _keep_from(cut_off(now, months))
    if partitions.is_partitioned():
        for month, name in sorted(partitions.monthly_partitions().items()):
            before_cut_off = partitions.add_months(month, 1) <= result.kept_from
            if before_cut_off and _drop_partition(name):
                result.dropped.append(name)
        result.deleted = _delete_before(partitions.default_partition(), result.kept_from)
    else:
        result.deleted = _delete_before(UsageRecord._meta.db_table, result.kept_from)
    return result


def _keep_from(moment: datetime) -> datetime:
    """Store ``moment`` as the cut-off unless a later one is stored; returns the one stored."""
    with transaction.atomic():
        row = RecordRetention.objects.select_for_update().first()
        if row is None:
            row = RecordRetention.objects.create(kept_from=moment)
        elif row.kept_from < moment:
            row.kept_from = moment
            row.save(update_fields=["kept_from"])
        return row.kept_from


def _drop_partition(name: str) -> bool:
    """Detach and drop one monthly partition, in one short transaction; False if another
    process dropped it first.

    Its records still marked uncounted are counted into the rollups after the detach has
    locked the table, so that no fold can take their marks meanwhile and find the records
    gone. The drop frees the month's files at once: no row-by-row delete, no vacuum.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{partitions.LOCK_TIMEOUT}'")
        # A table with foreign-key checks still deferred cannot be altered: check them now
        # (none are pending unless the caller's transaction has just written records).
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        partitions.take_upkeep_lock(cursor)
        if name not in partitions.monthly_partitions().values():
            return False  # another process's prune dropped it meanwhile
        cursor.execute(f"ALTER TABLE {partitions.table()} DETACH PARTITION {name}")
        _no_jit(cursor)
        _count_marked(cursor, name, None)
        cursor.execute(f"DROP TABLE {name}")
    return True


def _delete_before(source: str, moment: datetime) -> int:
    """Delete the records of ``source`` before ``moment``, row by row (the DEFAULT
    partition, or SQLite's one table), counting the marked ones into the rollups first."""
    quote = connection.ops.quote_name
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # New records of those months wait; the rest of the table carries on.
            cursor.execute(f"LOCK TABLE {quote(source)} IN SHARE ROW EXCLUSIVE MODE")
            _no_jit(cursor)
            _count_marked(cursor, quote(source), moment)
        cursor.execute(
            f"DELETE FROM {quote(source)} WHERE occurred_at < %s",
            [connection.ops.adapt_datetimefield_value(moment)],
        )
        return cursor.rowcount


def _no_jit(cursor) -> None:
    """A detached month has no statistics, so the planner guesses the counting statement
    costly enough to compile it (seconds of JIT for a statement that finds a few rows)."""
    cursor.execute("SET LOCAL jit = off")


def _count_marked(cursor, source: str, before: datetime | None) -> None:
    """Count the records of ``source`` (before ``before``) still marked uncounted into the
    rollups and unmark them, in one statement (PostgreSQL). The caller holds a lock that
    keeps folds out of these marks.

    The lateral subquery looks each mark's record up by id, so the work follows the marks
    (a second's worth, normally), not the partition's size: as a join, the planner would
    rather read the whole month.
    """
    uncounted = connection.ops.quote_name(UncountedRecord._meta.db_table)
    when, params = ("AND r.occurred_at < %s", [before]) if before else ("", [])
    hourly, daily = rollups.count_in_sql("found")
    cursor.execute(
        "WITH found AS (SELECT m.record_id, r.owner_id, r.model, r.image_count, r.occurred_at, "
        "r.token_id "
        f"FROM {uncounted} m CROSS JOIN LATERAL (SELECT * FROM {source} r "
        f"WHERE r.id = m.record_id {when} OFFSET 0) r), "
        f"taken AS (DELETE FROM {uncounted} WHERE record_id IN (SELECT record_id FROM found)), "
        f"hourly AS ({hourly}), daily AS ({daily}) SELECT 1",
        params,
    )


def _forget_keys(before: datetime) -> int:
    """Delete the event ids of records older than ingestion accepts: none can come again."""
    with transaction.atomic():
        deleted, _ = RecordKey.objects.filter(occurred_at__lt=before).delete()
    return deleted
