"""Every kind of page works under the Content-Security-Policy, with nothing refused.

Chromium reports each refused script, style, image or connection on the console; a page
that needs an inline script or style, or a source the policy does not list, fails here.
"""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.conftest import make_record
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)


def violations(tab) -> list[str]:
    return [m.text for m in tab.console_errors if "Content Security Policy" in m.text]


@pytest.fixture
def owner_records(owner):
    now = timezone.now()
    for hours, model in enumerate(["SDXL", "Flux", "SDXL"]):
        make_record(owner, now - timedelta(hours=hours + 1), model=model, images=hours + 1)


def test_the_login_page(open_tab, live_server):
    tab = open_tab()

    response = tab.page.goto(f"{live_server.url}/accounts/login/")

    assert "default-src 'self'" in response.headers["content-security-policy"]
    expect(tab.page.get_by_role("button", name="Log in")).to_be_visible()
    assert violations(tab) == []


def test_the_dashboard_draws_its_charts(open_tab, live_server, owner, owner_records):
    tab = open_tab(owner)

    tab.page.goto(f"{live_server.url}/dashboard/?days=7&tz=UTC")

    # The charts are shown only once Chart.js has loaded and drawn them.
    expect(tab.page.locator("canvas").first).to_be_visible()
    tab.page.get_by_role("button", name="Refresh Data").click()
    expect(tab.page.get_by_text("Updated")).to_be_visible()
    assert violations(tab) == []
    assert tab.errors == []


def test_the_tokens_page_creates_a_token(open_tab, live_server, owner):
    tab = open_tab(owner)
    tab.page.goto(f"{live_server.url}/dashboard/tokens/")

    tab.page.get_by_label("Name").fill("Studio laptop")
    tab.page.get_by_role("button", name="Create token").click()

    expect(tab.page.get_by_test_id("new-token")).to_be_visible()
    assert violations(tab) == []


@pytest.mark.parametrize(
    "path",
    ["/admin/", "/admin/usage/usagerecord/", "/admin/usage/apitoken/", "/admin/usage/auditevent/"],
)
def test_the_admin_pages(open_tab, live_server, staff, owner, owner_records, path):
    tab = open_tab(staff)

    tab.page.goto(f"{live_server.url}{path}")

    expect(tab.page.locator("#content")).to_be_visible()
    assert violations(tab) == []


def test_an_admin_change_page(open_tab, live_server, staff, owner, owner_records):
    record = UsageRecord.objects.filter(owner=owner).first()
    tab = open_tab(staff)

    tab.page.goto(f"{live_server.url}/admin/usage/usagerecord/{record.pk}/change/")

    expect(tab.page.locator("#content")).to_be_visible()
    assert violations(tab) == []


def test_the_api_docs_render(open_tab, live_server):
    tab = open_tab()

    tab.page.goto(f"{live_server.url}/api/docs/")

    expect(tab.page.get_by_text("/api/model-usage").first).to_be_visible()
    assert violations(tab) == []
