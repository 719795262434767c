"""Prices and costs (usage.costs): a record costs its images times the price in force when it
occurred, and every cost read from the rollups equals that sum over the raw records."""

from bisect import bisect_right
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from babel.numbers import get_currency_precision
from django.core.exceptions import ValidationError
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import make_record
from tests.example_counts import examples
from usage.costs import (
    NOTHING,
    UNIT_PLACES,
    Spend,
    bucket_stretches,
    check_price,
    costs_of,
    display,
    exact,
    price_book,
    spend_between,
    summarize_with_costs,
    to_units,
    units_shown,
)
from usage.dialects import current
from usage.ingest import CleanRecord, store
from usage.models import DailyUsageRollup, ModelPrice, UsageRecord, UsageRollup
from usage.summary import DateRange, bucket_of, periods, range_totals

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 4, 9, tzinfo=UTC)
WINDOW_START = datetime(2026, 3, 5, tzinfo=UTC)
WINDOW_MINUTES = 34 * 24 * 60
MODELS = ["SDXL", "Flux", "Kandinsky"]


def price(model: str, amount: str, valid_from: datetime) -> ModelPrice:
    return ModelPrice.objects.create(
        model=model, price_per_image=Decimal(amount), valid_from=valid_from
    )


def price_in_force(model: str, moment: datetime) -> Decimal | None:
    """The oracle, asked of the database record by record: the latest price not after."""
    found = (
        ModelPrice.objects.filter(model=model, valid_from__lte=moment)
        .order_by("-valid_from")
        .first()
    )
    return found.price_per_image if found else None


def raw_spend(owner, start: datetime, end: datetime) -> Spend:
    """``spend_between`` the slow way: every raw record, priced one by one."""
    images, cost, unpriced = 0, Decimal(0), 0
    for record in UsageRecord.objects.filter(
        owner=owner, occurred_at__gte=start, occurred_at__lt=end
    ):
        images += record.image_count
        unit = price_in_force(record.model, record.occurred_at)
        if unit is None:
            unpriced += record.image_count
        else:
            cost += record.image_count * unit
    return Spend(images, cost, unpriced)


def test_each_record_costs_its_images_times_the_price_in_force_when_it_occurred(owner):
    change = datetime(2026, 3, 10, 10, 15, tzinfo=UTC)
    price("SDXL", "0.04", datetime(2026, 3, 1, tzinfo=UTC))
    price("SDXL", "0.05", change)
    make_record(owner, change - timedelta(seconds=1), "SDXL", images=3)  # old price
    make_record(owner, change, "SDXL", images=2)  # exactly at valid_from: the new price
    make_record(owner, change + timedelta(hours=30), "SDXL", images=10)
    make_record(owner, change, "Unpriced", images=7)
    spend = spend_between(owner.pk, datetime(2026, 3, 10, tzinfo=UTC), NOW)
    assert spend == Spend(images=22, cost=Decimal("0.72"), unpriced_images=7)


def test_images_before_a_models_first_price_have_no_price(owner):
    first = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
    price("Flux", "1.5", first)
    make_record(owner, first - timedelta(minutes=1), "Flux", images=4)
    make_record(owner, first + timedelta(minutes=1), "Flux", images=2)
    spend = spend_between(owner.pk, datetime(2026, 3, 10, 12, tzinfo=UTC), NOW)
    assert spend == Spend(images=6, cost=Decimal("3.0"), unpriced_images=4)


def test_the_stretch_is_half_open_on_quarter_hours(owner):
    price("SD", "1", datetime(2026, 1, 1, tzinfo=UTC))
    start = datetime(2026, 3, 10, 9, 45, tzinfo=UTC)
    make_record(owner, start - timedelta(microseconds=1), images=1)
    make_record(owner, start, images=10)
    make_record(owner, start + timedelta(minutes=29, seconds=59), images=100)
    make_record(owner, start + timedelta(minutes=30), images=1000)
    assert spend_between(owner.pk, start, start + timedelta(minutes=30)).cost == Decimal(110)


def test_another_users_records_cost_this_owner_nothing(owner, other):
    price("SD", "2", datetime(2026, 1, 1, tzinfo=UTC))
    make_record(other, datetime(2026, 3, 10, tzinfo=UTC), images=5)
    make_record(owner, datetime(2026, 3, 10, tzinfo=UTC), images=1)
    assert spend_between(owner.pk, WINDOW_START, NOW) == Spend(1, Decimal(2), 0)
    assert spend_between(other.pk, WINDOW_START, NOW) == Spend(5, Decimal(10), 0)


