"""POST /api/model-usage: the field table, aliases, outcomes, limits and idempotency."""

import json
import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.conftest import bearer, post_usage
from usage import tokens
from usage.models import DailyUsageRollup, UsageRecord, UsageRollup
from usage.tokens import create_token, revoke_token

pytestmark = pytest.mark.django_db


def stored(owner=None):
    records = UsageRecord.objects.order_by("id")
    if owner is not None:
        records = records.filter(owner=owner)
    return list(records.values_list("model", "image_count"))


def errors_of(response):
    return [(e["index"], e["field"]) for e in response.json()["errors"]]


# --- One record, the seed's example, and the response shape ---------------------------


def test_the_desktop_apps_example_request_is_stored_and_summarised(owner, owner_api):
    response = post_usage(
        owner_api,
        {"modelName": "Stable Diffusion", "imageCount": 5, "userId": "alice"},
        HTTP_X_USER_ID="alice",
    )
    assert response.status_code == 201
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": 0, "errors": []}
    assert stored(owner) == [("Stable Diffusion", 5)]
    summary = owner_api.get("/api/model-usage/summary").json()
    assert (summary["totals"]["images"], summary["totals"]["events"]) == (5, 1)
    assert [(m["model"], m["images"], m["events"]) for m in summary["models"]] == [
        ("Stable Diffusion", 5, 1)
    ]


def test_trailing_slash_posts_the_same_without_a_redirect(owner, owner_api):
    response = owner_api.post(
        "/api/model-usage/",
        data=json.dumps({"model": "Flux", "count": 1}),
        content_type="application/json",
    )
    assert response.status_code == 201
    assert stored(owner) == [("Flux", 1)]


def test_a_record_keeps_its_token_and_both_times(owner, owner_token, owner_api):
    before = timezone.now()
    post_usage(
        owner_api, {"modelName": "Flux", "imageCount": 2, "timestamp": "2026-01-02T03:04:05+02:00"}
    )
    record = UsageRecord.objects.get()
    assert record.token_id == owner_token.token.pk
    assert record.received_at >= before


# --- Field table: model name ----------------------------------------------------------


@pytest.mark.parametrize("key", ["modelName", "model"])
def test_model_name_is_accepted_under_both_keys_and_trimmed(owner, owner_api, key):
    response = post_usage(owner_api, {key: "  DALL-E 3 ", "imageCount": 1})
    assert response.status_code == 201
    assert stored(owner) == [("DALL-E 3", 1)]


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (None, "modelName"),
        ("", "modelName"),
        ("   ", "modelName"),
        ("x" * 101, "modelName"),
        (42, "modelName"),
        (["SD"], "modelName"),
        ("bad\x00name", "modelName"),
        ("line\nbreak", "modelName"),
        ("tab\there", "modelName"),
        ("del\x7f", "modelName"),
        ("c1\x85inside", "modelName"),
    ],
)
def test_bad_model_names_are_rejected(owner, owner_api, value, field):
    response = post_usage(owner_api, {"modelName": value, "imageCount": 1})
    assert response.status_code == 400
    assert errors_of(response) == [(0, field)]
    assert response.json()["error"]
    assert stored() == []


def test_missing_model_name_is_rejected_with_both_keys_named(owner_api):
    response = post_usage(owner_api, {"imageCount": 1})
    assert response.status_code == 400
    assert "modelName" in response.json()["errors"][0]["message"]
    assert "model" in response.json()["errors"][0]["message"]


def test_a_lone_surrogate_in_a_model_name_is_rejected_not_a_server_error(owner_api):
    response = post_usage(owner_api, '{"modelName": "bad \\ud800", "imageCount": 1}')
    assert response.status_code == 400
    assert errors_of(response) == [(0, "modelName")]


def test_model_names_of_exactly_100_characters_and_unicode_are_kept(owner, owner_api):
    response = post_usage(
        owner_api, [{"model": "m" * 100, "count": 1}, {"model": "Стабильная 🎨", "count": 2}]
    )
    assert response.status_code == 201
    assert stored(owner) == [("m" * 100, 1), ("Стабильная 🎨", 2)]


# --- Field table: image count ---------------------------------------------------------


@pytest.mark.parametrize("key", ["imageCount", "count"])
@pytest.mark.parametrize("value", [1, 10000])
def test_image_count_is_accepted_under_both_keys_at_its_bounds(owner, owner_api, key, value):
    assert post_usage(owner_api, {"model": "SD", key: value}).status_code == 201
    assert stored(owner) == [("SD", value)]


