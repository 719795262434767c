"""Time the partition upkeep of the raw records on PostgreSQL: the figures of docs/scaling.md.

    PG_EXTRA_OPTIONS="-c fsync=on" python3 scripts/with_postgres.py -- \\
        .venv/bin/python scripts/partition_timings.py [ROWS_PER_MONTH]

On an empty throwaway database (it migrates it): fills three past months with ROWS_PER_MONTH
records each (default 300,000, with event ids and their keys), then times creating a
month ahead, creating a month whose records wait in the DEFAULT partition, dropping a
full month with the prune, the same month's rows deleted row by row for comparison, and
the conversion migration (0012) of the whole table.
"""

import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "usage_site.settings")
os.environ.setdefault("SECRET_KEY", "partition-timings-only")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.db.migrations.executor import MigrationExecutor  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from django.utils import timezone  # noqa: E402

from usage import partitions, retention  # noqa: E402

FILL = """
WITH stored AS (
    INSERT INTO usage_usagerecord (owner_id, model, image_count, occurred_at, received_at,
        event_id)
    SELECT %(owner)s, 'SDXL', 1 + n %% 4, t, t, %(tag)s || n
    FROM generate_series(1, %(rows)s) AS n,
        LATERAL (SELECT %(month)s::timestamptz
            + (n::float8 / %(rows)s) * interval '27 days' AS t) AS at
    RETURNING owner_id, event_id, occurred_at
)
INSERT INTO usage_recordkey (owner_id, event_id, occurred_at)
SELECT owner_id, event_id, occurred_at FROM stored
"""


def timed(label: str, work) -> float:
    begun = time.perf_counter()
    work()
    seconds = time.perf_counter() - begun
    print(f"{label}: {seconds * 1000:,.1f} ms", flush=True)
    return seconds


def fill(owner: int, month: datetime, rows: int, tag: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(FILL, {"owner": owner, "month": month, "rows": rows, "tag": tag})
        cursor.execute("VACUUM (ANALYZE) usage_usagerecord")
        cursor.execute("CHECKPOINT")


def sizes() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM usage_usagerecord")
        rows = cursor.fetchone()[0]
        cursor.execute(
            "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
            "WHERE inhparent = 'usage_usagerecord'::regclass"
        )
        records = cursor.fetchone()[0]
        cursor.execute("SELECT pg_total_relation_size('usage_recordkey')")
        keys = cursor.fetchone()[0]
    print(f"{rows:,} records: {records / rows:.0f} bytes each; keys {keys / rows:.0f} bytes each")


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    call_command("migrate", verbosity=0)
    owner = get_user_model().objects.create_user("timings").pk
    now = timezone.now()
    current = partitions.month_start(now)
    past = [partitions.add_months(current, back) for back in (-3, -2, -1)]
    print(f"PostgreSQL {connection.cursor().connection.info.server_version}, {rows:,} rows a month")
    for n, month in enumerate(past):
        fill(owner, month, rows, f"m{n}-")
    sizes()

    ahead = partitions.add_months(current, partitions.AHEAD + 1)
    timed("create an empty month ahead", lambda: partitions.create_partition(ahead))
    far = datetime(2001, 1, 1, tzinfo=UTC)
    fill(owner, far, rows, "far-")  # into the DEFAULT partition
    timed(
        f"create a month whose {rows:,} records wait in the DEFAULT partition",
        lambda: partitions.create_partition(far),
    )
    timed(
        f"drop {partitions.partition_name(far)} ({rows:,} records), detach and drop",
        lambda: retention._drop_partition(partitions.partition_name(far)),
    )
    fill(owner, far, rows, "far2-")
    partitions.create_partition(far)
    print("the same, step by step:")
    with transaction.atomic(), connection.cursor() as cursor:
        name = partitions.partition_name(far)
        timed(
            "  detach",
            lambda: cursor.execute(f"ALTER TABLE usage_usagerecord DETACH PARTITION {name}"),
        )
        retention._no_jit(cursor)
        timed(
            "  count its records still marked uncounted",
            lambda: retention._count_marked(cursor, name, None),
        )
        timed("  drop", lambda: cursor.execute(f"DROP TABLE {name}"))
        commit_begun = time.perf_counter()
    print(f"  commit: {(time.perf_counter() - commit_begun) * 1000:,.1f} ms")
    with connection.cursor() as cursor:
        timed(
            f"the same as a DELETE of {rows:,} rows (one month, for comparison)",
            lambda: cursor.execute(
                "DELETE FROM usage_usagerecord WHERE occurred_at >= %s AND occurred_at < %s",
                [past[0], past[1]],
            ),
        )
    timed(
        f"forget the {rows:,} event ids older than ingestion accepts (row by row)",
        lambda: retention._forget_keys(timezone.now() - retention.MAX_AGE),
    )
    cut = partitions.add_months(current, -1)
    old = [m for m in partitions.monthly_partitions() if partitions.add_months(m, 1) <= cut]
    with override_settings(RECORD_RETENTION_MONTHS=1):
        timed(
            f"prune_records, RECORD_RETENTION_MONTHS=1: drops {len(old)} monthly partitions "
            f"(one of {rows:,} records, the others empty)",
            lambda: retention.prune(timezone.now() + timedelta(seconds=1)),
        )
    fill(owner, past[0], rows, "again-")
    fill(owner, past[1], rows, "again2-")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM usage_usagerecord")
        stored = cursor.fetchone()[0]
    before = ("usage", "0007_uncounted_records")
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    timed(
        f"migration 0012 backwards ({stored:,} records to one plain table)",
        lambda: MigrationExecutor(connection).migrate([before]),
    )
    timed(
        f"migration 0012 ({stored:,} records into monthly partitions, keys included)",
        lambda: MigrationExecutor(connection).migrate(latest),
    )


if __name__ == "__main__":
    main()
