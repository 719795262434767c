"""The admin: browsing, filtering and exporting usage records; listing and revoking tokens."""

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib import admin
from django.db import transaction
from django.test import Client
from django.utils import timezone

from tests.conftest import make_record, post_usage
from usage import admin as usage_admin
from usage.ingest import ingest
from usage.models import ApiToken, ModelPrice, PluginGeneration, UsageRecord, UsageRollup

RECORDS_URL = "/admin/usage/usagerecord/"
TOKENS_URL = "/admin/usage/apitoken/"


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def records(owner, owner_token, other, other_token) -> dict[str, list[UsageRecord]]:
    """Alice's and Bob's records, stored the way the API stores them."""
    now = timezone.now()
    ingest(
        owner,
        owner_token.token,
        [
            {"modelName": "Stable Diffusion", "imageCount": 4, "id": "a-1"},
            {"modelName": "Flux", "imageCount": 2, "id": "a-2"},
        ],
        now,
    )
    ingest(other, other_token.token, [{"modelName": "Midjourney", "imageCount": 1}], now)
    return {
        "alice": list(UsageRecord.objects.filter(owner=owner)),
        "bob": list(UsageRecord.objects.filter(owner=other)),
    }


def listed(response) -> set[int]:
    return {record.pk for record in response.context["cl"].result_list}


def pks(records: list[UsageRecord]) -> set[int]:
    return {record.pk for record in records}


def export(client, records: list[UsageRecord]) -> list[list[str]]:
    response = client.post(
        RECORDS_URL,
        {"action": "export_csv", "_selected_action": [r.pk for r in records], "index": 0},
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="usage-records.csv"'
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


def test_record_changelist_lists_every_record(staff_client, records):
    response = staff_client.get(RECORDS_URL)

    assert response.status_code == 200
    assert listed(response) == pks(records["alice"] + records["bob"])
    assert b"Stable Diffusion" in response.content
    assert b"Midjourney" in response.content


def test_dates_in_the_admin_read_as_on_the_site_in_24_hour_time(staff_client, owner):
    make_record(owner, datetime(2026, 12, 3, 19, 31, tzinfo=UTC), model="SDXL")

    page = staff_client.get(RECORDS_URL).content.decode()

    assert "3 Dec 2026, 19:31" in page
    assert "p.m." not in page and "Dec. 3" not in page


def test_a_long_event_id_is_cut_in_the_list_but_whole_in_its_title(staff_client, owner):
    event_id = "e" * 100
    make_record(owner, timezone.now(), model="SDXL").__class__.objects.update(event_id=event_id)

    page = staff_client.get(RECORDS_URL).content.decode()

    assert f'<span class="event-id" title="{event_id}">{event_id}</span>' in page
    assert "usage/admin-records.css" in page


def test_model_filter_shows_only_that_model(staff_client, records):
    response = staff_client.get(RECORDS_URL, {"model": "Flux"})

    assert response.status_code == 200
    assert listed(response) == {r.pk for r in records["alice"] if r.model == "Flux"}


def test_model_filter_applies_when_the_rollups_name_no_model_yet(staff_client, records):
    UsageRollup.objects.all().delete()  # as when records are stored but not yet counted

    response = staff_client.get(RECORDS_URL, {"model": "Flux"})

    assert listed(response) == {r.pk for r in records["alice"] if r.model == "Flux"}


def test_search_by_username_finds_only_that_users_records(staff_client, records):
    response = staff_client.get(RECORDS_URL, {"q": "alice"})

    assert response.status_code == 200
    assert listed(response) == pks(records["alice"])


def test_date_hierarchy_narrows_records_to_one_year(staff_client, owner):
    in_2024 = make_record(owner, datetime(2024, 6, 1, 12, tzinfo=UTC), "Flux")
    make_record(owner, datetime(2025, 6, 1, 12, tzinfo=UTC), "Flux")

    response = staff_client.get(RECORDS_URL, {"occurred_at__year": "2024"})

    assert response.status_code == 200
    assert listed(response) == {in_2024.pk}


def test_csv_export_has_a_header_and_one_row_per_selected_record(staff_client, records):
    selected = records["alice"]

    rows = export(staff_client, selected)

    assert rows[0] == [
        "id",
        "username",
        "model",
        "image_count",
        "occurred_at_utc",
        "received_at_utc",
        "event_id",
    ]
    by_id = {row[0]: row for row in rows[1:]}
    assert len(rows) == 1 + len(selected)
    for record in selected:
        row = by_id[str(record.pk)]
        assert row[1:4] == ["alice", record.model, str(record.image_count)]
        assert row[4] == record.occurred_at.isoformat(timespec="microseconds")
        assert row[5] == record.received_at.isoformat(timespec="microseconds")
        assert row[6] == record.event_id


def test_csv_export_writes_every_time_with_microseconds_and_offset(staff_client, owner):
    whole = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)
    record = make_record(owner, whole, received_at=whole.replace(microsecond=5))

    [_, row] = export(staff_client, [record])

    assert row[4:6] == ["2026-03-05T12:00:00.000000+00:00", "2026-03-05T12:00:00.000005+00:00"]


