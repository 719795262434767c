"""The dashboard in a real Chromium against the live server.

Numbers are read back from the Chart.js instances and the data tables and compared with
what the test stored through the ORM or the API.
"""

import json
import re
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from time import monotonic
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from playwright.sync_api import Page, Route, expect

from tests.browser.dashboard_page import (
    SHARE_CHART,
    UPDATED,
    USAGE_CHART,
    bar_series,
    chart_data,
    doughnut,
    press_refresh,
    share_table,
    shown_number,
    store,
    table,
    usage_table_series,
    wait_until_charts_settle,
)
from tests.conftest import make_record
from usage.tokens import create_token, revoke_token

pytestmark = pytest.mark.slow

UTC = ZoneInfo("UTC")
TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")


# ---- what the page should show, worked out from the stored records ----


@dataclass(frozen=True)
class Expected:
    """Images per model per local day over ``days`` days ending today in ``zone``."""

    series: dict[str, list[int]]
    generations: int

    @classmethod
    def of(cls, records: list[tuple[datetime, str, int]], zone: ZoneInfo, days: int):
        first = today_in(zone) - timedelta(days=days - 1)
        series: dict[str, list[int]] = defaultdict(lambda: [0] * days)
        generations = 0
        for when, model, images in records:
            index = (when.astimezone(zone).date() - first).days
            if 0 <= index < days:
                series[model][index] += images
                generations += 1
        return cls(dict(series), generations)

    @property
    def per_model(self) -> dict[str, int]:
        return {model: sum(values) for model, values in self.series.items()}

    @property
    def total(self) -> int:
        return sum(self.per_model.values())


def today_in(zone: ZoneInfo) -> date:
    return timezone.now().astimezone(zone).date()


def local(day: date, hour: int, minute: int, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=zone)


def is_data_url(url: str) -> bool:
    return "/dashboard/data/" in url


