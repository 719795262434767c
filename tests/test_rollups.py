"""The rollups, with the records not yet counted into them, always equal what the raw records
say, whatever the zone, the writers, and when the fold runs."""

import threading
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import make_record
from tests.example_counts import examples
from usage.dialects import current
from usage.folding import fold_all
from usage.ingest import CleanRecord, store
from usage.models import (
    DailyUsageRollup,
    RecordKey,
    UncountedRecord,
    UsageRecord,
    UsageRollup,
)
from usage.rollups import EVENTS_BY, IMAGES_BY, delete_records, rebuild
from usage.summary import DateRange, daily_totals, summarize

# Whole-hour zones with DST, and zones whose midnight falls on a half or quarter hour,
# one of them (Lord Howe) with a 30-minute DST change.
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Australia/Adelaide",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
]
# 5 March to 8 April 2026 holds the US (8 March), EU (29 March) and Australian and
# New Zealand (5 April) DST changes.
WINDOW_START = datetime(2026, 3, 5, tzinfo=UTC)
WINDOW_MINUTES = 34 * 24 * 60
NOW = datetime(2026, 4, 9, tzinfo=UTC)

moments = st.builds(
    lambda minutes, seconds: WINDOW_START + timedelta(minutes=minutes, seconds=seconds),
    st.integers(0, WINDOW_MINUTES),
    st.integers(0, 59),
)
clean_records = st.builds(
    CleanRecord,
    model=st.sampled_from(["SDXL", "Flux", "Kandinsky"]),
    image_count=st.integers(1, 10_000),
    occurred_at=moments,
    # A small pool of ids, so that batches share some: those are duplicates.
    event_id=st.none() | st.sampled_from([f"evt-{n}" for n in range(30)]),
)
batches = st.lists(
    st.lists(clean_records, min_size=1, max_size=25, unique_by=lambda r: r.event_id or id(r)),
    min_size=1,
    max_size=4,
)


def recount(owner_id: int, date_range: DateRange) -> dict[tuple[date, str], list[int]]:
    """``daily_totals`` computed the slow way, from every raw record."""
    totals: dict[tuple[date, str], list[int]] = {}
    for record in UsageRecord.objects.filter(owner_id=owner_id):
        day = record.occurred_at.astimezone(date_range.tz).date()
        if date_range.start <= day <= date_range.end:
            entry = totals.setdefault((day, record.model), [0, 0])
            entry[0] += record.image_count
            entry[1] += 1
    return totals


def rollup_rows() -> list[tuple]:
    """The hourly rollup rows, once every stored record is counted into them."""
    fold_all()
    return sorted(UsageRollup.objects.values_list("owner_id", "hour", "model", *COUNTER_FIELDS))


def daily_rows() -> list[tuple]:
    fold_all()
    return sorted(
        DailyUsageRollup.objects.values_list("owner_id", "day", "model", *IMAGES_BY, *EVENTS_BY)
    )


COUNTER_FIELDS = [f"{kind}_q{q}" for kind in ("images", "events") for q in range(4)]
ranges = st.builds(
    lambda zone, first, length: DateRange(
        date(2026, 3, 4) + timedelta(days=first),
        date(2026, 3, 4) + timedelta(days=first + length),
        ZoneInfo(zone),
    ),
    st.sampled_from(ZONES),
    st.integers(0, 30),
    st.integers(0, 10),
)


@pytest.mark.django_db
@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(batches=batches, date_range=ranges)
def test_rollups_equal_the_raw_records_in_any_zone_and_range(owner, batches, date_range):
    UsageRecord.objects.all().delete()
    RecordKey.objects.all().delete()  # the event ids too, so that each example is new
    UsageRollup.objects.all().delete()
    DailyUsageRollup.objects.all().delete()
    for batch in batches:
        store(owner, None, batch, NOW)
    assert dict(daily_totals(owner.pk, date_range)) == recount(owner.pk, date_range)


