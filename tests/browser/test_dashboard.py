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

from dashboard.model_colours import chart_slots
from tests.browser.dashboard_page import (
    SHARE_CHART,
    UPDATED,
    USAGE_CHART,
    bar_series,
    chart_colours,
    chart_data,
    doughnut,
    palette_colour,
    press_refresh,
    rgb,
    share_table,
    shown_number,
    store,
    swatch_colours,
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
DASH = "\N{EN DASH}"


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


def post_usage(base_url: str, token: str, body: dict | list) -> dict:
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
    # One quiet line says why there are no charts: not an alert, and only once.
    note = page.get_by_test_id("charts-missing")
    expect(note).to_be_visible()
    expect(note).to_contain_text("Chart.js")
    assert note.get_attribute("role") is None
    assert page.get_by_text("could not be loaded").count() == 1

    # Refresh Data still works and updates the tables.
    make_record(owner, timezone.now(), "Kandinsky", 5)
    press_refresh(page)
    expect(page.get_by_test_id("refresh-status")).to_have_text(UPDATED)
    assert shown_number(page, "total-images") == 1248
    assert share_table(page)["Kandinsky"] == 7
    expect(note).to_be_visible()
    assert page.get_by_text("could not be loaded").count() == 1

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


LONG_NAMES = [
    "Stable Diffusion XL Turbo",
    "Stable Diffusion 1.5 Inpainting",
    "Midjourney v6 Niji",
    "DALL-E 3 HD Vivid",
    "Flux.1 [dev] Schnell",
    "Imagen 3 Fast",
    "Kandinsky 3.1",
    "Playground v2.5 Aesthetic",
    "Ideogram 2.0 Turbo",
]


def test_phone_width_page_puts_the_numbers_first_and_nothing_scrolls_sideways(
    open_tab, live_server, owner, screenshots
):
    now = timezone.now()
    store(
        owner,
        [
            (now - timedelta(days=day, hours=rank), name, day + rank + 1000)
            for day in range(9)
            for rank, name in enumerate(LONG_NAMES)
        ],
    )
    page = open_tab(owner, viewport={"width": 375, "height": 740}, is_mobile=True).page
    page.goto(live_server.url + "/dashboard/?tz=UTC")
    wait_until_charts_settle(page)

    # The four figures come before the controls' details, within the first screen.
    for test_id in ("total-images", "total-generations", "top-model", "last-activity"):
        box = page.get_by_test_id(test_id).bounding_box()
        assert box is not None and box["y"] + box["height"] < 600, test_id
    for field in ("input[name=start]", "input[name=end]", ".zone-form input[name=tz]"):
        expect(page.locator(field)).to_be_hidden()  # folded away until asked for
    expect(page.get_by_role("link", name="Download CSV")).to_be_hidden()

    # Every table, the usage table and the folded controls opened, fits the screen.
    page.get_by_text("Images over time as a table").click()
    page.get_by_test_id("more-controls").locator("summary").click()
    expect(page.locator("input[name=start]")).to_be_visible()
    widths = page.evaluate(
        """() => [...document.querySelectorAll('table')]
            .filter(t => t.offsetParent !== null)
            .map(t => ({id: t.dataset.testid, table: t.scrollWidth,
                        box: t.parentElement.clientWidth, scroll: t.parentElement.scrollWidth}))"""
    )
    assert {w["id"] for w in widths} >= {"usage-table", "share-table", "recent-records"}
    for width in widths:
        assert width["scroll"] <= width["box"] and width["table"] <= width["box"], width
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    # The usage table, a column per model on a wide screen, is a line per day here, with
    # each model's images under the day.
    today = (
        page.get_by_test_id("usage-table")
        .locator("tbody tr")
        .last.evaluate(
            """row => [...row.cells].filter(c => c.offsetParent !== null).map(c =>
            (getComputedStyle(c, '::before').content.replace(/^"|"$|^none$/g, '')
             + c.textContent).trim())"""
        )
    )
    assert today[-1] == "9,036", today  # the day's total, drawn at the right of its day
    assert {"Ideogram 2.0 Turbo 1,008", "Other models 2,001"} <= set(today), today

    # A model name wraps beside its swatch, never leaving the swatch on a line of its own.
    tops = page.get_by_test_id("share-table").evaluate(
        """t => [...t.querySelectorAll('tbody th')].map(th => {
            const swatch = th.querySelector('.swatch').getBoundingClientRect();
            const name = th.querySelector('.model-name').getBoundingClientRect();
            return [swatch.right <= name.left + 1, Math.abs(swatch.top - name.top) < 12,
                    Math.round(name.height / parseFloat(getComputedStyle(th).lineHeight))];
        })"""
    )
    assert all(beside and level and lines <= 2 for beside, level, lines in tops), tops

    # The bar chart is tall enough to read: no legend over it (the share table below is the
    # legend, and a line under the chart says so).
    canvas = page.locator(USAGE_CHART)
    box = canvas.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
    plot = page.evaluate(
        """s => { const c = Chart.getChart(document.querySelector(s));
                  return {plot: c.chartArea.bottom - c.chartArea.top,
                          legend: c.options.plugins.legend.display}; }""",
        USAGE_CHART,
    )
    assert plot["plot"] >= 250 and plot["legend"] is False, plot
    expect(page.get_by_text("colour is in the table under Share by model")).to_be_visible()
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


# ---- colours, empty ranges, comparison, dates ----


def contrast(first: str, second: str) -> float:
    """WCAG contrast ratio of two ``rgb(...)`` colours."""

    def luminance(colour: str) -> float:
        channels = [int(part) / 255 for part in re.findall(r"\d+", colour)[:3]]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    light, dark = sorted((luminance(first), luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_the_palette_stands_out_from_the_background_in_light_and_dark(open_tab, live_server, owner):
    for scheme in ("light", "dark"):
        page = open_tab(owner, color_scheme=scheme).page
        page.goto(live_server.url + "/dashboard/?tz=UTC")
        names = [f"--model-{slot}" for slot in range(10)] + ["--model-other"]
        colours = {name: palette_colour(page, name) for name in names}
        surface, background = (
            rgb(
                page.evaluate(f"getComputedStyle(document.documentElement).getPropertyValue('{v}')")
            )
            for v in ("--surface", "--bg")
        )
        for name, colour in colours.items():
            assert contrast(colour, surface) >= 3, (scheme, name, colour)
            assert contrast(colour, background) >= 3, (scheme, name, colour)
        assert len(set(colours.values())) == len(colours), scheme  # grey is nobody's colour


def test_each_model_keeps_its_colour_across_ranges_refresh_and_schemes(
    open_tab, live_server, owner, owner_token
):
    now = timezone.now()
    # The last 7 days: Flux, then SDXL, then DALL-E 3. The 90 days: DALL-E 3 first, and nine
    # models, so that the smallest go into "Other models".
    recent = [("Flux", 10), ("SDXL", 5), ("DALL-E 3", 1)]
    store(owner, [(now - timedelta(days=1), model, images) for model, images in recent])
    older = [("DALL-E 3", 90), ("SDXL", 60), ("Flux", 30)] + [
        (f"Model {letter}", 20 - rank) for rank, letter in enumerate("ABCDEF")
    ]
    store(owner, [(now - timedelta(days=40), model, images) for model, images in older])
    # A model that is new on Refresh Data; its own colour is free among the week's three, as
    # most names' are (see dashboard/model_colours.py for when it is not).
    week = {model for model, _ in recent}
    newcomer = next(
        name
        for name in ("Imagen 3", "Ideogram 2", "Recraft v3", "Kandinsky 3")
        if all(chart_slots(week | {name})[m] == chart_slots(week)[m] for m in week)
    )

    seen: dict[str, dict[str, str]] = {}
    for scheme in ("light", "dark"):
        page = open_tab(owner, color_scheme=scheme).page
        views = {}
        for days in (7, 90):
            page.goto(live_server.url + f"/dashboard/?days={days}&tz=UTC")
            views[days] = chart_colours(page)
            assert views[days]["bar"] == views[days]["share"]  # both charts alike
            assert (
                swatch_colours(page, "share-table").items()
                >= {m: c for m, c in views[days]["share"].items() if m != "Other models"}.items()
            )
            page.get_by_text("Images over time as a table").click()
            assert swatch_colours(page, "usage-table") == views[days]["bar"]
            bar = views[days]["bar"]
            assert len(set(bar.values())) == len(bar)  # no two series alike in one chart
        assert views[90]["bar"]["Other models"] == palette_colour(page, "--model-other")
        assert "Other models" not in views[7]["bar"]
        for model in week:
            assert views[7]["bar"][model] == views[90]["bar"][model], (scheme, model)

        seen[scheme] = views[7]["bar"]
        if scheme == "dark":
            assert newcomer in views[7]["bar"]  # posted in the light pass
            continue
        # Two records swap the week's ranks and bring a new model; nothing else moves.
        page.goto(live_server.url + "/dashboard/?days=7&tz=UTC")
        chart_colours(page)
        records = [{"model": "DALL-E 3", "imageCount": 40}, {"model": newcomer, "imageCount": 1}]
        assert post_usage(live_server.url, owner_token.raw, records)["accepted"] == 2
        press_refresh(page)
        expect(page.get_by_test_id("refresh-status")).to_have_text(UPDATED)
        after = chart_colours(page)
        assert next(iter(after["share"])) == "DALL-E 3"  # first now, by images
        assert newcomer in after["bar"]
        for model in week:
            assert after["bar"][model] == views[7]["bar"][model], (scheme, model)
    assert seen["light"]["Flux"] != seen["dark"]["Flux"]  # a lighter variant on dark


def test_an_empty_range_says_so_over_the_chart(open_tab, live_server, owner, owner_token):
    tab = open_tab(owner)
    page = tab.page
    page.goto(live_server.url + "/dashboard/?days=7&tz=UTC")
    chart_data(page, USAGE_CHART)
    message = page.get_by_test_id("chart-empty")
    expect(message).to_be_visible()
    expect(message).to_have_text("No images in this range")
    expect(page.get_by_test_id("charts-missing")).to_be_hidden()  # Chart.js did load

    post_usage(live_server.url, owner_token.raw, {"model": "SDXL", "imageCount": 2})
    press_refresh(page)
    expect(page.get_by_test_id("refresh-status")).to_have_text(UPDATED)
    expect(message).to_be_hidden()
    assert tab.errors == []


def card_change(page: Page, test_id: str) -> tuple[str, str]:
    change = page.get_by_test_id(test_id)
    figure = " ".join(
        change.locator(f".change-{part}").inner_text() for part in ("figure", "versus")
    )
    return " ".join(figure.split()), change.get_attribute("title") or ""


def summary_api(base_url: str, token: str, start: date, end: date) -> dict:
    query = f"start={start.isoformat()}&end={end.isoformat()}&tz=UTC"
    request = urllib.request.Request(
        f"{base_url}/api/model-usage/summary?{query}",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_cards_compare_with_the_days_before_as_the_summary_api_counts_them(
    open_tab, live_server, owner, owner_token
):
    today = today_in(UTC)
    store(
        owner,
        [
            (local(today - timedelta(days=1), 10, 0, UTC), "SDXL", 9),
            (local(today - timedelta(days=6), 10, 0, UTC), "Flux", 3),
            (local(today - timedelta(days=13), 23, 0, UTC), "Flux", 8),  # the days before
            (local(today - timedelta(days=14), 10, 0, UTC), "SDXL", 100),  # earlier still
        ],
    )
    now = summary_api(live_server.url, owner_token.raw, today - timedelta(days=6), today)
    before_start, before_end = today - timedelta(days=13), today - timedelta(days=7)
    before = summary_api(live_server.url, owner_token.raw, before_start, before_end)

    page = open_tab(owner, locale="en-GB").page
    page.goto(live_server.url + "/dashboard/?days=7&tz=UTC")
    chart_data(page, USAGE_CHART)
    # On a wide screen the dates, zone and CSV buttons are in sight, not folded as on a phone.
    expect(page.get_by_label("From")).to_be_visible()
    expect(page.get_by_role("link", name="Download CSV")).to_be_visible()
    dates = f"{before_start.day} {before_start:%b}{DASH}{before_end.day} {before_end:%b %Y}"
    if before_start.month == before_end.month:
        dates = f"{before_start.day}{DASH}{before_end.day} {before_end:%b %Y}"
    for test_id, key, what in (
        ("images-change", "images", "images"),
        ("generations-change", "events", "generations"),
    ):
        percent = round(100 * (now["totals"][key] - before["totals"][key]) / before["totals"][key])
        assert percent > 0
        figure, title = card_change(page, test_id)
        assert figure == f"↑ +{percent}% vs the previous 7 days"
        # ICU may put spaces around the range's dash: they are not what this test is about.
        assert re.sub(rf"\s*{DASH}\s*", DASH, title) == (
            f"{percent}% more {what} than the 7 days before ({dates})"
        )

    # The overlay: the days before, day by day, from the same API.
    toggle = page.get_by_test_id("compare-toggle")
    toggle.check()
    line = page.evaluate(
        """s => Chart.getChart(document.querySelector(s)).data.datasets
            .filter(d => d.stack === "previous").map(d => ({label: d.label, data: d.data}))""",
        USAGE_CHART,
    )
    per_day = defaultdict(int)
    for point in before["series"]:
        per_day[point["period"]] += point["images"]
    assert line == [
        {"label": "The 7 days before", "data": [per_day[day] for day in before["periods"]]}
    ]
    toggle.uncheck()
    assert "The 7 days before" not in bar_series(page)


@pytest.mark.parametrize(
    ("locale", "written"),
    [
        ("en-US", lambda day: f"{day:%b} {day.day}, {day.year}"),
        ("en-GB", lambda day: f"{day.day} {day:%b %Y}"),
    ],
)
def test_dates_are_written_in_the_browsers_locale_as_its_date_inputs_are(
    open_tab, live_server, owner, locale, written
):
    """A browser writes its date inputs in its own locale (``11/04/2026`` in the US), and the
    page writes its dates in that same locale. (The inputs themselves cannot be read: their
    text is not in the page. Debian's Chromium without its chromium-l10n package writes them
    the US way whatever the locale, which the en-US case is.)"""
    store(owner, [(timezone.now() - timedelta(days=1), "SDXL", 2)])
    page = open_tab(owner, locale=locale).page
    page.goto(live_server.url + "/dashboard/?start=2026-11-04&end=2026-11-20&tz=UTC")
    chart_data(page, USAGE_CHART)
    expect(page.get_by_test_id("range-start")).to_have_text(written(date(2026, 11, 4)))
    expect(page.get_by_test_id("range-end")).to_have_text(written(date(2026, 11, 20)))
    # Month first in the US, day first in Britain, in the chart and its table alike.
    first_label = chart_data(page, USAGE_CHART)["labels"][0]
    assert first_label == ("Nov 4" if locale == "en-US" else "4 Nov")
    row = table(page, "usage-table")["body"][0][0]
    assert row == first_label


# ---- the cost view ----


def cost_charts(page: Page) -> dict:
    """Both charts' values as Chart.js holds them, and the exact texts their tooltips show."""
    chart_data(page, USAGE_CHART)
    return page.evaluate(
        """([bar, share]) => {
            const read = chart => ({
                labels: chart.data.labels.map(String),
                datasets: chart.data.datasets.map(d => ({
                    label: d.label, stack: d.stack ?? null, data: d.data, text: d.text ?? null,
                })),
                axis: chart.options.scales?.y?.title?.text ?? null,
            });
            return {
                bar: read(Chart.getChart(document.querySelector(bar))),
                share: read(Chart.getChart(document.querySelector(share))),
            };
        }""",
        [USAGE_CHART, SHARE_CHART],
    )


def expected_cost_charts(summary: dict) -> tuple[dict, dict]:
    """Per model, its cost per period as plotted (a number, None without a price) with the
    API's text; and per model its cost in the range, for the doughnut."""
    cells = {(point["period"], point["model"]): point["cost"] for point in summary["series"]}
    bars = {}
    for entry in summary["models"]:
        texts = [cells.get((period, entry["model"]), "0.00") for period in summary["periods"]]
        bars[entry["model"]] = {
            "data": [None if text is None else float(text) for text in texts],
            "text": texts,
        }
    share = {
        entry["model"]: None if entry["cost"] is None else float(entry["cost"])
        for entry in summary["models"]
    }
    return bars, share


def tooltip(page: Page, selector: str, label: str | None, index: int) -> str:
    """What the chart's tooltip writes for one value (a bar's dataset by label; the doughnut's
    only dataset), from the chart's own tooltip callback."""
    return page.evaluate(
        """([selector, label, index]) => {
            const chart = Chart.getChart(document.querySelector(selector));
            const datasetIndex = label === null ? 0
                : chart.data.datasets.findIndex(d => d.label === label);
            const dataset = chart.data.datasets[datasetIndex];
            const raw = dataset.data[index];
            const item = {chart, dataset, datasetIndex, dataIndex: index, raw,
                          label: chart.data.labels[index], formattedValue: String(raw)};
            return chart.options.plugins.tooltip.callbacks.label.call({}, item);
        }""",
        [selector, label, index],
    )


def summary_index(summary: dict, model: str) -> int:
    return [entry["model"] for entry in summary["models"]].index(model)


def assert_charts_show_costs(page: Page, summary: dict) -> None:
    charts = cost_charts(page)
    bars, share = expected_cost_charts(summary)
    shown = {
        d["label"]: {"data": d["data"], "text": d["text"]}
        for d in charts["bar"]["datasets"]
        if d["stack"] != "previous"
    }
    assert shown == bars
    assert charts["bar"]["axis"] == f"Cost ({summary['currency']})"
    doughnut_data = charts["share"]["datasets"][0]
    assert dict(zip(charts["share"]["labels"], doughnut_data["data"], strict=True)) == share
    assert doughnut_data["text"] == [entry["cost"] for entry in summary["models"]]


def test_the_cost_toggle_draws_both_charts_in_cost_as_the_summary_api_counts_it(
    open_tab, live_server, owner, owner_token
):
    from usage.models import ModelPrice

    ModelPrice.objects.create(
        model="SDXL", price_per_image="0.125", valid_from=datetime(2020, 1, 1, tzinfo=UTC)
    )
    ModelPrice.objects.create(
        model="Flux", price_per_image="0.333", valid_from=datetime(2020, 1, 1, tzinfo=UTC)
    )
    today = today_in(UTC)
    store(
        owner,
        [
            (local(today - timedelta(days=1), 10, 0, UTC), "SDXL", 9),
            (local(today - timedelta(days=2), 10, 0, UTC), "Flux", 3),
            (local(today - timedelta(days=2), 11, 0, UTC), "Mystery", 4),  # no price
            (local(today - timedelta(days=20), 10, 0, UTC), "Flux", 7),  # in 30 days only
        ],
    )
    week = (today - timedelta(days=6), today)

    tab = open_tab(owner)
    page = tab.page
    page.goto(live_server.url + "/dashboard/?days=7&tz=UTC")
    chart_data(page, USAGE_CHART)
    page.get_by_test_id("measure-toggle").get_by_role("link", name="Cost").click()
    expect(page).to_have_url(re.compile(r"measure=cost"))
    summary = summary_api(live_server.url, owner_token.raw, *week)
    assert summary["totals"]["cost"] == "2.12" and summary["unpricedModels"] == ["Mystery"]
    assert_charts_show_costs(page, summary)
    expect(page.get_by_test_id("total-cost")).to_have_text("2.12 USD")
    expect(page.get_by_test_id("unpriced-images")).to_have_text("4 images had no price")
    # The tooltips write the API's strings: 9 x 0.125 is 1.125, shown as the API rounds it.
    yesterday = summary["periods"].index((today - timedelta(days=1)).isoformat())
    two_days_ago = yesterday - 1
    assert tooltip(page, USAGE_CHART, "SDXL", yesterday) == "SDXL: 1.12 USD"
    assert tooltip(page, USAGE_CHART, "Mystery", two_days_ago) == "Mystery: no price"
    assert tooltip(page, SHARE_CHART, None, summary_index(summary, "Flux")) == "Flux: 1.00 USD"

    # The days before as a line, in cost too.
    page.get_by_test_id("compare-toggle").check()
    before = summary_api(
        live_server.url, owner_token.raw, today - timedelta(days=13), week[0] - timedelta(days=1)
    )
    line = [d for d in cost_charts(page)["bar"]["datasets"] if d["stack"] == "previous"]
    assert [d["text"] for d in line] == [before["periodCosts"]]
    page.get_by_test_id("compare-toggle").uncheck()

    # Refresh Data keeps the cost view and brings a new record's cost.
    post_usage(
        live_server.url,
        owner_token.raw,
        {"model": "SDXL", "imageCount": 8},
    )
    press_refresh(page)
    expect(page.get_by_test_id("refresh-status")).to_have_text(UPDATED)
    summary = summary_api(live_server.url, owner_token.raw, *week)
    assert summary["totals"]["cost"] == "3.12"
    expect(page.get_by_test_id("total-cost")).to_have_text("3.12 USD")
    assert_charts_show_costs(page, summary)

    # A range change keeps it too.
    page.get_by_role("navigation", name="Date range").get_by_role("link", name="30 days").click()
    expect(page).to_have_url(re.compile(r"days=30.*measure=cost|measure=cost.*days=30"))
    month = summary_api(live_server.url, owner_token.raw, today - timedelta(days=29), today)
    assert_charts_show_costs(page, month)

    # And back to images.
    page.get_by_test_id("measure-toggle").get_by_role("link", name="Images").click()
    expect(page.get_by_test_id("total-images")).to_have_text(str(month["totals"]["images"]))
    assert "measure" not in page.url
    assert doughnut(page) == {entry["model"]: entry["images"] for entry in month["models"]}
    assert tab.errors == []


def test_the_cost_view_fits_a_phone_without_sideways_scrolling(
    open_tab, live_server, owner, screenshots
):
    from usage.models import ModelPrice

    now = timezone.now()
    for rank, name in enumerate(LONG_NAMES):
        ModelPrice.objects.create(
            model=name, price_per_image=f"12{rank}.0375", valid_from=now - timedelta(days=60)
        )
    store(
        owner,
        [
            (now - timedelta(days=day, hours=rank), name, day + rank + 1000)
            for day in range(9)
            for rank, name in enumerate(LONG_NAMES)
        ]
        + [(now - timedelta(days=1), "A model without any price at all", 5)],
    )
    page = open_tab(owner, viewport={"width": 375, "height": 740}, is_mobile=True).page
    page.goto(live_server.url + "/dashboard/?tz=UTC&measure=cost")
    wait_until_charts_settle(page)
    page.get_by_text("Cost over time as a table").click()
    page.get_by_test_id("more-controls").locator("summary").click()
    widths = page.evaluate(
        """() => [...document.querySelectorAll('table')]
            .filter(t => t.offsetParent !== null)
            .map(t => ({id: t.dataset.testid, table: t.scrollWidth,
                        box: t.parentElement.clientWidth, scroll: t.parentElement.scrollWidth}))"""
    )
    assert {w["id"] for w in widths} >= {"usage-table", "share-table"}
    for width in widths:
        assert width["scroll"] <= width["box"] and width["table"] <= width["box"], width
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    toggle = page.get_by_test_id("measure-toggle").bounding_box()
    assert toggle is not None and toggle["x"] + toggle["width"] <= 375
    page.screenshot(path=screenshots / "dashboard-cost-375px.png", full_page=True)