@pytest.mark.parametrize("name", ["=HYPERLINK(1)", "+1+1", "-2+3", "@SUM(A1)"])
def test_csv_export_quotes_model_names_that_a_spreadsheet_would_run(
    staff_client, owner, owner_token, name
):
    ingest(owner, owner_token.token, [{"modelName": name, "imageCount": 1}], timezone.now())

    rows = export(staff_client, list(UsageRecord.objects.all()))

    assert rows[1][2] == "'" + name


def test_paginator_stops_counting_one_past_the_cap(monkeypatch, owner):
    now = timezone.now()
    for minutes in range(5):
        make_record(owner, now - timedelta(minutes=minutes), "Flux")
    monkeypatch.setattr(usage_admin, "COUNT_CAP", 3)

    paginator = usage_admin.CappedCountPaginator(UsageRecord.objects.all(), 2)

    assert paginator.count == 4


def test_paginator_counts_exactly_below_the_cap(monkeypatch, owner):
    now = timezone.now()
    for minutes in range(2):
        make_record(owner, now - timedelta(minutes=minutes), "Flux")
    monkeypatch.setattr(usage_admin, "COUNT_CAP", 3)

    assert usage_admin.CappedCountPaginator(UsageRecord.objects.all(), 2).count == 2


def test_token_changelist_shows_prefix_name_and_owner_but_never_a_secret(staff_client, owner_token):
    token = owner_token.token

    response = staff_client.get(TOKENS_URL)

    page = response.content.decode()
    assert response.status_code == 200
    assert len(token.display_prefix) == len("usg_") + 8
    assert token.display_prefix in page
    assert "Work laptop" in page
    assert "alice" in page
    assert owner_token.raw not in page
    assert token.secret_hash not in page


def test_token_change_page_never_shows_the_hash(staff_client, owner_token):
    token = owner_token.token

    response = staff_client.get(f"{TOKENS_URL}{token.pk}/change/")

    page = response.content.decode()
    assert response.status_code == 200
    assert token.display_prefix in page
    assert token.secret_hash not in page
    assert "secret_hash" not in page
    assert owner_token.raw not in page


def test_tokens_cannot_be_added_in_the_admin(staff_client):
    assert staff_client.get(f"{TOKENS_URL}add/").status_code == 403


def test_revoke_action_revokes_and_the_token_stops_authenticating(
    staff_client, owner_token, owner_api
):
    token = owner_token.token
    assert post_usage(owner_api, {"modelName": "Flux", "imageCount": 1}).status_code == 201

    response = staff_client.post(
        TOKENS_URL, {"action": "revoke", "_selected_action": [token.pk], "index": 0}
    )

    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert post_usage(owner_api, {"modelName": "Flux", "imageCount": 1}).status_code == 401


