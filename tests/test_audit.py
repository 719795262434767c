"""The audit log (usage.audit, AuditEvent): who created and revoked tokens, and staff reading
another user's usage; a token's last use; the admin's read-only audit pages."""

import json

import pytest
from django.core.management import call_command
from django.test import Client

from tests.conftest import bearer, post_usage
from usage.models import ApiToken, AuditEvent
from usage.tokens import create_token, revoke_token

pytestmark = pytest.mark.django_db

AUDIT_URL = "/admin/usage/auditevent/"
ADDRESS = "198.51.100.4"


def browser(user) -> Client:
    client = Client(REMOTE_ADDR=ADDRESS)
    client.force_login(user)
    return client


def events() -> list[tuple]:
    """Every event, oldest first, as (action, actor, actor_name, subject, subject_name,
    detail, address)."""
    return list(
        AuditEvent.objects.order_by("at", "id").values_list(
            "action", "actor", "actor_name", "subject", "subject_name", "detail", "address"
        )
    )


def token_detail(token: ApiToken) -> str:
    return f"{token.display_prefix} “{token.name}”"


def has_used_tokens(standin, username: str) -> None:
    """The upstream knows ``username`` (it answers 404 for users it has no usage of)."""
    standin.generate(json.dumps({"userId": username, "prompt": "A word counter"}).encode())


# --- Tokens ----------------------------------------------------------------------------------


def test_a_token_created_on_the_dashboard_names_its_creator_and_address(owner):
    response = browser(owner).post("/dashboard/tokens/", {"name": "Studio PC"})

    assert response.status_code == 303
    token = ApiToken.objects.get(owner=owner)
    assert events() == [
        ("token_created", owner.pk, "alice", owner.pk, "alice", token_detail(token), ADDRESS)
    ]
    assert token.display_prefix.startswith("usg_") and len(token.display_prefix) == 12


def test_a_token_created_on_the_command_line_has_no_actor(owner, capsys):
    call_command("create_api_token", "alice", "--name", "CI runner")

    token = ApiToken.objects.get(owner=owner)
    assert token.display_prefix in capsys.readouterr().out
    assert events() == [
        ("token_created", None, "(command line)", owner.pk, "alice", token_detail(token), "")
    ]


def test_a_token_revoked_on_the_dashboard_names_who_and_where(owner, owner_token):
    client = browser(owner)
    AuditEvent.objects.all().delete()  # the fixture's creation

    response = client.post(f"/dashboard/tokens/{owner_token.token.pk}/revoke/")

    assert response.status_code == 303
    token = ApiToken.objects.get(pk=owner_token.token.pk)
    assert token.revoked_at is not None
    assert events() == [
        ("token_revoked", owner.pk, "alice", owner.pk, "alice", token_detail(token), ADDRESS)
    ]


def test_a_token_revoked_twice_is_logged_once(owner, owner_token):
    AuditEvent.objects.all().delete()

    revoke_token(owner_token.token)
    revoke_token(ApiToken.objects.get(pk=owner_token.token.pk))

    assert [(e[0], e[2]) for e in events()] == [("token_revoked", "(command line)")]


def test_the_admins_revoke_action_logs_the_admin_as_actor(staff, owner, owner_token, other_token):
    AuditEvent.objects.all().delete()
    # Bob's token is already revoked: the action leaves it, and logs nothing for it.
    revoke_token(other_token.token)
    AuditEvent.objects.all().delete()

    response = browser(staff).post(
        "/admin/usage/apitoken/",
        {"action": "revoke", "_selected_action": [owner_token.token.pk, other_token.token.pk]},
    )

    assert response.status_code == 302
    detail = token_detail(owner_token.token)
    assert events() == [("token_revoked", staff.pk, "carol", owner.pk, "alice", detail, ADDRESS)]


