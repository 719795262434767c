"""The dashboard pages: who may see what, the range and zone in the URL, and the numbers."""

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.utils import timezone

from dashboard.models import Profile
from dashboard.overview import Row
from dashboard.templatetags.numbers import number_cells, thousands, usage_rows
from tests.conftest import make_record
from usage.models import ModelPrice
from usage.tokens import create_token

MARCH = {"start": "2026-03-01", "end": "2026-03-31"}
MINUS, DASH = "\N{MINUS SIGN}", "\N{EN DASH}"


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
    page = client.get("/accounts/logout/")  # a page asking to confirm, with the button
    assert page.status_code == 200 and b"Log out of <strong>alice</strong>" in page.content
    assert client.get("/dashboard/").status_code == 200
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


def test_the_next_page_shows_a_zone_stored_in_another_session(owner):
    """The zone comes with the signed-in user (one query for both): each request reads it
    afresh, so a zone chosen in one browser is the next page's in another."""
    phone, laptop = client_for(owner), client_for(owner)
    assert phone.get("/dashboard/").context["tz"].key == "UTC"
    laptop.post("/dashboard/timezone/", {"tz": "Asia/Kolkata"}, HTTP_ACCEPT="application/json")
    assert phone.get("/dashboard/").context["tz"].key == "Asia/Kolkata"
    assert phone.get("/dashboard/tokens/").context["zone"] == "Asia/Kolkata"


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
    assert (data["share"]["labels"], data["share"]["data"]) == (["SDXL", "DALL-E 3"], [6, 3])


def test_the_tables_hold_the_same_numbers_as_the_charts(owner, march_records):
    response = client_for(owner).get("/dashboard/", {**MARCH, "tz": "UTC"})
    html = response.content.decode()
    assert 'data-testid="usage-table"' in html and 'data-testid="share-table"' in html
    second_of_march = re.search(
        r'<th scope="row"><time datetime="2026-03-02">2 Mar</time></th>(.*?)</tr>', html, re.S
    ).group(1)
    assert re.findall(r">(\d+)</td>", second_of_march) == ["6", "0", "6"]
    assert "66.7&#8239;%" in html  # SDXL's share
    assert html.count("<time datetime=") >= 3  # recent records and last activity


def test_last_activity_is_the_newest_record_shown_in_the_zone(owner, march_records):
    response = client_for(owner).get("/dashboard/", {**MARCH, "tz": "Asia/Tokyo"})
    assert b"10 Mar 2026, 21:00" in response.content


def test_last_activity_of_a_range_ending_today_is_its_newest_record_without_asking_again(
    owner, django_assert_num_queries
):
    """No record is stored more than five minutes ahead of its arrival, so the newest record
    of a range that ends later than that is the owner's newest: the page asks no more."""
    now = timezone.now()
    make_record(owner, now - timedelta(days=40), images=1)
    make_record(owner, now - timedelta(hours=2), images=2)
    newest = make_record(owner, now + timedelta(minutes=4), images=3)  # a clock a bit ahead
    shown = newest.occurred_at.astimezone(UTC).strftime("%-d %b %Y, %H:%M").encode()
    client = client_for(owner)
    client.get("/dashboard/", {"days": 7, "tz": "UTC"})
    # session, user with profile, prices, summary, the days before, recent, budget, devices
    with django_assert_num_queries(8):
        response = client.get("/dashboard/", {"days": 7, "tz": "UTC"})
    assert re.search(rb'data-testid="last-activity"[^>]*><time [^>]*>' + shown, response.content)
    # A range that ended in the past, or holds no records, asks for the newest of all.
    forty_days_ago = (now - timedelta(days=40)).date()
    for start, end in [(forty_days_ago, forty_days_ago), ("2020-01-01", "2020-01-31")]:
        with django_assert_num_queries(9):
            response = client.get("/dashboard/", {"start": start, "end": end, "tz": "UTC"})
        assert response.status_code == 200
        assert re.search(
            rb'data-testid="last-activity"[^>]*><time [^>]*>' + shown, response.content
        )


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
        "budget",
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
    owner, march_records, django_assert_num_queries
):
    client = client_for(owner)
    # session, user with profile, the prices (read once), the summary (its tokens' names
    # too), the same for the days before, recent, last activity (March is over), budget
    # (none: the card says so), the device filter
    with django_assert_num_queries(9):
        client.get("/dashboard/", MARCH)
    tokens = [create_token(owner, f"device {n}").token for n in range(5)]
    for day in range(1, 28):
        token = tokens[day % 5]
        make_record(owner, at(f"2026-03-{day:02d}T08:00:00"), model=f"m{day % 12}", token=token)
    with django_assert_num_queries(9):
        client.get("/dashboard/", MARCH)