def test_revoke_action_leaves_unselected_tokens_alone(staff_client, owner_token, other_token):
    staff_client.post(
        TOKENS_URL,
        {"action": "revoke", "_selected_action": [owner_token.token.pk], "index": 0},
    )

    assert ApiToken.objects.get(pk=other_token.token.pk).revoked_at is None


def test_tokens_are_revoked_in_the_admin_never_deleted(staff_client, owner_token):
    token = owner_token.token
    assert staff_client.post(f"{TOKENS_URL}{token.pk}/delete/", {"post": "yes"}).status_code == 403
    staff_client.post(
        TOKENS_URL, {"action": "delete_selected", "_selected_action": [token.pk], "post": "yes"}
    )
    assert ApiToken.objects.filter(pk=token.pk).exists()


@pytest.mark.parametrize("url", [RECORDS_URL, TOKENS_URL])
def test_non_staff_user_is_sent_to_the_admin_login(client, owner, url):
    client.force_login(owner)

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_records_can_be_read_but_not_added_or_edited_in_the_admin(staff_client, records):
    record = records["alice"][0]
    page = staff_client.get(f"{RECORDS_URL}{record.pk}/change/")
    assert page.status_code == 200
    assert b'name="model"' not in page.content  # shown as text, not as a form field
    assert staff_client.get(f"{RECORDS_URL}add/").status_code == 403
    staff_client.post(f"{RECORDS_URL}{record.pk}/change/", {"model": "Edited", "image_count": 9})
    record.refresh_from_db()
    assert record.model != "Edited"


# --- The plugin generation ledger ------------------------------------------------------------

LEDGER_URL = "/admin/usage/plugingeneration/"


@pytest.fixture
def generations(owner, other) -> list[PluginGeneration]:
    ok = {"outcome": "ok", "upstream_status": 200}
    return PluginGeneration.objects.bulk_create(
        [
            PluginGeneration(
                user=owner,
                **ok,
                prompt_tokens=10,
                completion_tokens=30,
                total_tokens=40,
                duration_ms=900,
            ),
            PluginGeneration(user=owner, outcome="upstream_timeout", duration_ms=90_000),
            PluginGeneration(
                user=other,
                **ok,
                prompt_tokens=1,
                completion_tokens=2,
                total_tokens=3,
                duration_ms=500,
            ),
        ]
    )


def test_the_ledger_lists_every_generation_with_the_totals_of_the_list(staff_client, generations):
    response = staff_client.get(LEDGER_URL)

    assert response.status_code == 200
    assert listed(response) == {generation.pk for generation in generations}
    assert response.context["ledger_totals"] == {
        "generations": 3,
        "prompt_tokens": 11,
        "completion_tokens": 32,
        "total_tokens": 43,
    }
    assert b"<strong>43</strong> tokens" in response.content


def test_searching_the_ledger_by_username_totals_only_that_users_rows(staff_client, generations):
    response = staff_client.get(LEDGER_URL, {"q": "bob"})

    assert listed(response) == {generations[2].pk}
    assert response.context["ledger_totals"]["total_tokens"] == 3


def test_the_ledger_filters_by_outcome_and_by_date(staff_client, generations):
    timeouts = staff_client.get(LEDGER_URL, {"outcome__exact": "upstream_timeout"})
    today = timezone.now()
    this_month = staff_client.get(
        LEDGER_URL, {"created_at__year": today.year, "created_at__month": today.month}
    )

    assert listed(timeouts) == {generations[1].pk}
    assert timeouts.context["ledger_totals"]["total_tokens"] == 0
    assert listed(this_month) == {generation.pk for generation in generations}


def test_the_ledger_is_read_only(staff_client, generations):
    row = generations[0]

    assert staff_client.get(f"{LEDGER_URL}{row.pk}/change/").status_code == 200
    assert staff_client.get(f"{LEDGER_URL}add/").status_code == 403
    assert staff_client.post(f"{LEDGER_URL}{row.pk}/delete/", {"post": "yes"}).status_code == 403
    staff_client.post(f"{LEDGER_URL}{row.pk}/change/", {"total_tokens": 1})
    row.refresh_from_db()
    assert row.total_tokens == 40
    assert PluginGeneration.objects.count() == 3


