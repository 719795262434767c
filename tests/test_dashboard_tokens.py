"""The API tokens page: list, create (shown once), revoke with confirmation."""

import re

import pytest
from django.test import Client

from tests.conftest import post_usage
from usage.models import ApiToken, UsageRecord
from usage.tokens import MAX_ACTIVE_TOKENS, create_token


def client_for(user, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def raw_token_in(response) -> str:
    match = re.search(rb'data-testid="new-token">(usg_[A-Za-z0-9_-]+)<', response.content)
    assert match, "no new token on the page"
    return match.group(1).decode()


def test_the_list_shows_only_your_own_tokens(owner, owner_token, other_token):
    response = client_for(owner).get("/dashboard/tokens/")
    assert response.status_code == 200
    assert b"Work laptop" in response.content
    assert owner_token.token.display_prefix.encode() in response.content
    assert (
        b"Bob&#x27;s desktop" not in response.content and b"Bob's desktop" not in response.content
    )
    assert other_token.token.display_prefix.encode() not in response.content
    # The secret itself is never on the list.
    assert owner_token.raw.encode() not in response.content


def test_a_created_token_is_shown_once_with_the_header_line_and_works(owner):
    client = client_for(owner)
    response = client.post("/dashboard/tokens/", {"name": "Studio PC"})
    assert response.status_code == 201
    assert "no-store" in response["Cache-Control"]
    raw = raw_token_in(response)
    assert f"Authorization: Bearer {raw}".encode() in response.content
    assert b"http://testserver/api/model-usage" in response.content
    token = ApiToken.objects.get(owner=owner)
    assert token.name == "Studio PC" and raw.startswith(token.display_prefix)

    api = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    posted = post_usage(api, {"model": "SDXL", "imageCount": 2})
    assert posted.status_code == 201
    assert UsageRecord.objects.get().owner == owner

    # Shown once: the list afterwards has the prefix only.
    again = client.get("/dashboard/tokens/")
    assert raw.encode() not in again.content
    assert token.display_prefix.encode() in again.content


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_a_token_needs_a_sensible_name(owner, name):
    response = client_for(owner).post("/dashboard/tokens/", {"name": name})
    assert response.status_code == 400
    assert b'class="field-error" role="alert"' in response.content
    assert not ApiToken.objects.exists()


def test_there_is_a_limit_on_active_tokens(owner):
    for number in range(MAX_ACTIVE_TOKENS):
        create_token(owner, f"token {number}")
    response = client_for(owner).post("/dashboard/tokens/", {"name": "one more"})
    assert response.status_code == 400
    assert b"the most allowed" in response.content
    assert ApiToken.objects.filter(owner=owner).count() == MAX_ACTIVE_TOKENS


def test_creating_a_token_needs_a_csrf_token(owner):
    response = client_for(owner, csrf=True).post("/dashboard/tokens/", {"name": "Studio PC"})
    assert response.status_code == 403
    assert not ApiToken.objects.exists()


def test_revoking_asks_first_then_the_token_gets_401(owner, owner_token):
    client = client_for(owner)
    url = f"/dashboard/tokens/{owner_token.token.pk}/revoke/"
    confirm = client.get(url)
    assert confirm.status_code == 200
    assert b"Revoke token" in confirm.content and b'method="post"' in confirm.content
    owner_token.token.refresh_from_db()
    assert owner_token.token.revoked_at is None  # a GET changes nothing

    api = Client(HTTP_AUTHORIZATION=f"Bearer {owner_token.raw}")
    assert post_usage(api, {"model": "SDXL", "imageCount": 1}).status_code == 201
    response = client.post(url)
    assert response["Location"] == "/dashboard/tokens/"
    assert post_usage(api, {"model": "SDXL", "imageCount": 1}).status_code == 401
    assert UsageRecord.objects.count() == 1
    listing = client.get("/dashboard/tokens/")
    assert b"revoked" in listing.content and b"Revoked \xe2\x80\x9cWork laptop" in listing.content


def test_nobody_can_revoke_another_users_token(other, owner_token):
    client = client_for(other)
    url = f"/dashboard/tokens/{owner_token.token.pk}/revoke/"
    assert client.get(url).status_code == 404
    assert client.post(url).status_code == 404
    owner_token.token.refresh_from_db()
    assert owner_token.token.revoked_at is None


def test_revoking_needs_a_csrf_token(owner, owner_token):
    url = f"/dashboard/tokens/{owner_token.token.pk}/revoke/"
    assert client_for(owner, csrf=True).post(url).status_code == 403
    owner_token.token.refresh_from_db()
    assert owner_token.token.revoked_at is None


def test_token_names_are_escaped(owner):
    create_token(owner, "<img src=x onerror=alert(1)>")
    response = client_for(owner).get("/dashboard/tokens/")
    assert b"<img src=x" not in response.content
    assert b"&lt;img src=x onerror=alert(1)&gt;" in response.content
