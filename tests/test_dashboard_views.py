"""The dashboard pages: who may see what, the range and zone in the URL, and the numbers."""

import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.utils import timezone

from dashboard.models import Profile
from dashboard.overview import Row
from dashboard.templatetags.numbers import number_cells, thousands, usage_rows
from tests.conftest import make_record
from usage.tokens import create_token

MARCH = {"start": "2026-03-01", "end": "2026-03-31"}


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def total_images(response) -> int:
    match = re.search(rb'data-testid="total-images">([\d,]+)<', response.content)
    assert match, response.content[:2000]
    return int(match.group(1).replace(b",", b""))


def chart_data(response) -> dict:
    match = re.search(
        rb'<script id="chart-data" type="application/json">(.*?)</script>', response.content
    )
    assert match
    return json.loads(match.group(1))


@pytest.fixture
def march_records(owner, other):
    make_record(owner, at("2026-03-02T10:00:00"), model="SDXL", images=4)
    make_record(owner, at("2026-03-02T23:30:00"), model="SDXL", images=2)  # 3 Mar in Berlin
    make_record(owner, at("2026-03-10T12:00:00"), model="DALL-E 3", images=3)
    make_record(other, at("2026-03-02T10:00:00"), model="SDXL", images=100)


# Access


@pytest.mark.parametrize(
    "path", ["/dashboard/", "/dashboard/data/", "/dashboard/tokens/", "/dashboard/export.csv"]
)
def test_anonymous_visitors_are_sent_to_the_login_page(client, db, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={path}"


def test_the_root_sends_visitors_to_login_and_users_to_their_dashboard(client, owner):
    assert client.get("/")["Location"] == "/accounts/login/"
    assert client_for(owner).get("/")["Location"] == "/dashboard/"


def test_logging_in_with_the_form_lands_on_the_dashboard(client, owner):
    page = client.get("/accounts/login/")
    assert b'name="username"' in page.content and b'name="password"' in page.content
    response = client.post(
        "/accounts/login/", {"username": "alice", "password": "alice-password-1"}
    )
    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    assert client.get("/dashboard/").status_code == 200


def test_a_wrong_password_shows_an_error_and_logs_nobody_in(client, owner):
    response = client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert b'role="alert"' in response.content
    assert client.get("/dashboard/").status_code == 302


def test_logout_is_a_post_and_ends_the_session(owner):
    client = client_for(owner)
    assert client.get("/accounts/logout/").status_code == 405
    response = client.post("/accounts/logout/")
    assert response["Location"] == "/accounts/login/"
    assert client.get("/dashboard/").status_code == 302


def test_a_user_can_change_their_password(owner):
    client = client_for(owner)
    assert client.get("/accounts/password/").status_code == 200
    response = client.post(
        "/accounts/password/",
        {
            "old_password": "alice-password-1",
            "new_password1": "a-much-better-passphrase-9",
            "new_password2": "a-much-better-passphrase-9",
        },
    )
    assert response["Location"] == "/accounts/password/done/"
    owner.refresh_from_db()
    assert owner.check_password("a-much-better-passphrase-9")


PRIVATE_PAGES = [
    "/dashboard/",
    "/dashboard/data/",
    "/dashboard/tokens/",
    "/dashboard/export.csv",
    "/dashboard/daily-totals.csv",
]


@pytest.mark.parametrize("path", PRIVATE_PAGES)
def test_private_pages_and_exports_are_never_stored_by_a_cache(owner, path):
    response = client_for(owner).get(path)

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert "private" in response["Cache-Control"]


@pytest.mark.parametrize("path", PRIVATE_PAGES)
def test_head_answers_wherever_get_does_with_the_same_headers_and_no_body(owner, path):
    client = client_for(owner)
    got, head = client.get(path), client.head(path)

    assert head.status_code == got.status_code == 200
    assert head["Content-Type"] == got["Content-Type"]
    assert (b"".join(head.streaming_content) if head.streaming else head.content) == b""


def test_head_on_a_token_revocation_page_answers_as_get_does(owner):
    token = create_token(owner, "laptop").token
    path = f"/dashboard/tokens/{token.pk}/revoke/"

    assert client_for(owner).head(path).status_code == 200
    assert "no-store" in client_for(owner).get(path)["Cache-Control"]


def test_another_user_sees_only_their_own_numbers(other, march_records):
    response = client_for(other).get("/dashboard/", MARCH)
    assert total_images(response) == 100
    assert b"DALL-E 3" not in response.content


def test_another_user_cannot_view_someone_elses_dashboard(other, march_records):
    client = client_for(other)
    for path in ("/dashboard/", "/dashboard/data/", "/dashboard/export.csv"):
        assert client.get(path, {"user": "alice", **MARCH}).status_code == 403


def test_staff_can_view_a_users_dashboard_read_only(staff, march_records):
    response = client_for(staff).get("/dashboard/", {"user": "alice", **MARCH})
    assert response.status_code == 200
    assert total_images(response) == 9
    assert b"read only" in response.content
    assert b"alice" in response.content
    # Links on the page keep showing alice's data.
    assert b"user=alice" in response.content


def test_staff_asking_for_an_unknown_user_gets_404(staff):
    assert client_for(staff).get("/dashboard/", {"user": "nobody"}).status_code == 404


def test_naming_yourself_in_user_is_just_your_own_dashboard(owner, march_records):
    response = client_for(owner).get("/dashboard/", {"user": "alice", **MARCH})
    assert response.status_code == 200 and total_images(response) == 9
    assert b"read only" not in response.content


# Range and zone in the URL


def test_the_default_range_is_the_last_30_days(owner):
    now = timezone.now()
    make_record(owner, now - timedelta(days=28), images=5)
    make_record(owner, now - timedelta(days=31), images=50)
    response = client_for(owner).get("/dashboard/")
    assert total_images(response) == 5
    assert response.context["query"].days == 30


@pytest.mark.parametrize(("days", "expected"), [("7", 1), ("30", 11), ("90", 111)])
def test_preset_ranges_count_what_they_cover(owner, days, expected):
    now = timezone.now()
    make_record(owner, now - timedelta(days=1), images=1)
    make_record(owner, now - timedelta(days=20), images=10)
    make_record(owner, now - timedelta(days=80), images=100)
    make_record(owner, now - timedelta(days=120), images=1000)
    response = client_for(owner).get("/dashboard/", {"days": days, "tz": "UTC"})
    assert total_images(response) == expected
    assert response.context["query"].days == int(days)


def test_a_custom_range_and_zone_in_the_url_decide_the_days(owner, march_records):
    utc = client_for(owner).get("/dashboard/", {**MARCH, "tz": "UTC"})
    berlin = client_for(owner).get("/dashboard/", {**MARCH, "tz": "Europe/Berlin"})
    utc_rows = {row.label: row.total for row in utc.context["overview"].rows}
    berlin_rows = {row.label: row.total for row in berlin.context["overview"].rows}
    assert (utc_rows["2 Mar"], utc_rows["3 Mar"]) == (6, 0)
    assert (berlin_rows["2 Mar"], berlin_rows["3 Mar"]) == (4, 2)
    assert b'data-testid="zone">Europe/Berlin<' in berlin.content
    # The page's own links keep the zone, so a bookmark shows the same view.
    assert b"tz=Europe%2FBerlin" in berlin.content


def test_a_long_custom_range_is_bucketed_by_week(owner, march_records):
    response = client_for(owner).get("/dashboard/", {"start": "2026-01-01", "end": "2026-06-30"})
    assert response.context["summary"]["granularity"] == "week"
    assert response.context["overview"].rows[0].label == "Week of 29 Dec 2025"


@pytest.mark.parametrize(
    "query",
    [
        {"days": "14"},
        {"start": "2026-02-30"},
        {"tz": "Mars/Olympus"},
        {"start": "2026-04-01", "end": "2026-03-01"},
    ],
)
def test_a_bad_range_explains_itself_and_shows_the_default(owner, query):
    response = client_for(owner).get("/dashboard/", query)
    assert response.status_code == 400
    assert b'class="notice error" role="alert"' in response.content
    assert b"Showing the last 30 days instead." in response.content
    assert response.context["query"].days == 30


def test_the_saved_zone_is_used_when_the_url_has_none(owner, march_records):
    Profile.objects.create(user=owner, time_zone="Europe/Berlin")
    response = client_for(owner).get("/dashboard/", MARCH)
    assert response.context["tz"].key == "Europe/Berlin"
    assert b'data-detect-zone="false"' in response.content


def test_a_first_visit_asks_the_browser_for_its_zone(owner):
    response = client_for(owner).get("/dashboard/")
    assert response.context["tz"].key == "UTC"
    assert b'data-detect-zone="true"' in response.content


def test_the_page_sends_the_browsers_zone_and_it_is_stored(owner):
    response = client_for(owner).post(
        "/dashboard/timezone/", {"tz": "America/New_York"}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 200 and response.json() == {"tz": "America/New_York"}
    assert Profile.objects.get(user=owner).time_zone == "America/New_York"


def test_choosing_a_zone_in_the_page_stores_it_and_returns_to_the_same_view(owner):
    response = client_for(owner).post(
        "/dashboard/timezone/", {"tz": "Asia/Kolkata", "next": "/dashboard/?days=7&tz=UTC"}
    )
    assert response["Location"] == "/dashboard/?days=7&tz=Asia%2FKolkata"
    assert Profile.objects.get(user=owner).time_zone == "Asia/Kolkata"


def test_an_unknown_zone_is_refused_and_nothing_is_stored(owner):
    client = client_for(owner)
    response = client.post(
        "/dashboard/timezone/", {"tz": "Nowhere/Land"}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 400 and response.json()["field"] == "tz"
    response = client.post("/dashboard/timezone/", {"tz": "Nowhere/Land", "next": "/dashboard/"})
    assert response["Location"] == "/dashboard/"
    assert not Profile.objects.filter(user=owner).exists()


def test_the_zone_form_never_redirects_to_another_site(owner):
    response = client_for(owner).post(
        "/dashboard/timezone/", {"tz": "UTC", "next": "https://evil.example/steal"}
    )
    assert response["Location"] == "/dashboard/?tz=UTC"


def test_changing_the_zone_needs_a_csrf_token(owner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert client.post("/dashboard/timezone/", {"tz": "UTC"}).status_code == 403


# What the page shows


def test_the_first_paint_holds_every_number(owner, march_records):
    response = client_for(owner).get("/dashboard/", {**MARCH, "tz": "UTC"})
    assert total_images(response) == 9
    assert b'data-testid="total-generations">3<' in response.content
    assert b'data-testid="top-model">SDXL<' in response.content
    data = chart_data(response)
    assert data["labels"][:3] == ["1 Mar", "2 Mar", "3 Mar"]
    by_model = {dataset["label"]: dataset["data"] for dataset in data["datasets"]}
    assert by_model["SDXL"][1] == 6 and sum(by_model["SDXL"]) == 6
    assert by_model["DALL-E 3"][9] == 3
    assert data["share"] == {"labels": ["SDXL", "DALL-E 3"], "data": [6, 3]}


def test_the_tables_hold_the_same_numbers_as_the_charts(owner, march_records):
    response = client_for(owner).get("/dashboard/", {**MARCH, "tz": "UTC"})
    html = response.content.decode()
    assert 'data-testid="usage-table"' in html and 'data-testid="share-table"' in html
    second_of_march = re.search(r'<th scope="row">2 Mar</th>(.*?)</tr>', html, re.S).group(1)
    assert re.findall(r">(\d+)</td>", second_of_march) == ["6", "0", "6"]
    assert "66.7&#8239;%" in html  # SDXL's share
    assert html.count("<time datetime=") >= 3  # recent records and last activity


def test_last_activity_is_the_newest_record_shown_in_the_zone(owner, march_records):
    response = client_for(owner).get("/dashboard/", {**MARCH, "tz": "Asia/Tokyo"})
    assert b"10 Mar 2026, 21:00" in response.content


def test_an_empty_range_shows_zeros_and_a_hint(owner):
    response = client_for(owner).get("/dashboard/", MARCH)
    assert total_images(response) == 0
    assert b'data-testid="top-model">\xe2\x80\x94<' in response.content
    assert b"No records in this range" in response.content


def test_many_models_are_grouped_in_the_charts_but_listed_in_the_share_table(owner):
    for rank in range(10):
        make_record(owner, at("2026-03-05T12:00:00"), model=f"model-{rank}", images=20 - rank)
    response = client_for(owner).get("/dashboard/", MARCH)
    data = chart_data(response)
    assert [dataset["label"] for dataset in data["datasets"]][-1] == "Other models"
    assert len(data["datasets"]) == 8
    assert data["share"]["data"][-1] == 13 + 12 + 11  # model-7, model-8 and model-9
    assert sum(data["share"]["data"]) == total_images(response)
    for rank in range(10):
        assert f"model-{rank}".encode() in response.content


def test_model_names_are_escaped_in_the_page_and_in_the_chart_data(owner):
    make_record(owner, at("2026-03-05T12:00:00"), model="<script>alert(1)</script>")
    response = client_for(owner).get("/dashboard/", MARCH)
    assert b"<script>alert(1)</script>" not in response.content
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in response.content
    assert chart_data(response)["share"]["labels"] == ["<script>alert(1)</script>"]


def test_chartjs_comes_from_the_cdn_with_its_integrity_hash(owner, settings):
    response = client_for(owner).get("/dashboard/")
    tag = re.search(
        rb"<script src=\"(https://[^\"]+)\" integrity=\"([^\"]+)\" crossorigin", response.content
    )
    assert tag, "no Chart.js tag with integrity"
    assert tag.group(1).decode() == settings.CHARTJS_CDN_URL
    assert tag.group(1).endswith(b"chart.js@4.6.1/dist/chart.umd.min.js")
    assert tag.group(2).decode() == settings.CHARTJS_CDN_INTEGRITY


def test_a_self_hosted_chartjs_without_a_hash_has_no_integrity_attribute(owner, settings):
    settings.CHARTJS_URL = "/static/vendor/chart.umd.min.js"
    settings.CHARTJS_INTEGRITY = ""
    response = client_for(owner).get("/dashboard/")
    assert b'<script src="/static/vendor/chart.umd.min.js" referrerpolicy' in response.content
    assert b"integrity=" not in response.content


# Refresh Data


def test_refresh_data_matches_the_summary_api_exactly(owner, owner_api, march_records):
    query = {**MARCH, "tz": "Europe/Berlin"}
    data = client_for(owner).get("/dashboard/data/", query)
    api = owner_api.get("/api/model-usage/summary", query)
    assert data.status_code == 200 and api.status_code == 200
    assert data.json()["summary"] == api.json()
    assert "no-store" in data["Cache-Control"]


def test_refresh_data_brings_new_records_and_rendered_regions(owner, march_records):
    client = client_for(owner)
    before = client.get("/dashboard/data/", MARCH).json()
    make_record(owner, at("2026-03-20T12:00:00"), model="Flux", images=7)
    after = client.get("/dashboard/data/", MARCH).json()
    assert (before["summary"]["totals"]["images"], after["summary"]["totals"]["images"]) == (9, 16)
    assert set(after["html"]) == {
        "cards",
        "usage-table",
        "share-table",
        "recent-records",
        "devices",
    }
    assert 'data-testid="total-images">16<' in after["html"]["cards"]
    assert "Flux" in after["html"]["recent-records"]
    assert after["chart"]["share"]["labels"] == ["Flux", "SDXL", "DALL-E 3"]


def test_refresh_data_answers_a_bad_query_with_a_json_error(owner):
    response = client_for(owner).get("/dashboard/data/", {"days": "12"})
    assert response.status_code == 400
    assert response.json() == {
        "error": "days must be 7, 30 or 90.",
        "code": "invalid_query",
        "field": "days",
    }


def test_the_dashboard_costs_a_fixed_number_of_queries(
    owner, march_records, django_assert_max_num_queries
):
    client = client_for(owner)
    # session, user, profile, summary (its tokens' names too), recent, last, the device filter
    with django_assert_max_num_queries(7):
        client.get("/dashboard/", MARCH)
    tokens = [create_token(owner, f"device {n}").token for n in range(5)]
    for day in range(1, 28):
        token = tokens[day % 5]
        make_record(owner, at(f"2026-03-{day:02d}T08:00:00"), model=f"m{day % 12}", token=token)
    with django_assert_max_num_queries(7):
        client.get("/dashboard/", MARCH)


def test_a_half_hour_zone_costs_one_query_more_for_the_hours_that_midnight_cuts(
    owner, march_records, django_assert_max_num_queries
):
    client = client_for(owner)
    with django_assert_max_num_queries(8):
        response = client.get("/dashboard/", {**MARCH, "tz": "Asia/Kolkata"})
    assert response.status_code == 200


def test_range_links_keep_the_zone_and_user(staff, march_records):
    response = client_for(staff).get("/dashboard/", {"user": "alice", "tz": "Asia/Tokyo"})
    expected = "?" + urlencode({"days": 7, "tz": "Asia/Tokyo", "user": "alice"})
    assert expected.replace("&", "&amp;").encode() in response.content


def test_a_logged_in_user_visiting_the_login_page_goes_to_the_dashboard(owner):
    assert client_for(owner).get("/accounts/login/")["Location"] == "/dashboard/"


@pytest.mark.parametrize(
    ("value", "shown"),
    [(0, "0"), (999, "999"), (1234, "1,234"), (12345678, "12,345,678"), (-4321, "-4,321")],
)
def test_numbers_are_grouped_by_thousands(value, shown):
    assert thousands(value) == shown


def test_only_integers_are_grouped():
    assert [thousands(value) for value in (None, True, "1234", 12.5)] == [None, True, "1234", 12.5]


def test_a_usage_row_is_one_number_cell_per_value():
    assert number_cells([0, 1234, 5]) == (
        '<td class="number">0</td><td class="number">1,234</td><td class="number">5</td>'
    )
    with pytest.raises(ValueError):
        number_cells(["<script>"])  # never anything but numbers into the page


def test_the_usage_table_body_is_a_row_per_period_with_its_total():
    rows = [Row("1 Mar", [2, 1000], 1002), Row("<b>2 Mar</b>", [0, 0], 0)]
    assert usage_rows(rows) == (
        '<tr><th scope="row">1 Mar</th><td class="number">2</td>'
        '<td class="number">1,000</td><td class="number">1,002</td></tr>'
        '<tr><th scope="row">&lt;b&gt;2 Mar&lt;/b&gt;</th><td class="number">0</td>'
        '<td class="number">0</td><td class="number">0</td></tr>'
    )


def test_recent_records_are_the_newest_ten_of_the_range_newest_first(owner):
    before, after = at("2026-02-28T23:59:00"), at("2026-04-01T00:00:00")
    make_record(owner, before, model="Before")
    make_record(owner, after, model="After")
    for day in range(1, 13):
        make_record(owner, at(f"2026-03-{day:02d}T10:00:00"), model=f"March {day}")

    response = client_for(owner).get("/dashboard/", {**MARCH, "tz": "UTC"})

    (table,) = re.findall(
        r'<table data-testid="recent-records">.*?</table>', response.content.decode(), re.S
    )
    shown = re.findall(r'<td class="model-name">([^<]+)</td>', table)
    assert shown == [f"March {day}" for day in range(12, 2, -1)]