def test_spend_between_refuses_times_off_the_quarter_hour(owner):
    with pytest.raises(ValueError, match="quarter"):
        spend_between(owner.pk, datetime(2026, 3, 1, 0, 7, tzinfo=UTC), NOW)


def test_an_empty_or_reversed_stretch_spends_nothing(owner):
    make_record(owner, datetime(2026, 3, 10, tzinfo=UTC))
    assert spend_between(owner.pk, NOW, NOW) == Spend(0, Decimal(0), 0)
    assert spend_between(owner.pk, NOW, WINDOW_START) == Spend(0, Decimal(0), 0)


# The property: any records, any prices, any stretch -------------------------------------

moments = st.builds(
    lambda minutes, seconds: WINDOW_START + timedelta(minutes=minutes, seconds=seconds),
    st.integers(0, WINDOW_MINUTES),
    st.integers(0, 59),
)
quarter_hours = st.builds(
    lambda quarters: WINDOW_START + timedelta(minutes=15 * quarters),
    st.integers(-8, WINDOW_MINUTES // 15 + 8),
)
clean_records = st.builds(
    CleanRecord,
    model=st.sampled_from(MODELS),
    image_count=st.integers(1, 10_000),
    occurred_at=moments,
    event_id=st.none(),
)
# Prices with up to 8 decimals, several per model: changes land inside hours and days.
prices = st.lists(
    st.tuples(
        st.sampled_from(MODELS[:2]),  # Kandinsky never has a price
        st.decimals(Decimal(0), Decimal("99.99999999"), places=8),
        quarter_hours,
    ),
    max_size=8,
    unique_by=lambda entry: (entry[0], entry[2]),
)
# Single records are left uncounted on PostgreSQL until a fold; batches are counted at once.
writes = st.lists(
    st.tuples(st.booleans(), st.lists(clean_records, min_size=1, max_size=12)),
    min_size=1,
    max_size=4,
)


def store_all(owner, writes) -> None:
    for one_by_one, batch in writes:
        if one_by_one:
            for record in batch:
                store(owner, None, [record], NOW)
        else:
            store(owner, None, batch, NOW)


def reset(prices_given) -> None:
    UsageRecord.objects.all().delete()
    UsageRollup.objects.all().delete()
    DailyUsageRollup.objects.all().delete()
    ModelPrice.objects.all().delete()
    for model, amount, valid_from in prices_given:
        price(model, str(amount), valid_from)


@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(writes=writes, prices_given=prices, bounds=st.tuples(quarter_hours, quarter_hours))
def test_spend_between_equals_the_raw_records_priced_one_by_one(
    owner, other, writes, prices_given, bounds
):
    reset(prices_given)
    store_all(owner, writes)
    store_all(other, writes[:1])
    start, end = sorted(bounds)
    assert spend_between(owner.pk, start, end) == raw_spend(owner, start, end)
    current().fold(3)  # some of the uncounted records counted: still exact
    assert spend_between(owner.pk, start, end) == raw_spend(owner, start, end)


# Zones whose midnight is on a half or quarter hour, and zones with DST changes in the window
# (US on 8 March, EU on 29 March, Lord Howe's 30-minute change on 5 April 2026).
ZONES = [
    "UTC",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
]
ranges = st.builds(
    lambda zone, first, length: DateRange(
        date(2026, 3, 4) + timedelta(days=first),
        date(2026, 3, 4) + timedelta(days=first + length),
        ZoneInfo(zone),
    ),
    st.sampled_from(ZONES),
    st.integers(0, 30),
    st.integers(0, 40),
)


def raw_bucket_spends(owner, date_range: DateRange, granularity: str) -> dict:
    """``{(bucket, model): Spend}`` from every raw record, each priced on its own."""
    labels = periods(date_range, granularity)
    spends: dict[tuple[int, str], Spend] = {}
    for record in UsageRecord.objects.filter(owner=owner):
        day = record.occurred_at.astimezone(date_range.tz).date()
        if not date_range.start <= day <= date_range.end:
            continue
        key = (labels.index(bucket_of(day, granularity)), record.model)
        unit = price_in_force(record.model, record.occurred_at)
        cost = Decimal(0) if unit is None else record.image_count * unit
        unpriced = record.image_count if unit is None else 0
        spends[key] = spends.get(key, NOTHING) + Spend(record.image_count, cost, unpriced)
    return spends


@settings(
    max_examples=examples(80),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    writes=writes,
    prices_given=prices,
    date_range=ranges,
    granularity=st.sampled_from(["day", "week", "month"]),
)
def test_bucket_costs_equal_the_raw_records_priced_one_by_one_in_any_zone(
    owner, other, writes, prices_given, date_range, granularity
):
    """The cost of each bucket and model, read from the rollups (and the uncounted records),
    is exactly the sum of each raw record's images times the price in force when it
    occurred, with prices changing inside hours and days, in any zone; and the summary
    shows each figure, each model's and the total rounded from those exact sums."""
    reset(prices_given)
    store_all(owner, writes)
    store_all(other, writes[-1:])
    expected = raw_bucket_spends(owner, date_range, granularity)

    rows = range_totals(owner.pk, date_range, granularity).buckets()
    stretches = bucket_stretches(date_range, granularity)
    cells = [(stretches[bucket], model, images) for bucket, model, images, _ in rows]
    got = costs_of(owner.pk, cells)
    assert dict(zip([(b, m) for b, m, _, _ in rows], got, strict=True)) == expected

    body = summarize_with_costs(owner, date_range, granularity)
    labels = body["periods"]

    def shown(spend: Spend) -> str | None:
        return display(spend.cost) if spend.priced_images or not spend.images else None

    assert {(labels.index(p["period"]), p["model"]): p["cost"] for p in body["series"]} == {
        key: shown(spend) for key, spend in expected.items()
    }
    total = sum(expected.values(), NOTHING)
    assert body["totals"]["cost"] == shown(total)
    assert body["totals"]["unpricedImages"] == total.unpriced_images
    for entry in body["models"]:
        spend = sum((s for (_, m), s in expected.items() if m == entry["model"]), NOTHING)
        assert (entry["cost"], entry["unpricedImages"]) == (shown(spend), spend.unpriced_images)
    for bucket, cost in enumerate(body["periodCosts"]):
        spend = sum((s for (b, _), s in expected.items() if b == bucket), NOTHING)
        assert cost == shown(spend)


@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    writes=writes,
    cut_moments=st.lists(quarter_hours, max_size=4, unique=True),
    date_range=ranges,
    granularity=st.sampled_from(["day", "week", "month"]),
)
def test_buckets_cut_at_price_starts_hold_exactly_the_records_between_the_cuts(
    owner, other, writes, cut_moments, date_range, granularity
):
    """What summaries price by: each bucket's images in parts split at the cuts (quarter
    hours, inside hours and days, in any zone) are the raw records of that bucket between
    those cuts, and the parts add up to the uncut buckets."""
    reset([])
    store_all(owner, writes)
    store_all(other, writes[-1:])
    lo, hi = date_range.utc_bounds()
    cuts = tuple(sorted(moment for moment in cut_moments if lo < moment < hi))
    labels = periods(date_range, granularity)
    expected: dict[tuple[int, str], list[int]] = {}
    for record in UsageRecord.objects.filter(owner=owner):
        day = record.occurred_at.astimezone(date_range.tz).date()
        if not date_range.start <= day <= date_range.end:
            continue
        bucket = labels.index(bucket_of(day, granularity))
        part = bisect_right(cuts, record.occurred_at)
        sums = expected.setdefault((bucket * (len(cuts) + 1) + part, record.model), [0, 0])
        sums[0] += record.image_count
        sums[1] += 1

    cut = range_totals(owner.pk, date_range, granularity, cuts=cuts)
    assert cut.parts == len(cuts) + 1
    assert {(label, model): [images, events] for label, model, images, events in cut.rows} == (
        expected
    )
    whole = range_totals(owner.pk, date_range, granularity)
    assert sorted(cut.buckets()) == sorted(whole.buckets())
    assert cut.tokens == whole.tokens