def test_a_half_hour_zone_costs_one_query_more_for_the_hours_that_midnight_cuts(
    owner, march_records, django_assert_max_num_queries
):
    client = client_for(owner)
    with django_assert_max_num_queries(12):  # one more for each of the two summaries
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
        '<td class="number">1,000</td>'
        '<td class="number row-total" data-label="Total">1,002</td></tr>'
        '<tr><th scope="row">&lt;b&gt;2 Mar&lt;/b&gt;</th><td class="number">0</td>'
        '<td class="number">0</td><td class="number row-total" data-label="Total">0</td></tr>'
    )


def test_usage_rows_with_columns_name_each_cell_and_mark_the_empty_ones():
    rows = [Row("1 Mar", [2, 0], 2, "2026-03-01")]
    assert usage_rows(rows, ["SDXL", '<i>"x"</i>']) == (
        '<tr><th scope="row"><time datetime="2026-03-01">1 Mar</time></th>'
        '<td class="number" data-label="SDXL">2</td>'
        '<td class="number zero" data-label="&lt;i&gt;&quot;x&quot;&lt;/i&gt;">0</td>'
        '<td class="number row-total" data-label="Total">2</td></tr>'
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


# Compared with the days before


def change_on(html: str, test_id: str) -> tuple[str, str]:
    """The figure a card shows ("↑ +125%") and its tooltip."""
    match = re.search(
        rf'<p class="change"[^>]*data-testid="{test_id}"[^>]*title="([^"]*)">\s*'
        r'<span class="change-figure" aria-hidden="true">(.*?)</span>\s*<span',
        html,
        re.S,
    )
    assert match, f"no {test_id} in the page"
    figure = re.sub(r"<[^>]+>", "", match.group(2))
    return " ".join(figure.split()), match.group(1)


@pytest.fixture
def february_records(owner, other):
    """The 31 days before March are 29 January to 28 February."""
    make_record(owner, at("2026-02-10T12:00:00"), model="SDXL", images=4)
    make_record(owner, at("2026-01-29T00:30:00"), model="Flux", images=2)  # the first day
    make_record(owner, at("2026-01-28T23:00:00"), model="SDXL", images=50)  # a day too early
    make_record(other, at("2026-02-10T12:00:00"), model="SDXL", images=100)


def test_each_card_compares_with_the_same_number_of_days_before(
    owner, march_records, february_records
):
    html = client_for(owner).get("/dashboard/", {**MARCH, "tz": "UTC"}).content.decode()
    assert change_on(html, "images-change") == (
        "↑ +50%",  # 9 images against 6
        f"50% more images than the 31 days before (29 Jan 2026 {DASH} 28 Feb 2026)",
    )
    assert change_on(html, "generations-change") == (
        "↑ +50%",  # 3 against 2
        f"50% more generations than the 31 days before (29 Jan 2026 {DASH} 28 Feb 2026)",
    )
    assert change_on(html, "top-model-change") == (
        "↑ +50%",  # SDXL: 6 against 4
        f"50% more SDXL images than the 31 days before (29 Jan 2026 {DASH} 28 Feb 2026)",
    )


def test_the_comparison_counts_the_days_before_in_the_pages_zone(owner, march_records):
    # 28 Jan 23:30 UTC is 29 Jan in Tokyo: inside the days before March there, not in UTC.
    make_record(owner, at("2026-01-28T23:30:00"), model="SDXL", images=3)
    client = client_for(owner)
    utc = client.get("/dashboard/", {**MARCH, "tz": "UTC"}).content.decode()
    tokyo = client.get("/dashboard/", {**MARCH, "tz": "Asia/Tokyo"}).content.decode()
    assert change_on(utc, "images-change")[0] == "↑ new"
    assert change_on(tokyo, "images-change")[0] == "↑ +200%"  # 9 against 3


def test_fewer_images_than_before_show_a_falling_percent(owner):
    make_record(owner, at("2026-03-05T12:00:00"), model="Flux", images=1)
    make_record(owner, at("2026-02-05T12:00:00"), model="Flux", images=3)
    html = client_for(owner).get("/dashboard/", MARCH).content.decode()
    assert change_on(html, "images-change") == (
        f"↓ {MINUS}67%",
        f"67% fewer images than the 31 days before (29 Jan 2026 {DASH} 28 Feb 2026)",
    )


def test_nothing_before_is_new_and_nothing_at_all_is_a_dash(owner, march_records):
    client = client_for(owner)
    html = client.get("/dashboard/", MARCH).content.decode()
    assert change_on(html, "images-change")[0] == "↑ new"
    assert "9 images, none in the 31 days before" in change_on(html, "images-change")[1]
    empty = client.get("/dashboard/", {"start": "2025-03-01", "end": "2025-03-31"})
    assert change_on(empty.content.decode(), "images-change")[0] == DASH


def test_the_cards_agree_with_the_summary_api_for_both_ranges(
    owner, owner_api, march_records, february_records
):
    query = {**MARCH, "tz": "Europe/Berlin"}
    before = {"start": "2026-01-29", "end": "2026-02-28", "tz": "Europe/Berlin"}
    now = owner_api.get("/api/model-usage/summary", query).json()["totals"]
    then = owner_api.get("/api/model-usage/summary", before).json()["totals"]
    html = client_for(owner).get("/dashboard/", query).content.decode()
    # In Berlin the 50 images of 28 January 23:00 UTC fall on 29 January: fewer images now,
    # and as many generations as before.
    assert (now["images"], then["images"], now["events"], then["events"]) == (9, 56, 3, 3)
    for test_id, key in (("images-change", "images"), ("generations-change", "events")):
        percent = round(100 * (now[key] - then[key]) / then[key])
        shown = f"↓ {MINUS}{-percent}%" if percent < 0 else f"↑ +{percent}%" if percent else "→ 0%"
        assert change_on(html, test_id)[0] == shown


def test_another_users_records_never_count_in_the_comparison(other, march_records):
    make_record(other, at("2026-02-10T12:00:00"), model="SDXL", images=1)
    html = client_for(other).get("/dashboard/", MARCH).content.decode()
    assert change_on(html, "images-change") == (
        "↑ +9900%",  # their own 100 against their own 1; alice's numbers are in neither
        f"9900% more images than the 31 days before (29 Jan 2026 {DASH} 28 Feb 2026)",
    )


def test_refresh_data_brings_the_comparison_and_the_days_before_for_the_chart(
    owner, march_records, february_records
):
    client = client_for(owner)
    make_record(owner, at("2026-03-20T12:00:00"), model="Flux", images=3)  # now 12 against 6
    data = client.get("/dashboard/data/", {**MARCH, "tz": "UTC"}).json()
    assert change_on(data["html"]["cards"], "images-change")[0] == "↑ +100%"
    previous = data["chart"]["previous"]
    assert previous["label"] == "The 31 days before"
    assert len(previous["data"]) == len(data["chart"]["labels"]) == 31
    assert previous["periods"][0] == "2026-01-29" and previous["periods"][-1] == "2026-02-28"
    assert previous["data"][0] == 2 and previous["data"][12] == 4  # 29 Jan, 10 Feb
    assert sum(previous["data"]) == 6


def test_weeks_before_are_lined_up_with_the_ranges_weeks(owner):
    # 100 days from a Sunday touch 16 weeks; the 100 days before, from a Friday, touch 15.
    make_record(owner, at("2025-09-26T12:00:00"), model="SDXL", images=5)  # the first day before
    query = {"start": "2026-01-04", "end": "2026-04-13", "tz": "UTC"}
    chart = chart_data(client_for(owner).get("/dashboard/", query))
    assert chart["granularity"] == "week"
    previous = chart["previous"]
    assert len(previous["data"]) == len(chart["labels"])
    assert previous["data"][0] == 5
    assert previous["periods"][0] == "2025-09-22"  # the Monday of that week
    assert previous["data"][-1] is None  # the range has one week more than the days before


def test_model_colours_follow_the_name_not_the_rank(owner):
    make_record(owner, at("2026-03-05T12:00:00"), model="SDXL", images=9)
    make_record(owner, at("2026-03-06T12:00:00"), model="Flux", images=1)
    make_record(owner, at("2026-04-05T12:00:00"), model="SDXL", images=1)
    make_record(owner, at("2026-04-06T12:00:00"), model="Flux", images=9)
    client = client_for(owner)

    def colours(query: dict) -> dict[str, object]:
        chart = chart_data(client.get("/dashboard/", query))
        by_dataset = {d["label"]: d["colour"] for d in chart["datasets"]}
        by_share = dict(zip(chart["share"]["labels"], chart["share"]["colours"], strict=True))
        assert by_dataset == by_share
        return by_dataset

    march, april = colours(MARCH), colours({"start": "2026-04-01", "end": "2026-04-30"})
    assert march == april
    assert march["SDXL"] != march["Flux"]


def test_other_models_are_grey_and_the_share_table_swatches_match_the_charts(owner):
    for rank in range(10):
        make_record(owner, at("2026-03-05T12:00:00"), model=f"model-{rank}", images=20 - rank)
    response = client_for(owner).get("/dashboard/", MARCH)
    chart = chart_data(response)
    assert chart["datasets"][-1]["colour"] == "other"
    assert all(isinstance(d["colour"], int) for d in chart["datasets"][:-1])
    html = response.content.decode()
    pattern = r'data-colour="(\w+)" aria-hidden="true"></span><span class="model-name">([^<]+)<'
    swatch_of = {model: colour for colour, model in re.findall(pattern, html)}
    for dataset in chart["datasets"][:-1]:
        assert swatch_of[dataset["label"]] == str(dataset["colour"])
    assert {swatch_of[f"model-{rank}"] for rank in (7, 8, 9)} == {"other"}


# The cost view: ?measure=cost


def table_cells(html: str, test_id: str) -> list[list[str]]:
    """The rows of a table as text, head, body and foot alike."""
    match = re.search(rf'<table[^>]*data-testid="{test_id}".*?</table>', html, re.S)
    assert match, test_id
    rows = re.findall(r"<tr>(.*?)</tr>", match.group(0), re.S)
    cell = re.compile(r"<t[hd][^>]*>(.*?)</t[hd]>", re.S)
    return [
        [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", text)).strip() for text in cell.findall(row)]
        for row in rows
    ]


def shown_text(html: str, test_id: str) -> str:
    match = re.search(rf'data-testid="{test_id}"[^>]*>(.*?)</p>', html, re.S)
    assert match, test_id
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", match.group(1))).strip()


@pytest.fixture
def priced_records(owner, other):
    """March in Berlin, with SDXL's price changing on 5 March at 10:15 UTC, Flux priced from
    the start, and Stable Diffusion 1.5 with no price at all; two devices; February's SDXL
    for the comparison; and bob's records, which must count nowhere."""
    for model, amount, valid_from in (
        ("SDXL", "0.125", "2026-01-01T00:00:00"),
        ("SDXL", "0.0405", "2026-03-05T10:15:00"),
        ("Flux", "0.333", "2026-01-01T00:00:00"),
    ):
        ModelPrice.objects.create(
            model=model, price_per_image=Decimal(amount), valid_from=at(valid_from)
        )
    laptop, studio = (create_token(owner, name).token for name in ("Laptop", "Studio"))
    for when, model, images, token in (
        ("2026-03-02T10:00:00", "SDXL", 3, laptop),
        ("2026-03-05T10:00:00", "SDXL", 7, studio),  # the old price, the same day
        ("2026-03-05T11:00:00", "SDXL", 11, laptop),  # the new price
        ("2026-03-06T09:00:00", "Flux", 2, studio),
        ("2026-03-06T22:30:00", "Stable Diffusion 1.5", 12, laptop),  # 6 March in Berlin
        ("2026-02-20T12:00:00", "SDXL", 5, laptop),  # the days before
    ):
        make_record(owner, at(when), model=model, images=images, token=token)
    make_record(other, at("2026-03-02T10:00:00"), model="SDXL", images=1000)
    return {"laptop": laptop, "studio": studio}


@pytest.mark.parametrize("device", [None, "laptop", "studio"])
def test_the_cost_views_cards_and_tables_equal_the_summary_apis_costs(
    owner, owner_api, priced_records, device
):
    query = {**MARCH, "tz": "Europe/Berlin"}
    if device:
        query["token"] = str(priced_records[device].pk)
    api = owner_api.get("/api/model-usage/summary", query).json()
    html = client_for(owner).get("/dashboard/", {**query, "measure": "cost"}).content.decode()

    assert api["currency"] == "USD" and api["totals"]["cost"] not in (None, "0.00")
    assert shown_text(html, "total-cost") == f"{api['totals']['cost']} USD"
    unpriced = api["totals"]["unpricedImages"]
    assert ('data-testid="unpriced-images"' in html) == bool(unpriced)
    if unpriced:
        assert shown_text(html, "unpriced-images") == f"{unpriced} images had no price"

    share = table_cells(html, "share-table")
    by_model = {row[0]: row[1] for row in share[1:-1]}
    assert by_model == {
        entry["model"]: entry["cost"] if entry["cost"] is not None else "no price"
        for entry in api["models"]
    }
    assert share[-1][:2] == ["Total", api["totals"]["cost"]]

    usage = table_cells(html, "usage-table")
    columns = usage[0][1:-1]
    body = usage[1:-1]
    assert [row[-1] for row in body] == [
        c if c is not None else "no price" for c in api["periodCosts"]
    ]
    cells = {(p["period"], p["model"]): p["cost"] for p in api["series"]}
    for period, row in zip(api["periods"], body, strict=True):
        for model, text in zip(columns, row[1:-1], strict=True):
            cost = cells.get((period, model), "0.00")
            assert text == (cost if cost is not None else "no price"), (period, model)
    assert usage[-1][-1] == api["totals"]["cost"]

    chart = chart_data_of(html)
    assert {d["label"]: d["text"] for d in chart["datasets"]} == {
        model: [cells.get((period, model), "0.00") for period in api["periods"]]
        for model in columns
    }
    for dataset in chart["datasets"]:
        assert dataset["data"] == [None if t is None else float(t) for t in dataset["text"]]


def chart_data_of(html: str) -> dict:
    match = re.search(r'<script id="chart-data" type="application/json">(.*?)</script>', html)
    assert match
    return json.loads(match.group(1))


def test_the_cost_view_compares_the_cost_with_the_days_before(owner, owner_api, priced_records):
    query = {**MARCH, "tz": "Europe/Berlin"}
    before = {"start": "2026-01-29", "end": "2026-02-28", "tz": "Europe/Berlin"}
    now = owner_api.get("/api/model-usage/summary", query).json()
    then = owner_api.get("/api/model-usage/summary", before).json()
    html = client_for(owner).get("/dashboard/", {**query, "measure": "cost"}).content.decode()
    # 3 x 0.125 + 7 x 0.125 + 11 x 0.0405 + 2 x 0.333 now, 5 x 0.125 before.
    assert (now["totals"]["cost"], then["totals"]["cost"]) == ("2.36", "0.62")
    figure, words = change_on(html, "cost-change")
    assert figure == "↑ +281%"  # 2.36 against 0.62, as shown
    assert words.startswith("281% higher cost than the 31 days before")
    # The overlay of the days before is their cost per day, as the API has it.
    chart = chart_data_of(html)
    assert chart["previous"]["text"] == then["periodCosts"]
    assert chart["axis"] == "Cost (USD)"


def test_images_without_a_price_are_never_shown_as_a_zero_cost(owner):
    make_record(owner, at("2026-03-02T10:00:00"), model="Unpriced model", images=4)
    html = client_for(owner).get("/dashboard/", {**MARCH, "measure": "cost"}).content.decode()
    assert shown_text(html, "total-cost") == "no price"
    assert shown_text(html, "unpriced-images") == "4 images had no price"
    assert table_cells(html, "share-table")[1][:2] == ["Unpriced model", "no price"]
    chart = chart_data_of(html)
    assert chart["datasets"][0]["data"][1] is None and chart["datasets"][0]["text"][1] is None
    assert chart["share"]["data"] == [None]
    assert "No priced images in this range" in html


def test_the_measure_is_kept_by_every_link_and_form_of_the_page(owner, priced_records):
    query = {**MARCH, "tz": "UTC", "token": str(priced_records["laptop"].pk), "measure": "cost"}
    html = client_for(owner).get("/dashboard/", query).content.decode()
    ranges = re.findall(r'<a class="pill" href="\?([^"]*days=[^"]*)"', html)
    assert len(ranges) == 3 and all("measure=cost" in link for link in ranges)
    assert re.search(r'data-data-url="[^"]*measure=cost', html)  # Refresh Data
    assert '<input type="hidden" name="measure" value="cost">' in html  # custom range
    device_form = re.search(r'<form class="device-form".*?</form>', html, re.S).group(0)
    assert 'name="measure" value="cost"' in device_form
    refresh_form = re.search(r"<form class=\"refresh\".*?</form>", html, re.S).group(0)
    assert 'name="measure" value="cost"' in refresh_form
    assert re.search(r'name="next" value="/dashboard/\?[^"]*measure=cost', html)  # the zone
    toggle = re.search(r'data-testid="measure-toggle">(.*?)</nav>', html, re.S).group(1)
    images, cost = re.findall(r'<a class="pill" href="([^"]*)"([^>]*)>', toggle)
    assert "measure" not in images[0] and "token=" in images[0] and "start=2026-03-01" in images[0]
    assert "measure=cost" in cost[0] and "aria-current" in cost[1]


def test_refresh_data_in_the_cost_view_brings_the_apis_costs(owner, owner_api, priced_records):
    query = {**MARCH, "tz": "Europe/Berlin"}
    api = owner_api.get("/api/model-usage/summary", query).json()
    payload = client_for(owner).get("/dashboard/data/", {**query, "measure": "cost"}).json()
    assert payload["summary"] == api
    assert payload["chart"]["share"]["text"] == [entry["cost"] for entry in api["models"]]
    assert f"{api['totals']['cost']} <span" in payload["html"]["cards"]


def test_a_bad_measure_explains_itself_and_shows_images(owner):
    client = client_for(owner)
    response = client.get("/dashboard/", {"measure": "euros"})
    assert response.status_code == 400
    assert "measure must be images or cost. Showing images." in response.content.decode()
    assert 'data-testid="total-images"' in response.content.decode()
    refresh = client.get("/dashboard/data/", {"measure": "euros"})
    assert refresh.status_code == 400 and refresh.json()["code"] == "invalid_query"


def test_another_users_cost_view_shows_only_their_own_costs(other, priced_records):
    html = client_for(other).get("/dashboard/", {**MARCH, "measure": "cost"}).content.decode()
    # bob's 1,000 SDXL images at 0.125; none of alice's models or costs.
    assert shown_text(html, "total-cost") == "125.00 USD"
    assert [row[0] for row in table_cells(html, "share-table")[1:-1]] == ["SDXL"]
