"""GET /api/model-usage: the caller's own records, newest first, a page at a time."""

import base64
import json
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from tests.conftest import bearer, make_record
from usage.ingest import ingest
from usage.models import UsageRecord
from usage.tokens import create_token

pytestmark = pytest.mark.django_db

URL = "/api/model-usage"
NEW_YORK = ZoneInfo("America/New_York")
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def add(owner, model: str, when: datetime) -> UsageRecord:
    return make_record(owner, when, model, received_at=when + timedelta(seconds=1))


def models_of(response) -> list[str]:
    return [item["model"] for item in response.json()["results"]]


def follow(client, url: str) -> list[list[str]]:
    """Every page from ``url`` on, by following ``next`` until it is null."""
    pages = []
    while url is not None:
        response = client.get(url)
        assert response.status_code == 200, response.content
        pages.append(models_of(response))
        url = response.json()["next"]
        assert len(pages) < 50, "next never became null"
    return pages


def cursor_of(payload) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


# --- Whose records -----------------------------------------------------------------------


@pytest.fixture
def both_users_records(owner, other):
    add(owner, "alice-old", T0 - timedelta(hours=2))
    add(other, "bob-between", T0 - timedelta(hours=1))
    add(owner, "alice-new", T0)
    add(other, "bob-newest", T0 + timedelta(hours=1))


def test_a_bearer_token_reads_only_its_owners_records(both_users_records, owner_api):
    response = owner_api.get(URL)
    assert response.status_code == 200
    assert models_of(response) == ["alice-new", "alice-old"]
    assert response.json()["next"] is None


def test_another_user_gets_none_of_the_owners_records(both_users_records, other_api):
    assert models_of(other_api.get(URL)) == ["bob-newest", "bob-between"]


def test_a_user_without_records_gets_an_empty_list(both_users_records, staff):
    response = bearer(create_token(staff, "Carol's laptop")).get(URL)
    assert response.status_code == 200
    assert response.json() == {"results": [], "next": None, "recordsKeptFrom": None}


def test_a_logged_in_session_reads_only_its_own_records(both_users_records, client, owner):
    client.force_login(owner)
    response = client.get(URL)
    assert response.status_code == 200
    assert models_of(response) == ["alice-new", "alice-old"]


def test_another_users_session_gets_none_of_the_owners_records(both_users_records, client, other):
    client.force_login(other)
    assert models_of(client.get(URL)) == ["bob-newest", "bob-between"]


def test_staff_with_their_own_token_see_only_their_own_records(both_users_records, staff):
    add(staff, "carol-only", T0 - timedelta(days=1))
    response = bearer(create_token(staff, "Carol's laptop")).get(URL)
    assert models_of(response) == ["carol-only"]


def test_a_staff_session_sees_only_its_own_records_too(both_users_records, client, staff):
    add(staff, "carol-only", T0 - timedelta(days=1))
    client.force_login(staff)
    assert models_of(client.get(URL)) == ["carol-only"]


def test_anonymous_callers_get_401_json_with_a_bearer_challenge(both_users_records, client):
    response = client.get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]


def test_an_unknown_token_gets_401(both_users_records, client):
    response = client.get(URL, headers={"Authorization": "Bearer usg_" + "A" * 51})
    assert response.status_code == 401
    assert response.json()["error"]


# --- Order and shape ---------------------------------------------------------------------


def test_records_come_newest_first_by_time_then_by_id(owner, owner_api):
    # Inserted out of time order, so that id order and time order disagree.
    add(owner, "middle", T0)
    add(owner, "oldest", T0 - timedelta(days=3))
    add(owner, "newest", T0 + timedelta(minutes=1))
    add(owner, "same-time-first-id", T0 - timedelta(hours=1))
    add(owner, "same-time-second-id", T0 - timedelta(hours=1))
    assert models_of(owner_api.get(URL)) == [
        "newest",
        "middle",
        "same-time-second-id",
        "same-time-first-id",
        "oldest",
    ]


def test_each_record_has_exactly_the_documented_fields_with_utc_times(owner, owner_api):
    record = UsageRecord.objects.create(
        owner=owner,
        model="Flux",
        image_count=4,
        occurred_at=datetime(2026, 3, 1, 9, 30, 15, 250000, tzinfo=UTC),
        received_at=datetime(2026, 3, 1, 9, 31, tzinfo=UTC),
        event_id="evt-1",
    )
    assert owner_api.get(URL).json()["results"] == [
        {
            "id": record.pk,
            "model": "Flux",
            "imageCount": 4,
            "timestamp": "2026-03-01T09:30:15.250000Z",
            "eventId": "evt-1",
            "receivedAt": "2026-03-01T09:31:00Z",
        }
    ]


