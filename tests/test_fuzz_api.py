"""Schemathesis fuzzes every operation of the OpenAPI schema that the site serves.

The schema is the one at /api/schema/, read through the site's own WSGI application, and
every request goes through that application in this process: real middleware, real views,
the real test database, the stand-in external API on a loopback port. Each answer must be
no 5xx, a documented status with the documented content type, headers and body, and
authentication must hold: the same request without credentials, with an unknown token or
with a revoked one is a 401.

The run is reproducible: a fixed seed and derandomized generation, so CI fuzzes the same
requests every time. Statuses that the fuzzer cannot reach on a healthy site (429, 413,
the external API's failures, a database that is down) are provoked one by one below and
checked against the same schema.
"""

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import schemathesis
from django.core.cache import cache
from django.utils import timezone
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi import checks as openapi_checks

from tests.conftest import make_record
from tests.example_counts import examples
from tests.live_server import HOST, free_port, gunicorn
from usage.tokens import create_token, revoke_token
from usage_site.wsgi import application

# Real commits: every request is its own transaction and ends the way a server's does
# (Django's request_finished closes a connection left inside a test's transaction).
pytestmark = pytest.mark.django_db(transaction=True)

SCHEMA_PATH = "/api/schema/?format=json"
OWNER = "alice"  # the owner fixture's username, offered to the fuzzer for X-User-ID and userId
OTHER_MODEL = "Bob's private model"  # stored for another user: never in the owner's answers
UNKNOWN_TOKEN = "usg_" + "A" * 51  # well formed, never issued
EXAMPLES_PER_OPERATION = examples(40)  # the fuzzing phase's share; coverage adds its own

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 7_2026,
        "generation": {
            "mode": "all",  # valid requests and invalid ones
            "deterministic": True,
            "database": "none",
            "max-examples": EXAMPLES_PER_OPERATION,
        },
        # Stateful links are not in this schema; examples, coverage and fuzzing phases run.
        "phases": {"stateful": {"enabled": False}},
        "dictionaries": {
            "owner": {"values": [OWNER]},
            # Whole-hour, half-hour, 45-minute and DST-shifting zones, and the date line.
            "zones": {
                "values": [
                    "UTC",
                    "Europe/Paris",
                    "America/New_York",
                    "Asia/Kolkata",
                    "Asia/Kathmandu",
                    "America/St_Johns",
                    "Australia/Lord_Howe",
                    "Pacific/Kiritimati",
                ]
            },
        },
        # Without these, nearly every generated X-User-ID names someone else (a 403 before
        # the body is read) and nearly every tz is not a zone (a 400 before the summary).
        "parameters": {
            "header.X-User-ID": {"dictionary": "owner", "probability": 0.7},
            "query.userId": {"dictionary": "owner", "probability": 0.5},
            "query.tz": {"dictionary": "zones", "probability": 0.6},
        },
    }
)
SCHEMA = schemathesis.openapi.from_wsgi(SCHEMA_PATH, application, config=CONFIG)

DOCUMENTED = [
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
]
CONFORMANCE = [not_a_server_error, *DOCUMENTED]
CHECKS = [*CONFORMANCE, openapi_checks.ignored_auth]


# Only these answer anyone. Listed here rather than read from the schema: a view opened
# to anonymous callers by mistake would open its schema entry too.
PUBLIC = {"GET /api/health", "GET /api/health/simple"}


def schema_requires_credentials(operation) -> bool:
    return all(requirement for requirement in operation.definition.raw.get("security", [{}]))


@dataclass
class Tally:
    """What the fuzzer sent to one operation and what came back, printed after its run."""

    operation: str = ""
    examples: int = 0
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)

    def line(self) -> str:
        seen = ", ".join(f"{status}: {n}" for status, n in sorted(self.statuses.items()))
        return f"fuzz {self.operation}: {self.examples} examples, {self.requests} requests ({seen})"


@dataclass
class Credentials:
    valid: dict[str, str]
    refused: list[tuple[str, dict[str, str]]]


@pytest.fixture
def credentials(owner_token) -> Credentials:
    revoked = create_token(owner_token.token.owner, "Old laptop")
    revoke_token(revoked.token)
    return Credentials(
        valid={"Authorization": f"Bearer {owner_token.raw}"},
        refused=[
            ("no credentials", {}),
            ("an unknown token", {"Authorization": f"Bearer {UNKNOWN_TOKEN}"}),
            ("a revoked token", {"Authorization": f"Bearer {revoked.raw}"}),
            ("another scheme", {"Authorization": f"Token {owner_token.raw}"}),
        ],
    )