@pytest.mark.django_db
@settings(
    max_examples=examples(30),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(batches=batches)
def test_a_rebuild_gives_the_rollups_that_ingestion_kept(owner, other, batches):
    UsageRecord.objects.all().delete()
    RecordKey.objects.all().delete()  # the event ids too, so that each example is new
    UsageRollup.objects.all().delete()
    DailyUsageRollup.objects.all().delete()
    for batch in batches:
        store(owner, None, batch, NOW)
        store(other, None, batch[:3], NOW)
    kept, kept_daily = rollup_rows(), daily_rows()
    assert rebuild(owner.pk) > 0
    assert (rollup_rows(), daily_rows()) == (kept, kept_daily)
    UsageRollup.objects.all().delete()
    DailyUsageRollup.objects.all().delete()
    rebuild()
    assert (rollup_rows(), daily_rows()) == (kept, kept_daily)


steps = st.lists(
    st.one_of(
        st.tuples(st.just("store"), st.lists(clean_records, min_size=1, max_size=12)),
        st.tuples(st.just("fold"), st.integers(1, 8)),  # a fold of at most this many
        st.tuples(st.just("delete"), st.integers(0, 10)),  # records with this many images
        st.tuples(st.just("rebuild"), st.none()),
    ),
    min_size=1,
    max_size=10,
)


@pytest.mark.django_db
@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=steps, date_range=ranges)
def test_reads_are_exact_whenever_the_fold_runs(owner, other, steps, date_range):
    """Single records and small batches wait uncounted (on PostgreSQL) until a fold; stores,
    partial folds, deletes and rebuilds in any order, and every read in between exact."""
    UsageRecord.objects.all().delete()
    RecordKey.objects.all().delete()  # the event ids too, so that each example is new
    UsageRollup.objects.all().delete()
    DailyUsageRollup.objects.all().delete()
    for action, argument in steps:
        if action == "store":
            for record in _unique_ids(argument):  # as desktop apps send: one at a time
                store(owner, None, [record], NOW)
            store(other, None, _unique_ids(argument)[:2], NOW)
        elif action == "fold":
            current().fold(argument)
        elif action == "delete":
            delete_records(UsageRecord.objects.filter(image_count__lte=argument * 1000))
        else:
            rebuild(owner.pk)
        assert dict(daily_totals(owner.pk, date_range)) == recount(owner.pk, date_range)
        assert dict(daily_totals(other.pk, date_range)) == recount(other.pk, date_range)
    counted = rollup_rows(), daily_rows()  # everything folded
    assert UncountedRecord.objects.count() == 0
    rebuild()
    assert (rollup_rows(), daily_rows()) == counted


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="only PostgreSQL leaves single records uncounted"
)
def test_a_single_record_waits_uncounted_and_a_large_batch_is_counted_at_once(owner):
    one = CleanRecord("SD", 2, datetime(2026, 3, 10, 9, tzinfo=UTC), None)
    store(owner, None, [one], NOW)
    assert UncountedRecord.objects.count() == 1
    assert not UsageRollup.objects.exists()
    batch = [CleanRecord("SD", 1, one.occurred_at, f"e{n}") for n in range(25)]
    store(owner, None, batch, NOW)
    assert UncountedRecord.objects.count() == 1
    assert UsageRollup.objects.get().images == 25
    assert fold_all() == 1
    assert UsageRollup.objects.get().images == 27
    assert not UncountedRecord.objects.exists()


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="only PostgreSQL leaves single records uncounted"
)
def test_a_fold_drops_the_mark_of_a_record_deleted_without_the_orm(owner):
    for minute, images in ((0, 2), (5, 3)):
        moment = datetime(2026, 3, 10, 9, minute, tzinfo=UTC)
        store(owner, None, [CleanRecord("SD", images, moment, None)], NOW)
    UsageRecord.objects.filter(image_count=2)._raw_delete(UsageRecord.objects.db)  # bulk SQL
    assert UncountedRecord.objects.count() == 2
    assert fold_all() == 2
    assert rollup_rows() == [
        (owner.pk, datetime(2026, 3, 10, 9, tzinfo=UTC), "SD", 3, 0, 0, 0, 1, 0, 0, 0)
    ]