@pytest.mark.parametrize("value", [0, -1, 10001, 1.5, 2.0, "3", True, False, None, [1], {"n": 1}])
def test_bad_image_counts_are_rejected(owner_api, value):
    response = post_usage(owner_api, {"model": "SD", "imageCount": value})
    assert response.status_code == 400
    assert errors_of(response) == [(0, "imageCount")]
    assert stored() == []


# --- Field table: user -----------------------------------------------------------------


@pytest.mark.parametrize(
    "user_fields",
    [
        {"userId": "alice"},
        {"user_id": "alice"},
        {"email": "alice@example.com"},
        {"email": "ALICE@EXAMPLE.COM"},
        {"userId": "alice", "user_id": "alice", "email": "Alice@Example.com"},
    ],
)
def test_user_fields_naming_the_token_owner_are_accepted(owner, owner_api, user_fields):
    assert post_usage(owner_api, {"model": "SD", "count": 1, **user_fields}).status_code == 201
    assert stored(owner) == [("SD", 1)]


@pytest.mark.parametrize(
    ("user_fields", "field"),
    [
        ({"userId": "bob"}, "userId"),
        ({"user_id": "bob"}, "user_id"),
        ({"userId": "Alice"}, "userId"),
        ({"email": "bob@example.com"}, "email"),
        ({"userId": 7}, "userId"),
    ],
)
def test_user_fields_naming_someone_else_reject_the_record(
    owner, other, owner_api, user_fields, field
):
    response = post_usage(owner_api, {"model": "SD", "count": 1, **user_fields})
    assert response.status_code == 400
    assert errors_of(response) == [(0, field)]
    assert stored() == []


def test_an_x_user_id_header_for_the_owner_is_accepted(owner, owner_api):
    assert (
        post_usage(owner_api, {"model": "SD", "count": 1}, HTTP_X_USER_ID="alice").status_code
        == 201
    )


def test_an_x_user_id_header_for_someone_else_is_forbidden_and_stores_nothing(
    owner, other, owner_api
):
    response = post_usage(owner_api, [{"model": "SD", "count": 1}] * 3, HTTP_X_USER_ID="bob")
    assert response.status_code == 403
    assert "X-User-ID" in response.json()["error"]
    assert stored() == []


def as_wsgi_gives_it(header: bytes) -> str:
    """A header's bytes as a WSGI server puts them in the environ: latin-1 text (PEP 3333)."""
    return header.decode("latin-1")


@pytest.mark.parametrize(
    ("username", "header"),
    [
        ("Łukasz", "Łukasz".encode()),
        ("José", "José".encode()),
        ("José", "Jose\u0301".encode()),  # decomposed, as macOS spells file names
        ("José", "José".encode("latin-1")),  # a client that sends latin-1
    ],
    ids=["utf-8", "utf-8-accent", "utf-8-nfd", "latin-1"],
)
def test_an_x_user_id_header_with_the_owners_non_ascii_name_is_accepted(db, username, header):
    user = get_user_model().objects.create_user(username)
    api = bearer(create_token(user, "laptop"))
    response = post_usage(api, {"model": "SD", "count": 1}, HTTP_X_USER_ID=as_wsgi_gives_it(header))
    assert response.status_code == 201
    assert stored(user) == [("SD", 1)]


def test_an_x_user_id_header_with_someone_elses_non_ascii_name_is_forbidden(db, owner_api):
    get_user_model().objects.create_user("Łukasz")
    response = post_usage(
        owner_api, {"model": "SD", "count": 1}, HTTP_X_USER_ID=as_wsgi_gives_it("Łukasz".encode())
    )
    assert response.status_code == 403
    assert stored() == []


# --- Field table: timestamp ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-20T10:00:00Z", datetime(2026, 11, 20, 10, tzinfo=UTC)),
        ("2026-11-20T10:00:00.250+00:00", datetime(2026, 11, 20, 10, 0, 0, 250000, tzinfo=UTC)),
        ("2026-11-20T12:30:00+02:30", datetime(2026, 11, 20, 10, tzinfo=UTC)),
        ("2026-11-20T05:00:00-05:00", datetime(2026, 11, 20, 10, tzinfo=UTC)),
        (1795168800000, datetime(2026, 11, 20, 10, tzinfo=UTC)),
        (1795168800123, datetime(2026, 11, 20, 10, 0, 0, 123000, tzinfo=UTC)),
    ],
)
def test_timestamps_in_iso_8601_or_epoch_milliseconds_are_stored_in_utc(
    owner, owner_api, value, expected
):
    now = datetime(2026, 11, 21, 12, tzinfo=UTC)
    with _frozen(now):
        assert (
            post_usage(owner_api, {"model": "SD", "count": 1, "timestamp": value}).status_code
            == 201
        )
    assert UsageRecord.objects.get().occurred_at == expected