@pytest.fixture
def fuzzed_site(settings, upstream, owner, other, owner_token, capsys) -> Iterator[Tally]:
    """The owner's records, another user's, and a generation the external API remembers."""
    # Throttles would turn most of the run into 429s; test_throttled_* keeps 429 covered.
    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": dict.fromkeys(rates, "1000000/min"),
    }
    now = timezone.now()
    for days, model, images in [(0, "Stable Diffusion", 4), (3, "DALL-E", 2), (40, "Flux", 7)]:
        make_record(owner, now - timedelta(days=days, hours=days), model, images)
    make_record(other, now - timedelta(days=1), OTHER_MODEL, 3)
    upstream.generate(json.dumps({"userId": OWNER, "prompt": "A word counter"}).encode())
    tally = Tally()
    yield tally
    with capsys.disabled():
        print(f"\n{tally.line()}")
    # A run that never got past validation or authentication fuzzed nothing that matters.
    assert any(200 <= status < 300 for status in tally.statuses), tally.line()


@SCHEMA.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_every_operation_answers_as_documented(case, fuzzed_site, credentials):
    fuzzed_site.operation = case.operation.label
    response = case.call_and_validate(headers=credentials.valid, checks=CHECKS)
    fuzzed_site.examples += 1
    fuzzed_site.requests += 1
    fuzzed_site.statuses[response.status_code] += 1

    assert OTHER_MODEL not in response.text
    needs_credentials = case.operation.label not in PUBLIC
    assert schema_requires_credentials(case.operation) == needs_credentials
    if needs_credentials:
        # One kind of bad credentials per example, in turn: every kind meets every shape of
        # request over the run, for one extra request per example rather than four.
        what, headers = credentials.refused[fuzzed_site.examples % len(credentials.refused)]
        refused = without_credentials(case).call(headers=headers)
        fuzzed_site.requests += 1
        assert refused.status_code == 401, f"{what}: {refused.status_code} {refused.text}"
        case.validate_response(refused, checks=CONFORMANCE)


def without_credentials(case):
    """The same request, without the token or session cookie that the case may carry."""
    headers = case.headers.copy()
    headers.pop("Authorization", None)
    cookies = {name: value for name, value in case.cookies.items() if name != "sessionid"}
    return case.derive(headers=headers, cookies=cookies)


# --- Answers the fuzzer cannot reach on a healthy site, provoked one by one ------------------

RECORD = {"modelName": "Stable Diffusion", "imageCount": 4}
PROMPT = {"prompt": "A plugin that counts the words of a page"}
OVER_A_MEBIBYTE = "x" * (1024 * 1024 + 1)


def send(label: str, headers: dict[str, str], **request):
    """One request made by hand for the operation ``label``, and the case that describes it."""
    case = SCHEMA.find_operation_by_label(label).Case(**request)
    return case, case.call(headers=headers)


@pytest.mark.parametrize(
    ("label", "scope", "body"),
    [
        ("POST /api/model-usage", "ingest", RECORD),
        ("POST /api/model-usage", "ingest_token", RECORD),
        ("POST /api/plugin/generate", "plugin", PROMPT),
    ],
)
def test_a_throttled_request_is_a_documented_429(
    settings, upstream, credentials, label, scope, body
):
    limit = 2
    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**rates, scope: f"{limit}/hour"},
    }
    cache.clear()
    statuses = []
    # Windows are aligned to the clock: if one ends mid-run the count starts again, once.
    while 429 not in statuses and len(statuses) < 2 * limit + 1:
        case, response = send(label, credentials.valid, body=body, media_type="application/json")
        statuses.append(response.status_code)

    assert statuses[:limit] == [statuses[0]] * limit
    assert 200 <= statuses[0] < 300
    assert statuses[-1] == 429
    case.validate_response(response, checks=CONFORMANCE)


def no_external_api(settings, upstream) -> None:
    settings.EXTERNAL_API_URL = ""


def failing(route: str, status: int, body: object):
    def arrange(settings, upstream) -> None:
        upstream.answer(route, status, body)

    return arrange


def hanging(route: str):
    def arrange(settings, upstream) -> None:
        settings.EXTERNAL_API_TIMEOUT = settings.EXTERNAL_API_GENERATE_TIMEOUT = 0.3
        upstream.hang(route)

    return arrange


def unchanged(settings, upstream) -> None:
    pass


USAGE = "GET /api/user/token-usage"
GENERATE = "POST /api/plugin/generate"
INGEST = "POST /api/model-usage"


def refusal(label, expected, *, arrange=unchanged, body=None, query=None, headers=None, **kw):
    request = {"query": query or {}}
    if body is not None:
        request.update(body=body, media_type="application/json")
    return pytest.param(label, arrange, request, headers or {}, expected, **kw)


