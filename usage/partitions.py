"""Monthly partitions of the raw records on PostgreSQL (SQLite keeps one plain table).

``usage_usagerecord`` is partitioned by range of ``occurred_at``: one table per UTC month,
named ``usage_usagerecord_pYYYYMM``, and a DEFAULT partition that takes any record of a
month without its own table, so that an insert never fails for want of a partition.
``ensure_partitions`` creates the months ingestion can meet (back to ``MAX_AGE`` ago, or to
the retention cut-off if that is later, and ``AHEAD`` months ahead); it runs at migrate
time, once a day in each server's folding thread, and from ``manage.py maintain_partitions``
(for cron). Done by this module rather than pg_partman: one statement of SQL per month,
no extension to install in every cluster (and replica), and the same code in tests.

The database's primary key is (id, occurred_at), since every unique index of a
partitioned table must hold the partition key; the ids still come from one sequence, and
the model keeps ``id`` as its primary key for the ORM. Idempotency per owner and event id
moves to ``RecordKey`` (``usage.dialects.postgresql``).
"""

import re
from datetime import UTC, datetime

from django.db import connection, transaction

from usage.ingest import MAX_AGE
from usage.models import UsageRecord

AHEAD = 3  # months created ahead of the current one
# Seconds a partition's DDL waits for a lock before giving up (to try again next time)
# rather than queueing every insert and read behind it.
LOCK_TIMEOUT = "10s"
# One number for pg_advisory_xact_lock, so that two maintainers never race.
_LOCK_KEY = 0x75736167  # "usag"


def table() -> str:
    return UsageRecord._meta.db_table


def month_start(moment: datetime) -> datetime:
    """The first moment of ``moment``'s UTC month."""
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def add_months(month: datetime, months: int) -> datetime:
    index = month.year * 12 + month.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_name(month: datetime) -> str:
    return f"{table()}_p{month:%Y%m}"


def default_partition() -> str:
    return f"{table()}_default"


def is_partitioned() -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [table()])
        row = cursor.fetchone()
    return row is not None and row[0] == "p"


def monthly_partitions() -> dict[datetime, str]:
    """The monthly partitions there are, by the first moment of their month."""
    pattern = re.compile(re.escape(table()) + r"_p(\d{4})(\d{2})")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(%s)",
            [table()],
        )
        names = [row[0] for row in cursor.fetchall()]
    found = {}
    for name in names:
        if match := pattern.fullmatch(name):
            found[datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC)] = name
    return found


def months_wanted(now: datetime, kept_from: datetime | None) -> list[datetime]:
    """Every month ingestion can meet now: from ``MAX_AGE`` ago (or the retention cut-off,
    if later) to ``AHEAD`` months ahead."""
    first = month_start(now - MAX_AGE)
    if kept_from is not None:
        first = max(first, month_start(kept_from))
    last = add_months(month_start(now), AHEAD)
    months = []
    while first <= last:
        months.append(first)
        first = add_months(first, 1)
    return months


def take_upkeep_lock(cursor) -> None:
    """Wait for any other process's partition change to end, until this transaction's:
    every server process runs the daily upkeep, and one of them is enough."""
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])


def ensure_partitions(now: datetime, kept_from: datetime | None = None) -> list[str]:
    """Create the monthly partitions ``months_wanted`` that are missing; returns their
    names. A month at a time, each in its own short transaction."""
    if not is_partitioned():
        return []
    created = []
    for month in months_wanted(now, kept_from):
        if month not in monthly_partitions() and create_partition(month):
            created.append(partition_name(month))
    return created


def create_partition(month: datetime) -> bool:
    """Create ``month``'s partition, moving into it any of its records the DEFAULT
    partition holds; False if another process made it first.

    Made as a plain table and then attached, rather than ``CREATE TABLE ... PARTITION OF``:
    attaching takes a lock that lets inserts and reads go on (SHARE UPDATE EXCLUSIVE), and
    the CHECK constraint spares PostgreSQL a scan of the new table. Only the DEFAULT
    partition, normally empty, is scanned and locked for the moment it takes.
    """
    name, parent, default = partition_name(month), table(), default_partition()
    bounds = [month, add_months(month, 1)]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        # A table with foreign-key checks still deferred cannot be altered: check them now
        # (none are pending unless the caller's transaction has just written records).
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        take_upkeep_lock(cursor)
        if month in monthly_partitions():
            return False
        cursor.execute(
            f"CREATE TABLE {name} (LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        cursor.execute(
            f"ALTER TABLE {name} ADD CONSTRAINT {name}_bounds "
            "CHECK (occurred_at >= %s AND occurred_at < %s)",
            bounds,
        )
        # No new record may reach the DEFAULT partition between the move and the attach
        # (which would then fail); records of the other months carry on.
        cursor.execute(f"LOCK TABLE {default} IN SHARE ROW EXCLUSIVE MODE")
        cursor.execute(
            f"WITH moved AS (DELETE FROM {default} WHERE occurred_at >= %s "
            f"AND occurred_at < %s RETURNING *) INSERT INTO {name} SELECT * FROM moved",
            bounds,
        )
        cursor.execute(
            f"ALTER TABLE {parent} ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)", bounds
        )
        cursor.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_bounds")
    return True


