"""The external API client (usage.external_api) against a real HTTP upstream on loopback.

The upstream is the development stand-in (scripts/standin_upstream.py), with faults
injected into its answers: nothing in the client is patched.
"""

import threading
import time

import pytest

from tests.conftest import UPSTREAM_KEY
from tests.live_server import free_port, poll
from usage import external_api
from usage.external_api import (
    Busy,
    InvalidUserId,
    NotConfigured,
    Rejected,
    Timeout,
    UnknownUser,
    Unreachable,
    UpstreamError,
)

FULL_ANSWER = {
    "userId": "alice",
    "totalTokens": 300,
    "promptTokens": 100,
    "completionTokens": 200,
    "requestCount": 3,
    "dailyUsage": [
        {
            "date": "2026-11-21",
            "promptTokens": 60,
            "completionTokens": 120,
            "totalTokens": 180,
            "requestCount": 2,
        },
        {
            "date": "2026-11-20",
            "promptTokens": 40,
            "completionTokens": 80,
            "totalTokens": 120,
            "requestCount": 1,
        },
    ],
    "monthlyUsage": [
        {
            "month": "2026-11",
            "promptTokens": 100,
            "completionTokens": 200,
            "totalTokens": 300,
            "requestCount": 3,
        }
    ],
    "lastRequestAt": "2026-11-21T17:18:20.605+01:00",
}
# Far above what any of these tests needs: a test that waits for it has failed.
LONG = 60.0


@pytest.fixture
def slow_limits(settings):
    """Overall limits short enough to reach, read timeouts long enough not to decide."""
    settings.EXTERNAL_API_READ_TIMEOUT = LONG
    settings.EXTERNAL_API_TIMEOUT = 0.5
    settings.EXTERNAL_API_GENERATE_TIMEOUT = 0.5


# --- Token usage -----------------------------------------------------------------------------


def test_token_usage_is_read_and_normalised(upstream):
    upstream.answer("token-usage", 200, {**FULL_ANSWER, "plan": "pro", "cost": {"usd": 1}})

    usage = external_api.fetch_token_usage("alice")

    assert usage == {
        "userId": "alice",
        "totalTokens": 300,
        "promptTokens": 100,
        "completionTokens": 200,
        "requestCount": 3,
        # In date order, whatever the upstream's.
        "dailyUsage": [FULL_ANSWER["dailyUsage"][1], FULL_ANSWER["dailyUsage"][0]],
        "monthlyUsage": FULL_ANSWER["monthlyUsage"],
        "lastRequestAt": "2026-11-21T16:18:20.605Z",
    }


def test_missing_counters_read_as_zero_and_unknown_keys_are_ignored(upstream):
    upstream.answer(
        "token-usage",
        200,
        {
            "totalTokens": 12,
            "requestCount": None,
            "dailyUsage": [{"date": "2026-11-21", "totalTokens": 12, "model": "gpt"}],
            "extra": [1, 2, 3],
        },
    )

    usage = external_api.fetch_token_usage("alice")

    assert usage == {
        "userId": "alice",
        "totalTokens": 12,
        "promptTokens": 0,
        "completionTokens": 0,
        "requestCount": 0,
        "dailyUsage": [
            {
                "date": "2026-11-21",
                "promptTokens": 0,
                "completionTokens": 0,
                "totalTokens": 12,
                "requestCount": 0,
            }
        ],
        "monthlyUsage": [],
        "lastRequestAt": None,
    }


def test_usage_counted_by_the_standin_comes_back_for_that_user(upstream):
    external_api.generate_plugin("alice", {"prompt": "A plugin that counts words"})

    usage = external_api.fetch_token_usage("alice")

    assert usage["requestCount"] == 1
    assert usage["totalTokens"] == usage["promptTokens"] + usage["completionTokens"] > 0
    assert [day["requestCount"] for day in usage["dailyUsage"]] == [1]


def test_an_unknown_user_is_unknown_user(upstream):
    with pytest.raises(UnknownUser) as raised:
        external_api.fetch_token_usage("nobody-yet")

    assert raised.value.upstream_status == 404


