"""Self-service accounts (dashboard.accounts, allauth): sign-up behind SIGNUP_OPEN with email
verification, password reset by email, the email addresses page, their limits, and answers
that never say whether an address has an account. Mail goes through a real SMTP server on a
loopback port (``mail_server``), and the tests follow the links in what it receives."""

import os
import re
import subprocess
import sys
import threading
from urllib.parse import urlsplit

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from tests.live_server import PROJECT
from tests.mail_server import body_of, links_in

pytestmark = pytest.mark.django_db

PASSWORD = "Sign-up-pass-83"
NEW_PASSWORD = "Reset-pass-9271"
CSRF_VALUE = re.compile(rb'name="csrfmiddlewaretoken" value="[^"]+"')


@pytest.fixture
def signup_open(settings) -> None:
    settings.SIGNUP_OPEN = True


def sign_up(client: Client, username: str, email: str, password: str = PASSWORD, **extra):
    data = {"username": username, "email": email, "password1": password, "password2": password}
    return client.post("/accounts/signup/", data, **extra)


def sign_in(login: str, password: str) -> tuple[Client, object]:
    client = Client()
    return client, client.post("/accounts/login/", {"username": login, "password": password})


def signed_in_as(client: Client) -> str | None:
    user_id = client.session.get("_auth_user_id")
    return get_user_model().objects.get(pk=user_id).username if user_id else None


def path_of(link: str) -> str:
    return urlsplit(link).path


def the_link(message, starting: str) -> str:
    """The one link in ``message`` whose path starts with ``starting``."""
    links = [path_of(link) for link in links_in(message) if path_of(link).startswith(starting)]
    assert len(links) == 1, body_of(message)
    return links[0]


def page_text(response, typed: str = "") -> bytes:
    """The answer's body without the CSRF token, which is masked afresh on every page, and
    without the address the visitor typed, which the page may repeat to them."""
    text = CSRF_VALUE.sub(b"", response.content)
    return text.replace(typed.lower().encode(), b"ADDRESS") if typed else text


def verified_user(username: str, email: str, password: str = PASSWORD):
    user = get_user_model().objects.create_user(username, email, password)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    return user


# --- Sign-up and verification ----------------------------------------------------------------


def test_sign_up_mails_a_link_that_confirms_the_address_and_then_the_account_signs_in(
    signup_open, mail_server
):
    client = Client()
    response = sign_up(client, "dora", "Dora@Example.com")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    assert b"Check your email" in client.get(response["Location"]).content
    (message,) = mail_server.wait_for(1)
    assert message["To"] == "dora@example.com"  # allauth keeps addresses in lower case
    link = the_link(message, "/accounts/confirm-email/")
    # Not yet confirmed: signing in sends to the "check your email" page, not in.
    refused_client, refused = sign_in("dora", PASSWORD)
    assert refused["Location"] == "/accounts/confirm-email/"
    assert signed_in_as(refused_client) is None

    page = Client().get(link)
    assert page.status_code == 200 and b"dora@example.com" in page.content
    assert Client().post(link).status_code == 302

    address = EmailAddress.objects.get(email__iexact="dora@example.com")
    assert (address.user.username, address.verified, address.primary) == ("dora", True, True)
    for login in ("dora", "dora@example.com"):
        client, response = sign_in(login, PASSWORD)
        assert response["Location"] == "/dashboard/"
        assert signed_in_as(client) == "dora"


def test_an_account_made_by_an_admin_without_an_address_signs_in_as_before(owner, mail_server):
    client, response = sign_in("alice", "alice-password-1")

    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    assert signed_in_as(client) == "alice"
    assert mail_server.messages == []


def test_an_address_added_and_not_yet_verified_never_locks_its_account_out(owner, mail_server):
    client, _ = sign_in("alice", "alice-password-1")
    client.post("/accounts/email/", {"action_add": "", "email": "alice.new@example.com"})
    mail_server.wait_for(1)
    assert not EmailAddress.objects.get(email="alice.new@example.com").verified

    again, response = sign_in("alice", "alice-password-1")

    assert response["Location"] == "/dashboard/"
    assert signed_in_as(again) == "alice"


def test_a_confirmation_link_used_once_cannot_be_used_for_another_address(signup_open, mail_server):
    sign_up(Client(), "dora", "dora@example.com")
    link = the_link(mail_server.wait_for(1)[0], "/accounts/confirm-email/")
    assert Client().post(link).status_code == 302
    sign_up(Client(), "eve", "eve@example.com")

    # The second link is eve's own; dora's link, asked again, confirms nothing else.
    assert Client().post(link).status_code in (302, 404)
    assert not EmailAddress.objects.get(email="eve@example.com").verified


# --- Sign-up closed --------------------------------------------------------------------------