def test_a_record_sent_with_an_offset_reads_back_in_utc_with_a_z(owner, owner_token, owner_api):
    now = timezone.now()
    sent = (now - timedelta(days=2)).astimezone(ZoneInfo("Asia/Kolkata")).replace(microsecond=0)
    ingest(
        owner, owner_token.token, [{"model": "SD", "count": 2, "timestamp": sent.isoformat()}], now
    )
    [item] = owner_api.get(URL).json()["results"]
    assert sent.isoformat().endswith("+05:30")
    assert item["timestamp"] == sent.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert item["receivedAt"].endswith("Z")
    assert datetime.fromisoformat(item["receivedAt"]) == now
    assert item["eventId"] is None


# --- Cursor pagination -------------------------------------------------------------------


@pytest.fixture
def seven_records(owner) -> list[str]:
    """r1 (newest) .. r7 (oldest), inserted in a shuffled order."""
    for n in (3, 1, 7, 5, 2, 6, 4):
        add(owner, f"r{n}", T0 - timedelta(hours=n))
    return [f"r{n}" for n in range(1, 8)]


def test_following_next_pages_through_every_record_once_in_order(seven_records, owner_api):
    pages = follow(owner_api, f"{URL}?limit=3")
    assert pages == [["r1", "r2", "r3"], ["r4", "r5", "r6"], ["r7"]]


def test_the_last_page_says_there_is_no_next(seven_records, owner_api):
    first = owner_api.get(URL, {"limit": 3}).json()
    assert first["next"].startswith("http://testserver/api/model-usage?")
    assert "limit=3" in first["next"]
    assert owner_api.get(URL, {"limit": 7}).json()["next"] is None


def test_a_page_that_exactly_fills_the_limit_still_ends_with_null_next(seven_records, owner_api):
    assert follow(owner_api, f"{URL}?limit=7") == [seven_records]


def test_newer_records_arriving_between_pages_do_not_shift_later_pages(
    seven_records, owner, owner_api
):
    first = owner_api.get(URL, {"limit": 3}).json()
    add(owner, "new-1", T0 + timedelta(minutes=1))
    add(owner, "new-2", T0 + timedelta(minutes=2))
    second = owner_api.get(first["next"]).json()
    add(owner, "new-3", T0 + timedelta(minutes=3))
    third = owner_api.get(second["next"]).json()

    assert [r["model"] for r in first["results"]] == ["r1", "r2", "r3"]
    assert [r["model"] for r in second["results"]] == ["r4", "r5", "r6"]
    assert [r["model"] for r in third["results"]] == ["r7"]
    assert third["next"] is None
    # The new records are there for a client that starts again from the top.
    assert models_of(owner_api.get(URL, {"limit": 3})) == ["new-3", "new-2", "new-1"]


def test_records_with_the_same_timestamp_page_by_id_without_repeats_or_gaps(owner, owner_api):
    add(owner, "oldest", T0 - timedelta(seconds=1))
    for name in ("tie-a", "tie-b", "tie-c", "tie-d", "tie-e"):
        add(owner, name, T0)
    add(owner, "newest", T0 + timedelta(microseconds=1))
    pages = follow(owner_api, f"{URL}?limit=2")
    assert pages == [
        ["newest", "tie-e"],
        ["tie-d", "tie-c"],
        ["tie-b", "tie-a"],
        ["oldest"],
    ]


def test_another_users_records_never_appear_on_later_pages(seven_records, other, owner_api):
    for n in range(1, 8):
        add(other, f"bob-{n}", T0 - timedelta(hours=n, minutes=30))
    pages = follow(owner_api, f"{URL}?limit=3")
    assert [model for page in pages for model in page] == seven_records


def test_the_cursor_keeps_the_date_filter_on_later_pages(owner, owner_api):
    for day in range(1, 6):
        add(owner, f"march-{day}", datetime(2026, 3, day, 12, tzinfo=UTC))
    pages = follow(owner_api, f"{URL}?limit=2&start=2026-03-02&end=2026-03-04")
    assert pages == [["march-4", "march-3"], ["march-2"]]


def test_a_limit_of_500_is_allowed_and_the_default_is_100(owner, owner_api):
    UsageRecord.objects.bulk_create(
        UsageRecord(
            owner=owner,
            model=f"m{n}",
            image_count=1,
            occurred_at=T0 - timedelta(seconds=n),
            received_at=T0,
        )
        for n in range(501)
    )
    page = owner_api.get(URL, {"limit": 500}).json()
    assert len(page["results"]) == 500
    assert page["results"][-1]["model"] == "m499"
    assert models_of(owner_api.get(page["next"])) == ["m500"]
    assert len(owner_api.get(URL).json()["results"]) == 100


# --- Date range and time zone --------------------------------------------------------------


