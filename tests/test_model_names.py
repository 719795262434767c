"""Model names in one normal form (usage/model_names.py): at ingestion, in the admin, in the
CSV exports, and for the names stored before, whose rollup rows migration 0006 merges."""

import csv
import io
import random
import unicodedata
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from importlib import import_module

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import post_usage
from tests.example_counts import examples
from usage.model_names import normal_model_name
from usage.models import DailyUsageRollup, UsageRecord, UsageRollup
from usage.rollups import EVENTS_BY, IMAGES_BY, rebuild

# Each spelling a desktop app may send, and the one name it is stored under.
SPELLINGS = {
    "Flux": "Flux",
    "\uff26\uff4c\uff55\uff58": "Flux",  # fullwidth
    "Fl\u200bux": "Flux",  # zero-width space
    "\u202eFlux": "Flux",  # right-to-left override
    "\ufeffFlux\u200d": "Flux",  # byte-order mark, zero-width joiner
    "Fl\u00adux": "Flux",  # soft hyphen
    "Cr\u00e8me": "Cr\u00e8me",  # NFC
    "Cre\u0300me": "Cr\u00e8me",  # NFD, as macOS spells file names
    "Stable Diffusion": "Stable Diffusion",
    "Stable  Diffusion": "Stable Diffusion",  # two spaces
    "Stable\u00a0Diffusion": "Stable Diffusion",  # no-break space
    "Stable\u3000Diffusion": "Stable Diffusion",  # ideographic space
    "\ufb01ne-tune": "fine-tune",  # the ligature fi
    "flux": "flux",  # case is kept: a different name
}


def stored_names() -> list[str]:
    return sorted(set(UsageRecord.objects.values_list("model", flat=True)))


# --- The normal form ------------------------------------------------------------------


@settings(max_examples=examples(1000), deadline=None)
@given(st.text(max_size=30) | st.sampled_from(list(SPELLINGS)))
def test_the_normal_form_is_nfkc_without_format_characters_or_extra_spaces(name):
    normal = normal_model_name(name)
    assert normal_model_name(normal) == normal
    assert unicodedata.is_normalized("NFKC", normal)
    assert unicodedata.is_normalized("NFC", normal)
    assert not any(unicodedata.category(c) == "Cf" for c in normal)
    assert normal == normal.strip() and "  " not in normal


# --- Ingestion ------------------------------------------------------------------------


@pytest.mark.django_db
def test_every_spelling_of_a_model_is_stored_and_summed_as_one(owner, owner_api):
    body = [{"modelName": spelling, "imageCount": 1} for spelling in SPELLINGS]
    response = post_usage(owner_api, body)
    assert response.status_code == 201, response.json()
    assert stored_names() == sorted(set(SPELLINGS.values()))
    models = owner_api.get("/api/model-usage/summary").json()["models"]
    assert [{key: entry[key] for key in ("model", "images", "events")} for entry in models] == [
        {"model": "Flux", "images": 6, "events": 6},
        {"model": "Stable Diffusion", "images": 4, "events": 4},
        {"model": "Cr\u00e8me", "images": 2, "events": 2},
        {"model": "fine-tune", "images": 1, "events": 1},
        {"model": "flux", "images": 1, "events": 1},
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name",
    ["\u200b", "\u202e\u202c", " \ufeff ", "\u200b" * 99 + "\u200d"],
    ids=["zero-width-space", "bidi-controls", "bom-in-spaces", "only-invisible"],
)
def test_a_name_of_only_invisible_characters_is_refused(owner_api, name):
    response = post_usage(owner_api, {"modelName": name, "imageCount": 1})
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"index": 0, "field": "modelName", "message": "'modelName' must be 1 to 100 characters."}
    ]


@pytest.mark.django_db
def test_the_length_limit_holds_for_the_normal_form(owner_api):
    # U+FDFA is one character that NFKC spells out in 18.
    assert post_usage(owner_api, {"model": "\ufdfa" * 5, "count": 1}).status_code == 201
    assert post_usage(owner_api, {"model": "\ufdfa" * 6, "count": 1}).status_code == 400
    # Invisible characters do not count towards the limit.
    assert post_usage(owner_api, {"model": "a\u200b" * 100, "count": 1}).status_code == 201
    assert UsageRecord.objects.filter(model="a" * 100).count() == 1


# --- The admin and the CSV exports ----------------------------------------------------


