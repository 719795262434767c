"""/dashboard/export.csv: a user's records in a range, in their zone, safe in a spreadsheet."""

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from dashboard.models import Profile
from tests.conftest import make_record
from usage.models import ModelPrice
from usage.tokens import create_token

START = datetime(2026, 1, 1, tzinfo=UTC)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def rows_of(response) -> list[list[str]]:
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.fixture
def records(owner, other):
    make_record(owner, datetime(2026, 3, 1, 22, 30, tzinfo=UTC), model="SDXL", images=4)
    make_record(owner, datetime(2026, 3, 2, 9, 0, tzinfo=UTC), model="DALL-E 3", images=1)
    make_record(owner, datetime(2026, 4, 1, 9, 0, tzinfo=UTC), model="late", images=1)
    make_record(other, datetime(2026, 3, 2, 9, 0, tzinfo=UTC), model="bob's model", images=9)


def test_the_csv_has_a_header_and_the_owners_records_in_their_zone(owner, records):
    response = client_for(owner).get(
        "/dashboard/export.csv", {"start": "2026-03-02", "end": "2026-03-31", "tz": "Asia/Tokyo"}
    )
    assert response.status_code == 200
    assert response["Content-Disposition"] == (
        'attachment; filename="usage-alice-2026-03-02-to-2026-03-31.csv"'
    )
    rows = rows_of(response)
    assert rows[0] == [
        "occurred_at",
        "date",
        "model",
        "image_count",
        "event_id",
        "received_at",
        "token",
        "cost",
        "currency",
    ]
    # 22:30 UTC on 1 March is 07:30 on 2 March in Tokyo: inside the range, on the local day.
    assert rows[1][:4] == ["2026-03-02T07:30:00.000000+09:00", "2026-03-02", "SDXL", "4"]
    assert rows[2][:4] == ["2026-03-02T18:00:00.000000+09:00", "2026-03-02", "DALL-E 3", "1"]
    assert len(rows) == 3  # not April's record, not bob's


def test_the_saved_zone_is_used_when_the_url_has_none(owner, records):
    Profile.objects.create(user=owner, time_zone="America/New_York")
    rows = rows_of(
        client_for(owner).get("/dashboard/export.csv", {"start": "2026-03-01", "end": "2026-03-01"})
    )
    assert [row[0] for row in rows[1:]] == ["2026-03-01T17:30:00.000000-05:00"]


@pytest.mark.parametrize(
    "name", ['=HYPERLINK("http://evil")', "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd"]
)
def test_formula_like_model_names_are_exported_as_text(owner, name):
    make_record(owner, datetime(2026, 3, 5, 12, tzinfo=UTC), model=name)
    rows = rows_of(
        client_for(owner).get("/dashboard/export.csv", {"start": "2026-03-01", "end": "2026-03-31"})
    )
    assert rows[1][2] == "'" + name


def test_staff_can_export_a_users_records_and_others_cannot(staff, other, records):
    query = {"start": "2026-03-01", "end": "2026-03-31", "user": "alice", "tz": "UTC"}
    response = client_for(staff).get("/dashboard/export.csv", query)
    assert [row[2] for row in rows_of(response)[1:]] == ["SDXL", "DALL-E 3"]
    assert client_for(other).get("/dashboard/export.csv", query).status_code == 403


def test_every_time_in_a_column_has_the_same_format_whole_seconds_or_not(owner):
    whole = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)
    make_record(owner, whole, model="A", received_at=whole.replace(microsecond=250_000))
    make_record(owner, whole.replace(microsecond=7), model="B", received_at=whole)

    rows = rows_of(
        client_for(owner).get(
            "/dashboard/export.csv", {"start": "2026-03-05", "end": "2026-03-05", "tz": "UTC"}
        )
    )

    assert [(row[0], row[5]) for row in rows[1:]] == [
        ("2026-03-05T12:00:00.000000+00:00", "2026-03-05T12:00:00.250000+00:00"),
        ("2026-03-05T12:00:00.000007+00:00", "2026-03-05T12:00:00.000000+00:00"),
    ]


def test_a_bad_range_gets_a_clear_400(owner):
    response = client_for(owner).get("/dashboard/export.csv", {"start": "March"})
    assert response.status_code == 400
    assert response.content == b"start must be a date as YYYY-MM-DD."


def test_an_empty_range_is_just_the_header(owner):
    rows = rows_of(client_for(owner).get("/dashboard/export.csv", {"days": "7"}))
    assert rows == [
        [
            "occurred_at",
            "date",
            "model",
            "image_count",
            "event_id",
            "received_at",
            "token",
            "cost",
            "currency",
        ]
    ]


