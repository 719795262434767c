"""GET /api/model-usage/summary: ranges and zones, DST-correct buckets, validation, isolation."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection

from tests.conftest import make_record
from usage.summary import DateRange, periods, summarize
from usage.tokens import create_token

pytestmark = pytest.mark.django_db

NEW_YORK = ZoneInfo("America/New_York")


record = make_record


def summary(client, **params):
    response = client.get("/api/model-usage/summary", params)
    assert response.status_code == 200, response.content
    return response.json()


def by_period(body) -> dict[tuple[str, str], int]:
    return {(row["period"], row["model"]): row["images"] for row in body["series"]}


def test_the_default_is_the_last_30_days_in_utc_by_day(owner, owner_api):
    today = datetime.now(UTC).date()
    record(owner, datetime.now(UTC), images=3)
    record(owner, datetime.now(UTC) - timedelta(days=45), images=100)  # outside the range
    body = summary(owner_api)
    assert body["start"] == (today - timedelta(days=29)).isoformat()
    assert body["end"] == today.isoformat()
    assert (body["tz"], body["granularity"]) == ("UTC", "day")
    assert body["totals"] == {"images": 3, "events": 1, "cost": None, "unpricedImages": 3}
    assert len(body["periods"]) == 30
    assert body["series"] == [
        {"period": today.isoformat(), "model": "SD", "images": 3, "cost": None}
    ]


def test_totals_models_and_series_add_up_and_models_are_ranked_by_images(owner, owner_api):
    day = datetime(2026, 6, 10, 12, tzinfo=UTC)
    record(owner, day, "Flux", 2)
    record(owner, day, "Flux", 2)
    record(owner, day, "SD", 5)
    record(owner, day + timedelta(days=1), "DALL-E", 1)
    body = summary(owner_api, start="2026-06-10", end="2026-06-11")
    assert (body["totals"]["images"], body["totals"]["events"]) == (10, 4)
    assert [(m["model"], m["images"], m["events"]) for m in body["models"]] == [
        ("SD", 5, 1),
        ("Flux", 4, 2),
        ("DALL-E", 1, 1),
    ]
    assert body["periods"] == ["2026-06-10", "2026-06-11"]
    assert by_period(body) == {
        ("2026-06-10", "SD"): 5,
        ("2026-06-10", "Flux"): 4,
        ("2026-06-11", "DALL-E"): 1,
    }


def test_days_are_local_days_in_the_requested_zone(owner, owner_api):
    # 23:30 in New York on June 30 is already July 1 in UTC.
    record(owner, datetime(2026, 6, 30, 23, 30, tzinfo=NEW_YORK), images=7)
    ny = summary(owner_api, start="2026-06-30", end="2026-07-01", tz="America/New_York")
    utc = summary(owner_api, start="2026-06-30", end="2026-07-01", tz="UTC")
    assert by_period(ny) == {("2026-06-30", "SD"): 7}
    assert by_period(utc) == {("2026-07-01", "SD"): 7}


def test_the_range_ends_at_local_midnight_after_the_last_day(owner, owner_api):
    record(owner, datetime(2026, 6, 30, 23, 59, 59, tzinfo=NEW_YORK), images=1)
    record(owner, datetime(2026, 7, 1, 0, 0, 0, tzinfo=NEW_YORK), images=10)
    record(owner, datetime(2026, 6, 1, 0, 0, 0, tzinfo=NEW_YORK), images=100)
    record(owner, datetime(2026, 5, 31, 23, 59, 59, tzinfo=NEW_YORK), images=1000)
    body = summary(owner_api, start="2026-06-01", end="2026-06-30", tz="America/New_York")
    assert body["totals"]["images"] == 101


def test_a_spring_forward_day_is_one_bucket_of_23_hours(owner, owner_api):
    # 2026-03-08: New York jumps from 02:00 EST to 03:00 EDT.
    record(owner, datetime(2026, 3, 8, 0, 30, tzinfo=NEW_YORK), images=1)
    record(owner, datetime(2026, 3, 8, 3, 30, tzinfo=NEW_YORK), images=2)
    record(owner, datetime(2026, 3, 8, 23, 30, tzinfo=NEW_YORK), images=4)
    record(owner, datetime(2026, 3, 9, 0, 15, tzinfo=NEW_YORK), images=8)
    body = summary(owner_api, start="2026-03-07", end="2026-03-09", tz="America/New_York")
    assert by_period(body) == {("2026-03-08", "SD"): 7, ("2026-03-09", "SD"): 8}


def test_a_fall_back_day_is_one_bucket_of_25_hours(owner, owner_api):
    # 2026-11-01: 01:00-02:00 happens twice in New York (EDT, then EST).
    record(owner, datetime(2026, 11, 1, 5, 30, tzinfo=UTC), images=1)  # 01:30 EDT
    record(owner, datetime(2026, 11, 1, 6, 30, tzinfo=UTC), images=2)  # 01:30 EST
    record(owner, datetime(2026, 11, 2, 4, 59, tzinfo=UTC), images=4)  # 23:59 EST, Nov 1
    record(owner, datetime(2026, 11, 2, 5, 0, tzinfo=UTC), images=8)  # 00:00 EST, Nov 2
    body = summary(owner_api, start="2026-10-31", end="2026-11-02", tz="America/New_York")
    assert by_period(body) == {("2026-11-01", "SD"): 7, ("2026-11-02", "SD"): 8}


def test_a_week_spanning_a_dst_change_starts_on_monday_local_time(owner, owner_api):
    # Europe/Berlin changes on Sunday 2026-03-29; that week starts Monday 2026-03-23.
    berlin = ZoneInfo("Europe/Berlin")
    record(owner, datetime(2026, 3, 23, 0, 5, tzinfo=berlin), images=1)  # Sunday 23:05 UTC
    record(owner, datetime(2026, 3, 29, 23, 55, tzinfo=berlin), images=2)
    record(owner, datetime(2026, 3, 30, 0, 5, tzinfo=berlin), images=4)  # next week
    body = summary(
        owner_api, start="2026-03-16", end="2026-04-05", tz="Europe/Berlin", granularity="week"
    )
    assert body["periods"] == ["2026-03-16", "2026-03-23", "2026-03-30"]
    assert by_period(body) == {("2026-03-23", "SD"): 3, ("2026-03-30", "SD"): 4}


def test_months_start_on_the_first_local_day(owner, owner_api):
    tokyo = ZoneInfo("Asia/Tokyo")
    record(owner, datetime(2026, 2, 1, 0, 30, tzinfo=tokyo), images=1)  # Jan 31 in UTC
    record(owner, datetime(2026, 1, 31, 23, 30, tzinfo=tokyo), images=2)
    body = summary(
        owner_api, start="2026-01-15", end="2026-02-10", tz="Asia/Tokyo", granularity="month"
    )
    assert body["periods"] == ["2026-01-01", "2026-02-01"]
    assert by_period(body) == {("2026-01-01", "SD"): 2, ("2026-02-01", "SD"): 1}


def test_half_hour_zones_bucket_exactly(owner, owner_api):
    kolkata = ZoneInfo("Asia/Kolkata")
    record(owner, datetime(2026, 6, 1, 0, 10, tzinfo=kolkata), images=1)  # May 31 18:40 UTC
    record(owner, datetime(2026, 5, 31, 23, 50, tzinfo=kolkata), images=2)
    body = summary(owner_api, start="2026-05-31", end="2026-06-01", tz="Asia/Kolkata")
    assert by_period(body) == {("2026-05-31", "SD"): 2, ("2026-06-01", "SD"): 1}


@pytest.mark.parametrize(
    ("days", "granularity"), [(1, "day"), (92, "day"), (93, "week"), (731, "week"), (732, "month")]
)
def test_the_default_granularity_follows_the_range_length(owner_api, days, granularity):
    end = date(2026, 6, 30)
    start = end - timedelta(days=days - 1)
    body = summary(owner_api, start=start.isoformat(), end=end.isoformat())
    assert body["granularity"] == granularity


def test_an_explicit_granularity_wins(owner_api):
    assert summary(owner_api, start="2026-06-01", end="2026-06-30", granularity="month")[
        "periods"
    ] == ["2026-06-01"]


def test_empty_buckets_are_listed_in_periods_but_not_in_series(owner, owner_api):
    record(owner, datetime(2026, 6, 3, 12, tzinfo=UTC))
    body = summary(owner_api, start="2026-06-01", end="2026-06-05")
    assert body["periods"] == ["2026-06-01", "2026-06-02", "2026-06-03", "2026-06-04", "2026-06-05"]
    assert [row["period"] for row in body["series"]] == ["2026-06-03"]


def test_only_start_given_runs_to_today(owner_api):
    today = datetime.now(UTC).date()
    body = summary(owner_api, start=(today - timedelta(days=6)).isoformat())
    assert (body["end"], len(body["periods"])) == (today.isoformat(), 7)


def test_only_end_given_covers_the_30_days_before_it(owner_api):
    body = summary(owner_api, end="2026-06-30")
    assert body["start"] == "2026-06-01"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "2026-02-30"}, "start"),
        ({"start": "2026/01/01"}, "start"),
        ({"start": "20260101"}, "start"),
        ({"end": "tomorrow"}, "end"),
        ({"end": "0001-01-01"}, "end"),
        ({"tz": "Mars/Olympus_Mons"}, "tz"),
        ({"tz": "../../etc/passwd"}, "tz"),
        ({"tz": "utc "}, "tz"),
        ({"start": "2026-06-02", "end": "2026-06-01"}, "start"),
        ({"start": "2020-01-01", "end": "2026-01-01"}, "start"),
        ({"granularity": "hour"}, "granularity"),
    ],
)
def test_bad_parameters_get_400_json_naming_the_field(owner_api, params, field):
    response = owner_api.get("/api/model-usage/summary", params)
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert response.json()["error"]


def test_another_users_records_never_appear(owner, other, owner_api, other_api):
    record(other, datetime.now(UTC), images=50)
    assert summary(owner_api)["totals"] == {
        "images": 0,
        "events": 0,
        "cost": "0.00",
        "unpricedImages": 0,
    }
    assert summary(other_api)["totals"]["images"] == 50


def test_staff_see_only_their_own_records_here(owner, staff, client):
    record(owner, datetime.now(UTC), images=50)
    client.force_login(staff)
    assert summary(client)["totals"]["images"] == 0


def test_a_logged_in_session_can_read_its_summary(owner, client):
    record(owner, datetime.now(UTC), images=4)
    client.force_login(owner)
    assert summary(client)["totals"]["images"] == 4


def test_anonymous_callers_get_401(client):
    response = client.get("/api/model-usage/summary")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


def test_summarize_is_callable_without_http(owner):
    record(owner, datetime(2026, 6, 1, 12, tzinfo=UTC), images=3)
    body = summarize(owner, DateRange(date(2026, 6, 1), date(2026, 6, 1), ZoneInfo("UTC")), "day")
    assert body["totals"] == {"images": 3, "events": 1}


def test_periods_cover_partial_weeks_at_both_ends():
    week_range = DateRange(date(2026, 6, 3), date(2026, 6, 16), ZoneInfo("UTC"))  # Wed..Tue
    assert periods(week_range, "week") == [date(2026, 6, 1), date(2026, 6, 8), date(2026, 6, 15)]


def test_the_summary_runs_one_aggregate_query_and_reads_the_prices_after_authentication(
    owner, owner_api, django_assert_num_queries
):
    for day in range(1, 29):
        record(owner, datetime(2026, 6, day, 12, tzinfo=UTC), model=f"m{day % 5}")
    # The warm-up checks the token, which the process then remembers for a second.
    owner_api.get("/api/model-usage/summary", {"start": "2026-06-01", "end": "2026-06-30"})
    with django_assert_num_queries(2):  # one GROUP BY, and the prices (usage.costs)
        body = summary(owner_api, start="2026-06-01", end="2026-06-30")
    assert body["totals"]["events"] == 28


@pytest.mark.parametrize(
    ("minute", "local_day"),
    [(14, "2026-03-01"), (15, "2026-03-02"), (29, "2026-03-02"), (44, "2026-03-02")],
)
def test_a_midnight_on_a_quarter_hour_splits_the_utc_hour_exactly_there(
    owner, owner_api, minute, local_day
):
    # Kathmandu is UTC+05:45: its midnight is 18:15 UTC, in the hour's second quarter.
    record(owner, datetime(2026, 3, 1, 18, minute, 59, tzinfo=UTC), images=7)
    record(owner, datetime(2026, 3, 1, 18, 14, 59, tzinfo=UTC) - timedelta(hours=1), images=1)

    body = summary(owner_api, start="2026-03-01", end="2026-03-02", tz="Asia/Kathmandu")

    expected = {("2026-03-01", "SD"): 1}
    expected[(local_day, "SD")] = expected.get((local_day, "SD"), 0) + 7
    assert by_period(body) == expected


# --- per device: byToken and ?token= -------------------------------------------------------

JUNE = {"start": "2026-06-01", "end": "2026-06-30"}


def test_the_summary_splits_the_range_by_the_token_that_sent_it(owner, owner_api, owner_token):
    laptop = owner_token.token
    studio = create_token(owner, "Studio PC").token
    record(owner, datetime(2026, 6, 2, 9, tzinfo=UTC), images=3, token=laptop)
    record(owner, datetime(2026, 6, 3, 9, tzinfo=UTC), images=1, token=studio)
    record(owner, datetime(2026, 6, 3, 10, tzinfo=UTC), images=4)
    body = summary(owner_api, **JUNE)
    assert [
        (e["token"], e["name"], e["prefix"], e["images"], e["events"]) for e in body["byToken"]
    ] == [
        (None, "No token", None, 4, 1),
        (laptop.pk, "Work laptop", laptop.display_prefix, 3, 1),
        (studio.pk, "Studio PC", studio.display_prefix, 1, 1),
    ]
    assert sum(e["images"] for e in body["byToken"]) == body["totals"]["images"]


def test_a_token_filter_narrows_every_figure_to_that_token(owner, owner_api, owner_token):
    laptop = owner_token.token
    record(owner, datetime(2026, 6, 2, 9, tzinfo=UTC), model="SDXL", images=3, token=laptop)
    record(owner, datetime(2026, 6, 2, 9, tzinfo=UTC), model="Flux", images=4)
    body = summary(owner_api, **JUNE, token=str(laptop.pk))
    assert (body["totals"]["images"], body["totals"]["events"]) == (3, 1)
    assert [(m["model"], m["images"], m["events"]) for m in body["models"]] == [("SDXL", 3, 1)]
    assert by_period(body) == {("2026-06-02", "SDXL"): 3}
    assert [e["token"] for e in body["byToken"]] == [laptop.pk]
    without = summary(owner_api, **JUNE, token="none")
    totals = without["totals"]
    assert ((totals["images"], totals["events"]), by_period(without)) == (
        (4, 1),
        {("2026-06-02", "Flux"): 4},
    )


def test_another_users_token_gets_a_400_and_none_of_their_data(
    owner, other, owner_api, other_token
):
    record(other, datetime(2026, 6, 2, 9, tzinfo=UTC), images=50, token=other_token.token)
    response = owner_api.get("/api/model-usage/summary", {**JUNE, "token": other_token.token.pk})
    assert response.status_code == 400
    assert response.json() == {
        "error": "token must be the id of one of your API tokens, or none.",
        "code": "invalid_query",
        "field": "token",
    }


def test_staff_cannot_filter_by_another_users_token_here(owner, staff, client, owner_token):
    record(owner, datetime(2026, 6, 2, 9, tzinfo=UTC), images=50, token=owner_token.token)
    client.force_login(staff)
    response = client.get("/api/model-usage/summary", {**JUNE, "token": owner_token.token.pk})
    assert response.status_code == 400
    assert response.json()["field"] == "token"


@pytest.mark.parametrize("token", ["abc", "-1", "0", "1e3", "9" * 40])
def test_a_malformed_token_gets_a_400_naming_it(owner_api, token):
    response = owner_api.get("/api/model-usage/summary", {"token": token})
    assert response.status_code == 400
    assert response.json()["field"] == "token"


def test_the_breakdown_costs_no_query_more(
    owner, owner_api, owner_token, django_assert_num_queries
):
    tokens = [owner_token.token, *(create_token(owner, f"device {n}").token for n in range(3))]
    for day in range(1, 29):
        record(
            owner,
            datetime(2026, 6, day, 12, tzinfo=UTC),
            model=f"m{day % 5}",
            token=tokens[day % 4],
        )
    owner_api.get("/api/model-usage/summary", JUNE)  # the warm-up checks the token
    with django_assert_num_queries(2):  # the buckets and the tokens, names included; prices
        body = summary(owner_api, **JUNE)
    assert {e["name"] for e in body["byToken"]} == {
        "Work laptop",
        "device 0",
        "device 1",
        "device 2",
    }
    with django_assert_num_queries(3):  # and the filter's check that the token is the caller's
        body = summary(owner_api, **JUNE, token=str(tokens[1].pk))
    assert body["totals"]["events"] == 7


@pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements: PostgreSQL")
def test_a_summary_asked_for_again_and_again_is_planned_once_per_connection(owner, owner_api):
    """The summary's statement binds on the server, so that psycopg prepares it once it
    repeats; one asked for once is not kept on the server."""

    def prepared_summaries() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
                ["WITH daily_piece%"],
            )
            return cursor.fetchone()[0]

    make_record(owner, datetime.now(UTC) - timedelta(days=1), images=3)
    assert summary(owner_api, start="2026-01-01", end="2026-01-31")["totals"]["images"] == 0
    assert prepared_summaries() == 0
    bodies = [summary(owner_api) for _ in range(7)]
    assert prepared_summaries() == 1
    assert all(body == bodies[0] for body in bodies) and bodies[0]["totals"]["images"] == 3
