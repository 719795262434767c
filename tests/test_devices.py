"""Usage per device (usage/devices.py, and the token in the rollups' keys): the figures per
API token equal a recount from the raw records whatever the writes, folds, deletes and
rebuilds, add up to the unfiltered figures, and never name another user's token."""

import random
from datetime import UTC, date, datetime, timedelta
from importlib import import_module
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import make_record
from tests.example_counts import examples
from tests.test_rollups import NOW, clean_records, ranges
from usage.devices import DELETED_TOKEN_NAME, NO_TOKEN_NAME, parse_token
from usage.dialects import current
from usage.folding import fold_all
from usage.ingest import CleanRecord, store
from usage.models import NO_TOKEN, ApiToken, DailyUsageRollup, UsageRecord, UsageRollup
from usage.problems import InvalidQuery
from usage.rollups import delete_records, rebuild
from usage.summary import DateRange, daily_totals, summarize
from usage.tokens import create_token, revoke_token

WHOLE = DateRange(date(2026, 3, 1), date(2026, 4, 10), ZoneInfo("Asia/Kathmandu"))


@pytest.fixture
def devices(owner) -> list[ApiToken]:
    """Three of the owner's tokens, as three desktop apps or machines would hold."""
    return [create_token(owner, name).token for name in ("Laptop", "Studio PC", "Old Mac")]


def recount(owner_id: int, date_range: DateRange, token: int | None = None) -> dict:
    """``daily_totals`` the slow way, from every raw record (of one token, or all)."""
    totals: dict[tuple[date, str], list[int]] = {}
    for record in UsageRecord.objects.filter(owner_id=owner_id):
        day = record.occurred_at.astimezone(date_range.tz).date()
        in_token = token is None or (record.token_id or NO_TOKEN) == token
        if date_range.start <= day <= date_range.end and in_token:
            entry = totals.setdefault((day, record.model), [0, 0])
            entry[0] += record.image_count
            entry[1] += 1
    return totals


def recount_by_token(owner_id: int, date_range: DateRange) -> dict[int | None, tuple[int, int]]:
    """``{token id or None: (images, events)}`` from every raw record in the range."""
    totals: dict[int | None, list[int]] = {}
    for record in UsageRecord.objects.filter(owner_id=owner_id):
        day = record.occurred_at.astimezone(date_range.tz).date()
        if date_range.start <= day <= date_range.end:
            entry = totals.setdefault(record.token_id, [0, 0])
            entry[0] += record.image_count
            entry[1] += 1
    return {token: (images, events) for token, (images, events) in totals.items()}


def by_token(summary: dict) -> dict[int | None, tuple[int, int]]:
    return {entry["token"]: (entry["images"], entry["events"]) for entry in summary["byToken"]}


def assert_exact(owner, date_range: DateRange, tokens: list[ApiToken]) -> None:
    """Every per-token figure equals the raw records, and the tokens' add up to the whole."""
    summary = summarize(owner, date_range, "day")
    assert by_token(summary) == recount_by_token(owner.pk, date_range)
    whole = daily_totals(owner.pk, date_range)
    assert whole == recount(owner.pk, date_range)
    added: dict[tuple[date, str], list[int]] = {}
    for token in [NO_TOKEN, *(token.pk for token in tokens)]:
        part = daily_totals(owner.pk, date_range, token)
        assert part == recount(owner.pk, date_range, token)
        for key, (images, events) in part.items():
            cell = added.setdefault(key, [0, 0])
            cell[0] += images
            cell[1] += events
    assert added == whole


def empty_everything() -> None:
    UsageRecord.objects.all().delete()
    UsageRollup.objects.all().delete()
    DailyUsageRollup.objects.all().delete()


steps = st.lists(
    st.one_of(
        # Single records, as desktop apps send them: left uncounted on PostgreSQL.
        st.tuples(st.just("singles"), st.integers(0, 3), st.lists(clean_records, max_size=6)),
        # A batch larger than PostgreSQL leaves for the fold: counted at once.
        st.tuples(st.just("batch"), st.integers(0, 3), st.lists(clean_records, min_size=11)),
        st.tuples(st.just("fold"), st.integers(1, 8), st.none()),
        st.tuples(st.just("delete"), st.integers(0, 10), st.none()),
        st.tuples(st.just("rebuild"), st.none(), st.none()),
    ),
    min_size=1,
    max_size=8,
)


