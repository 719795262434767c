"""The API tokens page in Chromium: the secret shown once, a reload that creates nothing,
renaming in place, and removing a revoked token from the list."""

import pytest
from playwright.sync_api import expect

from usage.models import ApiToken, AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_reload_after_creating_shows_the_secret_no_more_and_makes_no_second_token(
    open_tab, live_server, owner
):
    tab = open_tab(owner)
    page = tab.page
    page.goto(f"{live_server.url}/dashboard/tokens/")

    page.get_by_label("Name", exact=True).fill("Studio laptop")
    page.get_by_role("button", name="Create token").click()
    secret = page.get_by_test_id("new-token").inner_text()
    assert secret.startswith("usg_")
    assert secret not in page.url

    page.reload()

    expect(page.get_by_test_id("token-list")).to_contain_text("Studio laptop")
    expect(page.get_by_test_id("new-token")).to_have_count(0)
    assert secret not in page.content()
    assert list(ApiToken.objects.values_list("name", flat=True)) == ["Studio laptop"]
    assert tab.errors == []


def test_a_token_is_renamed_then_revoked_and_removed_from_the_list(open_tab, live_server, owner):
    tab = open_tab(owner)
    page = tab.page
    page.goto(f"{live_server.url}/dashboard/tokens/")
    page.get_by_label("Name", exact=True).fill("Old name")
    page.get_by_role("button", name="Create token").click()

    page.get_by_text("Rename", exact=True).click()
    page.get_by_label("New name for “Old name”").fill("Studio laptop")
    page.get_by_role("button", name="Save name").click()
    expect(page.get_by_test_id("token-list").locator("tbody th")).to_have_text("Studio laptop")

    page.get_by_role("link", name="Revoke…").click()
    page.get_by_role("button", name="Revoke token").click()
    page.get_by_role("button", name="Remove “Studio laptop” from the list").click()

    expect(page.get_by_test_id("token-list")).to_have_count(0)
    expect(page.get_by_role("status")).to_contain_text("Removed “Studio laptop”")
    actions = list(AuditEvent.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["token_created", "token_renamed", "token_revoked", "token_removed"]
    assert ApiToken.objects.get().removed_at is not None
    assert tab.errors == []


def test_the_copy_button_puts_the_new_secret_on_the_clipboard(open_tab, live_server, owner):
    tab = open_tab(owner)
    page = tab.page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.goto(f"{live_server.url}/dashboard/tokens/")
    page.get_by_label("Name", exact=True).fill("Studio laptop")
    page.get_by_role("button", name="Create token").click()
    secret = page.get_by_test_id("new-token").inner_text().strip()

    page.get_by_role("button", name="Copy token").click()

    expect(page.locator("[data-copy-status]")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    assert tab.errors == []
