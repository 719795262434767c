"""The dashboard as the browser tests read it: the numbers in its charts and tables.

Shared by the browser tests of the dashboard, the token panel and hostile names, with
``store``, which puts records in the database for a page to show.
"""

import re
from datetime import datetime

from playwright.sync_api import Page

from tests.conftest import make_record

USAGE_CHART = "[data-testid=model-usage-chart]"
SHARE_CHART = "[data-testid=model-share-chart]"
UPDATED = re.compile(r"Updated \d\d:\d\d:\d\d")


def store(owner, records: list[tuple[datetime, str, int]]) -> None:
    for when, model, images in records:
        make_record(owner, when, model, images)


def number(text: str) -> int:
    """An integer shown with or without thousands separators; a blank or a dash is 0."""
    digits = re.sub(r"\D", "", text)
    return int(digits) if digits else 0


def chart_data(page: Page, selector: str) -> dict:
    page.wait_for_function(
        "s => window.Chart && Chart.getChart(document.querySelector(s))", arg=selector
    )
    return page.evaluate(
        """s => {
            const chart = Chart.getChart(document.querySelector(s));
            return {
                labels: chart.data.labels.map(String),
                datasets: chart.data.datasets.map(
                    d => ({label: d.label, data: d.data.map(Number)})
                ),
            };
        }""",
        selector,
    )


def bar_series(page: Page) -> dict[str, list[int]]:
    chart = chart_data(page, USAGE_CHART)
    return {dataset["label"]: dataset["data"] for dataset in chart["datasets"]}


def doughnut(page: Page) -> dict[str, int]:
    chart = chart_data(page, SHARE_CHART)
    return dict(zip(chart["labels"], chart["datasets"][0]["data"], strict=True))


def table(page: Page, test_id: str) -> dict[str, list[list[str]]]:
    """The header cells and body rows of a table, as the user reads them."""
    return page.get_by_test_id(test_id).evaluate(
        """t => {
            const cells = row => [...row.cells].map(c => c.textContent.trim());
            const head = t.tHead ? [...t.tHead.rows].map(cells) : [];
            return {head, body: [...t.tBodies].flatMap(b => [...b.rows].map(cells))};
        }"""
    )


def usage_table_series(page: Page, models: list[str]) -> dict[str, list[int]]:
    """Images per period for each model, from the usage table (periods as rows or columns)."""
    data = table(page, "usage-table")
    header = data["head"][-1] if data["head"] else []
    if all(model in header for model in models):  # one column per model
        return {m: [number(row[header.index(m)]) for row in data["body"]] for m in models}
    by_row = {row[0]: row for row in data["body"]}
    assert all(model in by_row for model in models), f"no model in the usage table: {data}"
    return {model: [number(cell) for cell in by_row[model][1:]] for model in models}


def share_table(page: Page) -> dict[str, int]:
    return {row[0]: number(row[1]) for row in table(page, "share-table")["body"]}


def wait_until_charts_settle(page: Page) -> None:
    """Both charts drawn and their animations finished, for a screenshot worth keeping."""
    chart_data(page, USAGE_CHART)
    chart_data(page, SHARE_CHART)
    page.wait_for_function(
        "() => Object.values(Chart.instances).every(chart => !Chart.animator.running(chart))"
    )


def press_refresh(page: Page) -> None:
    """Click Refresh Data. The server renders an "Updated" time too, so it is blanked first:
    an "Updated" seen afterwards can only come from this refresh."""
    page.get_by_test_id("refresh-status").evaluate("el => { el.textContent = '' }")
    page.get_by_test_id("refresh-data").click()


def shown_number(page: Page, test_id: str) -> int:
    return number(page.get_by_test_id(test_id).inner_text())


def rgb(colour: str) -> str:
    """``#2f6bd6`` or ``rgb(47, 107, 214)`` as ``rgb(47, 107, 214)``, to compare colours."""
    colour = colour.strip()
    if colour.startswith("#"):
        red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
        return f"rgb({red}, {green}, {blue})"
    return colour


def chart_colours(page: Page) -> dict[str, dict[str, str]]:
    """Each series' colour as Chart.js draws it: ``{"bar": {label: rgb}, "share": {...}}``."""
    for selector in (USAGE_CHART, SHARE_CHART):
        chart_data(page, selector)
    colours = page.evaluate(
        """([bar, share]) => {
            const barChart = Chart.getChart(document.querySelector(bar));
            const shareChart = Chart.getChart(document.querySelector(share));
            return {
                bar: Object.fromEntries(barChart.data.datasets
                    .filter(d => d.stack !== "previous")
                    .map(d => [d.label, d.backgroundColor])),
                share: Object.fromEntries(shareChart.data.labels
                    .map((label, i) => [label, shareChart.data.datasets[0].backgroundColor[i]])),
            };
        }""",
        [USAGE_CHART, SHARE_CHART],
    )
    return {chart: {k: rgb(v) for k, v in by_label.items()} for chart, by_label in colours.items()}


def swatch_colours(page: Page, test_id: str) -> dict[str, str]:
    """The swatch colour beside each name in a table (share table rows, usage table header)."""
    return page.get_by_test_id(test_id).evaluate(
        """t => Object.fromEntries([...t.querySelectorAll('.swatch')].map(s => [
            s.parentElement.textContent.trim(), getComputedStyle(s).backgroundColor,
        ]))"""
    )


def palette_colour(page: Page, name: str) -> str:
    """A colour of the page's palette (``--model-3``, ``--model-other``) as ``rgb(...)``."""
    value = page.locator("[data-dashboard]").evaluate(
        "(el, name) => getComputedStyle(el).getPropertyValue(name)", name
    )
    return rgb(value)
