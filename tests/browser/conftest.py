"""Chromium driven by Playwright against pytest-django's live server, with a local Chart.js.

One browser for the session and a fresh context (cookies, zone, viewport, colour scheme)
for every page a test opens. Every test here is marked ``browser`` and ``slow``: the quick
check (``-m "not slow"``) leaves them out, ``-m browser`` runs them alone, and a run
without ``-m`` (``./dev.py test``) runs them with everything else.
"""

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tests.browser.chartjs import SERVED_NAME, extract_script, fetch_tarball, serve_directory
from tests.browser.chromium import launch
from tests.live_server import PROJECT

# Playwright's sync API runs an event loop in the test thread, which makes Django refuse ORM
# calls from that thread as "async context" unless told otherwise.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

BROWSER_TESTS = Path(__file__).resolve().parent
SCREENSHOTS = PROJECT / "test-output" / "browser"
DEFAULT_CONTEXT = {
    "viewport": {"width": 1280, "height": 900},
    "timezone_id": "UTC",
    "locale": "en-US",
    "color_scheme": "light",
}


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if BROWSER_TESTS in item.path.parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def chartjs_integrity() -> str:
    """The SRI hash the page puts on the CDN's Chart.js; the local copy must match it."""
    return django_settings.CHARTJS_CDN_INTEGRITY


@pytest.fixture(scope="session")
def chartjs_url(chartjs_integrity, tmp_path_factory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("chartjs")
    extract_script(fetch_tarball(), chartjs_integrity, directory)
    with serve_directory(directory) as base_url:
        yield f"{base_url}/{SERVED_NAME}"


@pytest.fixture(autouse=True)
def _local_chartjs(settings, chartjs_url, chartjs_integrity) -> None:
    settings.CHARTJS_URL = chartjs_url
    settings.CHARTJS_INTEGRITY = chartjs_integrity


@pytest.fixture(autouse=True)
def _no_analytics_service(settings) -> None:
    """No upstream unless a test starts one: the page then asks nothing of whatever happens
    to listen on the developer's port 3001. ``tests/browser/test_token_panel.py`` starts
    the stand-in and points the site at it."""
    settings.EXTERNAL_API_URL = ""


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@dataclass
class Tab:
    """A page in its own context, with the script errors it has seen."""

    page: Page
    errors: list[str] = field(default_factory=list)
    console_errors: list[ConsoleMessage] = field(default_factory=list)


def session_cookie(user, base_url: str) -> dict:
    """Django's session cookie for ``user``, as if they had logged in."""
    client = Client()
    client.force_login(user)
    name = django_settings.SESSION_COOKIE_NAME
    return {"name": name, "value": client.cookies[name].value, "url": base_url}


@pytest.fixture
def open_tab(browser, live_server) -> Iterator[Callable[..., Tab]]:
    """``open_tab(user=None, **context_options)``: a new context, logged in as ``user``."""
    contexts = []

    def open_tab(user=None, **options) -> Tab:
        context = browser.new_context(**{**DEFAULT_CONTEXT, **options})
        contexts.append(context)
        context.set_default_timeout(10_000)
        if user is not None:
            context.add_cookies([session_cookie(user, live_server.url)])
        tab = Tab(context.new_page())
        tab.page.on("pageerror", lambda error: tab.errors.append(str(error)))
        tab.page.on(
            "console",
            lambda message: message.type == "error" and tab.console_errors.append(message),
        )
        return tab

    yield open_tab
    for context in contexts:
        context.close()
