"""API tokens: format, hashed storage, lookup, revocation and last-used tracking."""

import re
import threading
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.utils import timezone

from usage import tokens
from usage.models import ApiToken, AuditEvent
from usage.tokens import (
    LAST_USED_PRECISION,
    MAX_ACTIVE_TOKENS,
    TokenStillActive,
    TooManyTokens,
    checked_token,
    create_token,
    find_active_token,
    hash_token,
    remove_token,
    rename_token,
    revoke_token,
    touch_last_used,
)

pytestmark = pytest.mark.django_db


def test_a_raw_token_is_usg_and_a_prefix_and_a_long_random_secret(owner):
    raw = create_token(owner, "Laptop").raw
    assert re.fullmatch(r"usg_[A-Za-z0-9]{8}[A-Za-z0-9_-]{43}", raw)


def test_only_a_hash_of_the_token_is_stored(owner):
    new = create_token(owner, "Laptop")
    row = ApiToken.objects.values().get(pk=new.token.pk)
    assert row["secret_hash"] == hash_token(new.raw)
    assert all(
        new.raw not in str(value) and new.raw[12:] not in str(value) for value in row.values()
    )
    assert row["prefix"] == new.raw[4:12]


def test_two_tokens_never_share_a_prefix_or_a_secret(owner):
    tokens = [create_token(owner, f"t{n}") for n in range(20)]
    assert len({t.token.prefix for t in tokens}) == 20
    assert len({t.raw for t in tokens}) == 20


def test_the_raw_token_finds_its_row_with_the_owner(owner):
    new = create_token(owner, "Laptop")
    found = find_active_token(new.raw)
    assert found.pk == new.token.pk
    assert found.owner == owner


@pytest.mark.parametrize(
    "mangle",
    [
        lambda raw: raw[:-1],
        lambda raw: raw + "x",
        lambda raw: raw.upper(),
        lambda raw: raw[:12] + "A" * (len(raw) - 12),
        lambda raw: "usg_" + "A" * 8 + raw[12:],
        lambda raw: raw.replace("usg_", "abc_"),
        lambda raw: "",
    ],
)
def test_anything_but_the_exact_token_finds_nothing(owner, mangle):
    new = create_token(owner, "Laptop")
    assert find_active_token(mangle(new.raw)) is None


def test_a_revoked_token_finds_nothing_and_keeps_its_row(owner):
    new = create_token(owner, "Laptop")
    revoke_token(new.token)
    assert find_active_token(new.raw) is None
    assert ApiToken.objects.get(pk=new.token.pk).revoked_at is not None


def test_last_used_is_written_at_most_once_a_minute(owner, django_assert_num_queries):
    token = create_token(owner, "Laptop").token
    with django_assert_num_queries(1):
        touch_last_used(token, "192.0.2.7")
    first = ApiToken.objects.get(pk=token.pk).last_used_at
    with django_assert_num_queries(0):
        touch_last_used(token, "192.0.2.7")
    token.last_used_at = timezone.now() - LAST_USED_PRECISION - timedelta(seconds=1)
    with django_assert_num_queries(1):
        touch_last_used(token, "192.0.2.7")
    stored = ApiToken.objects.get(pk=token.pk)
    assert stored.last_used_at > first
    assert stored.last_used_address == "192.0.2.7"


def test_no_way_of_creating_a_token_passes_the_limit_of_active_tokens(owner):
    for number in range(MAX_ACTIVE_TOKENS):
        create_token(owner, f"token {number}")

    with pytest.raises(TooManyTokens, match="the most allowed"):
        create_token(owner, "one more")
    with pytest.raises(CommandError, match="the most allowed"):
        call_command("create_api_token", owner.username, "--name", "from the shell")

    assert ApiToken.objects.filter(owner=owner).count() == MAX_ACTIVE_TOKENS


def test_a_revoked_token_makes_room_for_a_new_one(owner):
    tokens = [create_token(owner, f"token {number}") for number in range(MAX_ACTIVE_TOKENS)]
    revoke_token(tokens[0].token)

    create_token(owner, "replacement")

    active = ApiToken.objects.filter(owner=owner, revoked_at__isnull=True)
    assert active.count() == MAX_ACTIVE_TOKENS


def test_a_token_revoked_on_another_server_stops_working_here_within_a_second(owner, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(tokens, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    new = create_token(owner, "Laptop")
    assert checked_token(new.raw) == new.token
    # Another server revokes it: this process's memory of the token is not told.
    ApiToken.objects.filter(pk=new.token.pk).update(revoked_at=timezone.now())

    clock[0] += 0.9
    still_trusted = checked_token(new.raw)
    clock[0] += 0.1  # the promise: within one second on every server

    assert still_trusted == new.token
    assert checked_token(new.raw) is None


def test_a_token_revoked_here_stops_working_here_at_once(owner):
    new = create_token(owner, "Laptop")
    assert checked_token(new.raw) == new.token

    revoke_token(new.token)

    assert checked_token(new.raw) is None


def test_unknown_tokens_are_not_remembered(owner):
    raw = create_token(owner, "Laptop").raw
    forged = raw[:-1] + ("A" if raw[-1] != "A" else "B")

    assert checked_token(forged) is None
    assert hash_token(forged) not in tokens._checked


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SQLite writes one transaction at a time, so the race cannot happen there",
)
def test_ten_concurrent_creations_past_18_active_tokens_leave_exactly_20(owner, throttle_rates):
    throttle_rates(token_create="100/hour")
    for number in range(MAX_ACTIVE_TOKENS - 2):
        create_token(owner, f"token {number}")
    start = threading.Barrier(10)
    statuses = []

    def create(n: int) -> None:
        client = Client()
        client.force_login(owner)
        start.wait()
        try:
            statuses.append(client.post("/dashboard/tokens/", {"name": f"race {n}"}).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [303] * 2 + [400] * 8
    assert ApiToken.objects.filter(owner=owner, revoked_at__isnull=True).count() == 20


def test_a_removed_token_stays_revoked_and_is_removed_once(owner, owner_token):
    token = owner_token.token
    revoke_token(token)
    remove_token(token)
    first = ApiToken.objects.get(pk=token.pk).removed_at
    remove_token(ApiToken.objects.get(pk=token.pk))

    assert ApiToken.objects.get(pk=token.pk).removed_at == first
    assert find_active_token(owner_token.raw) is None
    assert AuditEvent.objects.filter(action=AuditEvent.Action.TOKEN_REMOVED).count() == 1


def test_a_live_token_is_never_removed(owner_token):
    with pytest.raises(TokenStillActive):
        remove_token(owner_token.token)

    assert ApiToken.objects.get(pk=owner_token.token.pk).removed_at is None
    assert find_active_token(owner_token.raw) == owner_token.token


def test_renaming_to_the_same_name_records_nothing(owner_token):
    rename_token(owner_token.token, "Work laptop")

    assert not AuditEvent.objects.filter(action=AuditEvent.Action.TOKEN_RENAMED).exists()