def test_daily_totals_are_per_local_day_and_model_from_the_rollups(owner, records):
    make_record(owner, datetime(2026, 3, 1, 23, 0, tzinfo=UTC), model="SDXL", images=2)
    response = client_for(owner).get(
        "/dashboard/daily-totals.csv",
        {"start": "2026-03-01", "end": "2026-03-31", "tz": "Asia/Kolkata"},
    )
    assert response.status_code == 200
    assert response["Content-Disposition"] == (
        'attachment; filename="daily-totals-alice-2026-03-01-to-2026-03-31.csv"'
    )
    # 22:30 and 23:00 UTC on the 1st are 04:00 and 04:30 on the 2nd in Kolkata (+05:30).
    assert rows_of(response) == [
        ["date", "model", "images", "generations", "cost", "currency"],
        ["2026-03-02", "DALL-E 3", "1", "1", "", ""],  # no price: no cost
        ["2026-03-02", "SDXL", "6", "2", "", ""],
    ]


def test_each_record_costs_its_images_times_the_price_in_force_when_it_occurred(owner, other):
    change = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)
    ModelPrice.objects.create(model="SDXL", price_per_image=Decimal("0.04"), valid_from=START)
    ModelPrice.objects.create(model="SDXL", price_per_image=Decimal("0.0125"), valid_from=change)
    make_record(owner, change - timedelta(seconds=1), model="SDXL", images=4)
    make_record(owner, change, model="SDXL", images=3)  # at valid_from: the new price
    make_record(owner, change, model="Flux", images=2)  # no price
    make_record(other, change, model="SDXL", images=100)
    rows = rows_of(
        client_for(owner).get("/dashboard/export.csv", {"start": "2026-03-02", "end": "2026-03-02"})
    )
    assert [(row[2], row[3], row[7], row[8]) for row in rows[1:]] == [
        ("SDXL", "4", "0.16", "USD"),
        ("SDXL", "3", "0.0375", "USD"),  # exact: never rounded in the CSV
        ("Flux", "2", "", ""),
    ]


def test_daily_totals_cost_each_local_day_across_a_price_change_inside_it(owner, settings):
    settings.SITE_CURRENCY = "JPY"
    # Kolkata's 2 March runs from 18:30 UTC on the 1st; the price changes at 02:45 UTC.
    ModelPrice.objects.create(model="SDXL", price_per_image=Decimal("3"), valid_from=START)
    change = datetime(2026, 3, 2, 2, 45, tzinfo=UTC)
    ModelPrice.objects.create(model="SDXL", price_per_image=Decimal("5.5"), valid_from=change)
    make_record(owner, datetime(2026, 3, 1, 18, 29, tzinfo=UTC), model="SDXL", images=1)
    make_record(owner, datetime(2026, 3, 1, 18, 30, tzinfo=UTC), model="SDXL", images=2)
    make_record(owner, change - timedelta(minutes=1), model="SDXL", images=10)
    make_record(owner, change, model="SDXL", images=100)
    make_record(owner, datetime(2026, 3, 2, 18, 29, tzinfo=UTC), model="SDXL", images=1000)
    make_record(owner, datetime(2026, 3, 2, 18, 30, tzinfo=UTC), model="SDXL", images=7)
    response = client_for(owner).get(
        "/dashboard/daily-totals.csv",
        {"start": "2026-03-01", "end": "2026-03-03", "tz": "Asia/Kolkata"},
    )
    assert rows_of(response)[1:] == [
        ["2026-03-01", "SDXL", "1", "1", "3", "JPY"],
        ["2026-03-02", "SDXL", "1112", "4", "6086", "JPY"],  # 12 x 3 + 1100 x 5.5
        ["2026-03-03", "SDXL", "7", "1", "38.5", "JPY"],
    ]


def test_daily_totals_of_another_user_need_staff(owner, other, staff, records):
    params = {"user": "bob", "start": "2026-03-01", "end": "2026-03-31"}
    assert client_for(owner).get("/dashboard/daily-totals.csv", params).status_code == 403
    response = client_for(staff).get("/dashboard/daily-totals.csv", params)
    assert rows_of(response)[1:] == [["2026-03-02", "bob's model", "9", "1", "", ""]]


def test_daily_totals_refuse_a_bad_range_in_plain_words(owner):
    response = client_for(owner).get("/dashboard/daily-totals.csv", {"days": "12"})
    assert response.status_code == 400
    assert response.content == b"days must be 7, 30 or 90."