def test_a_missing_timestamp_defaults_to_the_time_of_receipt(owner, owner_api):
    before = timezone.now()
    post_usage(owner_api, {"model": "SD", "count": 1})
    record = UsageRecord.objects.get()
    assert before <= record.occurred_at <= timezone.now()
    assert record.occurred_at == record.received_at


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-20T10:00:00",  # no offset
        "2026-11-20",  # a date, not a moment
        "yesterday",
        "2026-13-01T00:00:00Z",
        "",
        1795168800000.0,  # a float is not integer milliseconds
        True,
        ["2026-11-20T10:00:00Z"],
        "2026-11-21T12:05:01Z",  # 5 minutes and 1 second ahead
        "2025-11-20T11:59:59Z",  # 366 days and 1 second ago
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        10**20,
        -(10**20),
        "2026-11-20T10:00:00Z" + " " * 100,
    ],
)
def test_bad_or_out_of_range_timestamps_are_rejected(owner_api, value):
    with _frozen(datetime(2026, 11, 21, 12, tzinfo=UTC)):
        response = post_usage(owner_api, {"model": "SD", "count": 1, "timestamp": value})
    assert response.status_code == 400
    assert errors_of(response) == [(0, "timestamp")]


@pytest.mark.parametrize("value", ["2026-11-21T12:05:00Z", "2025-11-20T12:00:00Z"])
def test_timestamps_exactly_at_the_window_edges_are_accepted(owner, owner_api, value):
    with _frozen(datetime(2026, 11, 21, 12, tzinfo=UTC)):
        assert (
            post_usage(owner_api, {"model": "SD", "count": 1, "timestamp": value}).status_code
            == 201
        )


# --- Field table: event id -------------------------------------------------------------


@pytest.mark.parametrize("key", ["id", "eventId"])
def test_event_id_is_stored_under_both_keys(owner, owner_api, key):
    assert post_usage(owner_api, {"model": "SD", "count": 1, key: "evt-1"}).status_code == 201
    assert UsageRecord.objects.get().event_id == "evt-1"


@pytest.mark.parametrize("value", ["", "e" * 101, 17, True, ["a"], "nul\x00id", "new\nline"])
def test_bad_event_ids_are_rejected(owner_api, value):
    response = post_usage(owner_api, {"model": "SD", "count": 1, "id": value})
    assert response.status_code == 400
    assert errors_of(response) == [(0, "id")]


def test_an_event_id_of_100_characters_is_kept(owner, owner_api):
    assert (
        post_usage(owner_api, {"model": "SD", "count": 1, "eventId": "e" * 100}).status_code == 201
    )


# --- Aliases that disagree, unknown keys ------------------------------------------------


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"modelName": "SD", "model": "DALL-E", "imageCount": 1}, "modelName"),
        ({"modelName": "SD", "imageCount": 1, "count": 2}, "imageCount"),
        ({"modelName": "SD", "imageCount": 1, "count": True}, "imageCount"),
        ({"modelName": "SD", "imageCount": 1, "userId": "alice", "user_id": "bob"}, "userId"),
        ({"modelName": "SD", "imageCount": 1, "id": "a", "eventId": "b"}, "id"),
    ],
)
def test_a_key_and_its_alias_with_different_values_reject_the_record(owner_api, record, field):
    response = post_usage(owner_api, record)
    assert response.status_code == 400
    assert errors_of(response) == [(0, field)]
    assert "disagree" in response.json()["errors"][0]["message"]
    assert stored() == []


def test_a_key_and_its_alias_with_the_same_value_are_accepted(owner, owner_api):
    record = {
        "modelName": "SD",
        "model": "SD",
        "imageCount": 2,
        "count": 2,
        "id": "x",
        "eventId": "x",
    }
    assert post_usage(owner_api, record).status_code == 201
    assert stored(owner) == [("SD", 2)]


def test_unknown_keys_are_ignored(owner, owner_api):
    record = {"model": "SD", "count": 1, "prompt": "a cat", "settings": {"steps": 30}}
    assert post_usage(owner_api, record).status_code == 201
    assert stored(owner) == [("SD", 1)]