@pytest.mark.parametrize(
    ("label", "arrange", "request_", "extra_headers", "expected"),
    [
        refusal(INGEST, 403, body=RECORD, headers={"X-User-ID": "bob"}, id="someone-else"),
        refusal(INGEST, 413, body={"modelName": OVER_A_MEBIBYTE}, id="ingest-too-large"),
        refusal(INGEST, 415, body=RECORD, headers={"Content-Type": "text/csv"}, id="csv"),
        refusal(INGEST, 400, body=[{"modelName": ""}], id="all-rejected"),
        refusal(INGEST, 207, body=[RECORD, {"count": 0}], id="some-rejected"),
        refusal(GENERATE, 413, body={"prompt": OVER_A_MEBIBYTE}, id="prompt-too-large"),
        refusal(GENERATE, 400, body={"prompt": " "}, id="empty-prompt"),
        refusal(
            GENERATE, 422, arrange=failing("generate", 422, {"error": "No."}), body=PROMPT, id="422"
        ),
        refusal(
            GENERATE, 201, arrange=failing("generate", 201, {"result": {}}), body=PROMPT, id="201"
        ),
        refusal(
            GENERATE,
            429,
            arrange=failing("generate", 429, {"error": "Slow down."}),
            body=PROMPT,
            id="upstream-429",
        ),
        refusal(GENERATE, 502, arrange=failing("generate", 500, "oops"), body=PROMPT, id="gen-502"),
        refusal(GENERATE, 503, arrange=no_external_api, body=PROMPT, id="gen-not-configured"),
        refusal(GENERATE, 504, arrange=hanging("generate"), body=PROMPT, id="gen-504"),
        refusal(USAGE, 200, id="no-usage-yet"),
        refusal(USAGE, 403, query={"userId": "bob"}, id="another-users"),
        refusal(USAGE, 400, query={"userId": ".."}, id="not-a-username"),
        refusal(USAGE, 502, arrange=failing("token-usage", 500, "oops"), id="usage-502"),
        refusal(USAGE, 503, arrange=no_external_api, id="usage-not-configured"),
        refusal(USAGE, 504, arrange=hanging("token-usage"), id="usage-504"),
    ],
)
def test_each_refusal_is_answered_as_documented(
    settings, upstream, credentials, label, arrange, request_, extra_headers, expected
):
    arrange(settings, upstream)

    case, response = send(label, {**credentials.valid, **extra_headers}, **request_)

    assert response.status_code == expected, response.text
    # The external API's failures are 5xx by design; everything else must not be.
    case.validate_response(response, checks=DOCUMENTED if expected >= 500 else CONFORMANCE)


def test_a_stale_copy_of_token_usage_is_answered_as_documented(upstream, credentials):
    upstream.generate(json.dumps({"userId": OWNER, **PROMPT}).encode())
    send(USAGE, credentials.valid)
    upstream.answer("token-usage", 500, "oops")

    case, response = send(USAGE, credentials.valid, query={"refresh": "1"})

    assert (response.status_code, response.json()["stale"]) == (200, True)
    assert response.json()["staleReason"] == "upstream_error"
    case.validate_response(response, checks=CONFORMANCE)


def test_a_session_without_its_csrf_token_is_a_documented_403(upstream, owner, client):
    client.force_login(owner)
    session = {"sessionid": client.cookies["sessionid"].value}

    read, read_response = send(USAGE, {}, cookies=session)
    post, post_response = send(
        GENERATE, {}, cookies=session, body=PROMPT, media_type="application/json"
    )

    assert (read_response.status_code, post_response.status_code) == (200, 403)
    read.validate_response(read_response, checks=CONFORMANCE)
    post.validate_response(post_response, checks=CONFORMANCE)


# --- The database down: a real server, every operation fuzzed a little ----------------------

DOWN_SCHEMA = schemathesis.openapi.from_dict(
    SCHEMA.raw_schema,
    config=schemathesis.Config.from_dict(
        {
            "seed": 7_2026,
            "generation": {"mode": "all", "deterministic": True, "database": "none"},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": False},
                "fuzzing": {"enabled": True, "generation": {"max-examples": 8}},
                "stateful": {"enabled": False},
            },
        }
    ),
)


@pytest.fixture(scope="module")
def down_server(tmp_path_factory) -> Iterator:
    # A port that was free a moment ago: connecting to it is refused at once.
    url = f"postgres://nobody@{HOST}:{free_port()}/nothing"
    with gunicorn(url, tmp_path_factory.mktemp("fuzz-down") / "gunicorn.log") as server:
        yield server


@pytest.fixture
def down_tally(capsys) -> Iterator[Tally]:
    tally = Tally()
    yield tally
    with capsys.disabled():
        print(f"\ndatabase down, {tally.line()}")
    # Only the liveness check never asks the database; everything else met its absence.
    if tally.operation != "GET /api/health/simple":
        assert 503 in tally.statuses, tally.line()


@pytest.mark.slow
@DOWN_SCHEMA.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_with_the_database_down_every_answer_is_documented_and_none_is_a_500(
    case, down_server, down_tally
):
    url = f"http://{HOST}:{down_server.port}"
    response = case.call(base_url=url, headers={"Authorization": f"Bearer {UNKNOWN_TOKEN}"})
    down_tally.operation = case.operation.label
    down_tally.examples = down_tally.requests = down_tally.examples + 1
    down_tally.statuses[response.status_code] += 1

    assert response.status_code in {200, 400, 401, 403, 405, 413, 415, 503}, response.text
    case.validate_response(response, checks=DOCUMENTED)