def test_another_users_token_cannot_be_revoked_and_nothing_is_logged(owner, other, other_token):
    AuditEvent.objects.all().delete()

    response = browser(owner).post(f"/dashboard/tokens/{other_token.token.pk}/revoke/")

    assert response.status_code == 404
    assert ApiToken.objects.get(pk=other_token.token.pk).revoked_at is None
    assert events() == []


def test_each_event_is_also_one_line_in_the_audit_log(owner, caplog):
    with caplog.at_level("INFO", logger="usage.audit"):
        new = create_token(owner, "Laptop", actor=owner)
    lines = [r.getMessage() for r in caplog.records if r.name == "usage.audit"]

    assert len(lines) == 1
    assert "token_created actor=alice subject=alice address=-" in lines[0]
    assert new.token.display_prefix in lines[0] and new.raw not in lines[0]


def test_an_event_keeps_its_names_when_its_users_are_deleted(owner, staff, owner_token):
    revoke_token(owner_token.token, actor=staff)

    staff.delete()
    owner.delete()

    event = AuditEvent.objects.get(action="token_revoked")
    assert (event.actor, event.actor_name, event.subject, event.subject_name) == (
        None,
        "carol",
        None,
        "alice",
    )


# --- A token's last use ----------------------------------------------------------------------


def test_ingestion_stores_when_and_from_where_the_token_was_last_used(owner_token):
    assert owner_token.token.last_used_at is None
    response = post_usage(
        bearer(owner_token), {"model": "SD", "count": 1}, REMOTE_ADDR="203.0.113.7"
    )

    assert response.status_code == 201
    token = ApiToken.objects.get(pk=owner_token.token.pk)
    assert token.last_used_at is not None
    assert token.last_used_address == "203.0.113.7"


def test_behind_a_trusted_proxy_the_last_used_address_is_the_forwarded_one(owner_token, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}

    post_usage(
        bearer(owner_token),
        {"model": "SD", "count": 1},
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.8",
    )

    assert ApiToken.objects.get(pk=owner_token.token.pk).last_used_address == "203.0.113.8"


def test_the_admin_token_list_shows_the_last_used_address(staff, owner_token):
    post_usage(bearer(owner_token), {"model": "SD", "count": 1}, REMOTE_ADDR="203.0.113.7")

    page = browser(staff).get("/admin/usage/apitoken/")

    assert page.status_code == 200
    assert "203.0.113.7" in page.content.decode()


# --- Staff reading another user's usage ------------------------------------------------------

DASHBOARD_READS = [
    "/dashboard/?user=alice",
    "/dashboard/?days=7&user=alice",
    "/dashboard/data/?user=alice&days=30&tz=UTC",
    "/dashboard/export.csv?user=alice",
    "/dashboard/daily-totals.csv?user=alice&days=7",
]


@pytest.mark.parametrize("path", DASHBOARD_READS)
def test_staff_reading_another_users_dashboard_is_logged_with_the_path(owner, staff, path):
    AuditEvent.objects.all().delete()

    response = browser(staff).get(path)

    assert response.status_code == 200
    assert events() == [("staff_viewed", staff.pk, "carol", owner.pk, "alice", path, ADDRESS)]


def test_each_read_is_an_event_of_its_own(owner, staff):
    client = browser(staff)
    for path in DASHBOARD_READS:
        client.get(path)

    assert [e[5] for e in events() if e[0] == "staff_viewed"] == DASHBOARD_READS


def test_staff_reading_another_users_token_usage_is_logged(upstream, owner, staff):
    has_used_tokens(upstream, "alice")
    response = browser(staff).get("/api/user/token-usage?userId=alice")

    assert response.status_code == 200
    assert response.json()["userId"] == "alice"
    path = "/api/user/token-usage?userId=alice"
    assert events() == [("staff_viewed", staff.pk, "carol", owner.pk, "alice", path, ADDRESS)]