@pytest.mark.django_db
@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=steps, date_range=ranges)
def test_per_token_figures_are_exact_through_folds_deletes_and_rebuilds(
    owner, other, other_token, devices, steps, date_range
):
    empty_everything()
    bobs = other_token.token
    choices = [None, *devices]  # index 0: records sent without a token
    for action, argument, records in steps:
        if action in ("singles", "batch"):
            token = choices[argument]
            unique = {r.event_id or id(r): r for r in records}.values()
            batches = [[r] for r in unique] if action == "singles" else [list(unique)]
            for batch in batches:
                store(owner, token, batch, NOW)
                store(other, bobs, batch[:1], NOW)
        elif action == "fold":
            current().fold(argument)
        elif action == "delete":
            delete_records(UsageRecord.objects.filter(image_count__lte=argument * 1000))
        else:
            rebuild(owner.pk)
        assert_exact(owner, date_range, devices)
        assert_exact(owner, WHOLE, devices)
    # Bob's token is never in Alice's figures, and only his own are in his.
    assert bobs.pk not in by_token(summarize(owner, WHOLE, "day"))
    assert set(by_token(summarize(other, WHOLE, "day"))) <= {bobs.pk}


def test_the_breakdown_names_each_token_and_shares_the_images(owner, devices):
    laptop, studio, old_mac = devices
    moment = datetime(2026, 3, 10, 9, tzinfo=UTC)
    make_record(owner, moment, images=6, token=laptop)
    make_record(owner, moment + timedelta(minutes=20), images=1, token=laptop)
    make_record(owner, moment, images=2, token=old_mac)
    make_record(owner, moment, images=1)
    revoke_token(old_mac)
    summary = summarize(
        owner, DateRange(date(2026, 3, 10), date(2026, 3, 10), ZoneInfo("UTC")), "day"
    )
    assert summary["byToken"] == [
        {
            "token": laptop.pk,
            "name": "Laptop",
            "prefix": laptop.display_prefix,
            "revoked": False,
            "images": 7,
            "events": 2,
            "share": 0.7,
        },
        {
            "token": old_mac.pk,
            "name": "Old Mac",
            "prefix": old_mac.display_prefix,
            "revoked": True,
            "images": 2,
            "events": 1,
            "share": 0.2,
        },
        {
            "token": None,
            "name": NO_TOKEN_NAME,
            "prefix": None,
            "revoked": False,
            "images": 1,
            "events": 1,
            "share": 0.1,
        },
    ]
    assert studio.pk not in by_token(summary)  # no usage in the range: no entry


def test_a_token_filter_gives_that_tokens_figures_alone(owner, devices):
    laptop, studio, _ = devices
    moment = datetime(2026, 3, 10, 9, tzinfo=UTC)
    make_record(owner, moment, model="SDXL", images=6, token=laptop)
    make_record(owner, moment, model="Flux", images=3, token=studio)
    make_record(owner, moment, model="Flux", images=4)
    day = DateRange(date(2026, 3, 10), date(2026, 3, 10), ZoneInfo("UTC"))
    studio_only = summarize(owner, day, "day", studio.pk)
    assert studio_only["totals"] == {"images": 3, "events": 1}
    assert studio_only["models"] == [{"model": "Flux", "images": 3, "events": 1}]
    assert by_token(studio_only) == {studio.pk: (3, 1)}
    without = summarize(owner, day, "day", NO_TOKEN)
    assert (without["totals"], by_token(without)) == ({"images": 4, "events": 1}, {None: (4, 1)})


def test_a_token_deleted_outside_the_site_keeps_its_usage_as_a_deleted_token(owner, devices):
    laptop = devices[0]
    make_record(owner, datetime(2026, 3, 10, 9, tzinfo=UTC), images=5, token=laptop)
    laptop_id = laptop.pk
    laptop.delete()  # the shell, say: the admin does not offer it
    summary = summarize(
        owner, DateRange(date(2026, 3, 10), date(2026, 3, 10), ZoneInfo("UTC")), "day"
    )
    assert summary["totals"]["images"] == 5
    assert [(e["token"], e["name"], e["images"]) for e in summary["byToken"]] == [
        (laptop_id, DELETED_TOKEN_NAME, 5)
    ]


@pytest.mark.parametrize("value", [None, ""])
def test_no_token_parameter_means_every_token(owner, value):
    assert parse_token(owner, value) is None


def test_none_means_the_records_sent_without_a_token(owner):
    assert parse_token(owner, "none") == NO_TOKEN


def test_the_owners_tokens_are_accepted_revoked_ones_too(owner, devices):
    revoke_token(devices[2])
    assert [parse_token(owner, str(token.pk)) for token in devices] == [t.pk for t in devices]


