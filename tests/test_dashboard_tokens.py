"""The API tokens page: list, create (shown once), revoke with confirmation."""

import re
from datetime import UTC, datetime

import pytest
from django.test import Client

from dashboard.views import NEW_TOKEN_SECONDS
from tests.conftest import post_usage
from usage.models import ApiToken, AuditEvent, UsageRecord
from usage.tokens import MAX_ACTIVE_TOKENS, create_token, revoke_token


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
    created = client.post("/dashboard/tokens/", {"name": "Studio PC"})
    assert created.status_code == 303
    assert created["Location"] == "/dashboard/tokens/"  # the secret is never in an address
    response = client.get(created["Location"])
    assert response.status_code == 200
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

    # Shown once: a reload has the prefix only, and the session keeps no copy.
    again = client.get("/dashboard/tokens/")
    assert raw.encode() not in again.content
    assert token.display_prefix.encode() in again.content
    assert raw not in str(dict(client.session))


def test_reloading_the_page_that_shows_the_secret_makes_no_second_token(owner):
    client = client_for(owner)
    client.post("/dashboard/tokens/", {"name": "Studio PC"}, follow=True)
    # What a browser's reload does after post/redirect/get: the GET, again.
    client.get("/dashboard/tokens/")
    client.get("/dashboard/tokens/")
    assert list(ApiToken.objects.values_list("name", flat=True)) == ["Studio PC"]


def test_a_secret_left_unseen_expires_from_the_session(owner, time_machine):
    time_machine.move_to(datetime.now(UTC))
    client = client_for(owner)
    client.post("/dashboard/tokens/", {"name": "Studio PC"})
    time_machine.shift(NEW_TOKEN_SECONDS + 1)
    assert b'data-testid="new-token"' not in client.get("/dashboard/tokens/").content


def test_another_users_session_never_shows_your_new_secret(owner, other):
    client_for(owner).post("/dashboard/tokens/", {"name": "Studio PC"})
    response = client_for(other).get("/dashboard/tokens/")
    assert b'data-testid="new-token"' not in response.content


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
    assert (response.status_code, response["Location"]) == (303, "/dashboard/tokens/")
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


# --- Renaming --------------------------------------------------------------------------------


def rename_url(token) -> str:
    return f"/dashboard/tokens/{token.pk}/rename/"


def remove_url(token) -> str:
    return f"/dashboard/tokens/{token.pk}/remove/"


def audit_trail(action) -> list[tuple[str, str, str]]:
    events = AuditEvent.objects.filter(action=action).order_by("id")
    return list(events.values_list("actor_name", "subject_name", "detail"))


def test_a_token_can_be_renamed_and_the_rename_is_audited(owner, owner_token):
    client = client_for(owner)
    response = client.post(rename_url(owner_token.token), {"name": "  Studio PC  "})
    assert (response.status_code, response["Location"]) == (303, "/dashboard/tokens/")
    owner_token.token.refresh_from_db()
    assert owner_token.token.name == "Studio PC"
    prefix = owner_token.token.display_prefix
    assert audit_trail(AuditEvent.Action.TOKEN_RENAMED) == [
        ("alice", "alice", f"{prefix} “Work laptop” → “Studio PC”")
    ]
    listing = client.get("/dashboard/tokens/")
    assert b"Renamed \xe2\x80\x9cWork laptop\xe2\x80\x9d to \xe2\x80\x9cStudio PC" in (
        listing.content
    )
    # The token still works under its new name.
    api = Client(HTTP_AUTHORIZATION=f"Bearer {owner_token.raw}")
    assert post_usage(api, {"model": "SDXL", "imageCount": 1}).status_code == 201


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_a_rename_needs_a_sensible_name(owner, owner_token, name):
    response = client_for(owner).post(rename_url(owner_token.token), {"name": name})
    assert response.status_code == 400
    assert b'data-testid="token-problem"' in response.content
    owner_token.token.refresh_from_db()
    assert owner_token.token.name == "Work laptop"
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.TOKEN_RENAMED).exists()