# --- Hostile query strings on every change list ----------------------------------------------

# Lookups on each field a change list filters by; {f} is the field. Values that PostgreSQL
# refuses (NUL), that no datetime holds (a year past 9999), that cannot be written as SQL
# (a range of one value), and patterns the database would run.
HOSTILE_LOOKUPS = [
    ("{f}", "\x00"),
    ("{f}__in", "1,\x00"),
    ("{f}__startswith", "%\x00"),
    ("{f}__regex", "("),
    ("{f}__iregex", "a{99999}"),
    ("{f}__year", "99999999999"),
    ("{f}__year", "-5"),
    ("{f}__year__gt", "99999999999"),
    ("{f}__day", "99999999999"),
    ("{f}__gte", "99999-01-01"),
    ("{f}__isnull", "maybe"),
    ("{f}__range", "a"),
    ("{f}__gt", "9" * 30),
]
# The same on any change list, filtered or not.
HOSTILE_PARAMETERS = [
    ("q", "\x00"),
    ("q", "a " * 1500),
    ("o", "\x00"),
    ("o", "99.-99.x"),
    ("p", "9" * 30),
    ("e", "\x00"),
    ("all", "\x00"),
    ("_to_field", "\x00"),
    ("pk", "\x00"),
    ("pk__gt", "9" * 30),
    ("pk__in", "1,x"),
    ("no_such_field", "1"),
    ("_facets", "1\x00"),
    ("owner__password__startswith", "a"),
]


def changelists() -> list:
    return [
        pytest.param(
            f"/admin/{model._meta.app_label}/{model._meta.model_name}/",
            model_admin,
            id=model._meta.label,
        )
        for model, model_admin in admin.site._registry.items()
    ]


def filtered_fields(model_admin: admin.ModelAdmin) -> list[str]:
    fields = {getattr(f, "parameter_name", f) for f in model_admin.list_filter}
    return sorted(fields | ({model_admin.date_hierarchy} - {None}))


def is_clear(response) -> bool:
    """A page (200), Django's redirect for lookups it cannot use (?e=1), or a 400."""
    if response.status_code == 302:
        return response["Location"].endswith("?e=1")
    return response.status_code in (200, 400)


@pytest.mark.parametrize(("url", "model_admin"), changelists())
def test_every_change_list_answers_any_hostile_query_string_clearly(
    url, model_admin, staff, records, generations
):
    client = Client(raise_request_exception=False)
    client.force_login(staff)
    queries = list(HOSTILE_PARAMETERS)
    for field in filtered_fields(model_admin):
        queries += [(key.format(f=field), value) for key, value in HOSTILE_LOOKUPS]
    unclear = []
    for key, value in queries:
        # Each in its own savepoint, so that one failure shows as itself, not as every
        # later query failing in an aborted transaction on PostgreSQL.
        savepoint = transaction.savepoint()
        response = client.get(url, {key: value})
        transaction.savepoint_rollback(savepoint)
        if not is_clear(response):
            unclear.append((key, value[:20], response.status_code))
    assert unclear == []


@pytest.mark.parametrize(
    "query",
    [
        {"model": "\x00"},
        {"model": "Flux", "q": "alice\x00"},
        {"occurred_at__year": "99999999999"},
        {"occurred_at__year": "2026", "occurred_at__month": "99999999999"},
        {"occurred_at__year__gt": "99999999999"},
        {"model__range": "a"},
    ],
    ids=["nul", "nul-in-search", "year", "month", "year-gt", "range"],
)
def test_a_lookup_the_database_cannot_take_goes_to_the_invalid_lookup_page(
    staff_client, records, query
):
    response = staff_client.get(RECORDS_URL, query)
    assert response.status_code == 302
    assert response["Location"] == f"{RECORDS_URL}?e=1"