def at(day: date, hour: int, minute: int, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=tz)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (date(2026, 1, 10), date(2026, 1, 12)),
        # A 23-hour day (clocks spring forward) and a 25-hour day (they fall back).
        (date(2026, 3, 8), date(2026, 3, 8)),
        (date(2026, 11, 1), date(2026, 11, 1)),
    ],
)
def test_start_and_end_are_whole_local_days_in_the_given_zone(owner, owner_api, start, end):
    one_day = timedelta(days=1)
    add(owner, "evening-before-start", at(start - one_day, 23, 30, NEW_YORK))
    add(owner, "just-after-start-midnight", at(start, 0, 30, NEW_YORK))
    add(owner, "late-on-the-end-day", at(end, 23, 30, NEW_YORK))
    add(owner, "just-after-the-end-day", at(end + one_day, 0, 30, NEW_YORK))
    params = {"start": start.isoformat(), "end": end.isoformat(), "tz": "America/New_York"}
    response = owner_api.get(URL, params)
    assert response.status_code == 200
    assert models_of(response) == ["late-on-the-end-day", "just-after-start-midnight"]


def test_without_tz_the_days_are_utc_days(owner, owner_api):
    add(owner, "23:30 new york on the 12th", at(date(2026, 1, 12), 23, 30, NEW_YORK))
    add(owner, "23:30 utc on the 12th", at(date(2026, 1, 12), 23, 30, UTC))
    add(owner, "00:30 utc on the 10th", at(date(2026, 1, 10), 0, 30, UTC))
    add(owner, "23:30 utc on the 9th", at(date(2026, 1, 9), 23, 30, UTC))
    response = owner_api.get(URL, {"start": "2026-01-10", "end": "2026-01-12"})
    assert models_of(response) == ["23:30 utc on the 12th", "00:30 utc on the 10th"]


def test_start_alone_and_end_alone_bound_one_side(owner, owner_api):
    for day in range(1, 6):
        add(owner, f"march-{day}", datetime(2026, 3, day, 12, tzinfo=UTC))
    assert models_of(owner_api.get(URL, {"start": "2026-03-04"})) == ["march-5", "march-4"]
    assert models_of(owner_api.get(URL, {"end": "2026-03-02"})) == ["march-2", "march-1"]


def test_a_one_day_range_is_allowed(owner, owner_api):
    add(owner, "that-day", datetime(2026, 3, 2, 12, tzinfo=UTC))
    add(owner, "next-day", datetime(2026, 3, 3, 12, tzinfo=UTC))
    response = owner_api.get(URL, {"start": "2026-03-02", "end": "2026-03-02"})
    assert models_of(response) == ["that-day"]


# --- Bad query parameters ------------------------------------------------------------------


@pytest.mark.parametrize(
    "limit",
    # Superscript, Arabic-Indic and full-width digits pass str.isdigit() but are not a limit.
    ["0", "501", "abc", "-1", "1.5", "3 ", "1e2", "99999999999", "³", "٣", "\uff13"],
)
def test_a_bad_limit_gets_400_naming_the_field(owner, owner_api, limit):
    response = owner_api.get(URL, {"limit": limit})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["field"] == "limit"
    assert response.json()["error"]


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "!!!",
        "é",
        "eyJ",  # a truncated base64 object
        cursor_of({"occurred_at": "2026-03-01T12:00:00+00:00", "id": 1}),
        cursor_of(["2026-03-01T12:00:00", 1]),  # no offset
        cursor_of(["2026-03-01T12:00:00+00:00", "1"]),
        cursor_of(["2026-03-01T12:00:00+00:00", True]),
        cursor_of(["2026-03-01T12:00:00+00:00", 1.5]),
        cursor_of(["yesterday", 1]),
        cursor_of(["2026-03-01T12:00:00+00:00", 1, 2]),
        cursor_of([1, 1]),
        cursor_of(None),
        cursor_of("ab"),
        # Real ISO times that fall off the calendar once turned into UTC.
        cursor_of(["9999-12-31T23:59:59-14:00", 1]),
        cursor_of(["0001-01-01T00:00:00+14:00", 1]),
    ],
)
def test_a_garbage_cursor_gets_400_naming_the_field(owner, owner_api, cursor):
    response = owner_api.get(URL, {"cursor": cursor})
    assert response.status_code == 400
    assert response.json()["field"] == "cursor"
    assert response.json()["error"]


def test_a_tampered_cursor_from_a_real_page_gets_400(seven_records, owner_api):
    cursor = owner_api.get(URL, {"limit": 3}).json()["next"].split("cursor=")[1]
    for tampered in (cursor[:-3], cursor[5:], cursor.replace(cursor[10], "*", 1)):
        response = owner_api.get(URL, {"limit": 3, "cursor": tampered})
        assert response.status_code == 400, tampered
        assert response.json()["field"] == "cursor"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"tz": "Mars/Olympus_Mons"}, "tz"),
        ({"tz": "america/new_york"}, "tz"),
        ({"start": "2026-03-05", "end": "2026-03-04"}, "start"),
        ({"start": "2026-02-30"}, "start"),
        ({"end": "03/04/2026"}, "end"),
        ({"start": "2026-3-4"}, "start"),
    ],
)
def test_bad_zones_and_dates_get_400_naming_the_field(owner, owner_api, params, field):
    response = owner_api.get(URL, params)
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert response.json()["error"]
