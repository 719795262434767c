"""The budget card and page in a real Chromium: the card shows what GET /api/budget says,
before and after Refresh Data, and a budget set on the page shows on the dashboard."""

import json
import re
import urllib.request
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import time_machine
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.dashboard_page import UPDATED, press_refresh
from tests.conftest import make_record
from usage import budgets
from usage.models import ModelPrice
from usage.tokens import create_token

CARD_FIELDS = {
    "budget-used-amount": "used",
    "budget-left": "left",
    "budget-forecast": "forecast",
    "budget-percent": "percent",
    "budget-forecast-percent": "forecastPercent",
}


def api_budget(base_url: str, token: str) -> dict:
    request = urllib.request.Request(
        f"{base_url}/api/budget", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def post_usage(base_url: str, token: str, body: dict) -> None:
    request = urllib.request.Request(
        f"{base_url}/api/model-usage",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201


def card(page) -> dict[str, str]:
    return {key: page.get_by_test_id(testid).inner_text() for testid, key in CARD_FIELDS.items()}


def as_shown(api: dict) -> dict[str, str]:
    """The API's numbers as the card writes them: money as sent, images with separators."""
    return {
        key: f"{api[key]:,}" if isinstance(api[key], int) else str(api[key])
        for key in CARD_FIELDS.values()
    }


# The forecast moves with the clock: held still, the page and the API are asked at one moment.
@time_machine.travel(datetime(2026, 12, 11, 9, 30, tzinfo=UTC), tick=False)
def test_the_card_shows_the_apis_numbers_and_follows_refresh_data(open_tab, live_server, owner):
    token = create_token(owner, "Budget card").raw
    now = timezone.now()
    ModelPrice.objects.create(
        model="SDXL", price_per_image=Decimal("0.35"), valid_from=now - timedelta(days=400)
    )
    budgets.save_budget(
        owner, unit="money", limit=Decimal("2500"), thresholds=[50, 100], time_zone="UTC"
    )
    make_record(owner, now - timedelta(minutes=5), "SDXL", 3001)

    page = open_tab(owner).page
    page.goto(live_server.url + "/dashboard/")
    api = api_budget(live_server.url, token)
    assert api["used"] == "1050.35"
    assert card(page) == as_shown(api)
    expect(page.get_by_test_id("budget-card")).to_contain_text("USD")

    post_usage(live_server.url, token, {"model": "SDXL", "imageCount": 1000})
    press_refresh(page)
    expect(page.get_by_test_id("refresh-status")).to_have_text(UPDATED)
    api = api_budget(live_server.url, token)
    assert api["used"] == "1400.35"
    assert card(page) == as_shown(api)


def test_a_budget_set_on_its_page_shows_on_the_dashboard(open_tab, live_server, owner, screenshots):
    make_record(owner, timezone.now() - timedelta(minutes=5), "SDXL", 1234)
    page = open_tab(owner).page
    page.goto(live_server.url + "/dashboard/")
    expect(page.get_by_test_id("budget-none")).to_be_visible()
    page.get_by_role("link", name="Set a budget").click()
    page.get_by_label("images").check()
    page.get_by_label("Limit a month").fill("2000")
    page.get_by_label("Alert at (% of the budget)").fill("50, 90")
    page.get_by_role("button", name="Save budget").click()
    expect(page.locator(".messages")).to_contain_text("Budget saved")
    expect(page.get_by_test_id("budget-used-amount")).to_have_text("1,234")
    page.screenshot(path=screenshots / "budget-page.png", full_page=True)
    page.goto(live_server.url + "/dashboard/")
    expect(page.get_by_test_id("budget-limit")).to_have_text("2,000")
    expect(page.get_by_test_id("budget-percent")).to_have_text("61.7")
    assert re.search(r"alerts at 50%", page.get_by_test_id("budget-card").inner_text())