@pytest.mark.parametrize(
    ("user_id", "raw_path"),
    [
        ("alice", "/user/alice/token-usage"),
        ("a.b@c+d-e_f", "/user/a.b%40c%2Bd-e_f/token-usage"),
        ("zoë", "/user/zo%C3%AB/token-usage"),
        ("..a", "/user/..a/token-usage"),
    ],
)
def test_the_user_id_reaches_the_upstream_encoded_as_one_path_segment(upstream, user_id, raw_path):
    upstream.answer("token-usage", 200, {"userId": user_id})

    external_api.fetch_token_usage(user_id)

    [request] = upstream.received_for("token-usage")
    assert (request.method, request.path) == ("GET", raw_path)


@pytest.mark.parametrize(
    "user_id",
    [
        *("../x", "..", ".", "a/b", "?x", "x?y=1", "a#b", "%2e%2e", "%2F"),
        *("a\r\nb", "a\nb", "a\x00b", "", "a" * 151, "a b", "a\\b", "a;b"),
    ],
)
def test_an_id_that_is_not_a_username_is_refused_before_any_request(upstream, user_id):
    with pytest.raises(InvalidUserId):
        external_api.fetch_token_usage(user_id)
    with pytest.raises(InvalidUserId):
        external_api.generate_plugin(user_id, {"prompt": "x"})

    assert upstream.received == []


def test_a_username_of_150_characters_is_accepted(upstream):
    upstream.answer("token-usage", 200, {})

    assert external_api.fetch_token_usage("u" * 150)["userId"] == "u" * 150


def test_the_upstream_receives_its_own_key_and_no_cookie(upstream):
    upstream.answer("token-usage", 200, {})

    external_api.fetch_token_usage("alice")

    [request] = upstream.received
    assert request.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert "cookie" not in request.headers
    assert request.headers["accept"] == "application/json"
    assert request.headers["accept-encoding"] == "identity"
    assert request.headers["user-agent"] == "usage-site"


def test_no_authorization_is_sent_when_no_key_is_configured(upstream, settings):
    settings.EXTERNAL_API_KEY = ""
    upstream.answer("token-usage", 200, {})

    external_api.fetch_token_usage("alice")

    assert "authorization" not in upstream.received[0].headers


def test_a_cookie_the_upstream_sets_is_never_sent_back(upstream):
    upstream.answer("token-usage", 200, {}, {"Set-Cookie": "session=alices-secret; Path=/"})

    external_api.fetch_token_usage("alice")
    external_api.fetch_token_usage("bob")

    assert [request.headers.get("cookie") for request in upstream.received] == [None, None]


@pytest.mark.parametrize(
    "answer",
    [
        [FULL_ANSWER],
        {"totalTokens": -1},
        {"totalTokens": "12"},
        {"totalTokens": 12.0},
        {"totalTokens": True},
        {"totalTokens": 2**53},
        {"dailyUsage": {"2026-11-21": {}}},
        {"dailyUsage": ["2026-11-21"]},
        {"dailyUsage": [{"date": "2026-13-01"}]},
        {"dailyUsage": [{"date": "20261121"}]},
        {"dailyUsage": [{"totalTokens": 1}]},
        {"monthlyUsage": [{"month": "2026-1"}]},
        {"monthlyUsage": [{"month": "2026-11-01"}]},
        {"lastRequestAt": "yesterday"},
        {"lastRequestAt": 1795167000000},
        {"userId": "bob"},
    ],
)
def test_an_answer_that_is_not_the_documented_json_is_an_upstream_error(upstream, answer):
    upstream.answer("token-usage", 200, answer)

    with pytest.raises(UpstreamError) as raised:
        external_api.fetch_token_usage("alice")

    assert raised.value.code == "upstream_error"


@pytest.mark.parametrize(
    "body", [b"<html>Bad gateway</html>", b"", b'{"totalTokens": NaN}', b"[" * 100_000]
)
def test_a_body_that_is_not_json_is_an_upstream_error(upstream, body):
    upstream.answer("token-usage", 200, body)

    with pytest.raises(UpstreamError):
        external_api.fetch_token_usage("alice")


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_5xx_is_an_upstream_error_whose_message_hides_the_body(upstream, status):
    upstream.answer("token-usage", status, "Traceback (most recent call last): secret-dsn")

    with pytest.raises(UpstreamError) as raised:
        external_api.fetch_token_usage("alice")

    assert raised.value.upstream_status == status
    assert "secret" not in raised.value.message
    assert "Traceback" not in raised.value.message


