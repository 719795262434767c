"""Self-service accounts in a real Chromium against the live server, with the site's mail
going to a real SMTP server on a loopback port (``mail_server``) and the links in it
followed as a person would: sign up, verify, sign in, reset the password, sign in again.
Then every account page, light and dark, at a phone's width and a laptop's."""

import re
from urllib.parse import urlsplit

import pytest
from allauth.account.forms import default_token_generator
from allauth.account.models import EmailAddress, EmailConfirmationHMAC
from allauth.account.utils import user_pk_to_url_str
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from tests.mail_server import body_of, links_in

pytestmark = pytest.mark.slow

PASSWORD = "Browser-sign-up-83"
NEW_PASSWORD = "Browser-reset-9271"


def link_to(message, path_start: str, live_server) -> str:
    """The link in ``message`` to a path starting with ``path_start``, on the live server."""
    links = [link for link in links_in(message) if urlsplit(link).path.startswith(path_start)]
    assert len(links) == 1, body_of(message)
    assert links[0].startswith(live_server.url), links[0]
    return links[0]


def sign_in(page: Page, live_server, login: str, password: str) -> None:
    page.goto(live_server.url + "/accounts/login/")
    page.get_by_label("Username or email").fill(login)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_sign_up_verify_sign_in_and_reset_the_password_by_mail(
    open_tab, live_server, mail_server, settings
):
    settings.SIGNUP_OPEN = True
    tab = open_tab()
    page = tab.page

    page.goto(live_server.url + "/accounts/login/")
    page.get_by_role("link", name="Create an account").click()
    expect(page.get_by_role("heading", name="Create an account")).to_be_visible()
    page.locator("#id_email").fill("dora@example.com")
    page.locator("#id_username").fill("dora")
    page.locator("#id_password1").fill(PASSWORD)
    page.locator("#id_password2").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()

    # The mail, opened on another device: a browser of its own.
    (verification,) = mail_server.wait_for(1)
    assert verification["To"] == "dora@example.com"
    mailbox = open_tab().page
    mailbox.goto(link_to(verification, "/accounts/confirm-email/", live_server))
    expect(mailbox.get_by_text("dora@example.com")).to_be_visible()
    mailbox.get_by_role("button", name="Confirm").click()
    expect(mailbox).to_have_url(re.compile(r"/accounts/login/"))
    assert EmailAddress.objects.get(email="dora@example.com").verified

    sign_in(page, live_server, "dora", PASSWORD)
    expect(page).to_have_url(re.compile(r"/dashboard/"))
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/"))

    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill("dora@example.com")
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    reset = mail_server.wait_for(2)[1]
    assert reset["To"] == "dora@example.com"
    mailbox.goto(link_to(reset, "/accounts/password/reset/key/", live_server))
    expect(mailbox.get_by_role("heading", name="Set a new password")).to_be_visible()
    mailbox.locator("#id_password1").fill(NEW_PASSWORD)
    mailbox.locator("#id_password2").fill(NEW_PASSWORD)
    mailbox.get_by_role("button", name="Set password").click()
    expect(mailbox.get_by_role("heading", name="Password changed")).to_be_visible()

    sign_in(page, live_server, "dora@example.com", PASSWORD)
    expect(page.get_by_role("alert")).to_contain_text("not correct")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    sign_in(page, live_server, "dora@example.com", NEW_PASSWORD)
    expect(page).to_have_url(re.compile(r"/dashboard/"))
    assert tab.errors == []


# --- Every page, light and dark, phone and laptop ----------------------------------------------


def confirmation_path(user) -> str:
    address = EmailAddress.objects.create(user=user, email="dora.new@example.com")
    return f"/accounts/confirm-email/{EmailConfirmationHMAC(address).key}/"


def reset_path(user) -> str:
    return (
        f"/accounts/password/reset/key/{user_pk_to_url_str(user)}-"
        f"{default_token_generator.make_token(user)}/"
    )


PAGES = {
    "login": (None, lambda user: "/accounts/login/"),
    "signup": (None, lambda user: "/accounts/signup/"),
    "signup-closed": (None, lambda user: "/accounts/signup/"),
    "verification-sent": (None, lambda user: "/accounts/confirm-email/"),
    "confirm-email": (None, confirmation_path),
    "reset": (None, lambda user: "/accounts/password/reset/"),
    "reset-done": (None, lambda user: "/accounts/password/reset/done/"),
    "reset-from-key": (None, reset_path),
    "email": ("signed in", lambda user: "/accounts/email/"),
    "logout": ("signed in", lambda user: "/accounts/logout/"),
}


@pytest.mark.parametrize("width", [375, 1366])
@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("name", list(PAGES))
def test_account_pages_fit_the_screen_in_either_colour_scheme(
    name, scheme, width, open_tab, live_server, settings, screenshots
):
    settings.SIGNUP_OPEN = name != "signup-closed"
    user = get_user_model().objects.create_user("dora", "dora@example.com", PASSWORD)
    EmailAddress.objects.create(user=user, email="dora@example.com", verified=True, primary=True)
    who, path = PAGES[name]
    tab = open_tab(
        user if who else None,
        viewport={"width": width, "height": 800},
        color_scheme=scheme,
        is_mobile=width < 600,
    )
    page = tab.page

    url = live_server.url + path(user)
    response = page.goto(url)

    assert response.status == (403 if name == "signup-closed" else 200)
    expect(page.locator("main h1")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert (background == "rgb(15, 20, 25)") is (scheme == "dark"), background
    page.screenshot(path=screenshots / f"accounts-{name}-{scheme}-{width}.png", full_page=True)
    # Chromium reports a failed load as a console error: the closed sign-up page's own 403,
    # and the favicon the site does not have.
    expected_failures = {url, live_server.url + "/favicon.ico"}
    unexpected = [
        (m.text, m.location.get("url"))
        for m in tab.console_errors
        if m.location.get("url") not in expected_failures
    ]
    assert tab.errors == [] and unexpected == []