@pytest.mark.parametrize("kind", ["usage", "daily-totals"])
def test_a_non_ascii_username_names_the_file_in_utf_8_with_an_ascii_fallback(db, kind):
    lukasz = get_user_model().objects.create_user("Łukasz")
    url = "/dashboard/export.csv" if kind == "usage" else "/dashboard/daily-totals.csv"
    response = client_for(lukasz).get(url, {"start": "2026-03-01", "end": "2026-03-31"})
    assert response.status_code == 200
    # RFC 6266: the plain name first for old clients, then the real one (RFC 5987).
    assert response["Content-Disposition"] == (
        f'attachment; filename="{kind}-_ukasz-2026-03-01-to-2026-03-31.csv"; '
        f"filename*=UTF-8''{kind}-%C5%81ukasz-2026-03-01-to-2026-03-31.csv"
    )


def test_accents_fall_back_to_their_letters_and_quotes_to_underscores(db):
    user = get_user_model().objects.create_user('José"\\x')  # made in code: no validator
    response = client_for(user).get(
        "/dashboard/export.csv", {"start": "2026-03-01", "end": "2026-03-01"}
    )
    assert response["Content-Disposition"] == (
        'attachment; filename="usage-Jose__x-2026-03-01-to-2026-03-01.csv"; '
        "filename*=UTF-8''usage-Jos%C3%A9%22%5Cx-2026-03-01-to-2026-03-01.csv"
    )


# --- per device: the token column and ?token= ----------------------------------------------

MARCH = {"start": "2026-03-01", "end": "2026-03-31", "tz": "UTC"}


@pytest.fixture
def laptop(owner):
    return create_token(owner, "Laptop").token


@pytest.fixture
def device_records(owner, other, laptop, other_token):
    make_record(owner, datetime(2026, 3, 2, 9, tzinfo=UTC), model="SDXL", images=4, token=laptop)
    make_record(owner, datetime(2026, 3, 3, 9, tzinfo=UTC), model="Flux", images=2)
    make_record(other, datetime(2026, 3, 2, 9, tzinfo=UTC), images=9, token=other_token.token)


def test_each_record_says_which_token_sent_it(owner, laptop, device_records):
    rows = rows_of(client_for(owner).get("/dashboard/export.csv", MARCH))
    assert [(row[2], row[6]) for row in rows[1:]] == [
        ("SDXL", f"{laptop.display_prefix} (Laptop)"),
        ("Flux", ""),
    ]


def test_a_formula_like_token_name_is_exported_as_text(owner):
    token = create_token(owner, "=cmd|' /C calc'!A0").token
    make_record(owner, datetime(2026, 3, 2, 9, tzinfo=UTC), token=token)
    rows = rows_of(client_for(owner).get("/dashboard/export.csv", MARCH))
    assert rows[1][6] == f"{token.display_prefix} (=cmd|' /C calc'!A0)"  # starts with usg_


@pytest.mark.parametrize("kind", ["export.csv", "daily-totals.csv"])
def test_both_csvs_take_the_token_filter(owner, laptop, device_records, kind):
    client = client_for(owner)
    of_laptop = rows_of(client.get(f"/dashboard/{kind}", {**MARCH, "token": laptop.pk}))
    without = rows_of(client.get(f"/dashboard/{kind}", {**MARCH, "token": "none"}))
    model = 2 if kind == "export.csv" else 1
    assert [row[model] for row in of_laptop[1:]] == ["SDXL"]
    assert [row[model] for row in without[1:]] == ["Flux"]


@pytest.mark.parametrize("kind", ["export.csv", "daily-totals.csv"])
def test_another_users_token_gets_a_400_and_none_of_their_rows(
    owner, other_token, device_records, kind
):
    response = client_for(owner).get(f"/dashboard/{kind}", {**MARCH, "token": other_token.token.pk})
    assert response.status_code == 400
    assert response.content == b"token must be the id of one of your API tokens, or none."


def test_staff_filter_a_users_csv_by_that_users_token_only(
    staff, laptop, other_token, device_records
):
    query = {**MARCH, "user": "alice"}
    mine = rows_of(
        client_for(staff).get("/dashboard/daily-totals.csv", {**query, "token": laptop.pk})
    )
    assert mine[1:] == [["2026-03-02", "SDXL", "4", "1", "", ""]]
    theirs = client_for(staff).get(
        "/dashboard/daily-totals.csv", {**query, "token": other_token.token.pk}
    )
    assert theirs.status_code == 400