def test_every_bad_field_of_a_record_is_reported(owner_api):
    response = post_usage(owner_api, {"imageCount": 0, "timestamp": "soon", "id": ""})
    assert response.status_code == 400
    assert sorted(errors_of(response)) == [
        (0, "id"),
        (0, "imageCount"),
        (0, "modelName"),
        (0, "timestamp"),
    ]
    assert response.json()["rejected"] == 1


# --- Batches, outcomes and idempotency --------------------------------------------------


def test_a_mixed_batch_reports_each_outcome_and_stores_only_the_good_records(owner, owner_api):
    post_usage(owner_api, {"model": "SD", "count": 1, "id": "seen-before"})
    batch = [
        {"model": "A", "count": 1, "id": "one"},
        {"model": "B", "count": 0, "id": "two"},
        {"model": "C", "count": 3, "id": "seen-before"},
        "not an object",
        {"model": "D", "count": 4},
        {"model": "E", "count": 5, "id": "one"},
    ]
    response = post_usage(owner_api, batch)
    assert response.status_code == 207
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 2, 2)
    assert errors_of(response) == [(1, "count"), (3, None)]
    assert stored(owner) == [("SD", 1), ("A", 1), ("D", 4)]


def test_the_same_batch_sent_twice_is_stored_once(owner, owner_api):
    batch = [{"model": "SD", "count": n, "id": f"evt-{n}"} for n in range(1, 6)]
    first = post_usage(owner_api, batch).json()
    second = post_usage(owner_api, batch)
    assert first["accepted"] == 5
    assert second.status_code == 201
    assert second.json() == {"accepted": 0, "duplicates": 5, "rejected": 0, "errors": []}
    assert UsageRecord.objects.count() == 5


def test_the_same_id_twice_in_one_body_is_stored_once(owner, owner_api):
    response = post_usage(
        owner_api, [{"model": "SD", "count": 1, "id": "x"}, {"model": "SD", "count": 9, "id": "x"}]
    )
    assert response.json() == {"accepted": 1, "duplicates": 1, "rejected": 0, "errors": []}
    assert stored(owner) == [("SD", 1)]


def test_an_id_whose_first_copy_was_rejected_is_stored_from_the_second(owner, owner_api):
    response = post_usage(
        owner_api, [{"model": "SD", "count": 0, "id": "x"}, {"model": "SD", "count": 2, "id": "x"}]
    )
    assert response.status_code == 207
    assert stored(owner) == [("SD", 2)]


def test_records_without_ids_are_never_deduplicated(owner, owner_api):
    post_usage(owner_api, [{"model": "SD", "count": 1}, {"model": "SD", "count": 1}])
    post_usage(owner_api, {"model": "SD", "count": 1})
    assert UsageRecord.objects.count() == 3


def test_event_ids_are_unique_per_user_not_globally(owner, other, owner_api, other_api):
    assert (
        post_usage(owner_api, {"model": "SD", "count": 1, "id": "shared"}).json()["accepted"] == 1
    )
    assert (
        post_usage(other_api, {"model": "SD", "count": 2, "id": "shared"}).json()["accepted"] == 1
    )
    assert stored(owner) == [("SD", 1)]
    assert stored(other) == [("SD", 2)]


def test_records_are_stored_for_the_token_owner_only(owner, other, other_api):
    post_usage(other_api, {"model": "SD", "count": 1})
    assert stored(owner) == []
    assert stored(other) == [("SD", 1)]


def test_a_batch_of_1000_records_is_accepted(owner, owner_api):
    batch = [{"model": "SD", "count": 1, "id": f"e{n}"} for n in range(1000)]
    response = post_usage(owner_api, batch)
    assert response.status_code == 201
    assert response.json()["accepted"] == 1000
    assert UsageRecord.objects.count() == 1000


def test_a_batch_of_1001_records_is_refused_whole(owner_api):
    response = post_usage(owner_api, [{"model": "SD", "count": 1}] * 1001)
    assert response.status_code == 400
    assert "1000" in response.json()["error"]
    assert stored() == []


