"""Hostile model, token and user names in a real Chromium (issue 7's last bad-input item).

The names of ``tests/test_bad_input.py`` (``<script>``, an ``<img onerror>``, a
``</script>`` that tries to leave the chart data, formulas, text that is already escaped)
are stored for a user; the dashboard must show each one as the literal text, in its tables
and in Chart.js's legend and tooltips (read from the charts after real mouse moves), before
and after Refresh Data puts the server's HTML in place. Nothing may run: no dialog opens, no
element of a payload exists, and the browser reports no Content-Security-Policy violation
(the policy would block an injected script, so a violation is what an injection looks like
under it).
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import Page, expect

from dashboard.models import Profile
from tests.browser.conftest import Tab
from tests.browser.dashboard_page import (
    SHARE_CHART,
    UPDATED,
    USAGE_CHART,
    chart_data,
    press_refresh,
    table,
)
from tests.conftest import make_record
from tests.hostile_names import HOSTILE_NAMES, HOSTILE_TOKEN_NAME, HOSTILE_USERNAME
from usage.models import UsageRecord

pytestmark = pytest.mark.slow

# What a payload would leave behind in the document if it were parsed as HTML.
INJECTED = 'img[src="x"], [onerror], [onload]'
# Recorded from the first script on: violations of the policy, as the page sees them.
WATCH_POLICY = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
    window.__violations.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`);
});
"""


@dataclass
class Watched:
    """A tab with every dialog it opened (each dismissed) and every policy violation."""

    tab: Tab
    dialogs: list[str] = field(default_factory=list)

    @property
    def page(self) -> Page:
        return self.tab.page

    def violations(self) -> list[str]:
        console = [m.text for m in self.tab.console_errors if "Content Security Policy" in m.text]
        events = self.page.evaluate("window.__violations || []")
        return console + events

    def assert_nothing_ran(self) -> None:
        violations = self.violations()
        print("Content-Security-Policy violations:", violations or "none")
        assert self.dialogs == []
        assert self.tab.errors == []
        assert self.page.locator(INJECTED).count() == 0
        # Every script is a file, or data that the browser never runs.
        scripts = self.page.eval_on_selector_all(
            "script", "all => all.map(s => s.src || s.type || 'inline')"
        )
        assert all(s.startswith("http") or s == "application/json" for s in scripts), scripts
        assert violations == []


@pytest.fixture
def watch(open_tab) -> Iterator:
    def watch(user, **options) -> Watched:
        # Without animation, a chart's elements are where they end up when the mouse moves.
        watched = Watched(open_tab(user, reduced_motion="reduce", **options))
        watched.page.add_init_script(WATCH_POLICY)

        def dismiss(dialog) -> None:
            watched.dialogs.append(dialog.message)
            dialog.dismiss()

        watched.page.on("dialog", dismiss)
        return watched

    yield watch


@pytest.fixture
def hostile(owner) -> list[UsageRecord]:
    """Each name once, the newest first, with more images the earlier it is in the list."""
    Profile.objects.create(user=owner, time_zone="UTC")
    now = timezone.now()
    return [
        make_record(owner, now - timedelta(minutes=10 * rank), name, 10 - rank)
        for rank, name in enumerate(HOSTILE_NAMES)
    ]


def legend(page: Page, selector: str) -> list[str]:
    chart_data(page, selector)  # drawn
    return page.evaluate(
        "s => Chart.getChart(document.querySelector(s)).legend.legendItems.map(i => i.text)",
        selector,
    )


def tooltip_texts(page: Page, selector: str) -> set[str]:
    """Every line of the tooltips the mouse brings up, over each bar or slice of a chart."""
    canvas = page.locator(selector)
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    points = page.evaluate(
        """s => {
            const chart = Chart.getChart(document.querySelector(s));
            return chart.data.datasets.flatMap((dataset, d) =>
                chart.getDatasetMeta(d).data
                    .filter((element, i) => dataset.data[i] > 0)
                    .map(element => element.tooltipPosition()));
        }""",
        selector,
    )
    assert points, "nothing drawn to hover"
    seen: set[str] = set()
    for point in points:
        page.mouse.move(box["x"] + point["x"], box["y"] + point["y"])
        page.wait_for_function(
            "s => Chart.getChart(document.querySelector(s)).tooltip.opacity > 0", arg=selector
        )
        lines = page.evaluate(
            """s => {
                const tooltip = Chart.getChart(document.querySelector(s)).tooltip;
                return [...tooltip.title, ...tooltip.body.flatMap(b => b.lines)];
            }""",
            selector,
        )
        seen.update(lines)
        page.mouse.move(box["x"] - 20, box["y"] - 20)  # off the chart, to close the tooltip
    return seen


