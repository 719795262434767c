"""The token panel and the plugin form in a real Chromium, against the live server and the
development stand-in upstream (scripts/standin_upstream.py) on a free loopback port.

Numbers are read from the page (the figures, Chart.js and the tables) and compared with the
stand-in's own counts, asked over HTTP as the site asks them.
"""

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from time import monotonic
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from playwright.sync_api import Page, Route, expect

from scripts.standin_upstream import StandIn, token_counts
from tests.browser.dashboard_page import (
    UPDATED,
    bar_series,
    chart_data,
    number,
    press_refresh,
    shown_number,
    store,
    table,
)
from tests.conftest import empty_cache
from tests.live_server import free_port

pytestmark = pytest.mark.slow

DAILY_CHART = "[data-testid=token-daily-chart]"
MONTHLY_CHART = "[data-testid=token-monthly-chart]"
TOKEN_UPDATED = re.compile(r"^Updated \d\d:\d\d:\d\d$")
TOKYO = ZoneInfo("Asia/Tokyo")
PROMPT_LABEL = "What should the plugin do?"


@pytest.fixture(autouse=True)
def _empty_cache(django_db_setup, django_db_blocker) -> Iterator[None]:
    # Cached analytics and throttle counts live in the cache, which the live server shares
    # (on PostgreSQL a table of the test database, emptied on a connection of its own).
    with django_db_blocker.unblock():
        empty_cache()
    yield
    with django_db_blocker.unblock():
        empty_cache()


@pytest.fixture
def standin(settings) -> Iterator[StandIn]:
    with StandIn() as upstream:
        settings.EXTERNAL_API_URL = upstream.url
        yield upstream


# ---- the stand-in, asked over HTTP like any client ----