@pytest.mark.parametrize("batch_size", [1, 10, 500])
def test_ingestion_runs_a_constant_number_of_queries_whatever_the_batch_size(owner_api, batch_size):
    # The warm-up checks the token (remembered for a second) and makes last_used_at fresh.
    post_usage(owner_api, {"model": "warm-up", "count": 1})
    batch = [{"model": "SD", "count": 1, "id": f"e{n}"} for n in range(batch_size)]
    with CaptureQueriesContext(connection) as queries:
        response = post_usage(owner_api, batch)
    assert response.status_code == 201
    # On PostgreSQL one statement that inserts the records and counts them into both
    # rollups; on SQLite the insert and the two upserts. (The savepoints are the test's own
    # transaction nesting atomic().) Before it, on PostgreSQL without Redis, each of the two
    # rate limits (the token's, the user's) adds the post to its count in the shared cache
    # table, one UPDATE each (usage_site/database_cache.py).
    assert statements_of(queries) == COUNTING + STORING


def test_an_apps_first_post_looks_its_token_up_and_the_next_ones_for_a_second_do_not(
    owner_api, monkeypatch
):
    clock = [1000.0]
    monkeypatch.setattr(tokens, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    looked_up = []
    for wait in (0, 0.5, 1.0):
        clock[0] += wait
        with CaptureQueriesContext(connection) as queries:
            assert post_usage(owner_api, {"model": "SD", "count": 1}).status_code == 201
        looked_up.append("SELECT usage_apitoken" in statements_of(queries))

    assert looked_up == [True, False, True]


def test_a_resent_batch_adds_nothing_to_the_rollups(owner_api):
    batch = [{"model": "SD", "count": 2, "id": f"e{n}"} for n in range(20)]
    post_usage(owner_api, batch)
    response = post_usage(owner_api, batch)
    assert response.json()["duplicates"] == 20
    rollup = UsageRollup.objects.get()
    assert (rollup.images, rollup.events) == (40, 20)
    daily = DailyUsageRollup.objects.get()
    assert (daily.images_by_24, daily.events_by_24) == (40, 20)


STORING = (
    ["WITH unnest"]  # the batch's arrays, then the event ids, the records and the counts
    if connection.vendor == "postgresql"
    else ["INSERT usage_usagerecord", "INSERT usage_usagerollup", "INSERT usage_dailyusagerollup"]
)
COUNTING = ["UPDATE ?"] * 2 if connection.vendor == "postgresql" else []


def statements_of(queries: CaptureQueriesContext) -> list[str]:
    """Each statement's verb and first table, without the test's savepoints."""
    found = []
    for query in queries.captured_queries:
        verb = query["sql"].split()[0].upper()
        if verb not in ("SAVEPOINT", "RELEASE"):
            table = re.search(r'(?:FROM|INTO)\s+"?(\w+)', query["sql"], re.IGNORECASE)
            found.append(f"{verb} {table.group(1) if table else '?'}")
    return found


# --- Whole-body errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[]", "empty"),
        (b"42", "JSON object"),
        (b'"a string"', "JSON object"),
        (b"null", "JSON object"),
        (b'{"model": NaN, "count": 1}', "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
    ],
)
def test_unusable_bodies_get_400_with_a_clear_error(owner_api, body, message):
    response = post_usage(owner_api, body)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert stored() == []


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_a_body_that_is_not_declared_json_gets_415(owner_api, content_type):
    response = post_usage(owner_api, {"model": "SD", "count": 1}, content_type=content_type)
    assert response.status_code == 415
    assert response.json()["error"]
    assert stored() == []


def test_json_with_a_charset_parameter_is_accepted(owner, owner_api):
    response = post_usage(
        owner_api, {"model": "SD", "count": 1}, content_type="application/json; charset=utf-8"
    )
    assert response.status_code == 201


def test_a_body_over_1_mib_gets_413_and_stores_nothing(owner_api):
    padding = "x" * (1024 * 1024)
    response = post_usage(owner_api, {"model": "SD", "count": 1, "pad": padding})
    assert response.status_code == 413
    assert response.json()["error"]
    assert stored() == []


def test_a_body_just_under_1_mib_is_accepted(owner, owner_api):
    record = {"model": "SD", "count": 1, "pad": ""}
    record["pad"] = "x" * (1024 * 1024 - len(json.dumps(record)))
    body = json.dumps(record)
    assert len(body) == 1024 * 1024
    assert post_usage(owner_api, body).status_code == 201


# --- Authentication ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Bearer ",
        "Bearer nope",
        "Bearer usg_" + "A" * 51,
        "Token abc",
        "Basic YWxpY2U6cHc=",
    ],
)
def test_missing_or_unknown_tokens_get_401_with_a_bearer_challenge(owner, owner_token, header):
    client = bearer(owner_token)
    client.credentials(**({"HTTP_AUTHORIZATION": header} if header else {}))
    response = post_usage(client, {"model": "SD", "count": 1})
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]
    assert stored() == []