@pytest.mark.parametrize(
    "value", ["0", "-1", "1.0", "abc", "None", "\u0661", "9" * 19, "9" * 5000, " 1", "1\x00"]
)
def test_anything_else_is_refused_naming_the_field(owner, devices, value):
    with pytest.raises(InvalidQuery) as refused:
        parse_token(owner, value)
    assert refused.value.field == "token"


def test_another_users_token_is_refused_like_one_that_does_not_exist(owner, other_token):
    bobs = other_token.token
    with pytest.raises(InvalidQuery) as theirs:
        parse_token(owner, str(bobs.pk))
    with pytest.raises(InvalidQuery) as missing:
        parse_token(owner, str(bobs.pk + 1000))
    assert theirs.value.as_body() == missing.value.as_body()


def test_a_single_record_is_in_its_tokens_figures_before_the_fold_too(owner, devices):
    laptop = devices[0]
    store(owner, laptop, [CleanRecord("SD", 3, datetime(2026, 3, 10, 9, tzinfo=UTC), None)], NOW)
    day = DateRange(date(2026, 3, 10), date(2026, 3, 10), ZoneInfo("UTC"))
    before = summarize(owner, day, "day", laptop.pk)
    fold_all()
    after = summarize(owner, day, "day", laptop.pk)
    assert by_token(before) == by_token(after) == {laptop.pk: (3, 1)}
    assert summarize(owner, day, "day", NO_TOKEN)["totals"] == {"images": 0, "events": 0}


# --- Migration 0008: the token into the rollups' keys -------------------------------------

BEFORE_TOKENS = ("usage", "0007_uncounted_records")


def rollup_sums(by_token: bool) -> tuple[list[tuple], list[tuple]]:
    """Every hourly and daily rollup row's totals, keyed by owner, hour or day, model (and
    token), from the tables as they are now."""
    token = ", token_id" if by_token else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT owner_id, hour, model{token}, images_q0 + images_q1 + images_q2 + images_q3, "
            "events_q0 + events_q1 + events_q2 + events_q3 FROM usage_usagerollup"
        )
        hourly = sorted(cursor.fetchall())
        cursor.execute(
            f"SELECT owner_id, day, model{token}, images_by_24, events_by_24, images_by_07 "
            "FROM usage_dailyusagerollup"
        )
        daily = sorted(cursor.fetchall())
    return hourly, daily


@pytest.mark.django_db(transaction=True)
def test_the_migration_recounts_the_rollups_by_token_and_back(owner, other):
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate([BEFORE_TOKENS])
    old = executor.loader.project_state([BEFORE_TOKENS]).apps
    token_model = old.get_model("usage", "ApiToken")
    tokens = [
        token_model.objects.create(owner_id=user.pk, name=name, prefix=name[:8], secret_hash="")
        for user, name in ((owner, "laptop01"), (owner, "studio01"), (other, "bobs0001"))
    ]
    chance = random.Random(8)
    start = datetime(2026, 3, 28, 20, tzinfo=UTC)
    records = []
    for _ in range(400):
        user = chance.choice([owner, owner, other])
        mine = [token for token in tokens if token.owner_id == user.pk]
        moment = start + timedelta(minutes=chance.randrange(3 * 24 * 60))
        records.append(
            old.get_model("usage", "UsageRecord")(
                owner_id=user.pk,
                model=chance.choice(["SDXL", "Flux"]),
                image_count=chance.randint(1, 50),
                occurred_at=moment,
                received_at=moment,
                token_id=chance.choice([None, *(token.pk for token in mine)]),
            )
        )
    old.get_model("usage", "UsageRecord").objects.bulk_create(records)
    migration = import_module("usage.migrations.0008_token_rollups")
    migration.count_all(old, connection)  # the rollups as they were kept before it
    old_hourly, old_daily = rollup_sums(by_token=False)

    MigrationExecutor(connection).migrate(latest)
    kept = rollup_sums(by_token=True)
    rebuild()  # today's recount from the records agrees, row for row
    assert rollup_sums(by_token=True) == kept
    assert len(kept[0]) > len(old_hourly)  # split by token
    whole = DateRange(date(2026, 3, 28), date(2026, 4, 1), ZoneInfo("UTC"))
    for user in (owner, other):
        assert by_token(summarize(user, whole, "day")) == recount_by_token(user.pk, whole)

    MigrationExecutor(connection).migrate([BEFORE_TOKENS])  # and back: the sums per model
    assert rollup_sums(by_token=False) == (old_hourly, old_daily)
    MigrationExecutor(connection).migrate(latest)
