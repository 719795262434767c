"""Retention (usage.retention): old raw records go, every summary and daily total stays.

On PostgreSQL the prune drops whole monthly partitions; on SQLite it deletes rows. The
figures that read the rollups must not move either way, nor after a rebuild.
"""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from usage import partitions
from usage.folding import UPKEEP_EVERY, fold_all, upkeep
from usage.ingest import CleanRecord, store
from usage.models import RecordRetention, UsageRecord
from usage.retention import cut_off, kept_from, prune
from usage.rollups import rebuild

pytestmark = pytest.mark.django_db

ZONES = ("UTC", "Asia/Kolkata", "America/St_Johns")


@pytest.fixture
def now() -> datetime:
    return timezone.now()


@pytest.fixture
def months(now) -> list[datetime]:
    """The first moments of the current month and the eight before it, oldest first."""
    current = partitions.month_start(now)
    return [partitions.add_months(current, back) for back in range(-8, 1)]


@pytest.fixture
def history(owner, other, months, now):
    """Records of both users in every month: batches counted at once, and single records
    left marked uncounted on PostgreSQL (no fold has run), so the prune must count them."""
    for n, month in enumerate(months):
        moments = [month + timedelta(days=d, hours=h) for d in (0, 13, 27) for h in (0, 11, 23)]
        moments = [m for m in moments if m < now]
        batch = [CleanRecord("SDXL", 3 + n, m, f"b-{m:%Y%m%d%H}") for m in moments]
        store(owner, None, batch, now)
        store(other, None, batch[:20], now)
        for m in moments[:2]:
            store(owner, None, [CleanRecord("Flux", 2, m + timedelta(minutes=20), None)], now)


def figures(owner, months, now) -> dict:
    """Everything read from the rollups over the whole history: the summary API by day and
    by month in three zones, and the daily-totals CSV."""
    client = Client()
    client.force_login(owner)
    start = (months[0] - timedelta(days=1)).date().isoformat()
    end = now.date().isoformat()
    found = {}
    for zone in ZONES:
        for granularity in ("day", "month"):
            params = {"start": start, "end": end, "tz": zone, "granularity": granularity}
            response = client.get("/api/model-usage/summary", params)
            assert response.status_code == 200, response.content
            found[(zone, granularity)] = response.json()
        response = client.get(
            "/dashboard/daily-totals.csv", {"start": start, "end": end, "tz": zone}
        )
        assert response.status_code == 200
        text = b"".join(response.streaming_content).decode()
        found[(zone, "csv")] = list(csv.reader(io.StringIO(text)))
    return found


def test_nothing_is_dropped_while_retention_is_off(history, months, now):
    stored = UsageRecord.objects.count()
    result = prune(now)
    assert (result.dropped, result.deleted, result.kept_from) == ([], 0, None)
    assert UsageRecord.objects.count() == stored
    assert kept_from() is None


def test_a_prune_drops_the_months_before_the_cut_off_and_no_figure_changes(
    history, owner, other, months, now, settings
):
    before = figures(owner, months, now), figures(other, months, now)
    kept_before = list(
        UsageRecord.objects.filter(occurred_at__gte=months[-3]).values_list("pk", flat=True)
    )
    monthly = partitions.monthly_partitions() if connection.vendor == "postgresql" else {}
    settings.RECORD_RETENTION_MONTHS = 2

    result = prune(now)

    assert result.kept_from == months[-3] == kept_from()
    assert not UsageRecord.objects.filter(occurred_at__lt=months[-3]).exists()
    remaining = UsageRecord.objects.values_list("pk", flat=True)
    assert sorted(remaining) == sorted(kept_before)
    if connection.vendor == "postgresql":
        # Every month before the cut-off (the empty ones the window made too), whole.
        assert result.dropped == [name for m, name in sorted(monthly.items()) if m < months[-3]]
        assert {partitions.partition_name(m) for m in months[:-3]} <= set(result.dropped)
        assert result.deleted == 0
        assert sorted(partitions.monthly_partitions().values()) == sorted(
            name for m, name in monthly.items() if m >= months[-3]
        )
    else:
        assert result.deleted > 0
    fold_all()
    assert (figures(owner, months, now), figures(other, months, now)) == before