def test_nobody_can_rename_another_users_token(other, owner_token):
    client = client_for(other)
    assert client.post(rename_url(owner_token.token), {"name": "Mine now"}).status_code == 404
    owner_token.token.refresh_from_db()
    assert owner_token.token.name == "Work laptop"
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.TOKEN_RENAMED).exists()


def test_renaming_needs_a_csrf_token_and_a_post(owner, owner_token):
    url = rename_url(owner_token.token)
    assert client_for(owner, csrf=True).post(url, {"name": "Studio PC"}).status_code == 403
    assert client_for(owner).get(url, {"name": "Studio PC"}).status_code == 405
    owner_token.token.refresh_from_db()
    assert owner_token.token.name == "Work laptop"


# --- Removing revoked tokens from the list ---------------------------------------------------


def test_a_removed_token_leaves_the_list_but_its_row_records_and_audit_trail_stay(
    owner, owner_token
):
    api = Client(HTTP_AUTHORIZATION=f"Bearer {owner_token.raw}")
    assert post_usage(api, {"model": "SDXL", "imageCount": 3}).status_code == 201
    revoke_token(owner_token.token, actor=owner)
    client = client_for(owner)
    prefix = owner_token.token.display_prefix

    response = client.post(remove_url(owner_token.token))

    assert (response.status_code, response["Location"]) == (303, "/dashboard/tokens/")
    listing = client.get("/dashboard/tokens/")
    assert prefix.encode() in listing.content  # only in the message that says so
    assert b'data-testid="token-list"' not in listing.content
    token = ApiToken.objects.get(pk=owner_token.token.pk)
    assert token.removed_at is not None
    assert UsageRecord.objects.get().token == token
    assert [action for (action,) in AuditEvent.objects.order_by("id").values_list("action")] == [
        "token_created",
        "token_revoked",
        "token_removed",
    ]
    assert audit_trail(AuditEvent.Action.TOKEN_REMOVED) == [
        ("alice", "alice", f"{prefix} “Work laptop”")
    ]
    # Gone from every page of the list: it cannot be renamed, removed or revoked again.
    assert client.post(remove_url(token)).status_code == 404
    assert client.post(rename_url(token), {"name": "x"}).status_code == 404
    assert client.get(f"/dashboard/tokens/{token.pk}/revoke/").status_code == 404
    assert AuditEvent.objects.filter(action="token_removed").count() == 1


def test_an_active_token_cannot_be_removed(owner, owner_token):
    response = client_for(owner).post(remove_url(owner_token.token))
    assert response.status_code == 409
    assert b"Only a revoked token can be removed" in response.content
    owner_token.token.refresh_from_db()
    assert owner_token.token.removed_at is None
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.TOKEN_REMOVED).exists()


def test_nobody_can_remove_another_users_token(other, owner_token):
    revoke_token(owner_token.token)
    client = client_for(other)
    assert client.post(remove_url(owner_token.token)).status_code == 404
    owner_token.token.refresh_from_db()
    assert owner_token.token.removed_at is None
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.TOKEN_REMOVED).exists()


def test_removing_needs_a_csrf_token(owner, owner_token):
    revoke_token(owner_token.token)
    assert client_for(owner, csrf=True).post(remove_url(owner_token.token)).status_code == 403
    owner_token.token.refresh_from_db()
    assert owner_token.token.removed_at is None


def test_only_revoked_tokens_offer_remove_and_every_token_offers_rename(owner, owner_token):
    revoked = create_token(owner, "Old desktop").token
    revoke_token(revoked)
    content = client_for(owner).get("/dashboard/tokens/").content.decode()
    assert f'action="{remove_url(revoked)}"' in content
    assert f'action="{remove_url(owner_token.token)}"' not in content
    assert f'action="{rename_url(revoked)}"' in content
    assert f'action="{rename_url(owner_token.token)}"' in content