def test_a_half_hour_zone_splits_the_hour_that_midnight_cuts(owner):
    # Kolkata is UTC+05:30: 18:20 UTC is 23:50 on the 10th, 18:40 UTC is 00:10 on the 11th.
    make_record(owner, datetime(2026, 3, 10, 18, 20, tzinfo=UTC), images=3)
    make_record(owner, datetime(2026, 3, 10, 18, 40, tzinfo=UTC), images=5)
    kolkata = DateRange(date(2026, 3, 10), date(2026, 3, 11), ZoneInfo("Asia/Kolkata"))
    assert dict(daily_totals(owner.pk, kolkata)) == {
        (date(2026, 3, 10), "SD"): [3, 1],
        (date(2026, 3, 11), "SD"): [5, 1],
    }
    only_the_11th = DateRange(date(2026, 3, 11), date(2026, 3, 11), ZoneInfo("Asia/Kolkata"))
    assert summarize(owner, only_the_11th, "day")["totals"] == {"images": 5, "events": 1}


def test_a_duplicate_is_counted_once(owner):
    record = CleanRecord("SDXL", 4, datetime(2026, 3, 10, 9, tzinfo=UTC), "evt-1")
    assert store(owner, None, [record], NOW) == 1
    assert store(owner, None, [record], NOW) == 0
    fold_all()
    rollup = UsageRollup.objects.get()
    assert (rollup.images, rollup.events) == (4, 1)


@pytest.mark.parametrize("folded_first", [True, False], ids=["counted", "not yet counted"])
def test_deleting_records_takes_them_out_of_the_rollups(owner, other, folded_first):
    def single(user, minute, images):  # as a desktop app sends it: left for the fold
        store(
            user,
            None,
            [CleanRecord("SD", images, datetime(2026, 3, 10, 9, minute, tzinfo=UTC), None)],
            NOW,
        )

    for minute in (5, 20, 50):
        single(owner, minute, minute)
    single(other, 5, 7)
    if folded_first:
        fold_all()
    assert delete_records(UsageRecord.objects.filter(owner=owner, image_count__gte=20)) == 2
    assert rollup_rows() == sorted(
        [
            (owner.pk, datetime(2026, 3, 10, 9, tzinfo=UTC), "SD", 5, 0, 0, 0, 1, 0, 0, 0),
            (other.pk, datetime(2026, 3, 10, 9, tzinfo=UTC), "SD", 7, 0, 0, 0, 1, 0, 0, 0),
        ]
    )
    assert delete_records(UsageRecord.objects.filter(owner=owner)) == 1
    assert [row[0] for row in rollup_rows()] == [other.pk]  # no empty row is left behind
    assert [row[0] for row in daily_rows()] == [other.pk]


def test_the_admin_delete_action_updates_the_rollups(client, staff, owner):
    record = make_record(owner, datetime(2026, 3, 10, 9, tzinfo=UTC), images=2)
    make_record(owner, datetime(2026, 3, 10, 9, 30, tzinfo=UTC), images=3)
    client.force_login(staff)
    response = client.post(
        "/admin/usage/usagerecord/",
        {"action": "delete_selected", "_selected_action": [record.pk], "post": "yes"},
    )
    assert response.status_code == 302
    fold_all()
    rollup = UsageRollup.objects.get()
    assert (rollup.images, rollup.events) == (3, 1)


def test_the_rebuild_command_repairs_damaged_rollups(owner, other, capsys):
    make_record(owner, datetime(2026, 3, 10, 9, tzinfo=UTC), images=2)
    make_record(other, datetime(2026, 3, 10, 9, tzinfo=UTC), images=6)
    kept = rollup_rows()
    UsageRollup.objects.filter(owner=owner).update(images_q0=999)
    UsageRollup.objects.create(owner=owner, hour=datetime(2026, 1, 1, tzinfo=UTC), model="x")
    call_command("rebuild_rollups", "alice")
    assert rollup_rows() == kept
    UsageRollup.objects.all().update(events_q0=0)
    call_command("rebuild_rollups")
    assert rollup_rows() == kept
    assert "Rebuilt 4 rollup rows for 2 users." in capsys.readouterr().out  # 2 hourly, 2 daily