# --- The migration that converts an existing table (usage 0012) ----------------------


def convert(cursor, *, partitioned: bool, now: datetime) -> None:
    """Rebuild the records table, partitioned by month or (to undo) plain, keeping every
    row, id, index, foreign key and check; in the migration's one transaction.

    The old table is renamed, the new one created beside it with the old one's columns,
    filled, and the old one dropped; indexes are built after the copy (faster than
    keeping them up row by row) under the old ones' names.
    """
    parent, old = table(), f"{table()}_old"
    indexes, foreign_keys, last_id = _shape(cursor, parent)
    cursor.execute(f"ALTER TABLE {parent} RENAME TO {old}")
    partition_by = " PARTITION BY RANGE (occurred_at)" if partitioned else ""
    cursor.execute(
        f"CREATE TABLE {parent} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        + partition_by
    )
    cursor.execute(f"ALTER TABLE {parent} ALTER id DROP DEFAULT")  # the old one's sequence
    if partitioned:
        cursor.execute(f"CREATE TABLE {default_partition()} PARTITION OF {parent} DEFAULT")
        cursor.execute(f"SELECT DISTINCT date_trunc('month', occurred_at, 'UTC') FROM {old}")
        present = {month_start(row[0]) for row in cursor.fetchall()}
        for month in sorted(present | set(months_wanted(now, None))):
            cursor.execute(
                f"CREATE TABLE {partition_name(month)} PARTITION OF {parent} "
                "FOR VALUES FROM (%s) TO (%s)",
                [month, add_months(month, 1)],
            )
    cursor.execute(f"INSERT INTO {parent} SELECT * FROM {old}")
    cursor.execute(f"DROP TABLE {old}")
    if partitioned:
        cursor.execute(f"ALTER TABLE {parent} ADD PRIMARY KEY (id, occurred_at)")
        cursor.execute(f"CREATE SEQUENCE {parent}_id_seq AS bigint OWNED BY {parent}.id")
        cursor.execute(f"ALTER TABLE {parent} ALTER id SET DEFAULT nextval('{parent}_id_seq')")
    else:
        cursor.execute(f"ALTER TABLE {parent} ADD PRIMARY KEY (id)")
        cursor.execute(
            f"ALTER TABLE {parent} ADD CONSTRAINT usage_record_owner_event "
            "UNIQUE (owner_id, event_id)"
        )
        cursor.execute(f"ALTER TABLE {parent} ALTER id ADD GENERATED BY DEFAULT AS IDENTITY")
    for definition in indexes:
        cursor.execute(definition)
    for name, definition in foreign_keys:
        cursor.execute(f"ALTER TABLE {parent} ADD CONSTRAINT {name} {definition}")
    if last_id:
        cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [parent, last_id])


def _shape(cursor, name: str) -> tuple[list[str], list[tuple[str, str]], int]:
    """The table's indexes not behind a constraint (as CREATE INDEX statements for a table
    of the same name), its foreign keys (name, definition) and the last id it handed out."""
    cursor.execute(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i WHERE i.indrelid = %s::regclass "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) "
        "ORDER BY i.indexrelid",
        [name],
    )
    # Indexes of a partitioned table read "ON ONLY table"; the new table's must recurse.
    indexes = [
        re.sub(r" ON (ONLY )?\S+ USING ", f" ON {name} USING ", row[0]) for row in cursor.fetchall()
    ]
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype = 'f' ORDER BY conname",
        [name],
    )
    foreign_keys = [(row[0], row[1]) for row in cursor.fetchall()]
    cursor.execute(
        f"SELECT greatest((SELECT max(id) FROM {name}), "
        "pg_sequence_last_value(pg_get_serial_sequence(%s, 'id')::regclass))",
        [name],
    )
    return indexes, foreign_keys, cursor.fetchone()[0] or 0