def test_a_rebuild_after_a_prune_keeps_the_rollups_of_the_dropped_months(
    history, owner, months, now, settings
):
    fold_all()
    before = figures(owner, months, now)
    settings.RECORD_RETENTION_MONTHS = 3
    prune(now)
    rebuild(owner.pk)
    assert figures(owner, months, now) == before
    call_command("rebuild_rollups", stdout=io.StringIO())
    assert figures(owner, months, now) == before


def test_a_rebuild_still_recounts_the_months_kept(history, owner, months, now, settings):
    settings.RECORD_RETENTION_MONTHS = 3
    prune(now)
    fold_all()
    before = figures(owner, months, now)
    # A kept month's rollups lost (as a rebuild is for) come back; older ones are not touched.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM usage_dailyusagerollup WHERE day >= %s", [months[-2].date()])
        cursor.execute("DELETE FROM usage_usagerollup WHERE hour >= %s", [months[-2]])
    assert figures(owner, months, now) != before
    rebuild(owner.pk)
    assert figures(owner, months, now) == before


def test_the_cut_off_only_moves_forward(history, now, months, settings):
    settings.RECORD_RETENTION_MONTHS = 2
    prune(now)
    settings.RECORD_RETENTION_MONTHS = 6
    assert prune(now).kept_from == months[-3]
    settings.RECORD_RETENTION_MONTHS = 0
    assert prune(now).kept_from == months[-3]
    assert RecordRetention.objects.count() == 1


def test_the_cut_off_is_the_start_of_a_utc_month():
    now = datetime(2026, 3, 31, 23, 59, tzinfo=UTC)
    assert cut_off(now, 1) == datetime(2026, 2, 1, tzinfo=UTC)
    assert cut_off(now, 13) == datetime(2025, 2, 1, tzinfo=UTC)


def test_a_record_older_than_the_cut_off_sent_after_a_prune_is_counted_then_pruned(
    history, owner, months, now, settings
):
    settings.RECORD_RETENTION_MONTHS = 2
    prune(now)
    fold_all()
    before = figures(owner, months, now)
    late = CleanRecord("SDXL", 7, months[1] + timedelta(days=2), "late-one")
    assert store(owner, None, [late], now) == 1
    fold_all()
    after = figures(owner, months, now)
    assert after != before  # counted into the rollups of its month
    prune(now)
    assert not UsageRecord.objects.filter(event_id="late-one").exists()
    rebuild(owner.pk)
    assert figures(owner, months, now) == after


def test_the_records_api_and_csv_say_from_when_raw_records_are_kept(
    history, owner, owner_api, months, now, settings
):
    assert owner_api.get("/api/model-usage").json()["recordsKeptFrom"] is None
    settings.RECORD_RETENTION_MONTHS = 1
    prune(now)
    stamp = months[-2].strftime("%Y-%m-%dT00:00:00Z")
    body = owner_api.get("/api/model-usage", {"limit": 500}).json()
    assert body["recordsKeptFrom"] == stamp
    assert min(r["timestamp"] for r in body["results"]) >= stamp
    client = Client()
    client.force_login(owner)
    span = {"start": months[0].date().isoformat(), "end": now.date().isoformat()}
    response = client.get("/dashboard/export.csv", span)
    assert response.status_code == 200
    assert response["Records-Kept-From"] == stamp


def test_the_prune_command_says_what_it_dropped_and_from_when_records_are_kept(
    history, months, now, settings
):
    out = io.StringIO()
    call_command("prune_records", stdout=out)
    assert "RECORD_RETENTION_MONTHS is off: every raw record is kept" in out.getvalue()
    settings.RECORD_RETENTION_MONTHS = 4
    out = io.StringIO()
    call_command("prune_records", stdout=out)
    assert f"raw records are kept from {months[-5]:%Y-%m-%d}" in out.getvalue()
    if connection.vendor == "postgresql":
        assert f"Dropped {partitions.partition_name(months[0])}." in out.getvalue()


def test_the_daily_upkeep_of_the_folding_thread_prunes_and_says_when_to_run_again(
    history, months, settings
):
    settings.RECORD_RETENTION_MONTHS = 2
    assert upkeep() == UPKEEP_EVERY
    assert kept_from() == months[-3]
    assert not UsageRecord.objects.filter(occurred_at__lt=months[-3]).exists()