def test_the_upstream_refusing_the_sites_key_is_an_upstream_error(upstream, settings):
    settings.EXTERNAL_API_KEY = "a-wrong-key"

    with pytest.raises(UpstreamError) as analytics:
        external_api.fetch_token_usage("alice")
    with pytest.raises(UpstreamError) as generation:  # not a Rejected passed on to the user
        external_api.generate_plugin("alice", {"prompt": "x"})

    assert analytics.value.upstream_status == generation.value.upstream_status == 401


@pytest.mark.parametrize("status", [400, 403, 429])
def test_any_other_4xx_for_analytics_is_an_upstream_error(upstream, status):
    upstream.answer("token-usage", status, {"error": "No"})

    with pytest.raises(UpstreamError) as raised:
        external_api.fetch_token_usage("alice")

    assert raised.value.upstream_status == status


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed(upstream, status):
    upstream.answer("token-usage", status, b"", {"Location": f"{upstream.url}/health"})

    with pytest.raises(UpstreamError):
        external_api.fetch_token_usage("alice")

    assert [request.route for request in upstream.received] == ["token-usage"]


# --- Size cap --------------------------------------------------------------------------------


@pytest.mark.parametrize("declare_length", [True, False])
def test_an_answer_over_the_size_cap_is_refused(upstream, settings, declare_length):
    settings.EXTERNAL_API_MAX_BYTES = 4096
    upstream.oversized("token-usage", 4097, declare_length=declare_length)

    with pytest.raises(UpstreamError) as raised:
        external_api.fetch_token_usage("alice")

    assert "over 4096" in raised.value.detail


@pytest.mark.parametrize("declare_length", [True, False])
def test_an_answer_of_exactly_the_size_cap_is_read(upstream, settings, declare_length):
    settings.EXTERNAL_API_MAX_BYTES = 4096
    upstream.oversized("token-usage", 4096, declare_length=declare_length)

    assert external_api.fetch_token_usage("alice")["totalTokens"] == 0


def test_a_huge_answer_is_cut_off_without_being_read_whole(upstream, settings):
    settings.EXTERNAL_API_MAX_BYTES = 1024 * 1024
    # A valid answer (one unknown key), which only the cap refuses.
    upstream.oversized("token-usage", 50 * 1024 * 1024, declare_length=False)

    with pytest.raises(UpstreamError) as raised:
        external_api.fetch_token_usage("alice")

    assert "over 1048576 bytes" in raised.value.detail


# --- Time ------------------------------------------------------------------------------------


def test_a_hanging_upstream_times_out_at_the_overall_timeout(upstream, slow_limits):
    upstream.hang("token-usage")
    started = time.monotonic()

    with pytest.raises(Timeout) as raised:
        external_api.fetch_token_usage("alice")

    # The read timeout (60 s) did not decide: the overall one (0.5 s) did.
    assert time.monotonic() - started < LONG / 2
    assert raised.value.code == "upstream_timeout"
    assert raised.value.reached is True


def test_a_body_trickling_a_byte_at_a_time_is_cut_at_the_overall_deadline(upstream, slow_limits):
    upstream.answer("token-usage", 200, {**FULL_ANSWER, "padding": "x" * 500})
    upstream.trickle("token-usage", seconds_per_byte=0.05)  # over 60 s for the whole body
    started = time.monotonic()

    with pytest.raises(Timeout):
        external_api.fetch_token_usage("alice")

    assert time.monotonic() - started < LONG / 2


def test_a_trickling_body_that_ends_in_time_is_read(upstream):
    external_api.generate_plugin("alice", {"prompt": "A plugin"})
    upstream.trickle("token-usage", seconds_per_byte=0.001)

    assert external_api.fetch_token_usage("alice")["requestCount"] == 1


def test_a_generation_gets_its_own_longer_timeout(upstream, settings):
    settings.EXTERNAL_API_TIMEOUT = 0.05
    settings.EXTERNAL_API_GENERATE_TIMEOUT = LONG
    # Its answer (about 400 bytes) takes about 0.4 s to arrive: eight times analytics' limit.
    upstream.trickle("generate", seconds_per_byte=0.001)

    generation = external_api.generate_plugin("alice", {"prompt": "A plugin"})

    assert generation.status == 200
    assert generation.token_usage["totalTokens"] > 0


