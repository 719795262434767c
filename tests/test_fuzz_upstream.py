"""The external API fuzzed: hostile answers from a real upstream, through the site's views.

The stand-in upstream (scripts/standin_upstream.py) on a loopback port serves answers that
hypothesis makes up, for token usage, generation and ``/health``: wrong types, numbers too
large for a double or for JavaScript, ``NaN`` and ``Infinity`` (bare and as strings), lone
surrogates (escaped and as raw bytes), bytes that are not UTF-8, nesting deeper than any
reader goes, strings of a megabyte, missing and extra fields, times before year 1 and after
9999 in UTC, every kind of status, wrong or no content types, empty bodies and bodies that
end with the connection. The site's own endpoints are then asked through its real
middleware and views (the test client) on the real database, and every answer must be:

- a 2xx with checked values, or a documented error: JSON ``{"error", "code"}`` with a code
  from docs/api.md, and no 5xx but the documented ``502``, ``503`` and ``504``;
- free of tracebacks, in the answer and in the log (no error logged at all);
- in the ledger as it was answered: ``ok`` exactly when the user got their plugin.

Reproducible: derandomized, no example database. The quick check (``-m "not slow"``) tries
a quarter of the examples (tests/example_counts.py).
"""

import json
import logging
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pytest
from django.core.cache import cache
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.documented import documented_error_codes
from tests.example_counts import examples
from usage.external_api import EARLIEST, HEALTH_MAX_BYTES, LATEST, MAX_COUNT
from usage.models import PluginGeneration

pytestmark = pytest.mark.django_db