def upstream_call(standin: StandIn, method: str, path: str, body: dict | None = None):
    request = urllib.request.Request(
        standin.url + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def generate_elsewhere(standin: StandIn, user_id: str, prompt: str) -> dict:
    """A generation the page does not know about, as from another device."""
    return upstream_call(standin, "POST", "/plugin/generate", {"userId": user_id, "prompt": prompt})


def upstream_usage(standin: StandIn, user_id: str) -> dict | None:
    return upstream_call(standin, "GET", f"/user/{user_id}/token-usage")


# ---- reading the panel ----


def panel_state(page: Page) -> str:
    return page.get_by_test_id("token-usage").get_attribute("data-state")


def expect_state(page: Page, state: str) -> None:
    expect(page.get_by_test_id("token-usage")).to_have_attribute("data-state", state)


def token_series(page: Page, selector: str) -> tuple[list[str], dict[str, list[int]]]:
    data = chart_data(page, selector)
    return data["labels"], {dataset["label"]: dataset["data"] for dataset in data["datasets"]}


def table_rows(page: Page, test_id: str) -> dict[str, list[int]]:
    """Period label -> [prompt, completion, total, requests], as the table shows them."""
    return {row[0]: [number(cell) for cell in row[1:]] for row in table(page, test_id)["body"]}


# The panel writes its dates in the browser's locale, as the rest of the page: the tabs'
# en-US here (tests/browser/conftest.py), month first.


def day_label(day) -> str:
    return f"{day:%b} {day.day}"


def month_label(day) -> str:
    return f"{day:%b %Y}"


def figures(page: Page) -> dict[str, int]:
    return {
        name: shown_number(page, f"token-{name}")
        for name in ("total", "prompt", "completion", "requests")
    }


def expected_figures(usage: dict) -> dict[str, int]:
    return {
        "total": usage["totalTokens"],
        "prompt": usage["promptTokens"],
        "completion": usage["completionTokens"],
        "requests": usage["requestCount"],
    }


def shown_in(zone: ZoneInfo, iso: str) -> str:
    """A time as the page writes it in en-US: "Mar 5, 2026, 14:02" in ``zone``."""
    when = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(zone)
    return f"{when:%b} {when.day}, {when:%Y, %H:%M}"


def hold(page: Page, matches: Callable[[str], bool]) -> list[Route]:
    """Hold matching requests (they reach the server only when continued)."""
    held: list[Route] = []
    page.route(matches, lambda route: held.append(route))
    return held


def wait_for_held(page: Page, held: list[Route], what: str) -> Route:
    deadline = monotonic() + 10
    while not held and monotonic() < deadline:
        page.wait_for_timeout(20)  # lets Playwright deliver the route to the handler
    assert held, f"no {what} was sent"
    return held[0]


def is_token_usage(url: str) -> bool:
    return "/api/user/token-usage" in url


def is_refetch(url: str) -> bool:
    return is_token_usage(url) and re.search(r"[?&]refresh=1(&|$)", url) is not None


def generate(page: Page, prompt: str) -> None:
    """Fill the prompt and click Generate; fails at once if the click sent nothing."""
    page.get_by_label(PROMPT_LABEL).fill(prompt)
    with page.expect_request("**/api/plugin/generate", timeout=5000):
        page.get_by_test_id("generate-plugin").click()


def wait_until_token_charts_settle(page: Page) -> None:
    chart_data(page, DAILY_CHART)
    chart_data(page, MONTHLY_CHART)
    page.wait_for_function(
        "() => Object.values(Chart.instances).every(chart => !Chart.animator.running(chart))"
    )


# ---- the tests ----


def test_a_generation_updates_the_token_panel_at_once_without_a_reload(
    open_tab, live_server, owner, standin, screenshots
):
    earlier = generate_elsewhere(standin, "alice", "a plugin that counts images")["tokenUsage"]
    tab = open_tab(owner)
    page = tab.page
    page.goto(live_server.url + "/dashboard/?tz=UTC")
    expect_state(page, "ready")
    assert figures(page) == expected_figures(upstream_usage(standin, "alice"))
    today = timezone.now().astimezone(UTC).date()
    labels, series = token_series(page, DAILY_CHART)
    assert len(labels) == 30 and labels[-1] == day_label(today)
    assert series["Prompt"][-1] == earlier["promptTokens"]
    assert series["Completion"][-1] == earlier["completionTokens"]
    assert sum(series["Prompt"]) + sum(series["Completion"]) == earlier["totalTokens"]
    page.evaluate("window.__sameDocument = 'still here'")

    # The generation is held at the stand-in: the form is busy meanwhile.
    standin.hang("generate")
    prompt = "a plugin that renames every image by the date it was made"
    cost = token_counts(prompt)
    refetches = hold(page, is_refetch)
    generate(page, prompt)
    button = page.get_by_test_id("generate-plugin")
    expect(button).to_be_disabled()
    expect(page.get_by_test_id("generate-status")).to_have_text("Generating…")
    standin.release()

    expect(page.get_by_test_id("generate-tokens")).to_have_text(f"{cost['totalTokens']:,}")
    expect(page.get_by_test_id("generate-prompt-tokens")).to_have_text(f"{cost['promptTokens']:,}")
    expect(page.get_by_test_id("generate-output")).to_contain_text(json.dumps(prompt))
    expect(button).to_be_enabled()
    # At once, from the event's tokenUsage, while the refetch is still held.
    total = earlier["totalTokens"] + cost["totalTokens"]
    expect(page.get_by_test_id("token-total")).to_have_text(f"{total:,}")
    assert shown_number(page, "token-requests") == 2
    _, series = token_series(page, DAILY_CHART)
    assert series["Prompt"][-1] == earlier["promptTokens"] + cost["promptTokens"]
    assert series["Completion"][-1] == earlier["completionTokens"] + cost["completionTokens"]

    # Then from the service itself, asked past the cache.
    wait_for_held(page, refetches, "refetch with refresh=1").continue_()
    page.unroute(is_refetch)
    expect(page.get_by_test_id("token-status")).to_have_text(TOKEN_UPDATED)
    upstream = upstream_usage(standin, "alice")
    assert upstream["totalTokens"] == total
    assert figures(page) == expected_figures(upstream)
    _, monthly = token_series(page, MONTHLY_CHART)
    assert monthly["Prompt"][-1] + monthly["Completion"][-1] == total
    assert table_rows(page, "token-daily-table")[day_label(today)] == [
        upstream["dailyUsage"][-1][key]
        for key in ("promptTokens", "completionTokens", "totalTokens", "requestCount")
    ]
    assert table_rows(page, "token-monthly-table")[month_label(today)][2] == total
    assert page.evaluate("window.__sameDocument") == "still here"
    assert tab.errors == []
    page.screenshot(path=screenshots / "token-panel-after-generation.png", full_page=True)


def test_no_usage_yet_until_the_first_generation_then_its_numbers(
    open_tab, live_server, owner, standin
):
    tab = open_tab(owner, timezone_id="Asia/Tokyo")
    page = tab.page
    page.goto(live_server.url + "/dashboard/?tz=Asia/Tokyo")
    expect_state(page, "no-usage")
    expect(page.get_by_test_id("token-message")).to_have_text(re.compile(r"^No token usage yet\."))
    expect(page.get_by_test_id("token-total")).to_be_hidden()
    # "Nothing yet" is an answer, not a failed request: no red line in the console.
    api_errors = [m.text for m in tab.console_errors if "/api/" in m.location["url"]]
    assert api_errors == []

    prompt = "a plugin that adds a watermark"
    generate(page, prompt)
    expect_state(page, "ready")
    expect(page.get_by_test_id("token-message")).to_be_hidden()
    expect(page.get_by_test_id("token-status")).to_have_text(TOKEN_UPDATED)
    upstream = upstream_usage(standin, "alice")
    assert upstream["totalTokens"] == token_counts(prompt)["totalTokens"]
    assert figures(page) == expected_figures(upstream)
    # The last request, in the page's zone.
    expect(page.get_by_test_id("token-last-request")).to_have_text(
        shown_in(TOKYO, upstream["lastRequestAt"])
    )
    assert tab.errors == []


def test_the_page_does_not_wait_for_a_slow_service_and_says_it_is_loading(
    open_tab, live_server, owner, standin
):
    store(owner, [(timezone.now() - timedelta(hours=3), "SDXL", 6)])
    generate_elsewhere(standin, "alice", "a plugin that sharpens")
    standin.hang("token-usage")  # the service takes its time
    tab = open_tab(owner)
    page = tab.page
    page.goto(live_server.url + "/dashboard/?tz=UTC")
    # The page is there, charts and all. (Three hours ago is yesterday between midnight
    # and three, so the whole range is added up, not today's bar.)
    assert sum(bar_series(page)["SDXL"]) == 6
    expect_state(page, "loading")
    expect(page.get_by_test_id("token-message")).to_have_text("Loading token usage…")
    expect(page.get_by_test_id("token-usage")).to_have_attribute("aria-busy", "true")
    expect(page.get_by_test_id("token-total")).to_be_hidden()

    standin.release()
    expect_state(page, "ready")
    expect(page.get_by_test_id("token-message")).to_be_hidden()
    assert figures(page) == expected_figures(upstream_usage(standin, "alice"))
    assert tab.errors == []


def test_a_refresh_that_fails_here_says_so_and_keeps_the_numbers(
    open_tab, live_server, owner, standin
):
    generate_elsewhere(standin, "alice", "a plugin that sharpens")
    tab = open_tab(owner)
    page = tab.page
    page.goto(live_server.url + "/dashboard/?tz=UTC")
    expect_state(page, "ready")
    before = figures(page)

    page.context.clear_cookies()  # logged out in another tab
    press_refresh(page)
    expect_state(page, "error")
    expect(page.get_by_test_id("token-message")).to_have_text(
        "Could not refresh token usage: Your session has ended. Reload the page to log in"
        " again. The numbers shown are from before."
    )
    assert figures(page) == before
    assert tab.errors == []


def test_without_chartjs_the_token_tables_hold_the_numbers(
    open_tab, live_server, owner, standin, chartjs_url
):
    cost = generate_elsewhere(standin, "alice", "a plugin that sharpens")["tokenUsage"]
    tab = open_tab(owner)
    page = tab.page
    page.route(chartjs_url, lambda route: route.abort())
    page.goto(live_server.url + "/dashboard/?tz=UTC")
    expect_state(page, "ready")
    today = timezone.now().astimezone(UTC).date()
    daily = page.get_by_test_id("token-daily-table")
    expect(daily).to_be_visible()
    expect(page.get_by_test_id("token-monthly-table")).to_be_visible()
    expect(page.locator(DAILY_CHART)).to_be_hidden()
    counts = [cost["promptTokens"], cost["completionTokens"], cost["totalTokens"], 1]
    rows = table_rows(page, "token-daily-table")
    assert len(rows) == 30
    assert rows[day_label(today)] == counts
    assert sum(sum(row) for row in rows.values()) == sum(counts)
    assert table_rows(page, "token-monthly-table")[month_label(today)] == counts
    assert shown_number(page, "token-total") == cost["totalTokens"]
    assert tab.errors == []


def test_with_the_upstream_down_the_dashboard_loads_and_says_it_is_unreachable(
    open_tab, live_server, owner, settings, screenshots
):
    settings.EXTERNAL_API_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    now = timezone.now()
    store(owner, [(now - timedelta(days=1), "SDXL", 4), (now - timedelta(days=2), "Flux", 3)])
    tab = open_tab(owner)
    page = tab.page
    page.goto(live_server.url + "/dashboard/?days=7&tz=UTC")

    series = bar_series(page)  # the image charts are drawn as ever
    assert {model: sum(values) for model, values in series.items()} == {"SDXL": 4, "Flux": 3}
    assert shown_number(page, "total-images") == 7
    expect_state(page, "unreachable")
    expect(page.get_by_test_id("token-message")).to_have_text(
        re.compile(r"^The plugin generator is unreachable\.")
    )
    expect(page.get_by_test_id("token-total")).to_be_hidden()

    generate(page, "a plugin that crops faces")
    expect(page.get_by_test_id("generate-error")).to_have_text(
        re.compile(r"^The plugin generator is unreachable\.")
    )
    expect(page.get_by_test_id("generate-plugin")).to_be_enabled()
    expect(page.get_by_test_id("generate-result")).to_be_hidden()
    page.screenshot(path=screenshots / "token-panel-unreachable.png", full_page=True)
    assert tab.errors == []


def test_without_an_analytics_service_the_panel_says_so_and_asks_nothing(
    open_tab, live_server, owner
):
    tab = open_tab(owner)
    page = tab.page
    asked: list[str] = []
    page.on("request", lambda request: is_token_usage(request.url) and asked.append(request.url))
    page.goto(live_server.url + "/dashboard/?tz=UTC")
    expect_state(page, "not-configured")
    expect(page.get_by_test_id("token-message")).to_have_text(
        "Token usage is not available: this site has no plugin generator configured."
    )
    expect(page.get_by_test_id("generate-plugin")).to_be_disabled()
    expect(page.get_by_label(PROMPT_LABEL)).to_be_disabled()
    chart_data(page, "[data-testid=model-usage-chart]")  # the page's scripts have all run
    assert asked == []
    assert tab.errors == []


def test_when_the_upstream_goes_away_the_last_numbers_stay_marked_stale(
    open_tab, live_server, owner, standin, settings
):
    generate_elsewhere(standin, "alice", "a plugin that sorts albums")
    expected = expected_figures(upstream_usage(standin, "alice"))
    tab = open_tab(owner, timezone_id="Asia/Tokyo")
    page = tab.page
    with page.expect_response(lambda response: is_token_usage(response.url)) as first:
        page.goto(live_server.url + "/dashboard/?tz=Asia/Tokyo")
    fetched_at = first.value.json()["fetchedAt"]
    expect_state(page, "ready")
    daily = token_series(page, DAILY_CHART)

    # Gone: the site now finds nothing listening where the service was. (A stopped StandIn
    # still answers on connections kept alive from before, which the site's client pools.)
    standin.stop()
    settings.EXTERNAL_API_URL = f"http://127.0.0.1:{free_port()}"
    press_refresh(page)
    expect_state(page, "stale")
    hhmm = shown_in(TOKYO, fetched_at).rsplit(" ", 1)[1]
    expect(page.get_by_test_id("token-message")).to_have_text(
        f"Showing data from {hhmm}; the plugin generator is unreachable."
    )
    assert figures(page) == expected
    assert token_series(page, DAILY_CHART) == daily
    # The image numbers refreshed as usual.
    expect(page.get_by_test_id("refresh-status")).to_have_text(UPDATED)
    assert tab.errors == []


def test_refresh_data_asks_the_service_past_the_cache(open_tab, live_server, owner, standin):
    generate_elsewhere(standin, "alice", "a plugin that blurs backgrounds")
    tab = open_tab(owner)
    page = tab.page
    page.goto(live_server.url + "/dashboard/?tz=UTC")
    expect_state(page, "ready")
    before = shown_number(page, "token-total")

    # Generated on another device: the site's cached copy (TOKEN_USAGE_CACHE_SECONDS) does
    # not have it, so only a fetch past the cache can show it.
    later = generate_elsewhere(standin, "alice", "a plugin that adds borders")["tokenUsage"]
    with page.expect_request(lambda request: is_refetch(request.url)):
        press_refresh(page)
    expect(page.get_by_test_id("token-total")).to_have_text(f"{before + later['totalTokens']:,}")
    assert figures(page) == expected_figures(upstream_usage(standin, "alice"))
    expect(page.get_by_test_id("token-status")).to_have_text(TOKEN_UPDATED)
    expect(page.get_by_test_id("refresh-status")).to_have_text(UPDATED)
    assert tab.errors == []


HOSTILE = "<img src=x onerror=alert(1)><script>alert(2)</script>"


def test_what_the_upstream_sends_stays_text(open_tab, live_server, owner, standin):
    tab = open_tab(owner)
    page = tab.page
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    # Analytics with markup where days and times belong: the site refuses them whole.
    standin.answer(
        "token-usage",
        200,
        {
            "userId": "alice",
            "totalTokens": 1234,
            "promptTokens": 234,
            "completionTokens": 1000,
            "requestCount": 3,
            "dailyUsage": [{"date": HOSTILE, "totalTokens": 5}],
            "monthlyUsage": [{"month": HOSTILE, "totalTokens": 5}],
            "lastRequestAt": HOSTILE,
        },
    )
    page.goto(live_server.url + "/dashboard/?tz=UTC")
    expect_state(page, "unreachable")
    expect(page.get_by_test_id("token-message")).to_have_text(
        re.compile(r"^The plugin generator answered with an error\.")
    )

    # A plugin whose name, description and code carry markup (the stand-in echoes the prompt).
    standin.reset()
    generate(page, HOSTILE)
    expect(page.get_by_test_id("generate-output")).to_contain_text(HOSTILE)
    expect(page.get_by_test_id("generate-description")).to_have_text(HOSTILE)
    # The generation made the panel ask again, and it now draws its charts above the form:
    # let it settle before the next click, so the button is not moving under the mouse.
    expect_state(page, "ready")
    wait_until_token_charts_settle(page)
    # And an error message that does.
    standin.answer("generate", 400, {"error": HOSTILE})
    generate(page, "anything")
    expect(page.get_by_test_id("generate-error")).to_contain_text(HOSTILE)

    assert page.locator("img[src=x]").count() == 0
    assert page.evaluate("[...document.scripts].every(s => !s.textContent.includes('alert('))")
    assert dialogs == []
    assert tab.errors == []


def test_throttled_and_busy_generations_say_when_to_try_again(
    open_tab, live_server, owner, standin, settings
):
    settings.EXTERNAL_API_MAX_CONCURRENT = 1
    tab = open_tab(owner)
    page = tab.page
    page.goto(live_server.url + "/dashboard/?tz=UTC")
    expect_state(page, "no-usage")

    # One generation hangs at the stand-in and holds the only slot: the next is refused.
    standin.hang("generate")
    page.evaluate(
        """() => { window.__first = fetch('/api/plugin/generate', {
            method: 'POST', credentials: 'same-origin',
            headers: {'Content-Type': 'application/json', 'X-CSRFToken':
                document.querySelector('[data-generate-form] [name=csrfmiddlewaretoken]').value},
            body: JSON.stringify({prompt: 'the first'}),
        }).then(r => r.status); }"""
    )
    deadline = monotonic() + 10
    while not standin.received_for("generate") and monotonic() < deadline:
        page.wait_for_timeout(20)
    assert standin.received_for("generate"), "the first generation never reached the stand-in"
    generate(page, "the second")
    expect(page.get_by_test_id("generate-error")).to_have_text(
        re.compile(r"^The plugin generator is busy: try again in \d+ s\.$")
    )
    standin.release()
    assert page.evaluate("window.__first") == 200

    # The rate limit per user (THROTTLE_PLUGIN_RATE, 10 a minute): the first two used two.
    for attempt in range(20):
        generate(page, f"plugin number {attempt}")
        expect(page.get_by_test_id("generate-status")).not_to_have_text("Generating…")
        if page.get_by_test_id("generate-error").is_visible():
            break
    expect(page.get_by_test_id("generate-error")).to_have_text(
        re.compile(r"^Too many generations in a short time: try again in \d+ s\.$")
    )
    assert tab.errors == []


def test_staff_see_someones_token_usage_without_the_form(
    open_tab, live_server, owner, staff, standin
):
    generate_elsewhere(standin, "alice", "a plugin that tags cats")
    generate_elsewhere(standin, "carol", "a plugin for carol herself, longer than alice's")
    page = open_tab(staff).page
    with page.expect_request(lambda request: is_token_usage(request.url)) as asked:
        page.goto(live_server.url + "/dashboard/?user=alice&tz=UTC")
    assert "userId=alice" in asked.value.url
    expect_state(page, "ready")
    assert figures(page) == expected_figures(upstream_usage(standin, "alice"))
    expect(page.locator("[data-generate-form]")).to_have_count(0)


def test_token_panel_in_light_dark_and_at_phone_width(
    open_tab, live_server, owner, standin, screenshots
):
    for prompt in ("a plugin that resizes images", "a plugin that writes alt text for images"):
        generate_elsewhere(standin, "alice", prompt)
    for name, options in {
        "light": {"color_scheme": "light"},
        "dark": {"color_scheme": "dark"},
        "375px": {"viewport": {"width": 375, "height": 740}, "is_mobile": True},
    }.items():
        page = open_tab(owner, **options).page
        page.goto(live_server.url + "/dashboard/?tz=UTC")
        expect_state(page, "ready")
        wait_until_token_charts_settle(page)
        for test_id in ("token-total", "token-last-request", "generate-plugin"):
            expect(page.get_by_test_id(test_id)).to_be_visible()
        if name == "375px":
            assert page.evaluate("document.documentElement.scrollWidth") <= 375
            for selector in (DAILY_CHART, MONTHLY_CHART, "[data-testid=token-total]"):
                box = page.locator(selector).bounding_box()
                assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
        page.get_by_test_id("token-usage").screenshot(path=screenshots / f"token-panel-{name}.png")
        page.screenshot(path=screenshots / f"dashboard-tokens-{name}.png", full_page=True)