def test_token_usage_of_a_name_nobody_here_has_is_logged_with_the_name(upstream, staff):
    browser(staff).get("/api/user/token-usage?userId=ghost")

    path = "/api/user/token-usage?userId=ghost"
    assert events() == [("staff_viewed", staff.pk, "carol", None, "ghost", path, ADDRESS)]


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/",
        "/dashboard/?user=carol",
        "/dashboard/data/?user=carol",
        "/dashboard/export.csv",
        "/dashboard/daily-totals.csv?user=carol",
        "/api/user/token-usage",
        "/api/user/token-usage?userId=carol",
    ],
)
def test_staff_reading_their_own_usage_is_not_logged(upstream, staff, path):
    has_used_tokens(upstream, "carol")
    response = browser(staff).get(path)

    assert response.status_code == 200
    assert events() == []


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/?user=bob",
        "/dashboard/data/?user=bob",
        "/dashboard/export.csv?user=bob",
        "/dashboard/daily-totals.csv?user=bob",
        "/api/user/token-usage?userId=bob",
    ],
)
def test_a_non_staff_users_attempt_to_read_another_is_refused_and_not_logged(
    upstream, owner, other, path
):
    AuditEvent.objects.all().delete()

    response = browser(owner).get(path)

    assert response.status_code == 403
    assert events() == []


def test_a_token_reading_its_own_usage_is_not_logged(upstream, owner, owner_api):
    has_used_tokens(upstream, "alice")
    AuditEvent.objects.all().delete()

    assert owner_api.get("/api/user/token-usage?userId=alice").status_code == 200
    assert events() == []


# --- The admin's audit pages -----------------------------------------------------------------


@pytest.fixture
def logged(owner, staff) -> AuditEvent:
    """One event: carol revoked one of alice's tokens."""
    revoke_token(create_token(owner, "Laptop").token, actor=staff)
    return AuditEvent.objects.get(action="token_revoked")


def test_a_superuser_reads_the_audit_log(staff, logged):
    page = browser(staff).get(AUDIT_URL)

    assert page.status_code == 200
    content = page.content.decode()
    assert logged.detail in content and "carol" in content
    assert f"{AUDIT_URL}add/" not in content
    assert "delete_selected" not in content


def test_a_superuser_cannot_add_an_event(staff, logged):
    client = browser(staff)

    assert client.get(f"{AUDIT_URL}add/").status_code == 403
    posted = client.post(f"{AUDIT_URL}add/", {"action": "token_created", "actor_name": "x"})
    assert posted.status_code == 403
    assert AuditEvent.objects.count() == 2  # the token's creation and its revocation


def test_a_superuser_can_view_an_event_but_not_change_it(staff, logged):
    client = browser(staff)
    url = f"{AUDIT_URL}{logged.pk}/change/"

    page = client.get(url)
    posted = client.post(url, {"action": "token_created", "actor_name": "mallory", "detail": "x"})

    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()  # a view, not a form
    assert posted.status_code == 403
    logged.refresh_from_db()
    assert (logged.action, logged.actor_name) == ("token_revoked", "carol")


def test_a_superuser_cannot_delete_an_event(staff, logged):
    client = browser(staff)

    assert client.get(f"{AUDIT_URL}{logged.pk}/delete/").status_code == 403
    assert client.post(f"{AUDIT_URL}{logged.pk}/delete/", {"post": "yes"}).status_code == 403
    client.post(AUDIT_URL, {"action": "delete_selected", "_selected_action": [logged.pk]})
    assert AuditEvent.objects.filter(pk=logged.pk).exists()


def test_the_audit_log_admin_grants_view_only(rf, staff):
    from django.contrib import admin

    model_admin = admin.site._registry[AuditEvent]
    request = rf.get(AUDIT_URL)
    request.user = staff

    assert model_admin.has_view_permission(request)
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)


def test_users_without_staff_rights_do_not_see_the_audit_log(owner, logged):
    response = browser(owner).get(AUDIT_URL)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