USAGE_URL = "/api/user/token-usage"
GENERATE_URL = "/api/plugin/generate"
COUNTERS = ("totalTokens", "promptTokens", "completionTokens", "requestCount")
USAGE_KEYS = {*COUNTERS, "userId", "dailyUsage", "monthlyUsage", "lastRequestAt"}
UPSTREAM_CODES = {
    502: {"upstream_error", "upstream_unreachable"},
    503: {"busy", "not_configured"},
    504: {"upstream_timeout"},
}
FUZZ = settings(
    max_examples=examples(150),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# --- Hostile JSON ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """JSON text written as it is: what json.dumps would refuse or never write."""

    text: bytes

    def __repr__(self) -> str:  # hypothesis prints failing examples: not a megabyte of x
        shown = self.text if len(self.text) <= 40 else self.text[:20] + b"..." + self.text[-10:]
        return f"Raw({shown!r}, {len(self.text)} bytes)"


def encoded(value) -> bytes:
    """``value`` as JSON text, with each Raw written as it is."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        pairs = (encoded(key) + b": " + encoded(item) for key, item in value.items())
        return b"{" + b", ".join(pairs) + b"}"
    if isinstance(value, list):
        return b"[" + b", ".join(encoded(item) for item in value) + b"]"
    return json.dumps(value).encode()  # ensure_ascii: a lone surrogate becomes "\ud800"


raw_tokens = st.sampled_from(
    [
        Raw(b"NaN"),
        Raw(b"-Infinity"),
        Raw(b"Infinity"),
        Raw(b"1e400"),
        Raw(b"-1e400"),
        Raw(b"1.7976931348623157e309"),
        Raw(b"9007199254740992"),
        Raw(b"-9007199254740993"),
        Raw(b"1" * 5000),  # past Python's limit on digits
        Raw(b"1.0"),
        Raw(b"-0"),
        Raw(b"1E2"),
        Raw(b'"\\ud800"'),
        Raw(b'"a\\udfffb"'),
        Raw(b'"\xed\xa0\x80"'),  # a surrogate as UTF-8 bytes: json.loads lets it through
        Raw(b'"\xff\xfe"'),  # not UTF-8 at all
        Raw(b'"\x00\x1b[31m"'),
        Raw(b"[" * 40 + b"]" * 40),
        Raw(b"[" * 5000 + b"]" * 5000),
        Raw(b'"' + b"x" * 300_000 + b'"'),
    ]
)
hostile_strings = st.sampled_from(
    ["", "NaN", "Infinity", "-1", "1e400", "null", "true", "\ud800", "a\udc00", "\u202e", "12"]
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | hostile_strings
    | raw_tokens
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8) | hostile_strings, children, max_size=4)
    ),
    max_leaves=12,
)
valid_counts = st.integers(min_value=0, max_value=MAX_COUNT)
counts = (
    valid_counts
    | st.integers(min_value=-5, max_value=5)
    | st.sampled_from([MAX_COUNT, MAX_COUNT + 1, 2**63, -(2**63)])
    | json_values
)


def offset_text(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def moments(earliest: datetime, latest: datetime) -> st.SearchStrategy:
    """ISO 8601 texts of moments in the range: in UTC, with an offset, or with none."""
    return st.builds(
        lambda moment, offset, shape: {
            "Z": moment.isoformat(timespec="milliseconds") + "Z",
            "offset": moment.isoformat() + offset_text(offset),
            "naive": moment.isoformat(),
        }[shape],
        st.datetimes(min_value=earliest, max_value=latest),
        st.integers(min_value=-14 * 60, max_value=14 * 60),
        st.sampled_from(["Z", "offset", "naive"]),
    )


times = (
    st.none()
    | moments(datetime(2000, 1, 2), datetime(2099, 12, 30))
    | moments(datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59))
    | st.sampled_from(
        [
            "9999-12-31T23:59:59-14:00",  # past year 9999 in UTC
            "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
            "9999-12-31T23:59:59.999999",
            "1999-12-31T23:59:59.999Z",
            "2100-01-01T00:00:00Z",
            "2026-11-21",
            "2026-11-21T25:00:00Z",
            "2026-11-21T10:00:00+24:00",
            "yesterday",
        ]
    )
    | json_values
)
valid_days = st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31))
days = (
    valid_days.map(date.isoformat)
    | st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)).map(date.isoformat)
    | st.sampled_from(["2026-02-30", "2026-13-01", "0000-01-01", "20261121", "2026-11"])
    | json_values
)
months = days.map(lambda day: day[:7] if isinstance(day, str) else day)


def period(key: str, keys, values) -> st.SearchStrategy:
    return st.fixed_dictionaries({key: keys, **{name: values for name in COUNTERS}})


def spoiled(valid: st.SearchStrategy, hostile: dict[str, st.SearchStrategy]):
    """A valid document with up to two fields hostile, up to two missing, maybe one extra:
    answers near the documented JSON reach the checks of every single field."""
    changes = st.lists(
        st.sampled_from(sorted(hostile)).flatmap(lambda key: st.tuples(st.just(key), hostile[key])),
        max_size=2,
    ).map(dict)
    dropped = st.sets(st.sampled_from(sorted(hostile)), max_size=2)
    extra = st.dictionaries(st.text(max_size=8) | hostile_strings, json_values, max_size=1)
    return st.builds(
        lambda document, changed, gone, more: {
            key: value for key, value in {**more, **document, **changed}.items() if key not in gone
        },
        valid,
        changes,
        dropped,
        extra,
    )


token_usage_answers = spoiled(
    st.fixed_dictionaries(
        {
            "userId": st.just("alice"),
            **{name: valid_counts for name in COUNTERS},
            "dailyUsage": st.lists(
                period("date", valid_days.map(date.isoformat), valid_counts), max_size=3
            ),
            "monthlyUsage": st.lists(
                period("month", valid_days.map(lambda day: f"{day:%Y-%m}"), valid_counts),
                max_size=3,
            ),
            # The field of the issue: a sane time, or anything else.
            "lastRequestAt": st.none()
            | moments(datetime(2000, 1, 2), datetime(2099, 12, 30))
            | times,
        }
    ),
    {
        "userId": st.just("bob") | json_values,
        **{name: counts for name in COUNTERS},
        "dailyUsage": st.lists(period("date", days, counts), max_size=3) | json_values,
        "monthlyUsage": st.lists(period("month", months, counts), max_size=3) | json_values,
        "lastRequestAt": times,
    },
)
token_counts = st.fixed_dictionaries({name: valid_counts for name in COUNTERS[:3]})
generation_answers = spoiled(
    st.fixed_dictionaries(
        {
            "result": st.fixed_dictionaries(
                {"name": st.text(max_size=20), "code": st.text(max_size=200)},
                optional={"more": json_values},  # anything, passed on as it is when it can be
            ),
            "tokenUsage": st.none() | token_counts,
        }
    ),
    {
        "result": st.dictionaries(st.text(max_size=8) | hostile_strings, json_values, max_size=4)
        | json_values,
        "tokenUsage": st.fixed_dictionaries({}, optional={name: counts for name in COUNTERS[:3]})
        | json_values,
    },
)


def bodies(documents: st.SearchStrategy) -> st.SearchStrategy:
    """The document as JSON, or that JSON spoiled, or other bytes altogether."""
    text = documents.map(encoded)
    spoilt = (
        text.map(lambda raw: raw[: len(raw) // 2])  # cut short
        | text.map(lambda raw: raw.replace(b"0", b"\xff", 1))  # not UTF-8
        | text.map(lambda raw: b"\xef\xbb\xbf" + raw)  # a byte order mark
        | text.map(lambda raw: raw.decode("utf-8", "replace").encode("utf-16"))
        | json_values.map(encoded)
        | st.sampled_from([b"", b" ", b"null", b"<html>502 Bad Gateway</html>", b"\x00" * 8])
    )
    return text | text | spoilt  # one of each two the JSON as it is


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str | None
    declare_length: bool


def answers(documents: st.SearchStrategy) -> st.SearchStrategy:
    return st.builds(
        Answer,
        status=st.just(200)
        | st.sampled_from([200, 201, 202, 203, 204, 206, 299, 301, 302, 304, 500, 502, 503, 504])
        | st.sampled_from([400, 401, 403, 404, 407, 409, 418, 422, 429]),
        body=bodies(documents),
        content_type=st.sampled_from(
            ["application/json", "application/json; charset=iso-8859-1", "text/html", None]
        ),
        declare_length=st.booleans(),
    )


# --- Checking the site's answers -------------------------------------------------------------


@pytest.fixture
def fuzzing(upstream, throttle_rates, caplog):
    """The stand-in, no rate limit in the way, and every log record of the site kept."""
    throttle_rates(plugin="100000/min", token_usage_refresh="100000/min")
    caplog.set_level(logging.INFO)
    return upstream


def serve(upstream, route: str, answer: Answer) -> None:
    upstream.reset()
    cache.clear()  # nothing cached: each example asks the upstream
    upstream.answer(
        route,
        answer.status,
        answer.body,
        declare_length=answer.declare_length,
        content_type=answer.content_type,
    )


def assert_answered_as_documented(response, caplog) -> dict:
    """The answer's JSON, after checking that it is a 2xx or a documented error."""
    text = response.content.decode("utf-8")  # strictly: it must be UTF-8
    assert "Traceback" not in text
    tracebacks = [record.getMessage()[:300] for record in caplog.records if record.exc_info]
    assert tracebacks == []
    # Django logs each 5xx answer as an error: the documented ones only.
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert {getattr(record, "status_code", None) for record in errors} <= set(UPSTREAM_CODES)
    assert response["Content-Type"] == "application/json"
    body = json.loads(text, parse_constant=pytest.fail)
    if response.status_code >= 500:
        assert response.status_code in UPSTREAM_CODES, (response.status_code, body)
        assert body["code"] in UPSTREAM_CODES[response.status_code]
    if response.status_code >= 400:
        assert set(body) == {"error", "code"}
        assert isinstance(body["error"], str) and body["error"]
        assert body["code"] in documented_error_codes()
    return body


def assert_a_count(value) -> None:
    assert type(value) is int and 0 <= value <= MAX_COUNT


def assert_checked_usage(usage: dict) -> None:
    assert usage["userId"] == "alice"
    extra = {"fetchedAt", "stale", "staleReason", "noUsageYet"}
    assert USAGE_KEYS <= set(usage) <= USAGE_KEYS | extra
    for name in COUNTERS:
        assert_a_count(usage[name])
    for key, entries in (("date", usage["dailyUsage"]), ("month", usage["monthlyUsage"])):
        for entry in entries:
            assert set(entry) == {key, *COUNTERS}
            for name in COUNTERS:
                assert_a_count(entry[name])
            day = date.fromisoformat(entry[key] if key == "date" else f"{entry[key]}-01")
            assert EARLIEST.date() <= day <= LATEST.date()
    if usage["lastRequestAt"] is not None:
        moment = datetime.fromisoformat(usage["lastRequestAt"])
        assert moment.utcoffset() == timedelta(0)
        assert EARLIEST <= moment <= LATEST


def ledger_outcomes() -> list[str]:
    return list(PluginGeneration.objects.order_by("id").values_list("outcome", flat=True))


# --- The fuzzers -----------------------------------------------------------------------------


@FUZZ
@given(answer=answers(token_usage_answers), had_a_copy=st.booleans())
def test_any_token_usage_answer_is_checked_values_a_documented_error_or_the_stale_copy(
    fuzzing, owner_api, caplog, answer, had_a_copy
):
    if had_a_copy:  # a good answer first, so that a failure may serve it stale
        fuzzing.reset()
        cache.clear()
        fuzzing.generate(json.dumps({"userId": "alice", "prompt": "p"}).encode())
        good = owner_api.get(USAGE_URL, {"refresh": "1"}).json()
        fuzzing.answer(
            "token-usage",
            answer.status,
            answer.body,
            declare_length=answer.declare_length,
            content_type=answer.content_type,
        )
    else:
        serve(fuzzing, "token-usage", answer)
    caplog.clear()

    response = owner_api.get(USAGE_URL, {"refresh": "1"})

    body = assert_answered_as_documented(response, caplog)
    event(f"{response.status_code} {body.get('code') or ('stale' if body['stale'] else 'fresh')}")
    if response.status_code == 200:
        assert_checked_usage(body)
        if body["stale"]:
            assert had_a_copy
            assert body == {**good, "stale": True, "staleReason": body["staleReason"]}
    else:
        # A 404 of the upstream is "no usage yet" for alice, a user of the site: zeros.
        assert response.status_code in (502, 504), body
        assert not (had_a_copy and response.status_code in (502, 504))  # the copy instead


@FUZZ
@given(answer=answers(generation_answers))
def test_any_generation_answer_is_a_plugin_or_a_documented_error_and_the_ledger_agrees(
    fuzzing, owner_api, caplog, answer
):
    serve(fuzzing, "generate", answer)
    before = ledger_outcomes()
    caplog.clear()

    response = owner_api.post(
        GENERATE_URL, data=json.dumps({"prompt": "x"}), content_type="application/json"
    )

    body = assert_answered_as_documented(response, caplog)
    event(f"{response.status_code} {body.get('code', 'plugin')}")
    added = ledger_outcomes()[len(before) :]
    assert len(added) == 1  # every one reached the upstream
    if 200 <= response.status_code < 300:
        assert added == ["ok"]
        assert set(body) == {"result", "tokenUsage"}
        assert isinstance(body["result"], dict)
        if body["tokenUsage"] is not None:
            assert set(body["tokenUsage"]) == set(COUNTERS[:3])
            for name in COUNTERS[:3]:
                assert_a_count(body["tokenUsage"][name])
    else:
        assert added == [body["code"]]
        assert added != ["ok"]


@FUZZ
@given(answer=answers(json_values))
def test_any_health_answer_is_reported_and_never_fails_the_sites_health(
    fuzzing, client, caplog, answer
):
    serve(fuzzing, "health", answer)
    caplog.clear()

    response = client.get("/api/health")

    body = assert_answered_as_documented(response, caplog)
    assert response.status_code == 200
    # /health is read for its status alone, within its own size cap.
    ok = answer.status == 200 and len(answer.body) <= HEALTH_MAX_BYTES
    assert body == {
        "status": "ok",
        "database": "ok",
        "externalApi": "ok" if ok else "unreachable",
    }


@FUZZ
@given(request=st.dictionaries(st.text(max_size=8) | hostile_strings, json_values, max_size=4))
def test_any_generation_request_is_forwarded_as_strict_json_or_refused_before_sending(
    fuzzing, owner_api, caplog, request
):
    fuzzing.reset()
    caplog.clear()
    sent = encoded({"prompt": "x", **request})

    response = owner_api.post(GENERATE_URL, data=sent, content_type="application/json")

    body = assert_answered_as_documented(response, caplog)
    event(f"{response.status_code} {body.get('code', 'plugin')}")
    forwarded = fuzzing.received_for("generate")
    if response.status_code == 400 and body["code"] == "invalid_body":
        assert forwarded == []
        return
    [request_sent] = forwarded
    strict = json.loads(request_sent.body.decode("utf-8"), parse_constant=pytest.fail)
    assert strict["userId"] == "alice"
    assert all(not isinstance(value, float) or math.isfinite(value) for value in strict.values())
