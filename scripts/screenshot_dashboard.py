#!/usr/bin/env python3
"""Save full-page screenshots of the demo user's dashboard from a running site, on a laptop
(1366 px wide) and a phone (375 px), light and dark: docs/dashboard-1366-light.png,
dashboard-1366-dark.png, dashboard-375-light.png and dashboard-375-dark.png; and the cost
view (``?measure=cost``) on a laptop, light: docs/dashboard-cost-1366-light.png.

    ./dev.py run                                   # in one shell: the site with demo data
    .venv/bin/python scripts/screenshot_dashboard.py [--url URL] [--out-dir DIR]

For the token panel, the site's analytics service (``EXTERNAL_API_URL``; with ``DEBUG=1``
http://localhost:3001) is used if it answers. If nothing answers there and it is a loopback
address, the script runs the development stand-in (scripts/standin_upstream.py) there for
as long as it takes the screenshot. Either way, when the service has no usage for ``demo``
yet, the script makes a few generations for it directly at the service (not through the
site, so that no ledger rows are written).

The script logs in as ``demo`` by writing a session straight into the site's database, so
it must run with the same environment as the site (``DATABASE_URL``, ``SECRET_KEY``,
``DEBUG``; by default that of ``./dev.py run``: SQLite ``db.sqlite3`` and ``DEBUG=1``). The
session is deleted again afterwards, and the demo user's stored time zone is left alone.

When the site loads Chart.js from the CDN, the browser is handed the pinned package from the
npm registry instead (checked against the same SRI hash, so it is byte for byte the CDN's
file): the screenshot then works on machines without internet access.
"""

import argparse
import json
import os
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "usage_site.settings")
os.environ.setdefault("DEBUG", "1")  # as ./dev.py run; the session must be signed alike
# Playwright's sync API runs an event loop in this thread; the ORM calls here are plain.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

USERNAME = "demo"
# Every chart on show drawn (a canvas in a hidden frame, such as the token panel's when the
# service is not configured, never gets one) and the token panel done loading.
CHARTS_SETTLED = """() => window.Chart
    && document.querySelector('[data-token-usage]')?.dataset.state !== 'loading'
    && [...document.querySelectorAll('canvas')].filter(c => !c.closest('[hidden]')).length > 0
    && [...document.querySelectorAll('canvas')].filter(c => !c.closest('[hidden]'))
        .every(c => Chart.getChart(c))
    && Object.values(Chart.instances).every(chart => !Chart.animator.running(chart))"""
# A laptop and a phone (an iPhone's 375 CSS pixels), each light and dark; and the cost view.
SHOTS = (
    (1366, "light", "images"),
    (1366, "dark", "images"),
    (375, "light", "images"),
    (375, "dark", "images"),
    (1366, "light", "cost"),
)
DEMO_PROMPTS = (
    "A plugin that resizes every image in a folder to 1024 px on the long side",
    "A plugin that writes alt text for each generated image",
    "A plugin that names images by model, date and seed",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running site")
    parser.add_argument("--out-dir", default=str(ROOT / "docs"))
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings

    session = demo_session()
    try:
        cookie = {
            "name": settings.SESSION_COOKIE_NAME,
            "value": session.session_key,
            "url": args.url,
        }
        chartjs = local_chartjs() if settings.CHARTJS_URL == settings.CHARTJS_CDN_URL else None
        with analytics_service(settings.EXTERNAL_API_URL, settings.EXTERNAL_API_KEY):
            for width, scheme, measure in SHOTS:
                kind = "" if measure == "images" else f"{measure}-"
                out = Path(args.out_dir) / f"dashboard-{kind}{width}-{scheme}.png"
                screenshot(args.url.rstrip("/"), cookie, out, width, scheme, chartjs, measure)
                print(f"saved {out}")
    finally:
        session.delete()
    return 0


def demo_session():
    """A stored session logged in as ``demo``, like the one ``django.contrib.auth.login`` makes."""
    from django.conf import settings
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )

    user = get_user_model().objects.filter(username=USERNAME).first()
    if user is None:
        raise SystemExit(f"No user {USERNAME!r}: run `python manage.py seed_demo` first.")
    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session[SESSION_KEY] = user._meta.pk.value_to_string(user)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session


@contextmanager
def analytics_service(url: str, key: str) -> Iterator[None]:
    """The site's analytics service answering, with some usage for ``demo``."""
    if not url:
        print("EXTERNAL_API_URL is empty: the token panel will say it is not configured.")
        yield
        return
    standin = None
    if not answers(f"{url}/health"):
        parts = urlsplit(url)
        if parts.hostname not in ("localhost", "127.0.0.1") or parts.port is None:
            raise SystemExit(f"Nothing answers at {url}, and the stand-in runs only on loopback.")
        from scripts.standin_upstream import StandIn

        standin = StandIn("127.0.0.1", parts.port, key=key).start()
        print(f"Running the development stand-in at {url} for the screenshot.")
    try:
        if not answers(f"{url}/user/{USERNAME}/token-usage", key):
            for prompt in DEMO_PROMPTS:
                call(f"{url}/plugin/generate", key, {"userId": USERNAME, "prompt": prompt})
        yield
    finally:
        if standin is not None:
            standin.stop()


def call(url: str, key: str, body: dict | None = None) -> bytes:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def answers(url: str, key: str = "") -> bool:
    try:
        call(url, key)
    except OSError:  # refused, or an HTTP error status (HTTPError is an OSError)
        return False
    return True


def local_chartjs() -> bytes:
    from django.conf import settings

    from tests.browser.chartjs import extract_script, fetch_tarball

    scratch = ROOT / "test-output" / "cache" / "screenshot"
    return extract_script(fetch_tarball(), settings.CHARTJS_CDN_INTEGRITY, scratch).read_bytes()


def screenshot(
    base_url: str,
    cookie: dict,
    out: Path,
    width: int,
    scheme: str,
    chartjs: bytes | None,
    measure: str = "images",
) -> None:
    from django.conf import settings
    from django.urls import reverse
    from playwright.sync_api import sync_playwright

    from tests.browser.chromium import launch

    zone_path = reverse("dashboard:timezone")

    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            phone = width < 600
            context = browser.new_context(
                viewport={"width": width, "height": 800 if phone else 900},
                is_mobile=phone,
                has_touch=phone,
                color_scheme=scheme,
                locale="en-US",
                # The page then draws its charts without animating, so the shot is never
                # taken mid-animation (a full-page shot resizes the charts once more).
                reduced_motion="reduce",
            )
            context.add_cookies([cookie])
            page = context.new_page()
            # On a first visit the page saves the browser's zone for the user; this browser's
            # zone is the machine's, not the demo visitor's, so keep it from being stored.
            page.route(lambda url: urlsplit(url).path == zone_path, lambda route: route.abort())
            if chartjs is not None:
                page.route(
                    settings.CHARTJS_CDN_URL,
                    lambda route: route.fulfill(
                        body=chartjs,
                        content_type="text/javascript",
                        headers={"Access-Control-Allow-Origin": "*"},
                    ),
                )
            page.goto(f"{base_url}/dashboard/?days=30&measure={measure}")
            if "/dashboard/" not in page.url:
                raise SystemExit(f"Not logged in: the site sent the browser to {page.url}")
            page.wait_for_function(CHARTS_SETTLED, timeout=15_000)
            if not phone:  # the laptop shots show the days before as a line over the bars
                page.get_by_test_id("compare-toggle").check()
                page.wait_for_function(CHARTS_SETTLED, timeout=15_000)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()


if __name__ == "__main__":
    sys.exit(main())