def test_a_hanging_generation_times_out_and_counts_as_reached(upstream, slow_limits):
    upstream.hang("generate")

    with pytest.raises(Timeout) as raised:
        external_api.generate_plugin("alice", {"prompt": "A plugin"})

    assert raised.value.reached is True
    assert len(upstream.received_for("generate")) == 1


def test_a_closed_port_is_unreachable_and_never_reached(settings):
    settings.EXTERNAL_API_URL = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(Unreachable) as raised:
        external_api.fetch_token_usage("alice")

    assert raised.value.code == "upstream_unreachable"
    assert raised.value.reached is False


def test_without_a_url_nothing_is_configured(settings):
    settings.EXTERNAL_API_URL = ""

    with pytest.raises(NotConfigured):
        external_api.fetch_token_usage("alice")
    with pytest.raises(NotConfigured):
        external_api.generate_plugin("alice", {"prompt": "x"})
    assert external_api.health() == "not configured"


# --- Generation ------------------------------------------------------------------------------


def test_a_generation_sends_the_request_with_the_user_id_overwritten(upstream):
    generation = external_api.generate_plugin(
        "alice", {"prompt": "A plugin that counts words", "userId": "mallory", "lang": "js"}
    )

    [request] = upstream.received_for("generate")
    assert (request.method, request.path) == ("POST", "/plugin/generate")
    assert request.json() == {
        "prompt": "A plugin that counts words",
        "userId": "alice",
        "lang": "js",
    }
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert generation.status == 200
    assert generation.result["description"] == "A plugin that counts words"
    assert generation.token_usage == {
        "promptTokens": 18,
        "completionTokens": 94,
        "totalTokens": 112,
    }


def test_a_generation_without_token_usage_has_none(upstream):
    upstream.answer("generate", 201, {"result": {"name": "p"}})

    generation = external_api.generate_plugin("alice", {"prompt": "x"})

    assert (generation.status, generation.result, generation.token_usage) == (
        201,
        {"name": "p"},
        None,
    )


@pytest.mark.parametrize(
    "answer",
    [
        {"tokenUsage": {"totalTokens": 1}},
        {"result": "code", "tokenUsage": {}},
        {"result": {}, "tokenUsage": {"totalTokens": -5}},
        {"result": {}, "tokenUsage": [1, 2]},
    ],
)
def test_a_generation_answer_without_a_result_object_or_with_bad_counts_is_an_upstream_error(
    upstream, answer
):
    upstream.answer("generate", 200, answer)

    with pytest.raises(UpstreamError) as raised:
        external_api.generate_plugin("alice", {"prompt": "x"})

    assert raised.value.reached is True


def test_a_generation_the_upstream_refuses_is_rejected_with_its_message(upstream):
    with pytest.raises(Rejected) as raised:
        external_api.generate_plugin("alice", {"prompt": "  "})

    assert raised.value.status == 400
    assert raised.value.message == "prompt is required: describe the plugin to generate."
    assert raised.value.code == "rejected_by_upstream"


def test_a_rejection_message_is_plain_text_of_bounded_length(upstream):
    upstream.answer("generate", 422, {"error": "line one\r\nline\x1btwo " + "y" * 1000})

    with pytest.raises(Rejected) as raised:
        external_api.generate_plugin("alice", {"prompt": "x"})

    assert raised.value.status == 422
    assert raised.value.message.startswith("line one line two yyy")
    assert len(raised.value.message) == 300


def test_a_rejection_without_a_json_error_gets_a_generic_message(upstream):
    upstream.answer("generate", 400, "<html>Bad request</html>")

    with pytest.raises(Rejected) as raised:
        external_api.generate_plugin("alice", {"prompt": "x"})

    assert raised.value.message == "The plugin generator refused the request."


def test_a_404_for_a_generation_is_an_upstream_error_not_passed_on(upstream):
    upstream.answer("generate", 404, {"error": "No such route"})

    with pytest.raises(UpstreamError):
        external_api.generate_plugin("alice", {"prompt": "x"})


# --- Bulkhead --------------------------------------------------------------------------------