@given(units=st.integers(0, 10**24), code=st.sampled_from(["USD", "JPY", "BHD", "EUR"]))
def test_costs_added_up_in_units_are_shown_as_the_decimals_are(units, code):
    """Summaries add money up as whole units of the prices' last decimal; each figure is
    then shown exactly as ``display`` shows the same amount as a ``Decimal`` (half to even,
    the currency's decimals)."""
    places = -Decimal(1).scaleb(-get_currency_precision(code)).as_tuple().exponent
    amount = Decimal(units).scaleb(-UNIT_PLACES)
    assert units_shown(units, places) == display(amount, code)
    assert to_units(amount) == units


def test_a_price_with_more_decimals_than_stored_is_refused_rather_than_cut():
    with pytest.raises(ValueError, match="decimals"):
        to_units(Decimal("0.123456789"))


def test_the_price_book_reads_every_price_exactly_in_utc():
    """Read by hand on PostgreSQL, through the ORM on SQLite: the same prices either way,
    with every decimal (SQLite keeps 15 significant digits, enough for these)."""
    stored = [
        price("SDXL", "0.00000001", datetime(2026, 3, 5, 13, 15, tzinfo=UTC)),
        price("SDXL", "1234567.12345678", datetime(2026, 3, 6, tzinfo=UTC)),
        price("Flux", "0.04", datetime(2026, 3, 5, 23, 45, tzinfo=ZoneInfo("Asia/Kolkata"))),
    ]
    rows = sorted(current().prices(connection))
    assert rows == sorted((p.model, p.valid_from, p.price_per_image) for p in stored)
    assert [f"{amount:f}" for _, _, amount in rows] == [
        "0.04000000",
        "0.00000001",
        "1234567.12345678",
    ]
    assert all(moment.utcoffset() == timedelta(0) for _, moment, _ in rows)
    book = price_book()
    assert book.price_at("SDXL", datetime(2026, 3, 5, 13, 15, tzinfo=UTC)) == Decimal("1E-8")
    assert book.units_at("SDXL", datetime(2026, 3, 7, tzinfo=UTC)) == 123456712345678


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="only PostgreSQL leaves single records uncounted"
)
def test_uncounted_records_are_priced_before_the_fold(owner):
    price("SD", "0.25", datetime(2026, 3, 10, 9, 15, tzinfo=UTC))
    store(owner, None, [CleanRecord("SD", 4, datetime(2026, 3, 10, 9, 20, tzinfo=UTC), None)], NOW)
    store(owner, None, [CleanRecord("SD", 8, datetime(2026, 3, 10, 9, 10, tzinfo=UTC), None)], NOW)
    spend = spend_between(owner.pk, datetime(2026, 3, 10, tzinfo=UTC), NOW)
    assert spend == Spend(images=12, cost=Decimal(1), unpriced_images=8)