def test_the_rebuild_command_refuses_unknown_users(owner):
    with pytest.raises(CommandError, match="No such user: nobody"):
        call_command("rebuild_rollups", "alice", "nobody")


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SQLite serialises writers, so there are no concurrent writers to race",
)
@pytest.mark.django_db(transaction=True)
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(batches=st.lists(st.lists(clean_records, min_size=1, max_size=40), min_size=4, max_size=6))
def test_concurrent_writers_sharing_event_ids_keep_the_rollups_exact(owner, batches):
    UsageRecord.objects.all().delete()
    RecordKey.objects.all().delete()  # the event ids too, so that each example is new
    UsageRollup.objects.all().delete()
    DailyUsageRollup.objects.all().delete()
    start = threading.Barrier(len(batches))
    errors = []

    def write(batch):
        try:
            start.wait()
            store(owner, None, _unique_ids(batch), NOW)
        except Exception as error:  # reported below; a thread's exception is otherwise lost
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    stored_ids = Counter(UsageRecord.objects.values_list("event_id", flat=True))
    assert all(count == 1 for event_id, count in stored_ids.items() if event_id)
    whole = DateRange(date(2026, 3, 1), date(2026, 4, 10), ZoneInfo("Asia/Kathmandu"))
    assert dict(daily_totals(owner.pk, whole)) == recount(owner.pk, whole)


def _unique_ids(batch: list[CleanRecord]) -> list[CleanRecord]:
    """The batch without repeated event ids, as ingestion hands it to ``store``."""
    seen: set[str] = set()
    unique = []
    for record in batch:
        if record.event_id is None or record.event_id not in seen:
            unique.append(record)
            seen.add(record.event_id or "")
    return unique


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SQLite serialises writers, and counts every record at once",
)
@pytest.mark.django_db(transaction=True)
def test_folds_in_many_processes_count_each_record_once_while_records_arrive(owner, other):
    """Four writers post single records while three folders fold in small bites at once and
    an admin deletes some: each record is counted once, and reads stay exact throughout."""
    UsageRecord.objects.all().delete()
    RecordKey.objects.all().delete()  # the event ids too, so that each example is new
    UsageRollup.objects.all().delete()
    DailyUsageRollup.objects.all().delete()
    start = threading.Barrier(8)
    writing = threading.Event()
    writing.set()
    errors = []

    def in_thread(work):
        def run():
            try:
                start.wait()
                work()
            except Exception as error:  # reported below; a thread's exception is otherwise lost
                errors.append(error)
            finally:
                connection.close()

        return threading.Thread(target=run)

    def write(n):
        def work():
            for i in range(60):
                moment = WINDOW_START + timedelta(minutes=97 * i + 13 * n)
                store(
                    owner if i % 3 else other,
                    None,
                    [CleanRecord("SD", 1 + i % 5, moment, f"w{n}-{i}")],
                    NOW,
                )

        return work

    def fold():
        while writing.is_set():
            current().fold(7)

    def delete():
        for _ in range(5):
            delete_records(UsageRecord.objects.filter(image_count=5)[:3])

    writers = [in_thread(write(n)) for n in range(4)]
    others = [in_thread(fold) for _ in range(3)] + [in_thread(delete)]
    for thread in writers + others:
        thread.start()
    for thread in writers:
        thread.join()
    writing.clear()
    for thread in others:
        thread.join()
    assert errors == []
    whole = DateRange(date(2026, 3, 1), date(2026, 4, 10), ZoneInfo("Asia/Kathmandu"))
    for user in (owner, other):
        assert dict(daily_totals(user.pk, whole)) == recount(user.pk, whole)
    counted = rollup_rows(), daily_rows()
    rebuild()
    assert (rollup_rows(), daily_rows()) == counted