def post_usage(base_url: str, token: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{base_url}/api/model-usage",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def background_luminance(page: Page) -> float:
    """Relative luminance (0 black .. 1 white) of the first opaque page background."""
    rgb = page.evaluate(
        """() => {
            const root = document.documentElement;
            for (const el of [document.querySelector('main'), document.body, root]) {
                if (!el) continue;
                const c = getComputedStyle(el).backgroundColor;
                if (c && c !== 'transparent' && !c.endsWith(', 0)')) return c;
            }
            return null;
        }"""
    )
    assert rgb, "the page sets no background colour"
    red, green, blue = (int(part) / 255 for part in re.findall(r"\d+(?:\.\d+)?", rgb)[:3])
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


# ---- the tests ----


def test_logged_in_owner_sees_charts_drawn_from_their_own_records(
    open_tab, live_server, owner, other, chartjs_url, chartjs_integrity
):
    today = today_in(TOKYO)
    records = [
        (local(today - timedelta(days=1), 12, 0, TOKYO), "SDXL", 4),
        (local(today - timedelta(days=1), 18, 30, TOKYO), "SDXL", 3),
        (local(today - timedelta(days=10), 9, 15, TOKYO), "SDXL", 5),
        (local(today - timedelta(days=1), 8, 0, TOKYO), "Flux", 2),
        (local(today - timedelta(days=3), 23, 45, TOKYO), "Flux", 6),
        (local(today - timedelta(days=29), 0, 15, TOKYO), "Flux", 1),  # first day of 30
        (local(today, 0, 5, TOKYO), "Midjourney", 7),
    ]
    store(owner, records)
    store(owner, [(local(today - timedelta(days=30), 12, 0, TOKYO), "SDXL", 100)])  # too old
    store(other, [(local(today - timedelta(days=1), 12, 0, TOKYO), "SDXL", 50)])
    expected = Expected.of(records, TOKYO, days=30)
    assert expected.per_model == {"SDXL": 12, "Flux": 9, "Midjourney": 7}

    page = open_tab(timezone_id="Asia/Tokyo").page
    page.goto(live_server.url + "/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.locator("#id_username").fill("alice")
    page.locator("#id_password").fill("alice-password-1")
    page.locator("button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/dashboard/"))
    # The first visit stores the browser's zone and reloads; wait for the reloaded page.
    expect(page.get_by_test_id("zone")).to_have_text("Asia/Tokyo")

    # Chart.js came through the page's own tag, checked by the browser against its SRI hash.
    script = page.locator(f'script[src="{chartjs_url}"]')
    expect(script).to_have_attribute("integrity", chartjs_integrity)
    expect(script).to_have_attribute("crossorigin", "anonymous")
    chart = chart_data(page, USAGE_CHART)
    assert len(chart["labels"]) == 30
    assert bar_series(page) == expected.series
    assert doughnut(page) == expected.per_model
    assert shown_number(page, "total-images") == 28
    assert shown_number(page, "total-generations") == expected.generations == 7
    expect(page.get_by_test_id("top-model")).to_have_text("SDXL")
    assert usage_table_series(page, list(expected.series)) == expected.series
    assert share_table(page) == expected.per_model


def test_refresh_data_shows_a_record_posted_through_the_api_without_a_reload(
    open_tab, live_server, owner, owner_token
):
    now = timezone.now()
    store(owner, [(now - timedelta(days=2), "SDXL", 5), (now - timedelta(days=4), "Flux", 2)])
    tab = open_tab(owner)
    page = tab.page
    page.goto(live_server.url + "/dashboard/?days=7&tz=UTC")
    before = bar_series(page)
    assert len(chart_data(page, USAGE_CHART)["labels"]) == 7
    assert shown_number(page, "total-images") == 7
    page.evaluate("window.__sameDocument = 'still here'")

    reply = post_usage(live_server.url, owner_token.raw, {"model": "SDXL", "imageCount": 3})
    assert reply["accepted"] == 1

    held: list[Route] = []
    page.route(
        is_data_url, lambda route: held.append(route)
    )  # hold the request to see the loading state
    button = page.get_by_test_id("refresh-data")
    press_refresh(page)
    expect(button).to_be_disabled()
    deadline = monotonic() + 10
    while not held and monotonic() < deadline:
        page.wait_for_timeout(20)  # lets Playwright deliver the route to the handler
    assert held, "Refresh Data sent no request to /dashboard/data/"
    assert re.search(r"[?&]days=7(&|$)", held[0].request.url)
    assert re.search(r"[?&]tz=UTC(&|$)", held[0].request.url)
    held[0].continue_()
    page.unroute(is_data_url)

    expect(page.get_by_test_id("refresh-status")).to_have_text(UPDATED)
    expect(button).to_be_enabled()
    expect(page.get_by_test_id("total-images")).to_have_text(re.compile(r"^\D*10\D*$"))
    after = bar_series(page)
    assert after["SDXL"] == [*before["SDXL"][:-1], before["SDXL"][-1] + 3]  # today is last
    assert after["Flux"] == before["Flux"]
    assert doughnut(page) == {"SDXL": 8, "Flux": 2}
    assert share_table(page) == {"SDXL": 8, "Flux": 2}
    assert page.evaluate("window.__sameDocument") == "still here"
    assert tab.errors == []


def test_failed_refresh_shows_an_error_and_keeps_the_last_numbers(open_tab, live_server, owner):
    store(owner, [(timezone.now() - timedelta(days=1), "SDXL", 9)])
    tab = open_tab(owner)
    page = tab.page
    page.goto(live_server.url + "/dashboard/?tz=UTC")
    button = page.get_by_test_id("refresh-data")
    error = page.get_by_test_id("refresh-error")
    expect(error).to_be_hidden()
    before = bar_series(page)

    page.route(is_data_url, lambda route: route.abort())  # the network is down
    press_refresh(page)
    expect(error).to_be_visible()
    expect(error).to_have_attribute("role", "alert")
    expect(error).not_to_have_text("")
    expect(button).to_be_enabled()
    assert shown_number(page, "total-images") == 9
    assert bar_series(page) == before

    page.unroute(is_data_url)
    press_refresh(page)
    expect(error).to_be_hidden()
    expect(page.get_by_test_id("refresh-status")).to_have_text(UPDATED)

    page.route(
        is_data_url,
        lambda route: route.fulfill(status=500, content_type="text/html", body="<h1>Error</h1>"),
    )
    press_refresh(page)
    expect(error).to_be_visible()
    expect(button).to_be_enabled()
    assert shown_number(page, "total-images") == 9
    assert bar_series(page) == before
    assert tab.errors == []


def test_without_chartjs_the_tables_show_every_number(open_tab, live_server, owner, chartjs_url):
    today = today_in(UTC)
    records = [
        (local(today - timedelta(days=2), 10, 0, UTC), "SDXL", 1234),
        (local(today - timedelta(days=2), 11, 0, UTC), "Flux", 3),
        (local(today - timedelta(days=5), 23, 0, UTC), "Flux", 4),
        (local(today - timedelta(days=6), 0, 0, UTC), "Kandinsky", 2),
    ]
    store(owner, records)
    expected = Expected.of(records, UTC, days=7)
    tab = open_tab(owner)
    page = tab.page
    page.route(chartjs_url, lambda route: route.abort())
    page.goto(live_server.url + "/dashboard/?days=7&tz=UTC")

    usage = page.get_by_test_id("usage-table")
    expect(usage).to_be_visible()
    expect(page.get_by_test_id("share-table")).to_be_visible()
    assert usage.evaluate("t => t.closest('details').open") is True
    expect(page.locator(USAGE_CHART)).to_be_hidden()
    expect(page.locator(SHARE_CHART)).to_be_hidden()
    assert usage_table_series(page, list(expected.series)) == expected.series
    assert share_table(page) == expected.per_model == {"SDXL": 1234, "Flux": 7, "Kandinsky": 2}
    assert shown_number(page, "total-images") == 1243
    assert page.evaluate("typeof window.Chart") == "undefined"

    # Refresh Data still works and updates the tables.
    make_record(owner, timezone.now(), "Kandinsky", 5)
    press_refresh(page)
    expect(page.get_by_test_id("refresh-status")).to_have_text(UPDATED)
    assert shown_number(page, "total-images") == 1248
    assert share_table(page)["Kandinsky"] == 7

    assert tab.errors == []
    other_errors = [
        message.text
        for message in tab.console_errors
        if message.location.get("url") != chartjs_url and "chart.umd" not in message.text
    ]
    assert other_errors == []


def test_the_device_table_fits_a_phone_without_sideways_scrolling(
    open_tab, live_server, owner, screenshots
):
    now = timezone.now()
    names = ["Studio workstation in the back office, second floor " * 2, "Laptop", "iMac"]
    devices = [create_token(owner, name[:100]).token for name in names]
    for n, device in enumerate(devices):
        make_record(owner, now - timedelta(hours=n + 1), "SDXL", 9_999, token=device)
    revoke_token(devices[2])
    make_record(owner, now - timedelta(hours=5), "SDXL", 1)
    page = open_tab(owner, viewport={"width": 375, "height": 740}, is_mobile=True).page
    page.goto(live_server.url + "/dashboard/?tz=UTC")

    table = page.get_by_test_id("devices-table")
    expect(table).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    box = table.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
    assert table.locator("tbody tr").count() == 4
    filter_box = page.get_by_test_id("device-filter").bounding_box()
    assert filter_box is not None and filter_box["x"] + filter_box["width"] <= 375
    table.screenshot(path=screenshots / "dashboard-devices-375px.png")


def test_phone_width_page_does_not_scroll_sideways(open_tab, live_server, owner, screenshots):
    now = timezone.now()
    store(
        owner,
        [(now - timedelta(days=day), "Stable Diffusion XL Turbo", day + 1) for day in range(9)],
    )
    page = open_tab(owner, viewport={"width": 375, "height": 740}, is_mobile=True).page
    page.goto(live_server.url + "/dashboard/?tz=UTC")
    wait_until_charts_settle(page)

    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    for test_id in ("total-images", "total-generations", "top-model", "last-activity"):
        expect(page.get_by_test_id(test_id)).to_be_visible()
    canvas = page.locator(USAGE_CHART)
    expect(canvas).to_be_visible()
    box = canvas.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
    assert box["height"] > 100
    page.screenshot(path=screenshots / "dashboard-375px.png", full_page=True)


def test_first_visit_stores_the_browser_zone_and_buckets_days_in_it(open_tab, live_server, owner):
    day = today_in(NEW_YORK) - timedelta(days=2)
    late = local(day, 23, 30, NEW_YORK)  # already the next day in UTC
    early = local(day + timedelta(days=1), 0, 30, NEW_YORK)
    store(owner, [(late, "SDXL", 2), (early, "SDXL", 5)])
    assert late.astimezone(UTC).date() == early.astimezone(UTC).date()

    page = open_tab(owner, timezone_id="America/New_York").page
    page.goto(live_server.url + "/dashboard/")
    expect(page.get_by_test_id("zone")).to_have_text("America/New_York")
    expected = [0] * 30
    expected[27], expected[28] = 2, 5
    assert bar_series(page) == {"SDXL": expected}
    assert usage_table_series(page, ["SDXL"]) == {"SDXL": expected}

    # The stored zone wins over another browser's zone on later visits.
    page = open_tab(owner, timezone_id="Asia/Tokyo").page
    page.goto(live_server.url + "/dashboard/")
    chart_data(page, USAGE_CHART)
    expect(page.get_by_test_id("zone")).to_have_text("America/New_York")
    assert bar_series(page) == {"SDXL": expected}


HOSTILE_NAMES = [
    "<script>alert(1)</script>",
    '=HYPERLINK("http://example.com","click")',
    "<img src=x onerror=alert(2)>",
]


def test_model_names_are_shown_as_text_everywhere(open_tab, live_server, owner):
    now = timezone.now()
    store(
        owner, [(now - timedelta(hours=n + 1), name, n + 1) for n, name in enumerate(HOSTILE_NAMES)]
    )
    tab = open_tab(owner)
    page = tab.page
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(live_server.url + "/dashboard/?tz=UTC")

    def names_are_text() -> None:
        assert set(share_table(page)) == set(HOSTILE_NAMES)
        recent = {cell for row in table(page, "recent-records")["body"] for cell in row}
        assert set(HOSTILE_NAMES) <= recent
        assert set(bar_series(page)) == set(HOSTILE_NAMES)
        assert set(doughnut(page)) == set(HOSTILE_NAMES)
        assert page.locator("img[src=x]").count() == 0
        assert page.evaluate(
            "[...document.scripts].every(s => !s.textContent.startsWith('alert('))"
        )

    names_are_text()
    press_refresh(page)  # the tables are rebuilt by script
    expect(page.get_by_test_id("refresh-status")).to_have_text(UPDATED)
    names_are_text()
    expect(page.get_by_test_id("top-model")).to_have_text(HOSTILE_NAMES[2])
    assert dialogs == []
    assert tab.errors == []


def test_page_follows_the_light_or_dark_colour_scheme(open_tab, live_server, owner, screenshots):
    now = timezone.now()
    models = ["SDXL", "Flux", "Midjourney", "DALL-E 3"]
    store(
        owner,
        [
            (now - timedelta(days=day, hours=hour), models[(day + hour) % 4], 1 + (day * hour) % 7)
            for day in range(30)
            for hour in (1, 5, 9)
        ],
    )
    luminance = {}
    for scheme in ("light", "dark"):
        page = open_tab(owner, color_scheme=scheme).page
        page.goto(live_server.url + "/dashboard/?tz=UTC")
        wait_until_charts_settle(page)
        luminance[scheme] = background_luminance(page)
        page.screenshot(path=screenshots / f"dashboard-{scheme}.png", full_page=True)
    assert luminance["light"] > 0.6
    assert luminance["dark"] < 0.3