def test_a_stretch_with_a_price_change_is_split_from_one_reading_of_its_images(owner):
    """Records that arrive between the summary's read and the cost's are in both parts of a
    split stretch or in neither: never a part with negative images."""
    stretch = (datetime(2026, 3, 10, tzinfo=UTC), datetime(2026, 3, 11, tzinfo=UTC))
    price("SD", "1", WINDOW_START)
    price("SD", "2", datetime(2026, 3, 10, 12, tzinfo=UTC))
    make_record(owner, datetime(2026, 3, 10, 9, tzinfo=UTC), images=3)
    stale = 3  # what the summary read; then a record arrives after the change
    make_record(owner, datetime(2026, 3, 10, 13, tzinfo=UTC), images=5)
    assert costs_of(owner.pk, [(stretch, "SD", stale)]) == [Spend(8, Decimal(13), 0)]


# Prices and money ---------------------------------------------------------------------------


def test_a_price_starts_on_a_quarter_hour_and_its_model_name_is_normalised():
    quarter = datetime(2026, 3, 1, 7, 45, tzinfo=UTC)
    assert check_price(" Flux\u200b  dev ", Decimal("0.1"), quarter) == "Flux dev"
    assert check_price("\uff26lux", Decimal(0), quarter) == "Flux"  # a fullwidth F
    with pytest.raises(ValidationError) as raised:
        check_price("Flux", Decimal("-1"), datetime(2026, 3, 1, 7, 50, tzinfo=UTC))
    assert set(raised.value.message_dict) == {"price_per_image", "valid_from"}
    with pytest.raises(ValidationError) as raised:
        check_price("\ufb03" * 40, Decimal(1), quarter)  # 40 characters, "ffi" x 40 stored
    assert "at most 100 characters" in raised.value.message_dict["model"][0]


@pytest.mark.parametrize(
    ("currency", "amount", "shown"),
    [
        ("USD", "0.125", "0.12"),
        ("USD", "0.135", "0.14"),
        ("USD", "7", "7.00"),
        ("JPY", "2.5", "2"),
        ("JPY", "3.5", "4"),
        ("KWD", "1.23456", "1.235"),
    ],
)
def test_amounts_are_shown_with_the_currencys_decimals_rounded_half_to_even(
    settings, currency, amount, shown
):
    settings.SITE_CURRENCY = currency
    assert display(Decimal(amount)) == shown


