"""Changing one's password: wrong guesses of the current password are limited per user, on
the site's page and the admin's, and past the limit a right guess is answered as a wrong one."""

import re
import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

NEW = "Brand-new-pass-83"
CSRF_VALUE = re.compile(rb'name="csrfmiddlewaretoken" value="[^"]+"')
PAGES = ["/accounts/password/", "/admin/password_change/"]


@pytest.fixture
def limit(throttle_rates) -> int:
    throttle_rates(password_change="3/hour")
    return 3


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def change(client: Client, old: str, page: str = PAGES[0], new: str = NEW):
    return client.post(page, {"old_password": old, "new_password1": new, "new_password2": new})


def page_text(response) -> bytes:
    """The answer's body, without the CSRF token, which is masked afresh on every page."""
    return CSRF_VALUE.sub(b"", response.content)


def password_of(user) -> str:
    user.refresh_from_db()
    return "old" if user.check_password("carol-password-1") else "changed"


@pytest.mark.parametrize("page", PAGES)
def test_wrong_guesses_past_the_limit_get_429_and_a_right_one_is_answered_the_same(
    staff, limit, page
):
    client = signed_in(staff)

    wrong = [change(client, f"guess-{n}", page) for n in range(limit)]
    refused_wrong = change(client, "guess-again", page)
    refused_right = change(client, "carol-password-1", page)

    assert [r.status_code for r in wrong] == [200] * limit
    assert b"incorrect" in wrong[0].content
    assert (refused_wrong.status_code, refused_right.status_code) == (429, 429)
    assert 0 < int(refused_right["Retry-After"]) <= 3600
    assert b"Too many wrong passwords" in refused_right.content
    assert page_text(refused_right) == page_text(refused_wrong)
    assert password_of(staff) == "old"


def test_right_guesses_do_not_count(staff, limit):
    client = signed_in(staff)

    # The current password right, the new one refused: the form comes back, uncounted.
    refused_new = [change(client, "carol-password-1", new="123") for _ in range(2 * limit)]
    wrong = [change(client, f"guess-{n}", PAGES[0]) for n in range(limit)]
    changed = change(client, "carol-password-1", PAGES[1])

    assert [r.status_code for r in refused_new] == [200] * 2 * limit
    assert [r.status_code for r in wrong] == [200] * limit
    assert changed.status_code == 429  # the two pages share the one count
    assert password_of(staff) == "old"


def test_a_right_guess_within_the_limit_changes_the_password(staff, limit):
    client = signed_in(staff)
    for n in range(limit - 1):
        change(client, f"guess-{n}")

    response = change(client, "carol-password-1")

    assert response.status_code == 302
    assert password_of(staff) == "changed"


def test_one_users_wrong_guesses_do_not_limit_another(owner, other, limit):
    for n in range(limit + 1):
        change(signed_in(owner), f"guess-{n}")

    response = change(signed_in(other), "bob-password-1")

    assert response.status_code == 302


@pytest.mark.django_db(transaction=True)
def test_concurrent_wrong_guesses_never_pass_the_limit(limit):
    user = get_user_model().objects.create_user("erin", password="erin-password-1")
    clients = [signed_in(user) for _ in range(12)]
    start = threading.Barrier(len(clients))
    statuses = []

    def guess(client: Client, n: int) -> None:
        start.wait()
        try:
            statuses.append(change(client, f"guess-{n}").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=guess, args=(c, n)) for n, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200] * limit + [429] * (len(clients) - limit)
    assert change(signed_in(user), "erin-password-1").status_code == 429