@pytest.mark.django_db
def test_the_admins_model_filter_and_search_find_a_model_by_any_spelling(staff, owner, owner_api):
    post_usage(owner_api, [{"model": "Flux", "count": 1}, {"model": "SDXL", "count": 1}])
    flux = set(UsageRecord.objects.filter(model="Flux").values_list("pk", flat=True))
    client = Client()
    client.force_login(staff)
    for query in ({"model": "\uff26\uff4c\uff55\uff58"}, {"q": "Fl\u200bux"}):
        response = client.get("/admin/usage/usagerecord/", query)
        assert response.status_code == 200
        assert {record.pk for record in response.context["cl"].result_list} == flux


@pytest.mark.django_db
def test_the_csv_exports_show_the_one_normal_name(owner, owner_api):
    post_usage(owner_api, [{"model": spelling, "count": 1} for spelling in SPELLINGS])
    client = Client()
    client.force_login(owner)
    today = datetime.now(UTC).date().isoformat()
    for url, column in (("/dashboard/export.csv", 2), ("/dashboard/daily-totals.csv", 1)):
        response = client.get(url, {"start": today, "end": today, "tz": "UTC"})
        rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
        assert {row[column] for row in rows[1:]} == set(SPELLINGS.values())


# --- Migration 0006: the names stored before ------------------------------------------

BEFORE = ("usage", "0005_audit")
# Stored before ingestion normalised: every spelling above, and two names that only the
# migration can meet (ingestion refuses them now).
STORED_BEFORE = {
    **SPELLINGS,
    "\u200b": "(unnamed)",
    "\ufdfa" * 6: normal_model_name("\ufdfa" * 6)[:100].rstrip(),
}
HOURLY = [f"{kind}_q{q}" for kind in ("images", "events") for q in range(4)]


def hourly_rows() -> list[tuple]:
    return sorted(UsageRollup.objects.values_list("owner_id", "hour", "model", *HOURLY))


def daily_rows() -> list[tuple]:
    return sorted(
        DailyUsageRollup.objects.values_list("owner_id", "day", "model", *IMAGES_BY, *EVENTS_BY)
    )


def merged(rows: list[tuple]) -> list[tuple]:
    """Rows keyed (owner, hour or day, name) summed under each name's normal spelling."""
    sums: dict[tuple, list[int]] = defaultdict(lambda: [0] * (len(rows[0]) - 3))
    for owner_id, bucket, name, *counters in rows:
        total = sums[(owner_id, bucket, STORED_BEFORE[name])]
        total[:] = [a + b for a, b in zip(total, counters, strict=True)]
    return sorted((*key, *counters) for key, counters in sums.items())


@pytest.mark.django_db(transaction=True)
def test_the_migration_normalises_stored_names_and_merges_their_rollups_exactly():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate([BEFORE])
    old_record = executor.loader.project_state([BEFORE]).apps.get_model("usage", "UsageRecord")
    users = [get_user_model().objects.create_user(name) for name in ("alice", "bob")]
    chance = random.Random(15)
    start = datetime(2026, 3, 28, 20, tzinfo=UTC)  # three UTC days, many shared hours
    spellings = list(STORED_BEFORE)
    records = [
        old_record(
            owner_id=chance.choice(users).pk,
            model=chance.choice(spellings),
            image_count=chance.randint(1, 10_000),
            occurred_at=(moment := start + timedelta(minutes=chance.randrange(3 * 24 * 60))),
            received_at=moment,
        )
        for _ in range(600)
    ]
    old_record.objects.bulk_create(records)
    # The rollups as ingestion kept them then, one row per spelling: counted by migration
    # 0008's own SQL, which counts the rollups of an older state (without their token).
    import_module("usage.migrations.0008_token_rollups").count_all(
        executor.loader.project_state([BEFORE]).apps, connection
    )
    before_hourly, before_daily = hourly_rows(), daily_rows()
    kinds = {(name, owner) for (owner, _hour, name, *_rest) in before_hourly}
    assert len(kinds) == 2 * len(STORED_BEFORE)  # every spelling, for both users

    MigrationExecutor(connection).migrate([("usage", "0006_normal_model_names")])

    names = dict(UsageRecord.objects.values_list("pk", "model"))
    assert names == {record.pk: STORED_BEFORE[record.model] for record in records}
    assert (hourly_rows(), daily_rows()) == (merged(before_hourly), merged(before_daily))
    MigrationExecutor(connection).migrate(latest)  # 0008 recounts them by token: the same
    assert (hourly_rows(), daily_rows()) == (merged(before_hourly), merged(before_daily))
    rebuild()  # and a recount from the renamed records agrees, row for row
    assert (hourly_rows(), daily_rows()) == (merged(before_hourly), merged(before_daily))