def test_with_sign_up_closed_the_page_says_so_with_no_form_and_a_post_makes_no_account(
    settings, mail_server
):
    settings.SIGNUP_OPEN = False

    page = Client().get("/accounts/signup/")
    posted = sign_up(Client(), "dora", "dora@example.com")

    for response in (page, posted):
        assert response.status_code == 403
        assert b"Sign-up is closed" in response.content
        assert b"<form" not in response.content.split(b"<main")[1]
    assert not get_user_model().objects.filter(username="dora").exists()
    assert mail_server.messages == []
    assert b"Create an account" not in Client().get("/accounts/login/").content


def test_with_sign_up_open_the_sign_in_page_links_to_it_and_to_the_reset(signup_open):
    page = Client().get("/accounts/login/").content.decode()

    assert '<a href="/accounts/signup/">Create an account</a>' in page
    assert '<a href="/accounts/password/reset/">Forgot your password?</a>' in page


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DEBUG": "0"}, "False"),
        ({"DEBUG": "1"}, "True"),
        ({"DEBUG": "0", "SIGNUP_OPEN": "1"}, "True"),
        ({"DEBUG": "1", "SIGNUP_OPEN": "0"}, "False"),
    ],
)
def test_sign_up_is_closed_by_default_in_production_and_open_with_debug(env, expected):
    environment = {k: v for k, v in os.environ.items() if k != "SIGNUP_OPEN"}
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); "
            "from django.conf import settings; print(settings.SIGNUP_OPEN)",
        ],
        cwd=PROJECT,
        env={**environment, "DJANGO_SETTINGS_MODULE": "usage_site.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.stdout.strip() == expected, shown.stderr


# --- Never saying whether an address has an account -----------------------------------------


def test_sign_up_with_a_taken_address_answers_as_a_new_one_and_makes_no_account(
    signup_open, mail_server
):
    verified_user("frank", "frank@example.com")

    taken_client, new_client = Client(), Client()
    taken = sign_up(taken_client, "frank2", "Frank@Example.com")
    new = sign_up(new_client, "grace", "grace@example.com")

    assert (taken.status_code, taken["Location"]) == (new.status_code, new["Location"])
    taken_page = taken_client.get(taken["Location"])
    new_page = new_client.get(new["Location"])
    assert taken_page.status_code == new_page.status_code == 200
    assert page_text(taken_page, "Frank@Example.com") == page_text(new_page, "grace@example.com")
    assert not get_user_model().objects.filter(username="frank2").exists()
    assert EmailAddress.objects.filter(email__iexact="frank@example.com").count() == 1
    # The address's owner is told, in the mail only they can read.
    messages = mail_server.wait_for(2)
    to_frank = [m for m in messages if m["To"].lower() == "frank@example.com"]
    assert len(to_frank) == 1 and "already" in body_of(to_frank[0]).lower()


def test_a_reset_for_a_known_address_answers_as_for_an_unknown_one(mail_server):
    verified_user("frank", "frank@example.com")

    known_client, unknown_client = Client(), Client()
    known = known_client.post("/accounts/password/reset/", {"email": "frank@example.com"})
    unknown = unknown_client.post("/accounts/password/reset/", {"email": "nobody@example.com"})

    assert known.status_code == unknown.status_code == 302
    assert known["Location"] == unknown["Location"] == "/accounts/password/reset/done/"
    known_page = known_client.get(known["Location"])
    unknown_page = unknown_client.get(unknown["Location"])
    assert page_text(known_page) == page_text(unknown_page)
    messages = mail_server.wait_for(2)
    to_frank = next(m for m in messages if m["To"] == "frank@example.com")
    to_nobody = next(m for m in messages if m["To"] == "nobody@example.com")
    assert len(links_in(to_frank)) >= 1
    assert "/accounts/password/reset/key/" not in body_of(to_nobody)


# --- Password reset --------------------------------------------------------------------------


def test_a_reset_link_sets_a_new_password_once_and_the_old_one_stops_working(mail_server):
    verified_user("frank", "frank@example.com")
    Client().post("/accounts/password/reset/", {"email": "frank@example.com"})
    link = the_link(mail_server.wait_for(1)[0], "/accounts/password/reset/key/")

    client = Client()
    form = client.get(link, follow=True)  # allauth moves the key into the session first
    assert form.status_code == 200 and b"Set a new password" in form.content
    action = form.redirect_chain[-1][0]
    done = client.post(action, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    assert done["Location"] == "/accounts/password/reset/key/done/"
    assert signed_in_as(sign_in("frank", PASSWORD)[0]) is None
    assert signed_in_as(sign_in("frank", NEW_PASSWORD)[0]) == "frank"
    used = Client().get(link, follow=True)
    assert used.status_code == 200 and b"not valid" in used.content


def test_a_reset_of_one_account_leaves_the_others_passwords_alone(owner, other, mail_server):
    EmailAddress.objects.create(user=owner, email="alice@example.com", verified=True, primary=True)
    Client().post("/accounts/password/reset/", {"email": "alice@example.com"})
    link = the_link(mail_server.wait_for(1)[0], "/accounts/password/reset/key/")
    client = Client()
    action = client.get(link, follow=True).redirect_chain[-1][0]
    client.post(action, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    owner.refresh_from_db()
    other.refresh_from_db()
    assert owner.check_password(NEW_PASSWORD)
    assert other.check_password("bob-password-1")


# --- Changing one's email address ------------------------------------------------------------


def test_a_new_address_is_verified_by_its_link_made_primary_and_the_old_one_removed(
    other, mail_server
):
    user = verified_user("frank", "frank@example.com")
    bob_address = EmailAddress.objects.create(user=other, email="bob@example.com", verified=True)
    client = Client()
    client.force_login(user)

    added = client.post("/accounts/email/", {"action_add": "", "email": "frank@new.example"})
    assert added.status_code == 302
    (message,) = mail_server.wait_for(1)
    assert message["To"] == "frank@new.example"
    # Unverified, it cannot be made primary.
    client.post("/accounts/email/", {"action_primary": "", "email": "frank@new.example"})
    assert EmailAddress.objects.get_primary(user).email == "frank@example.com"

    assert client.post(the_link(message, "/accounts/confirm-email/")).status_code == 302
    client.post("/accounts/email/", {"action_primary": "", "email": "frank@new.example"})
    client.post("/accounts/email/", {"action_remove": "", "email": "frank@example.com"})

    user.refresh_from_db()
    assert user.email == "frank@new.example"
    addresses = EmailAddress.objects.filter(user=user).values_list("email", "verified", "primary")
    assert list(addresses) == [("frank@new.example", True, True)]
    bob_address.refresh_from_db()
    assert (bob_address.user, bob_address.email, bob_address.verified) == (
        other,
        "bob@example.com",
        True,
    )
    page = client.get("/accounts/email/").content.decode()
    assert "frank@new.example" in page and "bob@example.com" not in page


def test_another_user_can_neither_remove_nor_take_someone_elses_address(other, mail_server):
    user = verified_user("frank", "frank@example.com")
    bob = Client()
    bob.force_login(other)

    for action in ("action_remove", "action_primary", "action_send"):
        response = bob.post("/accounts/email/", {action: "", "email": "frank@example.com"})
        assert response.status_code in (200, 302)  # the form again, or the page: unchanged
    # Adding it answers as adding any address would (no enumeration), but it stays frank's:
    # bob's claim is unverified, and its link goes to frank's mailbox, not bob's.
    bob.post("/accounts/email/", {"action_add": "", "email": "Frank@Example.com"})
    bob.post("/accounts/email/", {"action_primary": "", "email": "Frank@Example.com"})

    franks = EmailAddress.objects.get(user=user)
    assert (franks.email, franks.verified, franks.primary) == ("frank@example.com", True, True)
    bobs = EmailAddress.objects.filter(user=other, email__iexact="frank@example.com")
    assert not bobs.filter(verified=True).exists()
    # Signing in or resetting by that address still finds frank alone.
    assert signed_in_as(sign_in("frank@example.com", PASSWORD)[0]) == "frank"


# --- Limits ----------------------------------------------------------------------------------


def statuses_of_concurrent(requests: list) -> list[int]:
    """Run each ``request()`` in its own thread, all released at once; their statuses."""
    start = threading.Barrier(len(requests))
    statuses = []

    def run(request) -> None:
        start.wait()
        try:
            statuses.append(request().status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(request,)) for request in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(statuses)


@pytest.mark.django_db(transaction=True)
def test_concurrent_resets_of_one_address_send_exactly_the_limit(throttle_rates, mail_server):
    throttle_rates(password_reset="3/hour", password_reset_address="100/hour")
    verified_user("frank", "frank@example.com")

    def reset(n: int):
        return lambda: Client(REMOTE_ADDR=f"198.51.100.{n}").post(
            "/accounts/password/reset/", {"email": "frank@example.com"}
        )

    statuses = statuses_of_concurrent([reset(n) for n in range(10)])

    assert statuses == [302] * 3 + [429] * 7
    assert len(mail_server.wait_for(3)) == 3
    refused = Client().post("/accounts/password/reset/", {"email": "FRANK@example.com"})
    assert refused.status_code == 429 and 0 < int(refused["Retry-After"]) <= 3600
    assert b"Too many reset requests" in refused.content
    assert len(mail_server.messages) == 3


@pytest.mark.django_db(transaction=True)
def test_concurrent_sign_ups_from_one_address_get_exactly_the_limit(
    signup_open, throttle_rates, mail_server
):
    throttle_rates(signup="100/hour", signup_address="4/hour")

    def attempt(n: int):
        # Passwords that do not match: each is answered with the form, and still counted.
        data = {"username": f"u{n}", "email": f"u{n}@example.com", "password1": "a"}
        return lambda: Client().post("/accounts/signup/", {**data, "password2": "b"})

    statuses = statuses_of_concurrent([attempt(n) for n in range(10)])

    assert statuses == [200] * 4 + [429] * 6
    refused = sign_up(Client(), "dora", "dora@example.com")
    assert refused.status_code == 429 and b"Too many sign-ups from here" in refused.content
    assert not get_user_model().objects.exists()
    # From another address, sign-up goes on.
    assert (
        sign_up(Client(), "dora", "dora@example.com", REMOTE_ADDR="203.0.113.9").status_code == 302
    )


def test_sign_ups_for_one_email_address_are_limited_whatever_the_client_address(
    signup_open, throttle_rates, mail_server
):
    throttle_rates(signup="2/hour", signup_address="100/hour")
    answers = [
        sign_up(Client(), f"dora{n}", "dora@example.com", REMOTE_ADDR=f"198.51.100.{n}")
        for n in range(3)
    ]

    assert [a.status_code for a in answers] == [302, 302, 429]
    assert list(get_user_model().objects.values_list("username", flat=True)) == ["dora0"]
    # One mail: allauth sends an address at most one verification (or "you already have an
    # account") mail per 3 minutes.
    mail_server.wait_for(1)
    assert len(mail_server.messages) == 1


def test_reset_requests_from_one_client_address_are_limited_across_email_addresses(
    throttle_rates, mail_server
):
    throttle_rates(password_reset="100/hour", password_reset_address="2/hour")
    answers = [
        Client().post("/accounts/password/reset/", {"email": f"n{n}@example.com"}) for n in range(3)
    ]

    assert [a.status_code for a in answers] == [302, 302, 429]
    assert len(mail_server.wait_for(2)) == 2


# --- Hostile input: a clear 4xx or the form again, never a 500 -------------------------------

HOSTILE_VALUES = ["\x00", "a" * 100_000, "é" * 5000, "@" * 300, "<script>", "' OR 1=1 --", ""]
HOSTILE_PATHS = [
    "/accounts/confirm-email/not-a-key/",
    "/accounts/confirm-email/" + "A" * 2000 + "/",
    "/accounts/confirm-email/MQ:1u:xx/",
    "/accounts/password/reset/key/1-not-a-key/",
    "/accounts/password/reset/key/zzzzzzzzzzzzzzzzzzzzzzzzzzzz-set-password/",
    "/accounts/password/reset/key/" + "9" * 300 + "-" + "k" * 3000 + "/",
    "/accounts/password/reset/key/0-%00/",
]


@pytest.mark.parametrize("path", HOSTILE_PATHS)
def test_bad_keys_in_links_get_a_page_saying_so_and_change_nothing(path, owner):
    client = Client(raise_request_exception=False)
    got = client.get(path, follow=True)
    posted = client.post(path, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    assert got.status_code in (200, 404) and posted.status_code in (200, 302, 404)
    assert b"not valid" in got.content or got.status_code == 404
    owner.refresh_from_db()
    assert owner.check_password("alice-password-1")
    assert not EmailAddress.objects.filter(verified=True).exists()


@pytest.mark.parametrize("value", HOSTILE_VALUES, ids=range(len(HOSTILE_VALUES)))
@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/accounts/login/", "username"),
        ("/accounts/signup/", "email"),
        ("/accounts/signup/", "username"),
        ("/accounts/password/reset/", "email"),
    ],
)
def test_odd_form_values_get_the_form_again_never_a_500(
    path, field, value, signup_open, owner, mail_server
):
    client = Client(raise_request_exception=False)
    data = {"username": "x", "email": "x@example.com", "password": "p", "password1": "p"}
    response = client.post(path, {**data, "password2": "q", field: value})

    assert response.status_code == 200, response.content[:300]
    assert get_user_model().objects.count() == 1
    assert mail_server.messages == []


def test_a_form_body_that_is_not_a_form_is_answered_clearly(signup_open, owner):
    client = Client(raise_request_exception=False)
    for path in ("/accounts/login/", "/accounts/signup/", "/accounts/password/reset/"):
        for body, content_type in [
            (b"\xff\xfe\x00garbage", "application/x-www-form-urlencoded"),
            (b'{"email": "alice@example.com"}', "application/json"),
            (b"--x\r\n\r\n", "multipart/form-data; boundary=x"),
            (b"email=" + b"a" * (2 * 1024 * 1024), "application/x-www-form-urlencoded"),
        ]:
            response = client.generic("POST", path, body, content_type=content_type)
            assert 200 <= response.status_code < 500, (path, content_type, response.status_code)
    assert get_user_model().objects.count() == 1