def test_a_regular_expression_lookup_is_not_allowed(staff_client, records):
    assert staff_client.get(RECORDS_URL, {"model__regex": "^Fl"}).status_code == 400


def test_a_search_of_too_many_words_says_so_and_lists_everything(staff_client, records):
    response = staff_client.get(RECORDS_URL, {"q": "alice " * 21})
    assert response.status_code == 200
    assert "Search for at most 20 words." in response.content.decode()
    assert listed(response) == pks(records["alice"] + records["bob"])


def test_a_search_of_twenty_words_is_still_a_search(staff_client, records):
    response = staff_client.get(RECORDS_URL, {"q": "alice " * 20})
    assert listed(response) == pks(records["alice"])


def test_the_owner_autocomplete_finds_nobody_for_a_nul(staff_client, owner):
    query = {"app_label": "usage", "model_name": "usagerecord", "field_name": "owner"}
    found = staff_client.get("/admin/autocomplete/", {**query, "term": "ali"})
    assert [user["text"] for user in found.json()["results"]] == ["alice"]
    response = staff_client.get("/admin/autocomplete/", {**query, "term": "ali\x00"})
    assert response.status_code == 200
    assert response.json()["results"] == []


# --- Model prices -----------------------------------------------------------------------------

PRICES_URL = "/admin/usage/modelprice/"


def add_price(client, model: str, price: str, day: str, time: str):
    return client.post(
        f"{PRICES_URL}add/",
        {"model": model, "price_per_image": price, "valid_from_0": day, "valid_from_1": time},
    )


def test_staff_add_a_price_stored_under_the_models_normal_name_and_by_whom(staff_client, staff):
    response = add_price(staff_client, " \uff26lux\u200b ", "0.0125", "2026-03-10", "09:45:00")
    assert response.status_code == 302, response.context["adminform"].form.errors
    price = ModelPrice.objects.get()
    assert (price.model, price.price_per_image) == ("Flux", Decimal("0.0125"))
    assert price.valid_from == datetime(2026, 3, 10, 9, 45, tzinfo=UTC)
    assert price.created_by == staff
    listing = staff_client.get(PRICES_URL)
    assert b"0.0125 USD" in listing.content


def test_a_price_off_the_quarter_hour_is_refused_with_the_reason(staff_client):
    response = add_price(staff_client, "Flux", "0.01", "2026-03-10", "09:50:00")
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "quarter hour" in errors["valid_from"][0]
    assert not ModelPrice.objects.exists()


def test_a_negative_price_and_a_second_price_at_the_same_time_are_refused(staff_client):
    assert add_price(staff_client, "Flux", "-1", "2026-03-10", "09:45:00").status_code == 200
    assert add_price(staff_client, "Flux", "1", "2026-03-10", "09:45:00").status_code == 302
    again = add_price(staff_client, "\uff26lux", "2", "2026-03-10", "09:45:00")
    assert again.status_code == 200
    assert list(ModelPrice.objects.values_list("price_per_image", flat=True)) == [Decimal(1)]


def test_prices_are_kept_not_edited_and_can_be_deleted(staff_client):
    add_price(staff_client, "Flux", "1", "2026-03-10", "09:45:00")
    price = ModelPrice.objects.get()
    page = staff_client.get(f"{PRICES_URL}{price.pk}/change/")
    assert page.status_code == 200
    assert b'name="price_per_image"' not in page.content  # shown as text, not as a field
    staff_client.post(
        f"{PRICES_URL}{price.pk}/change/",
        {
            "model": "Flux",
            "price_per_image": "9",
            "valid_from_0": "2026-03-10",
            "valid_from_1": "09:45:00",
        },
    )
    price.refresh_from_db()
    assert price.price_per_image == Decimal(1)
    response = staff_client.post(f"{PRICES_URL}{price.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not ModelPrice.objects.exists()


def test_people_who_are_not_staff_cannot_set_prices(client, owner):
    client.force_login(owner)
    response = add_price(client, "Flux", "1", "2026-03-10", "09:45:00")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert not ModelPrice.objects.exists()
