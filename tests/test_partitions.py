"""Monthly partitions of the raw records (usage.partitions) and idempotency across them.

PostgreSQL only: SQLite keeps one plain table with its unique (owner, event id), which
the ingestion tests cover on both databases.
"""

import io
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from tests.conftest import bearer, post_usage
from usage import partitions
from usage.folding import fold_all
from usage.ingest import MAX_AGE, CleanRecord, ingest, store
from usage.models import RecordKey, UsageRecord
from usage.retention import prune
from usage.rollups import delete_records
from usage.summary import DateRange, daily_totals

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite keeps the records in one plain table"
)


def where_stored(*ids: int) -> list[str]:
    """The partition holding each record."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tableoid::regclass::text FROM usage_usagerecord WHERE id = ANY(%s) ORDER BY id",
            [list(ids)],
        )
        return [row[0] for row in cursor.fetchall()]


def images_of(owner, start: datetime, end: datetime) -> int:
    zone = UTC
    totals = daily_totals(owner.pk, DateRange(start.date(), end.date(), zone))
    return sum(images for images, _events in totals.values())


@pytest.mark.django_db
def test_the_table_has_a_month_for_every_month_ingestion_accepts_and_a_default():
    now = timezone.now()
    assert partitions.is_partitioned()
    monthly = partitions.monthly_partitions()
    first = partitions.month_start(now - MAX_AGE)
    last = partitions.add_months(partitions.month_start(now), partitions.AHEAD)
    assert set(partitions.months_wanted(now, None)) <= set(monthly)
    assert min(partitions.months_wanted(now, None)) == first
    assert max(partitions.months_wanted(now, None)) == last
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [partitions.default_partition()])
        assert cursor.fetchone()[0]


@pytest.mark.django_db
def test_the_same_event_id_in_two_months_is_stored_once(owner):
    now = timezone.now()
    first = ingest(owner, None, [{"model": "SD", "count": 2, "id": "e-1"}], now)
    earlier = (now - timedelta(days=40)).isoformat()
    again = ingest(
        owner, None, [{"model": "SD", "count": 2, "id": "e-1", "timestamp": earlier}], now
    )
    assert (first.accepted, again.accepted, again.duplicates) == (1, 0, 1)
    assert UsageRecord.objects.filter(owner=owner).count() == 1
    fold_all()
    assert images_of(owner, now - timedelta(days=60), now) == 2


@pytest.mark.django_db
def test_another_user_may_send_the_same_event_id(owner, other):
    now = timezone.now()
    for user in (owner, other):
        assert ingest(user, None, [{"model": "SD", "count": 1, "id": "shared"}], now).accepted == 1
    assert RecordKey.objects.filter(event_id="shared").count() == 2


@pytest.mark.django_db
def test_a_record_deleted_in_the_admin_may_be_sent_again(owner):
    now = timezone.now()
    ingest(owner, None, [{"model": "SD", "count": 1, "id": "e-9"}], now)
    delete_records(UsageRecord.objects.filter(owner=owner))
    assert ingest(owner, None, [{"model": "SD", "count": 1, "id": "e-9"}], now).accepted == 1


@pytest.mark.django_db(transaction=True)
def test_duplicates_posted_at_once_with_different_times_are_stored_exactly_once(owner, owner_token):
    # Each thread sends the same event ids with its own timestamps, a month apart: the
    # records would land in different partitions, so only the key table can refuse them.
    now = timezone.now()
    start = threading.Barrier(4)
    results = []

    def send(shift: int) -> None:
        moment = (now - timedelta(days=31 * shift)).isoformat()
        batch = [
            {"model": "SD", "count": 1, "id": f"x-{n}", "timestamp": moment} for n in range(50)
        ]
        client = bearer(owner_token)
        start.wait()
        try:
            results.append(post_usage(client, batch).json())
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(shift,)) for shift in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r["accepted"] for r in results) == 50
    assert sum(r["duplicates"] for r in results) == 3 * 50
    assert UsageRecord.objects.count() == 50
    assert RecordKey.objects.count() == 50
    fold_all()
    assert images_of(owner, now - timedelta(days=130), now) == 50


@pytest.mark.django_db
def test_records_of_a_month_without_its_partition_land_in_the_default_one_and_count(owner):
    now = timezone.now()
    far_past = datetime(2001, 2, 3, 4, 5, tzinfo=UTC)
    far_future = partitions.add_months(partitions.month_start(now), 30)
    for moment, images in ((far_past, 3), (far_future, 5)):
        assert store(owner, None, [CleanRecord("SD", images, moment, f"at-{moment:%Y}")], now)
    ids = sorted(UsageRecord.objects.values_list("pk", flat=True))
    assert where_stored(*ids) == [partitions.default_partition()] * 2
    fold_all()
    assert images_of(owner, far_past, far_past) == 3
    assert images_of(owner, far_future, far_future) == 5
    # A resend of either is still a duplicate.
    assert store(owner, None, [CleanRecord("SD", 3, far_past, f"at-{far_past:%Y}")], now) == 0


@pytest.mark.django_db
def test_creating_a_month_moves_its_records_out_of_the_default_partition(owner):
    now = timezone.now()
    month = datetime(2001, 2, 1, tzinfo=UTC)
    store(owner, None, [CleanRecord("SD", 3, month + timedelta(days=2), None)], now)
    store(owner, None, [CleanRecord("SD", 4, datetime(2001, 3, 1, tzinfo=UTC), None)], now)
    ids = sorted(UsageRecord.objects.values_list("pk", flat=True))

    assert partitions.create_partition(month)
    assert not partitions.create_partition(month)  # there already: nothing to do

    assert where_stored(*ids) == [partitions.partition_name(month), partitions.default_partition()]
    fold_all()
    assert images_of(owner, month, month + timedelta(days=40)) == 7


@pytest.mark.django_db
def test_maintain_partitions_creates_the_months_ahead_once(time_machine):
    later = partitions.add_months(partitions.month_start(timezone.now()), 7) + timedelta(days=3)
    time_machine.move_to(later)
    out = io.StringIO()
    call_command("maintain_partitions", stdout=out)
    ahead = partitions.add_months(partitions.month_start(later), partitions.AHEAD)
    assert f"Created {partitions.partition_name(ahead)}." in out.getvalue()
    assert ahead in partitions.monthly_partitions()
    out = io.StringIO()
    call_command("maintain_partitions", stdout=out)
    assert "Created 0 partitions" in out.getvalue()


@pytest.mark.django_db
def test_partitions_are_not_made_again_for_months_retention_dropped(owner, settings):
    now = timezone.now()
    settings.RECORD_RETENTION_MONTHS = 2
    prune(now)
    assert (
        partitions.ensure_partitions(now, partitions.add_months(partitions.month_start(now), -2))
        == []
    )
    assert min(partitions.monthly_partitions()) == partitions.add_months(
        partitions.month_start(now), -2
    )


@pytest.mark.django_db
def test_event_ids_older_than_ingestion_accepts_are_forgotten_and_no_others(owner):
    now = timezone.now()
    old = now - MAX_AGE - timedelta(days=2)
    young = now - MAX_AGE + timedelta(hours=1)
    store(
        owner, None, [CleanRecord("SD", 1, old, "old"), CleanRecord("SD", 1, young, "young")], now
    )
    assert prune(now).keys_forgotten == 1
    assert list(RecordKey.objects.values_list("event_id", flat=True)) == ["young"]
    # The old record itself is kept (retention is off); ingestion refuses its resend anyway.
    assert UsageRecord.objects.filter(event_id="old").exists()
    assert (
        ingest(
            owner,
            None,
            [{"model": "SD", "count": 1, "id": "young", "timestamp": young.isoformat()}],
            now,
        ).duplicates
        == 1
    )


# --- Migration 0012: converting a table that holds records ------------------------------

BEFORE = ("usage", "0011_budgets")


@pytest.mark.django_db(transaction=True)
def test_the_migration_partitions_a_stored_table_keeping_every_row_and_id():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate([BEFORE])
    assert not partitions.is_partitioned()
    old_record = executor.loader.project_state([BEFORE]).apps.get_model("usage", "UsageRecord")
    user = get_user_model().objects.create_user("alice")
    start = datetime(2019, 11, 20, tzinfo=UTC)  # months the window would not make
    rows = [
        old_record(
            owner_id=user.pk,
            model=f"m{n % 3}",
            image_count=n % 7 + 1,
            occurred_at=start + timedelta(hours=37 * n),
            received_at=start,
            event_id=f"e{n}" if n % 2 else None,
        )
        for n in range(400)
    ]
    old_record.objects.bulk_create(rows)
    before = sorted(
        old_record.objects.values_list("pk", "model", "image_count", "occurred_at", "event_id")
    )

    MigrationExecutor(connection).migrate(latest)

    assert partitions.is_partitioned()
    after = sorted(
        UsageRecord.objects.values_list("pk", "model", "image_count", "occurred_at", "event_id")
    )
    assert after == before
    stored_in = set(where_stored(*(row[0] for row in after)))
    assert partitions.default_partition() not in stored_in  # every month got its own
    assert len(stored_in) == len({partitions.month_start(row[3]) for row in after})
    assert RecordKey.objects.count() == 200
    # New ids follow the old ones; a stored event id is still a duplicate.
    now = timezone.now()
    assert (
        store(
            user, None, [CleanRecord("SD", 1, now, "fresh"), CleanRecord("SD", 1, now, "e1")], now
        )
        == 1
    )
    assert UsageRecord.objects.get(event_id="fresh").pk > max(row[0] for row in before)

    # And back: one plain table again, the same rows, refusing duplicates by itself.
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    assert not partitions.is_partitioned()
    assert old_record.objects.count() == 401
    MigrationExecutor(connection).migrate(latest)
    assert UsageRecord.objects.count() == 401


@pytest.mark.django_db(transaction=True)
def test_two_servers_pruning_at_once_drop_each_month_once(settings):
    # Every server process runs the daily upkeep; they must not trip over each other.
    now = timezone.now()
    settings.RECORD_RETENTION_MONTHS = 1
    cut = partitions.add_months(partitions.month_start(now), -1)
    old = {n for m, n in partitions.monthly_partitions().items() if m < cut}
    start = threading.Barrier(2)
    results, failures = [], []

    def run() -> None:
        start.wait()
        try:
            results.append(prune(now))
        except Exception as error:  # the assertion below names it
            failures.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    dropped = [name for result in results for name in result.dropped]
    assert sorted(dropped) == sorted(old)
    assert min(partitions.monthly_partitions()) == cut
    # Put the months back for the tests after this one (the database outlives the test).
    partitions.ensure_partitions(now)