def test_calls_past_the_limit_fail_fast_as_busy_while_others_wait(upstream, settings):
    settings.EXTERNAL_API_MAX_CONCURRENT = 3
    upstream.hang("generate")
    upstream.answer("token-usage", 200, {})
    results = []
    workers = [
        threading.Thread(
            target=lambda: results.append(external_api.generate_plugin("alice", {"prompt": "x"}))
        )
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    try:
        poll(lambda: len(upstream.received_for("generate")) == 2, 10, "two hanging calls")

        # Generations may take every slot but one: the third is busy...
        with pytest.raises(Busy):
            external_api.generate_plugin("alice", {"prompt": "x"})
        # ...and the last slot is left for reads, so the token panel still gets its numbers.
        assert external_api.fetch_token_usage("alice")["userId"] == "alice"
        assert external_api.health() == "ok"  # short, cached by callers: outside the limit
    finally:
        upstream.release()
        for worker in workers:
            worker.join(10)

    assert [generation.status for generation in results] == [200, 200]
    assert len(upstream.received_for("generate")) == 2
    assert len(upstream.received_for("token-usage")) == 1
    # Slots are given back, failures included.
    upstream.answer("token-usage", 500, "")
    for _ in range(4):
        with pytest.raises(UpstreamError):
            external_api.fetch_token_usage("alice")
    upstream.answer("token-usage", 200, {})
    assert external_api.fetch_token_usage("alice")["userId"] == "alice"


def test_reads_past_the_limit_are_busy_too(upstream, settings):
    settings.EXTERNAL_API_MAX_CONCURRENT = 1
    upstream.hang("token-usage")
    outcomes = []

    def read() -> None:
        try:
            outcomes.append(external_api.fetch_token_usage("alice"))
        except UnknownUser as unknown:  # the stand-in has no usage for alice yet
            outcomes.append(unknown)

    worker = threading.Thread(target=read)
    worker.start()
    try:
        poll(lambda: len(upstream.received_for("token-usage")) == 1, 10, "one hanging read")
        with pytest.raises(Busy):
            external_api.fetch_token_usage("bob")
    finally:
        upstream.release()
        worker.join(10)
    assert [type(outcome) for outcome in outcomes] == [UnknownUser]


# --- Health ----------------------------------------------------------------------------------


def test_health_is_ok_when_the_upstream_answers_200(upstream):
    assert external_api.health() == "ok"
    assert upstream.received[0].path == "/health"


@pytest.mark.parametrize("fault", ["500", "hang", "closed"])
def test_health_is_unreachable_when_the_upstream_fails(upstream, settings, monkeypatch, fault):
    if fault == "500":
        upstream.answer("health", 500, "")
    elif fault == "hang":
        monkeypatch.setattr(external_api, "HEALTH_TIMEOUT", 0.3)  # waited out in full
        upstream.hang("health")
    else:
        settings.EXTERNAL_API_URL = f"http://127.0.0.1:{free_port()}"

    assert external_api.health() == "unreachable"


# --- Hostile answers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "moment",
    [
        "9999-12-31T23:59:59-14:00",  # past year 9999 in UTC: Python cannot hold it
        "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
        "1999-12-31T23:59:59Z",  # before the range
        "2100-01-01T00:00:00Z",  # after it
        "2026-11-21T17:18:20.605\ud800",  # not a time, and not Unicode
    ],
)
def test_a_last_request_time_out_of_range_is_an_upstream_error(upstream, moment):
    upstream.answer("token-usage", 200, {**FULL_ANSWER, "lastRequestAt": moment})

    with pytest.raises(UpstreamError):
        external_api.fetch_token_usage("alice")


def test_the_range_of_times_and_days_is_inclusive_at_both_ends(upstream):
    upstream.answer(
        "token-usage",
        200,
        {
            **FULL_ANSWER,
            "lastRequestAt": "2000-01-01T00:00:00+00:00",
            "dailyUsage": [{"date": "2099-12-31"}, {"date": "2000-01-01"}],
            "monthlyUsage": [{"month": "2000-01"}, {"month": "2099-12"}],
        },
    )

    usage = external_api.fetch_token_usage("alice")

    assert usage["lastRequestAt"] == "2000-01-01T00:00:00.000Z"
    assert [day["date"] for day in usage["dailyUsage"]] == ["2000-01-01", "2099-12-31"]
    assert [month["month"] for month in usage["monthlyUsage"]] == ["2000-01", "2099-12"]


