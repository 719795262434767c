"""GET /api/user/token-usage and POST /api/plugin/generate, with a real upstream on loopback.

The upstream is the development stand-in (scripts/standin_upstream.py) on a free port,
with faults injected into its answers. Who may read whose usage, what reaches the
upstream, the cache, the ledger, and what each failure becomes.
"""

import json
import threading
from datetime import UTC, datetime

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from tests.conftest import UPSTREAM_KEY, bearer
from tests.live_server import free_port, poll
from usage import external_api, token_usage
from usage.models import PluginGeneration
from usage.tokens import create_token

USAGE_URL = "/api/user/token-usage"
GENERATE_URL = "/api/plugin/generate"
CSRF_SECRET = "csrfsecretforthetestsonly0123456"  # 32 letters and digits, as Django makes them
PROMPT = {"prompt": "A plugin that counts the words of a page"}
SECRET_IN_BODY = "Traceback (most recent call last): postgres://admin:hunter2@db"

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_api(staff) -> APIClient:
    return bearer(create_token(staff, "Staff laptop"))


@pytest.fixture
def owner_session(owner) -> Client:
    """A logged-in browser: CSRF enforced, with the cookie a page would have set."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    client.cookies["csrftoken"] = CSRF_SECRET
    return client


def generate(client, body=PROMPT, **headers):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post(GENERATE_URL, data=data, content_type="application/json", **headers)


def session_generate(client: Client, body=PROMPT):
    return generate(client, body, HTTP_X_CSRFTOKEN=CSRF_SECRET)


def has_used_tokens(standin, username: str) -> None:
    standin.generate(json.dumps({"userId": username, **PROMPT}).encode())


def usage_requests(standin) -> list[str]:
    return [request.path for request in standin.received_for("token-usage")]


# --- Who may read whose usage ----------------------------------------------------------------


def test_a_user_reads_their_own_usage_with_a_token(upstream, owner_api):
    has_used_tokens(upstream, "alice")

    response = owner_api.get(USAGE_URL)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "userId",
        "totalTokens",
        "promptTokens",
        "completionTokens",
        "requestCount",
        "dailyUsage",
        "monthlyUsage",
        "lastRequestAt",
        "fetchedAt",
        "stale",
        "noUsageYet",
    }
    assert (body["userId"], body["requestCount"], body["totalTokens"]) == ("alice", 1, 128)
    assert body["stale"] is False
    assert body["noUsageYet"] is False
    assert usage_requests(upstream) == ["/user/alice/token-usage"]


def test_a_user_reads_their_own_usage_with_a_session_and_by_name(upstream, owner):
    has_used_tokens(upstream, "alice")
    client = Client()
    client.force_login(owner)

    response = client.get(USAGE_URL, {"userId": "alice"})

    assert response.status_code == 200
    assert response.json()["userId"] == "alice"


@pytest.mark.parametrize("how", ["token", "session"])
def test_another_users_usage_is_forbidden_and_never_asked_for(upstream, owner, owner_api, how):
    has_used_tokens(upstream, "bob")
    client = owner_api
    if how == "session":
        client = Client()
        client.force_login(owner)

    response = client.get(USAGE_URL, {"userId": "bob"})

    assert response.status_code == 403
    assert response.json() == {
        "error": "Only staff can read another user's token usage.",
        "code": "forbidden",
    }
    assert upstream.received == []


@pytest.mark.parametrize("how", ["token", "session"])
def test_staff_read_anyones_usage(upstream, staff, staff_api, how):
    has_used_tokens(upstream, "alice")
    client = staff_api
    if how == "session":
        client = Client()
        client.force_login(staff)

    response = client.get(USAGE_URL, {"userId": "alice"})

    assert response.status_code == 200
    assert response.json()["userId"] == "alice"
    assert usage_requests(upstream) == ["/user/alice/token-usage"]


def test_staff_without_a_user_id_read_their_own(upstream, staff_api):
    response = staff_api.get(USAGE_URL)

    assert response.status_code == 200
    assert response.json()["userId"] == "carol"
    assert usage_requests(upstream) == ["/user/carol/token-usage"]


@pytest.mark.parametrize("url", [USAGE_URL, GENERATE_URL])
def test_anonymous_callers_get_401_and_the_upstream_is_never_called(upstream, client, url):
    response = client.get(url) if url == USAGE_URL else generate(client)

    assert response.status_code == 401
    assert response.json()["error"]
    assert upstream.received == []


def test_a_revoked_token_gets_401(upstream, owner_token, owner_api):
    owner_token.token.revoked_at = owner_token.token.created_at
    owner_token.token.save()

    assert owner_api.get(USAGE_URL).status_code == 401
    assert generate(owner_api).status_code == 401
    assert upstream.received == []


def test_a_user_with_no_usage_yet_gets_zeros_and_is_told_so(upstream, owner_api):
    response = owner_api.get(USAGE_URL)

    assert response.status_code == 200
    body = response.json()
    assert body.pop("fetchedAt")
    assert body == {
        "userId": "alice",
        "totalTokens": 0,
        "promptTokens": 0,
        "completionTokens": 0,
        "requestCount": 0,
        "dailyUsage": [],
        "monthlyUsage": [],
        "lastRequestAt": None,
        "stale": False,
        "noUsageYet": True,
    }
    assert usage_requests(upstream) == ["/user/alice/token-usage"]


def test_a_first_generation_replaces_the_zeros_at_once(upstream, owner_api):
    assert owner_api.get(USAGE_URL).json()["noUsageYet"] is True

    assert generate(owner_api).status_code == 200

    body = owner_api.get(USAGE_URL).json()
    assert (body["noUsageYet"], body["requestCount"], body["totalTokens"]) == (False, 1, 128)


def test_staff_asking_for_a_username_nobody_here_has_get_404(upstream, staff_api):
    response = staff_api.get(USAGE_URL, {"userId": "nobody"})

    assert response.status_code == 404
    assert response.json() == {
        "error": "No user of this site has this username, and the plugin generator has no "
        "usage for it.",
        "code": "unknown_user",
    }
    assert usage_requests(upstream) == ["/user/nobody/token-usage"]


def test_staff_read_the_usage_of_a_username_nobody_here_has_if_the_generator_has_it(
    upstream, staff_api
):
    # A deleted account's usage, say: the plugin generator's numbers are still worth showing.
    has_used_tokens(upstream, "gone")

    response = staff_api.get(USAGE_URL, {"userId": "gone"})

    assert response.status_code == 200
    assert (response.json()["requestCount"], response.json()["noUsageYet"]) == (1, False)


# --- Ids that try to leave their path segment ------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "userId=../x",
        "userId=..",
        "userId=.",
        "userId=%2e%2e",
        "userId=%252e%252e",
        "userId=a/b",
        "userId=a%2Fb",
        "userId=%3Fx",
        "userId=x%3Fy%3D1",
        "userId=a%23b",
        "userId=a%0D%0AX-Injected:%201",
        "userId=a%00b",
        "userId=",
        "userId=" + "a" * 151,
    ],
)
@pytest.mark.parametrize("caller", ["owner", "staff"])
def test_an_id_that_is_not_a_username_gets_400_and_the_upstream_is_never_called(
    upstream, owner_api, staff_api, caller, query
):
    client = staff_api if caller == "staff" else owner_api

    response = client.get(f"{USAGE_URL}?{query}")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_user_id"
    assert upstream.received == []


def test_an_unusual_but_valid_username_is_one_encoded_path_segment(upstream, staff_api):
    response = staff_api.get(USAGE_URL, {"userId": "a.b@c+d"})

    assert response.status_code == 404  # the stand-in has no usage for them
    assert usage_requests(upstream) == ["/user/a.b%40c%2Bd/token-usage"]


# --- What reaches the upstream ---------------------------------------------------------------


def test_the_upstream_gets_its_own_key_and_never_the_callers_credentials(upstream, owner):
    client = Client()
    client.force_login(owner)
    api_token = create_token(owner, "Laptop").raw

    client.get(USAGE_URL, HTTP_AUTHORIZATION=f"Bearer {api_token}", HTTP_X_FORWARDED_FOR="1.2.3.4")

    [request] = upstream.received
    assert request.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert "cookie" not in request.headers
    assert api_token not in json.dumps(request.headers)
    assert client.cookies["sessionid"].value not in json.dumps(request.headers)
    assert "x-forwarded-for" not in request.headers


def test_a_generation_sends_the_body_with_the_callers_user_id(upstream, owner_api):
    response = generate(owner_api, {**PROMPT, "userId": "bob", "options": {"lang": "ts"}})

    assert response.status_code == 200
    [request] = upstream.received_for("generate")
    assert request.json() == {**PROMPT, "userId": "alice", "options": {"lang": "ts"}}
    assert request.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert response.json() == {
        "result": response.json()["result"],
        "tokenUsage": {"promptTokens": 22, "completionTokens": 106, "totalTokens": 128},
    }
    assert response.json()["result"]["description"] == PROMPT["prompt"]
    assert upstream.users["alice"].total.requestCount == 1
    assert "bob" not in upstream.users


def test_a_generation_passes_on_the_upstreams_2xx_status(upstream, owner_api):
    upstream.answer("generate", 201, {"result": {"name": "p"}, "tokenUsage": {"totalTokens": 3}})

    response = generate(owner_api)

    assert response.status_code == 201
    assert response.json()["tokenUsage"] == {
        "promptTokens": 0,
        "completionTokens": 0,
        "totalTokens": 3,
    }


# --- Sessions and CSRF -----------------------------------------------------------------------


def test_a_session_generation_needs_the_csrf_token(upstream, owner_session):
    refused = generate(owner_session)

    assert refused.status_code == 403
    assert "CSRF" in refused.json()["error"]
    assert upstream.received == []

    accepted = session_generate(owner_session)

    assert accepted.status_code == 200
    assert accepted.json()["tokenUsage"]["totalTokens"] > 0


def test_a_session_reads_usage_without_a_csrf_token(upstream, owner_session):
    has_used_tokens(upstream, "alice")

    assert owner_session.get(USAGE_URL).status_code == 200


# --- Bad requests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (b'"a plugin"', 400),
        (b'{"prompt": NaN}', 400),
        (b"[" * 50_000 + b"]" * 50_000, 400),
        (json.dumps({"prompt": "x" * (1024 * 1024)}).encode(), 413),
    ],
)
def test_a_body_that_is_not_one_json_object_gets_invalid_body(upstream, owner_api, body, status):
    response = generate(owner_api, body)

    assert response.status_code == status
    assert response.json()["code"] == "invalid_body"
    assert upstream.received == []
    assert PluginGeneration.objects.count() == 0


def test_a_body_that_is_not_json_by_its_type_gets_415(upstream, owner_api):
    response = owner_api.post(GENERATE_URL, data="prompt=x", content_type="text/plain")

    assert response.status_code == 415
    assert upstream.received == []


def test_a_rejected_request_passes_on_the_upstreams_4xx_and_message(upstream, owner_api):
    upstream.answer("generate", 422, {"error": "That plugin cannot be made."})

    response = generate(owner_api)

    assert response.status_code == 422
    assert response.json() == {
        "error": "That plugin cannot be made.",
        "code": "rejected_by_upstream",
    }


@pytest.mark.parametrize(
    "body",
    [{"prompt": ""}, {"prompt": "   "}, {"prompt": "\n\t \u3000"}, {}, {"prompt": None}],
)
@pytest.mark.parametrize("how", ["token", "session"])
def test_an_empty_prompt_is_refused_here_and_never_reaches_the_upstream(
    upstream, owner_api, owner_session, body, how
):
    if how == "token":
        response = generate(owner_api, body)
    else:
        response = session_generate(owner_session, body)

    assert response.status_code == 400
    assert response.json() == {
        "error": "prompt is required: describe the plugin to generate.",
        "code": "empty_prompt",
    }
    assert upstream.received == []
    assert PluginGeneration.objects.count() == 0


@pytest.mark.parametrize(
    "body",
    [
        b'{"prompt": "a \\ud800"}',  # a lone surrogate: JSON's grammar allows it, Unicode not
        b'{"prompt": "x", "extra": {"\\udc00": 1}}',
        b'{"prompt": "x", "n": 1e309}',  # read as infinity, which JSON cannot say
        b'{"prompt": "x", "n": -1e309}',
        b'{"prompt": "x", "n": 9007199254740992}',  # past what JSON readers hold exactly
        b'{"prompt": "x", "deep": ' + b"[" * 40 + b"]" * 40 + b"}",
    ],
)
@pytest.mark.parametrize("how", ["token", "session"])
def test_a_body_that_cannot_be_forwarded_as_strict_json_is_refused_locally(
    upstream, owner_api, owner_session, body, how
):
    if how == "token":
        response = generate(owner_api, body)
    else:
        response = session_generate(owner_session, body)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_body"
    assert upstream.received == []
    assert PluginGeneration.objects.count() == 0


def test_what_is_forwarded_is_strict_json(upstream, owner_api):
    body = b'{"prompt": "x", "n": 1e308, "m": -9007199254740991, "s": "\\ud83d\\ude00"}'

    assert generate(owner_api, body).status_code == 200

    [sent] = upstream.received_for("generate")
    forwarded = json.loads(sent.body, parse_constant=pytest.fail)
    assert forwarded == {
        "prompt": "x",
        "n": 1e308,
        "m": -(2**53 - 1),
        "s": "\U0001f600",
        "userId": "alice",
    }


# --- Failures of the upstream ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ((500, SECRET_IN_BODY), 502, "upstream_error"),
        ((503, SECRET_IN_BODY), 502, "upstream_error"),
        ((200, SECRET_IN_BODY), 502, "upstream_error"),
        ((200, {"result": "not an object", "totalTokens": "many"}), 502, "upstream_error"),
        ((302, ""), 502, "upstream_error"),
        ((403, {"error": SECRET_IN_BODY}), 502, "upstream_error"),
    ],
)
@pytest.mark.parametrize("route", ["token-usage", "generate"])
def test_a_failing_upstream_is_a_json_5xx_without_its_body(
    upstream, owner_api, route, fault, status, code
):
    upstream.answer(route, *fault, headers={"Location": upstream.url})  # for the redirect

    response = owner_api.get(USAGE_URL) if route == "token-usage" else generate(owner_api)

    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == code
    assert set(response.json()) == {"error", "code"}
    assert "hunter2" not in response.content.decode()
    assert "Traceback" not in response.content.decode()


@pytest.mark.parametrize(
    "moment", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "1969-12-31T23:59:59Z"]
)
def test_a_time_out_of_range_is_a_502_or_the_stale_copy_never_a_500(upstream, owner_api, moment):
    hostile = {"userId": "alice", "lastRequestAt": moment}
    upstream.answer("token-usage", 200, hostile)
    failed = owner_api.get(USAGE_URL)  # no copy to serve yet
    upstream.reset()
    has_used_tokens(upstream, "alice")
    good = owner_api.get(USAGE_URL).json()
    upstream.answer("token-usage", 200, hostile)

    stale = owner_api.get(USAGE_URL, {"refresh": "1"})

    assert failed.status_code == 502
    assert failed.json()["code"] == "upstream_error"
    assert stale.status_code == 200
    assert stale.json() == {**good, "stale": True, "staleReason": "upstream_error"}


def test_a_generation_whose_answer_cannot_be_sent_is_a_502_and_never_ok_in_the_ledger(
    upstream, owner_api
):
    # The plugin the upstream made is valid JSON to Python, but not Unicode text.
    upstream.answer("generate", 200, b'{"result": {"description": "a \\ud800"}}')

    response = generate(owner_api)

    assert response.status_code == 502
    assert response.json()["code"] == "upstream_error"
    assert ledger() == [("alice", "upstream_error", 200, None, None, None)]


@pytest.mark.parametrize("url", [USAGE_URL, GENERATE_URL])
def test_a_closed_port_is_502_unreachable(settings, owner_api, url):
    settings.EXTERNAL_API_URL = f"http://127.0.0.1:{free_port()}"

    response = owner_api.get(url) if url == USAGE_URL else generate(owner_api)

    assert response.status_code == 502
    assert response.json() == {
        "error": "The plugin generator is unreachable.",
        "code": "upstream_unreachable",
    }


@pytest.mark.parametrize("url", [USAGE_URL, GENERATE_URL])
def test_a_hanging_upstream_is_504(upstream, settings, owner_api, url):
    settings.EXTERNAL_API_TIMEOUT = settings.EXTERNAL_API_GENERATE_TIMEOUT = 0.3
    upstream.hang("token-usage" if url == USAGE_URL else "generate")

    response = owner_api.get(url) if url == USAGE_URL else generate(owner_api)

    assert response.status_code == 504
    assert response.json()["code"] == "upstream_timeout"


@pytest.mark.parametrize("url", [USAGE_URL, GENERATE_URL])
def test_without_an_upstream_url_the_answer_is_503_not_configured(owner_api, url):
    response = owner_api.get(url) if url == USAGE_URL else generate(owner_api)

    assert response.status_code == 503
    assert response.json()["code"] == "not_configured"
    assert "Retry-After" not in response


def test_past_the_concurrency_limit_calls_get_503_busy_with_retry_after(
    upstream, settings, owner_api
):
    settings.EXTERNAL_API_MAX_CONCURRENT = 1
    upstream.hang("generate")
    holder = threading.Thread(target=external_api.generate_plugin, args=("bob", PROMPT))
    holder.start()
    try:
        poll(lambda: len(upstream.received_for("generate")) == 1, 10, "a hanging generation")

        responses = [generate(owner_api), owner_api.get(USAGE_URL)]
    finally:
        upstream.release()
        holder.join(10)

    for response in responses:
        assert response.status_code == 503
        assert response.json()["code"] == "busy"
        assert int(response["Retry-After"]) > 0
    assert len(upstream.received_for("generate")) == 1
    assert PluginGeneration.objects.count() == 0  # it never reached the upstream


# --- The cache -------------------------------------------------------------------------------


def test_usage_is_cached_per_user_for_a_short_time(upstream, owner_api, other_api):
    has_used_tokens(upstream, "alice")
    has_used_tokens(upstream, "bob")

    first = owner_api.get(USAGE_URL).json()
    second = owner_api.get(USAGE_URL).json()
    bobs = other_api.get(USAGE_URL).json()

    assert first == second
    assert (first["userId"], bobs["userId"]) == ("alice", "bob")
    assert usage_requests(upstream) == ["/user/alice/token-usage", "/user/bob/token-usage"]


def test_refresh_skips_the_cache(upstream, owner_api):
    has_used_tokens(upstream, "alice")
    first = owner_api.get(USAGE_URL).json()
    has_used_tokens(upstream, "alice")

    cached = owner_api.get(USAGE_URL).json()
    refreshed = owner_api.get(USAGE_URL, {"refresh": "1"}).json()

    assert cached["requestCount"] == first["requestCount"] == 1
    assert refreshed["requestCount"] == 2
    assert refreshed["fetchedAt"] >= first["fetchedAt"]
    assert len(usage_requests(upstream)) == 2


def test_with_no_cache_time_every_read_asks_the_upstream(upstream, settings, owner_api):
    settings.TOKEN_USAGE_CACHE_SECONDS = 0
    has_used_tokens(upstream, "alice")

    owner_api.get(USAGE_URL)
    owner_api.get(USAGE_URL)

    assert len(usage_requests(upstream)) == 2


def test_a_successful_generation_clears_the_users_cached_usage(upstream, owner_api):
    has_used_tokens(upstream, "alice")
    assert owner_api.get(USAGE_URL).json()["requestCount"] == 1

    generate(owner_api)

    assert owner_api.get(USAGE_URL).json()["requestCount"] == 2
    assert len(usage_requests(upstream)) == 2


def test_a_refused_generation_leaves_the_cache_alone(upstream, owner_api):
    has_used_tokens(upstream, "alice")
    owner_api.get(USAGE_URL)
    upstream.answer("generate", 400, {"error": "No."})

    assert generate(owner_api).status_code == 400
    owner_api.get(USAGE_URL)

    assert len(usage_requests(upstream)) == 1


@pytest.mark.parametrize(
    ("break_it", "reason"),
    [
        (lambda standin: standin.answer("token-usage", 500, SECRET_IN_BODY), "upstream_error"),
        (lambda standin: standin.answer("token-usage", 200, "<html>"), "upstream_error"),
        (lambda standin: standin.stop(), "upstream_unreachable"),
    ],
)
def test_when_the_upstream_fails_the_last_copy_is_served_stale(
    upstream, owner_api, break_it, reason
):
    has_used_tokens(upstream, "alice")
    good = owner_api.get(USAGE_URL).json()
    break_it(upstream)

    response = owner_api.get(USAGE_URL, {"refresh": "1"})

    assert response.status_code == 200
    assert response.json() == {**good, "stale": True, "staleReason": reason}


def test_a_stale_copy_survives_a_generation_that_cleared_the_fresh_one(upstream, owner_api):
    has_used_tokens(upstream, "alice")
    good = owner_api.get(USAGE_URL).json()
    generate(owner_api)
    upstream.answer("token-usage", 502, "")

    response = owner_api.get(USAGE_URL)

    assert response.json() == {**good, "stale": True, "staleReason": "upstream_error"}


def test_a_timeout_serves_the_stale_copy_too(upstream, settings, owner_api):
    has_used_tokens(upstream, "alice")
    good = owner_api.get(USAGE_URL).json()
    settings.EXTERNAL_API_TIMEOUT = 0.3  # only now: a loaded machine may be slower for the rest
    upstream.hang("token-usage")

    response = owner_api.get(USAGE_URL, {"refresh": "1"})

    assert response.json() == {**good, "stale": True, "staleReason": "upstream_timeout"}


def test_a_copy_older_than_the_stale_limit_is_not_served(upstream, owner_api, time_machine):
    # The cache's clock (time.time) is moved on rather than waited for.
    time_machine.move_to(datetime.now(UTC))
    has_used_tokens(upstream, "alice")
    owner_api.get(USAGE_URL)
    upstream.answer("token-usage", 500, "")

    time_machine.shift(token_usage.STALE_SECONDS + 1)

    assert owner_api.get(USAGE_URL, {"refresh": "1"}).status_code == 502


def test_an_unknown_user_is_not_served_a_stale_copy(upstream, owner_api):
    # A 404 is an answer, not a failure: the upstream says there is nothing.
    has_used_tokens(upstream, "alice")
    owner_api.get(USAGE_URL)
    upstream.answer("token-usage", 404, {"error": "gone"})

    response = owner_api.get(USAGE_URL, {"refresh": "1"})

    assert response.status_code == 200
    assert (response.json()["noUsageYet"], response.json()["stale"]) == (True, False)


# --- Rate limit ------------------------------------------------------------------------------


def test_generations_are_rate_limited_per_user(upstream, owner_api, other_api, throttle_rates):
    throttle_rates(plugin="2/min")

    statuses = [generate(owner_api).status_code for _ in range(3)]
    limited = generate(owner_api)

    assert statuses == [200, 200, 429]
    assert int(limited["Retry-After"]) > 0
    assert limited.json()["error"]
    assert generate(other_api).status_code == 200
    assert len(upstream.received_for("generate")) == 3


def test_refreshes_past_the_limit_get_the_cached_copy_marked_and_ask_nothing(
    upstream, owner_api, other_api, throttle_rates
):
    throttle_rates(token_usage_refresh="3/min")
    has_used_tokens(upstream, "alice")
    has_used_tokens(upstream, "bob")

    answers = [owner_api.get(USAGE_URL, {"refresh": "1"}) for _ in range(8)]

    assert [answer.status_code for answer in answers] == [200] * 8
    bodies = [answer.json() for answer in answers]
    assert ["refreshLimited" in body for body in bodies] == [False] * 3 + [True] * 5
    assert {body["fetchedAt"] for body in bodies[3:]} == {bodies[2]["fetchedAt"]}
    assert all(body["stale"] is False for body in bodies)
    assert usage_requests(upstream) == ["/user/alice/token-usage"] * 3
    # Another user's refreshes are their own.
    assert "refreshLimited" not in other_api.get(USAGE_URL, {"refresh": "1"}).json()
    assert len(usage_requests(upstream)) == 4


def test_past_the_refresh_limit_a_generation_still_shows_in_the_next_refresh(
    upstream, owner_api, throttle_rates
):
    # The dashboard refreshes the panel after each generation: its tokens must show.
    throttle_rates(token_usage_refresh="1/min")
    has_used_tokens(upstream, "alice")
    assert owner_api.get(USAGE_URL, {"refresh": "1"}).json()["requestCount"] == 1

    generate(owner_api)
    refreshed = owner_api.get(USAGE_URL, {"refresh": "1"}).json()

    assert refreshed["requestCount"] == 2
    assert "refreshLimited" not in refreshed
    assert len(usage_requests(upstream)) == 2


def session_cookie(user) -> str:
    """A signed-in session of ``user``'s, for requests from many threads at once: a session
    only reads the database (SQLite's shared in-memory test database refuses concurrent
    writers at once, and a bearer token records its last use)."""
    client = Client()
    client.force_login(user)
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


def signed_in(cookie: str) -> Client:
    client = Client()
    client.cookies[django_settings.SESSION_COOKIE_NAME] = cookie
    return client


def refreshing_at_once(cookie: str, readers: int) -> tuple[list[threading.Thread], list]:
    """``readers`` threads, released together, each asking for a refresh with the session;
    the threads (started) and the list their answers arrive in."""
    start = threading.Barrier(readers, timeout=10)
    answers: list = []

    def refresh() -> None:
        client = signed_in(cookie)
        start.wait()
        try:
            answers.append(client.get(USAGE_URL, {"refresh": "1"}))
        finally:
            connection.close()

    threads = [threading.Thread(target=refresh) for _ in range(readers)]
    for thread in threads:
        thread.start()
    return threads, answers


@pytest.mark.django_db(transaction=True)  # the requests' own threads read the session
def test_concurrent_refreshes_for_one_user_make_one_upstream_call_and_share_its_answer(
    upstream, owner, throttle_rates, monkeypatch
):
    throttle_rates(token_usage_refresh="1000/min")  # the single flight alone
    cookie = session_cookie(owner)
    # Long enough for all twenty to arrive on a busy machine: the test releases the call.
    monkeypatch.setattr(token_usage, "FLIGHT_WAIT_SECONDS", 30.0)
    has_used_tokens(upstream, "alice")
    upstream.hang("token-usage")
    readers = 20
    threads, answers = refreshing_at_once(cookie, readers)
    try:
        poll(
            lambda: (
                len(usage_requests(upstream)) == 1
                and token_usage.waiting_for("alice") == readers - 1
            ),
            10,
            "one call under way, every other read waiting for it",
        )
    finally:
        upstream.release()
        for thread in threads:
            thread.join(10)

    assert len(usage_requests(upstream)) == 1
    assert [answer.status_code for answer in answers] == [200] * readers, [
        answer.content[:200] for answer in answers
    ]
    assert len({answer.json()["fetchedAt"] for answer in answers}) == 1
    assert {answer.json()["requestCount"] for answer in answers} == {1}


@pytest.mark.django_db(transaction=True)
def test_reads_waiting_on_a_hung_call_give_up_busy_within_the_bound_and_ask_nothing(
    upstream, owner, monkeypatch, throttle_rates
):
    throttle_rates(token_usage_refresh="1000/min")
    cookie = session_cookie(owner)
    monkeypatch.setattr(token_usage, "FLIGHT_WAIT_SECONDS", 0.2)
    upstream.hang("token-usage")  # until the test releases it, far past the bound
    readers = 10
    threads, answers = refreshing_at_once(cookie, readers)
    try:
        poll(lambda: len(answers) == readers - 1, 10, "every waiting read answered")
        waited = list(answers)
    finally:
        upstream.release()
        for thread in threads:
            thread.join(10)

    assert len(usage_requests(upstream)) == 1
    assert [(a.status_code, a.json()["code"]) for a in waited] == [(503, "busy")] * (readers - 1)
    assert all(int(answer["Retry-After"]) > 0 for answer in waited)
    # The one call gets its own answer once released: no usage yet.
    [leader] = [answer for answer in answers if answer not in waited]
    assert (leader.status_code, leader.json()["noUsageYet"]) == (200, True)


# --- The ledger ------------------------------------------------------------------------------


def ledger() -> list[tuple]:
    return list(
        PluginGeneration.objects.order_by("id").values_list(
            "user__username",
            "outcome",
            "upstream_status",
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
        )
    )


def test_a_successful_generation_is_in_the_ledger_with_its_tokens(upstream, owner_api):
    generate(owner_api)

    assert ledger() == [("alice", "ok", 200, 22, 106, 128)]
    assert PluginGeneration.objects.get().duration_ms >= 0


def test_failed_generations_that_reached_the_upstream_are_in_the_ledger(
    upstream, settings, owner_api
):
    upstream.answer("generate", 400, {"error": "No."})
    generate(owner_api)
    upstream.answer("generate", 500, SECRET_IN_BODY)
    generate(owner_api)
    upstream.answer("generate", 200, {"tokenUsage": {"totalTokens": 9}})
    generate(owner_api)
    settings.EXTERNAL_API_GENERATE_TIMEOUT = 0.3
    upstream.hang("generate")
    generate(owner_api)

    assert ledger() == [
        ("alice", "rejected_by_upstream", 400, None, None, None),
        ("alice", "upstream_error", 500, None, None, None),
        ("alice", "upstream_error", 200, None, None, None),
        ("alice", "upstream_timeout", None, None, None, None),
    ]


def test_generations_that_never_reached_the_upstream_are_not_in_the_ledger(settings, owner_api):
    generate(owner_api)  # not configured
    settings.EXTERNAL_API_URL = f"http://127.0.0.1:{free_port()}"
    generate(owner_api)  # connection refused

    assert ledger() == []


def test_the_ledger_keeps_each_users_own_rows(upstream, owner_api, other_api):
    generate(owner_api)
    generate(other_api, {"prompt": "Another plugin"})

    assert [row[0] for row in ledger()] == ["alice", "bob"]


# --- Health ----------------------------------------------------------------------------------


def test_health_reports_the_upstream_ok(upstream, client):
    response = client.get("/api/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "externalApi": "ok"}


def test_health_reports_not_configured_without_an_upstream_url(client):
    assert client.get("/api/health").json()["externalApi"] == "not configured"


@pytest.mark.parametrize("fault", ["500", "hang", "stopped"])
def test_an_unreachable_upstream_never_makes_health_503(upstream, client, monkeypatch, fault):
    if fault == "500":
        upstream.answer("health", 500, "")
    elif fault == "hang":
        monkeypatch.setattr(external_api, "HEALTH_TIMEOUT", 0.3)  # waited out in full
        upstream.hang("health")
    else:
        upstream.stop()

    response = client.get("/api/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "externalApi": "unreachable"}


def test_health_asks_the_upstream_at_most_every_few_seconds(upstream, client):
    for _ in range(3):
        assert client.get("/api/health").json()["externalApi"] == "ok"

    assert len(upstream.received_for("health")) == 1