def column(page: Page, test_id: str, index: int) -> list[str]:
    return [row[index] for row in table(page, test_id)["body"]]


def assert_tables_show_the_names(page: Page) -> None:
    expect(page.get_by_test_id("top-model")).to_have_text(HOSTILE_NAMES[0])
    assert table(page, "usage-table")["head"][-1][1:-1] == HOSTILE_NAMES
    assert column(page, "share-table", 0) == HOSTILE_NAMES
    assert column(page, "recent-records", 1) == HOSTILE_NAMES


def test_the_dashboard_shows_hostile_names_as_text_in_tables_legends_and_tooltips(
    watch, live_server, owner, hostile
):
    watched = watch(owner)
    page = watched.page

    page.goto(f"{live_server.url}/dashboard/?days=7&tz=UTC")

    assert_tables_show_the_names(page)
    assert legend(page, USAGE_CHART) == HOSTILE_NAMES
    assert chart_data(page, SHARE_CHART)["labels"] == HOSTILE_NAMES
    images = {record.model: record.image_count for record in hostile}
    bar_lines = tooltip_texts(page, USAGE_CHART)
    assert {f"{name}: {count}" for name, count in images.items()} <= bar_lines
    share_lines = tooltip_texts(page, SHARE_CHART)
    assert all(any(name in line for line in share_lines) for name in HOSTILE_NAMES), share_lines
    watched.assert_nothing_ran()

    # Refresh Data puts the server's HTML in place with innerHTML: still text.
    press_refresh(page)
    expect(page.get_by_test_id("refresh-status")).to_have_text(UPDATED)
    assert_tables_show_the_names(page)
    assert legend(page, USAGE_CHART) == HOSTILE_NAMES
    watched.assert_nothing_ran()


def test_a_hostile_token_name_is_text_when_created_listed_and_revoked(watch, live_server, owner):
    watched = watch(owner)
    page = watched.page
    page.goto(f"{live_server.url}/dashboard/tokens/")

    page.get_by_label("Name").fill(HOSTILE_TOKEN_NAME)
    page.get_by_role("button", name="Create token").click()

    expect(
        page.get_by_role("heading", name=f"Your new token “{HOSTILE_TOKEN_NAME}”")
    ).to_be_visible()
    expect(page.get_by_test_id("token-list").locator("tbody th")).to_have_text(HOSTILE_TOKEN_NAME)
    watched.assert_nothing_ran()

    page.get_by_role("link", name="Revoke…").click()
    expect(page.get_by_role("heading", name=f"Revoke “{HOSTILE_TOKEN_NAME}”?")).to_be_visible()
    page.get_by_role("button", name="Revoke token").click()
    expect(page.get_by_role("status").filter(has_text="Revoked")).to_contain_text(
        HOSTILE_TOKEN_NAME
    )
    watched.assert_nothing_ran()


def test_staff_see_a_hostile_username_and_names_as_text(watch, live_server, staff):
    user = get_user_model().objects.create_user(HOSTILE_USERNAME)
    now = timezone.now()
    for rank, name in enumerate(HOSTILE_NAMES):
        make_record(user, now - timedelta(minutes=10 * rank), name, 10 - rank)
    watched = watch(staff)
    page = watched.page

    page.goto(f"{live_server.url}/dashboard/?days=7&tz=UTC&user={quote(HOSTILE_USERNAME)}")

    heading = page.get_by_role("heading", level=1)
    expect(heading).to_have_text(f"{HOSTILE_USERNAME}\u2019s image usage")
    assert_tables_show_the_names(page)
    assert legend(page, USAGE_CHART) == HOSTILE_NAMES
    watched.assert_nothing_ran()

    page.goto(f"{live_server.url}/admin/usage/usagerecord/")

    records = page.locator("#result_list tbody tr")
    expect(records).to_have_count(len(HOSTILE_NAMES))
    assert sorted(records.locator(".field-model").all_inner_texts()) == sorted(HOSTILE_NAMES)
    assert set(records.locator(".field-owner_name").all_inner_texts()) == {HOSTILE_USERNAME}
    watched.assert_nothing_ran()