@pytest.mark.parametrize(
    "answer",
    [
        {"dailyUsage": [{"date": "1999-12-31"}]},
        {"dailyUsage": [{"date": "2100-01-01"}]},
        {"monthlyUsage": [{"month": "0001-01"}]},
        {"monthlyUsage": [{"month": "9999-12"}]},
        {"totalTokens": [[[[[[[[[[1]]]]]]]]]]},
        {"userId": [[[[["alice"]]]]]},
    ],
)
def test_days_months_and_values_out_of_range_are_an_upstream_error(upstream, answer):
    upstream.answer("token-usage", 200, {**FULL_ANSWER, **answer})

    with pytest.raises(UpstreamError):
        external_api.fetch_token_usage("alice")


def test_a_value_nested_deeper_than_the_parser_can_describe_is_still_an_upstream_error(upstream):
    # Parsed (under the recursion limit) but too deep to print: the error message must not try.
    deep = "[" * 900 + "]" * 900
    upstream.answer("token-usage", 200, f'{{"totalTokens": {deep}}}')

    with pytest.raises(UpstreamError):
        external_api.fetch_token_usage("alice")


@pytest.mark.parametrize(
    "raw",
    [
        # JSON escapes that make strings Python holds but UTF-8 cannot encode.
        b'{"result": {"name": "a \\ud800"}}',
        b'{"result": {"\\udfff": 1}}',
        # The same, as raw bytes (UTF-8 encoded surrogates), which json.loads lets through.
        b'{"result": {"name": "a \xed\xa0\x80"}}',
        # Finite in JSON's grammar, infinite as a double: not JSON a browser could hold.
        b'{"result": {"size": 1e400}}',
        b'{"result": {"size": -1e400}}',
        # Integers beyond what JSON consumers hold exactly.
        b'{"result": {"size": 9007199254740992}}',
        b'{"result": {"size": -9007199254740992}}',
        # Nesting the site would not pass on.
        b'{"result": {"a": ' + b"[" * 100 + b"]" * 100 + b"}}",
    ],
)
def test_a_generation_answer_that_cannot_be_passed_on_as_json_is_an_upstream_error(upstream, raw):
    upstream.answer("generate", 200, raw)

    with pytest.raises(UpstreamError) as raised:
        external_api.generate_plugin("alice", {"prompt": "x"})

    assert raised.value.reached is True


def test_a_generation_answer_within_every_bound_is_passed_on_as_it_is(upstream):
    result = {"name": "p", "n": [9007199254740991, -9007199254740991, 1.5e300], "deep": [[[[]]]]}
    upstream.answer("generate", 200, {"result": result, "tokenUsage": None})

    assert external_api.generate_plugin("alice", {"prompt": "x"}).result == result


@pytest.mark.parametrize("status", [204, 205, 206])
def test_a_2xx_that_cannot_carry_the_answer_is_an_upstream_error(upstream, status):
    upstream.answer("generate", status, {"result": {}})

    with pytest.raises(UpstreamError):
        external_api.generate_plugin("alice", {"prompt": "x"})


def test_a_rejection_message_with_a_lone_surrogate_is_valid_unicode(upstream):
    upstream.answer("generate", 422, b'{"error": "bad \\ud800 prompt"}')

    with pytest.raises(Rejected) as raised:
        external_api.generate_plugin("alice", {"prompt": "x"})

    assert raised.value.message.encode("utf-8").decode() == raised.value.message
    assert raised.value.message.startswith("bad ")


@pytest.mark.parametrize(
    "request_body",
    [
        {"prompt": "x", "n": float("inf")},
        {"prompt": "x", "n": float("nan")},
        {"prompt": "a \ud800"},
    ],
)
def test_a_request_that_is_not_strict_json_is_refused_and_never_sent(upstream, request_body):
    with pytest.raises(external_api.InvalidRequest) as raised:
        external_api.generate_plugin("alice", request_body)

    assert (raised.value.status, raised.value.code, raised.value.reached) == (
        400,
        "invalid_body",
        False,
    )
    assert upstream.received == []