@pytest.mark.parametrize(
    ("amount", "shown"),
    [("0.125", "0.125"), ("3.10000000", "3.10"), ("40", "40.00"), ("1E+3", "1000.00")],
)
def test_exact_amounts_keep_every_decimal_and_at_least_the_currencys(amount, shown):
    assert exact(Decimal(amount)) == shown


# Through the summary API ------------------------------------------------------------------


def test_the_summary_api_shows_costs_per_bucket_model_period_and_total(owner, owner_api):
    change = datetime(2026, 6, 10, 14, 30, tzinfo=UTC)  # inside Wednesday 10 June
    price("SDXL", "0.004", datetime(2026, 6, 1, tzinfo=UTC))
    price("SDXL", "0.0055", change)
    price("DALL-E", "0.04", datetime(2026, 6, 1, tzinfo=UTC))
    make_record(owner, change - timedelta(minutes=1), "SDXL", images=3)  # 0.012
    make_record(owner, change, "SDXL", images=1)  # 0.0055
    make_record(owner, datetime(2026, 6, 15, 9, tzinfo=UTC), "DALL-E", images=2)  # 0.08
    make_record(owner, datetime(2026, 6, 16, 9, tzinfo=UTC), "Flux", images=5)  # no price
    body = owner_api.get(
        "/api/model-usage/summary",
        {"start": "2026-06-08", "end": "2026-06-21", "granularity": "week"},
    ).json()
    assert body["currency"] == "USD"
    assert body["series"] == [
        {"period": "2026-06-08", "model": "SDXL", "images": 4, "cost": "0.02"},  # 0.0175
        {"period": "2026-06-15", "model": "Flux", "images": 5, "cost": None},
        {"period": "2026-06-15", "model": "DALL-E", "images": 2, "cost": "0.08"},
    ]
    assert body["periodCosts"] == ["0.02", "0.08"]
    assert [(m["model"], m["cost"], m["unpricedImages"]) for m in body["models"]] == [
        ("Flux", None, 5),
        ("SDXL", "0.02", 0),
        ("DALL-E", "0.08", 0),
    ]
    # Rounded from the exact 0.0975, not summed from the rounded 0.02 and 0.08.
    assert body["totals"] == {"images": 11, "events": 4, "cost": "0.10", "unpricedImages": 5}
    assert body["unpricedModels"] == ["Flux"]


def test_a_currency_without_minor_units_shows_whole_amounts(owner, owner_api, settings):
    settings.SITE_CURRENCY = "JPY"
    price("SDXL", "2.5", datetime(2026, 6, 1, tzinfo=UTC))
    make_record(owner, datetime(2026, 6, 10, tzinfo=UTC), "SDXL", images=3)  # 7.5
    body = owner_api.get(
        "/api/model-usage/summary", {"start": "2026-06-10", "end": "2026-06-10"}
    ).json()
    assert (body["currency"], body["totals"]["cost"]) == ("JPY", "8")  # 7.5, half to even


def test_another_users_records_add_nothing_to_this_owners_costs(owner, other, owner_api, other_api):
    price("SDXL", "1", datetime(2026, 6, 1, tzinfo=UTC))
    make_record(other, datetime(2026, 6, 10, tzinfo=UTC), "SDXL", images=50)
    make_record(other, datetime(2026, 6, 10, tzinfo=UTC), "Flux", images=1)
    params = {"start": "2026-06-10", "end": "2026-06-10"}
    mine = owner_api.get("/api/model-usage/summary", params).json()
    assert (mine["totals"]["cost"], mine["unpricedModels"], mine["series"]) == ("0.00", [], [])
    assert mine["periodCosts"] == ["0.00"]
    theirs = other_api.get("/api/model-usage/summary", params).json()
    assert (theirs["totals"]["cost"], theirs["unpricedModels"]) == ("50.00", ["Flux"])


def test_price_changes_inside_buckets_cost_no_more_queries(
    owner, owner_api, django_assert_num_queries
):
    for day in range(1, 29):
        make_record(owner, datetime(2026, 6, day, 12, tzinfo=UTC), f"m{day % 5}")
        price(f"m{day % 5}", "1", datetime(2026, 6, day, 11, 45, tzinfo=UTC))
    owner_api.get("/api/model-usage/summary", {"start": "2026-06-01", "end": "2026-06-30"})
    # The prices, then the buckets, each cut where a price starts inside it.
    with django_assert_num_queries(2):
        body = owner_api.get(
            "/api/model-usage/summary", {"start": "2026-06-01", "end": "2026-06-30"}
        ).json()
    assert body["totals"]["cost"] == "28.00"