def test_a_token_with_a_known_prefix_but_wrong_secret_gets_401(owner, owner_token):
    forged = (
        owner_token.raw[:12] + ("A" if owner_token.raw[12] != "A" else "B") + owner_token.raw[13:]
    )
    client = bearer(owner_token)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {forged}")
    assert post_usage(client, {"model": "SD", "count": 1}).status_code == 401


def test_a_revoked_token_gets_401(owner, owner_token, owner_api):
    revoke_token(owner_token.token)
    response = post_usage(owner_api, {"model": "SD", "count": 1})
    assert response.status_code == 401
    assert stored() == []


def test_an_inactive_users_token_gets_401(owner, owner_token, owner_api):
    owner.is_active = False
    owner.save()
    assert post_usage(owner_api, {"model": "SD", "count": 1}).status_code == 401


def test_a_logged_in_browser_session_cannot_post_records(client, owner):
    client.force_login(owner)
    response = client.post(
        "/api/model-usage", data={"model": "SD", "count": 1}, content_type="application/json"
    )
    assert response.status_code == 401
    assert stored() == []


def test_using_a_token_records_when_it_was_last_used(owner, owner_token, owner_api):
    assert owner_token.token.last_used_at is None
    post_usage(owner_api, {"model": "SD", "count": 1})
    owner_token.token.refresh_from_db()
    assert owner_token.token.last_used_at is not None


def test_a_second_token_of_the_same_user_also_works(owner):
    second = create_token(owner, "Home")
    assert post_usage(bearer(second), {"model": "SD", "count": 1}).status_code == 201


# --- Methods, throttling, logging -----------------------------------------------------------


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_other_methods_get_405_json(owner_api, method):
    response = getattr(owner_api, method)("/api/model-usage")
    assert response.status_code == 405
    assert response.json()["error"]


def test_too_many_requests_get_429_with_retry_after(owner_api, throttle_rates):
    throttle_rates(ingest="2/min")
    codes = [post_usage(owner_api, {"model": "SD", "count": 1}).status_code for _ in range(3)]
    assert codes == [201, 201, 429]
    response = post_usage(owner_api, {"model": "SD", "count": 1})
    assert int(response["Retry-After"]) > 0
    assert response.json()["error"]
    assert UsageRecord.objects.count() == 2


def test_each_ingestion_request_logs_one_line_without_the_raw_token(owner_token, owner_api, caplog):
    with caplog.at_level("INFO", logger="usage.ingest"):
        post_usage(owner_api, [{"model": "SD", "count": 1}, {"model": "SD", "count": 0}])
    lines = [r.getMessage() for r in caplog.records if r.name == "usage.ingest"]
    assert len(lines) == 1
    assert "user=alice" in lines[0]
    assert f"token={owner_token.token.display_prefix}" in lines[0]
    assert "accepted=1" in lines[0] and "rejected=1" in lines[0] and "duration_ms=" in lines[0]
    assert owner_token.raw not in lines[0]


def _frozen(moment: datetime):
    """Make django.utils.timezone.now() return ``moment`` inside the ingestion code."""
    from unittest import mock

    return mock.patch("usage.views.timezone.now", return_value=moment)


def test_the_frozen_clock_really_moves_the_time_window(owner_api):
    # Guards the helper above: with the clock a year ahead, a real "now" is too old.
    real_now = timezone.now()
    with _frozen(real_now + timedelta(days=400)):
        response = post_usage(
            owner_api, {"model": "SD", "count": 1, "timestamp": real_now.isoformat()}
        )
    assert errors_of(response) == [(0, "timestamp")]


def test_refused_ingestion_requests_are_logged_too(owner_token, owner_api, client, caplog):
    with caplog.at_level("INFO", logger="usage.ingest"):
        post_usage(owner_api, {"model": "SD", "count": 1}, content_type="text/plain")
        post_usage(owner_api, {"model": "SD", "count": 1}, HTTP_X_USER_ID="mallory")
        post_usage(client, {"model": "SD", "count": 1})
    lines = [r.getMessage() for r in caplog.records if r.name == "usage.ingest"]
    assert [line.split("status=")[1].split()[0] for line in lines] == ["415", "403", "401"]
    assert f"token={owner_token.token.display_prefix}" in lines[0]
    assert "user=- token=-" in lines[2]
