"""Issue 7's bad-input list: every bad input gets a clear JSON error and changes nothing;
hostile names are stored as sent and shown as text everywhere.

Part one is one table, ``BAD_INPUTS``: each item of the issue's list ("non-JSON", "wrong
content type", ... "aliases that disagree"), with one or more cases, each a request to an
endpoint that takes input and the answer it must get. One test sends each case and checks
that the answer is JSON with a clear ``error`` (per-record ``errors`` naming the field where
it is about a record; ``field`` or ``code`` where the endpoint has them), that no record or
rollup, ledger row, saved zone or token changed, and that the external API received nothing.

Part two is the last item, "``<script>`` and formula model names": accepted, then shown
as text on every page (dashboard, its refresh data, the admin), in every CSV (formula
starts neutralised) and in the API. ``tests/browser/test_hostile_names.py`` checks the same
names in a real browser, chart legends and tooltips included.

Cases pinned elsewhere and not repeated here: the exact edges of the time window
(``test_ingest.py``), bodies over 1 MiB sent chunked through gunicorn
(``test_live_server.py``), ids that try to leave the upstream's path segment
(``test_token_usage_proxy.py``), arbitrary JSON against the validator
(``test_ingest_properties.py``) and the OpenAPI fuzzing (``test_fuzz_api.py``).
"""

import base64
import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from html.parser import HTMLParser
from urllib.parse import quote, urlencode

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from dashboard.models import Profile
from tests.conftest import bearer, make_record, post_usage
from tests.hostile_names import (
    FORMULA_USERNAME,
    HOSTILE_EVENT_ID,
    HOSTILE_NAMES,
    HOSTILE_TOKEN_NAME,
    HOSTILE_USERNAME,
)
from usage.models import (
    ApiToken,
    DailyUsageRollup,
    PluginGeneration,
    UsageRecord,
    UsageRollup,
)
from usage.tokens import create_token

pytestmark = pytest.mark.django_db

INGEST = "/api/model-usage"
SUMMARY = "/api/model-usage/summary"
TOKEN_USAGE = "/api/user/token-usage"
GENERATE = "/api/plugin/generate"
REFRESH = "/dashboard/data/"
ZONE = "/dashboard/timezone/"
UPSTREAM_PATHS = (TOKEN_USAGE, GENERATE)
MIB = 1024 * 1024
HUGE = 1_000_000  # characters: a huge string that still fits in a 1 MiB body
HUGE_PARAM = 100_000  # characters of one query parameter


# ================================================================================================
# Part one: the table
# ================================================================================================


@dataclass(frozen=True)
class Ask:
    """One request. ``body`` may be a function, called when the request is sent: for bodies
    of megabytes, and for times relative to the moment of sending."""

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    body: bytes | Callable[[], bytes] = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    session: bool = False  # a logged-in browser rather than the owner's API token


# Every error names itself with a code; a case that gives none expects its kind's.
CODE_BY_STATUS = {
    400: "invalid_body",
    401: "authentication_failed",
    403: "forbidden",
    404: "not_found",
    413: "invalid_body",
    415: "unsupported_media_type",
}


def expected_code(bad: "Bad") -> str:
    if bad.code:
        return bad.code
    if bad.errors:
        return "records_rejected"
    if bad.field:
        return "invalid_query"
    return CODE_BY_STATUS[bad.status]


@dataclass(frozen=True)
class Bad:
    item: str  # the issue's words
    case: str
    ask: Ask
    status: int
    says: str  # part of the answer's "error" sentence
    errors: tuple[tuple[int, str | None, str], ...] = ()  # per record: index, field, message
    field: str | None = None  # the query parameter the answer names
    code: str | None = None  # the answer's "code", when not the one its kind has

    @property
    def id(self) -> str:
        return f"{self.item}: {self.case}"


def as_bytes(body) -> bytes:
    if isinstance(body, bytes):
        return body
    return (body if isinstance(body, str) else json.dumps(body)).encode()


def records(body, content_type: str = "application/json", **headers: str) -> Ask:
    data = body if callable(body) else as_bytes(body)
    return Ask("POST", INGEST, body=data, content_type=content_type, headers=headers)


def later(make: Callable[[], object]) -> Callable[[], bytes]:
    return lambda: as_bytes(make())


# The keys of each meaning, as docs/api.md lists them; the first one is canonical.
MEANINGS = {
    "modelName": ("modelName", "model"),
    "imageCount": ("imageCount", "count"),
    "userId": ("userId", "user_id"),
    "email": ("email",),
    "timestamp": ("timestamp",),
    "id": ("id", "eventId"),
}


def record(**fields: object) -> dict:
    """A good record with ``fields`` given; a field given under an alias replaces the
    canonical key, so that each meaning is sent once."""
    good: dict[str, object] = {"modelName": "SD", "imageCount": 1}
    for key in fields:
        for keys in MEANINGS.values():
            if key in keys:
                for other in keys:
                    good.pop(other, None)
    return {**good, **fields}


def one_record(**fields: object) -> Ask:
    return records(record(**fields))


def listing(session: bool = False, **params: str) -> Ask:
    return Ask("GET", INGEST, params=params, session=session)


def summary(**params: str) -> Ask:
    return Ask("GET", SUMMARY, params=params)


def token_usage(**params: str) -> Ask:
    return Ask("GET", TOKEN_USAGE, params=params)


def refresh_data(**params: str) -> Ask:
    return Ask("GET", REFRESH, params=params, session=True)


def save_zone(tz: str) -> Ask:
    """The dashboard's own call that stores the browser's zone, asking for JSON as it does."""
    body = urlencode({"tz": tz}).encode()
    headers = {"HTTP_ACCEPT": "application/json"}
    return Ask("POST", ZONE, body=body, content_type=FORM, headers=headers, session=True)


def generate(body, content_type: str = "application/json") -> Ask:
    data = body if callable(body) else as_bytes(body)
    return Ask("POST", GENERATE, body=data, content_type=content_type)


def nested(depth: int, inner: bytes = b"") -> bytes:
    return b"[" * depth + inner + b"]" * depth


def cursor_of(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).decode().rstrip("=")


def moment(delta: timedelta) -> str:
    return (timezone.now() + delta).isoformat()


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# Messages, as ingestion words them after the key.
NOT_JSON = "not valid JSON"
NOT_A_RECORD = "must be a JSON object"
IS_STRING = "must be a string."
MODEL_LENGTH = "must be 1 to 100 characters."
ID_LENGTH = "must be 1 to 100 characters."
CONTROL = "must not contain control characters."
INTEGER = "must be a JSON integer."
NOT_OWNER = "does not name the owner of the API token."
NOT_EMAIL = "does not match the email of the API token's owner."
WHEN_TYPE = "must be an ISO 8601 string or integer epoch milliseconds."
NOT_ISO = "is not an ISO 8601 date-time."
TOO_OLD = "is more than 366 days in the past."
TOO_NEW = "is more than 5 minutes in the future."
OUT_OF_RANGE = "is out of range."
DISAGREE = "disagree; send only one of them."
TOO_LARGE = f"larger than {MIB} bytes"
UNSUPPORTED = "Unsupported media type"
X_USER_ID = "X-User-ID does not name the owner of the token."
TOO_DEEP = "nested too deeply"
ALL_REJECTED = "Every record was rejected"
BODY = "invalid_body"
USER_ID = "invalid_user_id"
FORM = "application/x-www-form-urlencoded"

# What the answer to a bad query parameter mentions.
SAYS = {
    "start": "start",
    "end": "end",
    "tz": "time zone",
    "limit": "limit",
    "cursor": "cursor",
    "granularity": "granularity",
    "days": "days",
}
# JSON values of each type, for the fields that do not take them.
BOOLEANS = [("true", True), ("false", False)]
CONTAINERS = [("an array", ["SD"]), ("an object", {"name": "SD"})]
FLOAT = [("a float", 1.5)]
WRONG_TYPES: dict[str, list[tuple[str, object]]] = {
    "modelName": [("an integer", 42), *FLOAT, *BOOLEANS, *CONTAINERS],
    "imageCount": [("a string", "1"), ("a whole float", 2.0), *FLOAT, *BOOLEANS, *CONTAINERS],
    "userId": [("an integer", 1), *FLOAT, *BOOLEANS, *CONTAINERS],
    "email": [("an integer", 1), *FLOAT, *BOOLEANS, *CONTAINERS],
    "timestamp": [("a float", 1795167000000.0), *BOOLEANS, *CONTAINERS],
    "id": [("an integer", 17), *FLOAT, *BOOLEANS, *CONTAINERS],
}
WRONG_TYPE_MESSAGE = {
    "modelName": IS_STRING,
    "imageCount": INTEGER,
    "userId": NOT_OWNER,
    "email": NOT_EMAIL,
    "timestamp": WHEN_TYPE,
    "id": IS_STRING,
}
# What a huge string in each field of a record is told.
HUGE_STRING_MESSAGE = {
    "modelName": MODEL_LENGTH,
    "imageCount": INTEGER,
    "userId": NOT_OWNER,
    "email": NOT_EMAIL,
    "timestamp": NOT_ISO,
    "id": ID_LENGTH,
}


def case(item: str) -> Callable[..., Bad]:
    """``case(name, ask, status, says, ...)``: a case of ``item`` refused as a whole."""
    return partial(Bad, item)


def record_case(item: str) -> Callable[..., Bad]:
    """``case(name, ask, *errors)``: a case of ``item`` whose every record is rejected, with
    an error (index, key, message) for each bad field."""

    def make(name: str, ask: Ask, *errors: tuple[int, str | None, str]) -> Bad:
        return Bad(item, name, ask, 400, ALL_REJECTED, errors=errors)

    return make


refused, rejected = case("non-JSON"), record_case("non-JSON")
NON_JSON = [
    refused("text", records(b"{not json"), 400, NOT_JSON),
    refused("an empty body", records(b""), 400, NOT_JSON),
    refused("bytes that are not UTF-8", records(b"\xff\xfe\xfa"), 400, NOT_JSON),
    refused("a form body", records(b"modelName=SD&imageCount=1"), 400, NOT_JSON),
    refused("single quotes", records(b"{'modelName': 'SD', 'imageCount': 1}"), 400, NOT_JSON),
    refused("a trailing comma", records(b'{"modelName": "SD", "imageCount": 1,}'), 400, NOT_JSON),
    refused("text after it", records(b'{"modelName": "SD", "imageCount": 1} x'), 400, NOT_JSON),
    refused("NaN", records(b'{"modelName": "SD", "imageCount": NaN}'), 400, NOT_JSON),
    refused("Infinity", records(b'{"modelName": "SD", "imageCount": Infinity}'), 400, NOT_JSON),
    refused("-Infinity", records(b'{"modelName": "SD", "imageCount": -Infinity}'), 400, NOT_JSON),
    refused(
        "a number of 5000 digits", records(b'{"imageCount": ' + b"9" * 5000 + b"}"), 400, NOT_JSON
    ),
    refused("a number", records(b"42"), 400, NOT_A_RECORD),
    refused("a string", records(b'"SD"'), 400, NOT_A_RECORD),
    refused("null", records(b"null"), 400, NOT_A_RECORD),
    refused("true", records(b"true"), 400, NOT_A_RECORD),
    refused("an empty array", records(b"[]"), 400, "empty"),
    rejected(
        "records that are not objects",
        records(b'[null, 1, "SD", ["SD"]]'),
        *[(index, None, NOT_A_RECORD) for index in range(4)],
    ),
    refused("a plugin request that is text", generate(b"{not json"), 400, NOT_JSON, code=BODY),
    refused("a plugin request with NaN", generate(b'{"prompt": NaN}'), 400, NOT_JSON, code=BODY),
    refused("an empty plugin request", generate(b""), 400, NOT_JSON, code=BODY),
    refused(
        "a plugin request in an array", generate(b'[{"prompt": "x"}]'), 400, NOT_A_RECORD, code=BODY
    ),
    refused("a plugin request as a string", generate(b'"a plugin"'), 400, NOT_A_RECORD, code=BODY),
]

refused = case("wrong content type")
WRONG_CONTENT_TYPE = [
    *[
        refused(content_type or "none", records(record(), content_type), 415, UNSUPPORTED)
        for content_type in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/xml",
            "text/json",
            "application/json-patch+json",
            "",
        ]
    ],
    refused("a plugin request as text", generate({"prompt": "x"}, "text/plain"), 415, UNSUPPORTED),
    refused("a plugin request as a form", generate(b"prompt=x", FORM), 415, UNSUPPORTED),
]

refused, rejected = case("deep nesting"), record_case("deep nesting")
DEEP_NESTING = [
    refused("100 000 arrays", records(nested(100_000)), 400, TOO_DEEP),
    refused("100 000 objects", records(b'{"a":' * 100_000 + b"1" + b"}" * 100_000), 400, TOO_DEEP),
    refused(
        "inside an unknown key of a record",
        records(b'{"modelName": "SD", "imageCount": 1, "extra": ' + nested(100_000) + b"}"),
        400,
        TOO_DEEP,
    ),
    rejected(
        "a model name in arrays", one_record(modelName=[[["SD"]]]), (0, "modelName", IS_STRING)
    ),
    rejected("a record in arrays", records([[[record()]]]), (0, None, NOT_A_RECORD)),
    refused(
        "a plugin request",
        generate(b'{"prompt": ' + nested(100_000) + b"}"),
        400,
        NOT_JSON,
        code=BODY,
    ),
    refused("a cursor", listing(cursor=cursor_of(nested(5000))), 400, "cursor", field="cursor"),
]

refused = case("a 3 MB body")
A_3_MB_BODY = [
    refused("one record padded", records(later(lambda: record(pad="x" * 3 * MIB))), 413, TOO_LARGE),
    refused(
        "48 000 records",
        records(later(lambda: [record(id=f"{n:032}") for n in range(3 * MIB // 64)])),
        413,
        TOO_LARGE,
    ),
    refused("not JSON", records(lambda: b"\x00" * 3 * MIB), 413, TOO_LARGE),
    refused(
        "a plugin request",
        generate(later(lambda: {"prompt": "x" * 3 * MIB})),
        413,
        TOO_LARGE,
        code=BODY,
    ),
]

refused = case("100 000 records")
A_100_000_RECORDS = [
    refused(
        "real ones, too large to be counted",
        records(later(lambda: [record() for _ in range(100_000)])),
        413,
        TOO_LARGE,
    ),
    refused(
        "empty objects, under 1 MiB",
        records(lambda: b"[" + b",".join([b"{}"] * 100_000) + b"]"),
        400,
        "Too many records: 100000",
    ),
    refused(
        "1001 good ones", records(later(lambda: [record()] * 1001)), 400, "Too many records: 1001"
    ),
]

refused, rejected = case("huge strings"), record_case("huge strings")
HUGE_STRINGS = [
    *[
        rejected(
            f"{key}, {HUGE:,} characters",
            records(later(lambda key=key: record(**{key: "x" * HUGE}))),
            (0, key, HUGE_STRING_MESSAGE[meaning]),
        )
        for meaning, keys in MEANINGS.items()
        for key in keys
    ],
    rejected(
        f"an unknown key of {HUGE:,} characters",
        records(later(lambda: {"x" * HUGE: "SD", "imageCount": 1})),
        (0, "modelName", "is required"),
    ),
    refused("X-User-ID", records(record(), HTTP_X_USER_ID="a" * 10_000), 403, X_USER_ID),
    *[
        refused(
            f"{name} of the records list",
            listing(**{name: "x" * HUGE_PARAM}),
            400,
            SAYS[name],
            field=name,
        )
        for name in ("start", "end", "tz", "limit", "cursor")
    ],
    refused(
        "a limit of 100,000 digits",
        listing(limit="9" * HUGE_PARAM),
        400,
        "limit",
        field="limit",
    ),
    *[
        refused(
            f"{name} of the summary",
            summary(**{name: "x" * HUGE_PARAM}),
            400,
            SAYS[name],
            field=name,
        )
        for name in ("start", "end", "tz", "granularity")
    ],
    *[
        refused(
            f"{name} of Refresh Data",
            refresh_data(**{name: "x" * HUGE_PARAM}),
            400,
            SAYS[name],
            field=name,
        )
        for name in ("start", "end", "tz", "days")
    ],
    refused(
        "userId of token usage", token_usage(userId="x" * HUGE_PARAM), 400, "userId", code=USER_ID
    ),
    refused(
        "a zone to save", save_zone("x" * HUGE_PARAM), 400, "at most 64 characters", field="tz"
    ),
]

refused, rejected = case("NUL and control characters"), record_case("NUL and control characters")
CONTROL_CHARACTERS = [
    *[
        rejected(f"{label} in {key}", one_record(**{key: value}), (0, key, message))
        for label, text in [
            ("NUL", "S\x00D"),
            ("a newline", "S\nD"),
            ("a tab", "S\tD"),
            ("an escape sequence", "\x1b[31mSD"),
            ("DEL", "SD\x7f"),
            ("a C1 control", "S\x85D"),
        ]
        for key, value, message in [
            ("modelName", text, CONTROL),
            ("id", text, CONTROL),
            ("userId", "alice" + text, NOT_OWNER),
            ("email", "Alice@Example.com" + text, NOT_EMAIL),
            ("timestamp", "2026-11-20T09:30:00Z" + text, NOT_ISO),
        ]
    ],
    rejected(
        "a lone surrogate in eventId",
        records(b'{"modelName": "SD", "imageCount": 1, "eventId": "a\\udc00"}'),
        (0, "eventId", CONTROL),
    ),
    refused("a raw NUL in a JSON string", records(b'{"modelName": "S\x00D"}'), 400, NOT_JSON),
    refused("a raw newline in a JSON string", records(b'{"modelName": "S\nD"}'), 400, NOT_JSON),
    refused(
        "a raw NUL between keys", records(b'{"modelName": "SD",\x00 "count": 1}'), 400, NOT_JSON
    ),
    refused("NUL in X-User-ID", records(record(), HTTP_X_USER_ID="alice\x00"), 403, X_USER_ID),
    refused(
        "a raw NUL in a plugin request", generate(b'{"prompt": "a\x00b"}'), 400, NOT_JSON, code=BODY
    ),
    *[
        refused(
            f"{name} of the records list", listing(**{name: value}), 400, SAYS[name], field=name
        )
        for name, value in [
            ("start", "2026-01-01\x00"),
            ("end", "\x00"),
            ("tz", "UTC\x00"),
            ("limit", "1\x00"),
            ("cursor", "\x00"),
        ]
    ],
    *[
        refused(f"{name} of the summary", summary(**{name: value}), 400, SAYS[name], field=name)
        for name, value in [
            ("start", "\x00"),
            ("end", "2026-01-01\n"),
            ("tz", "Europe/Paris\x00"),
            ("granularity", "day\x00"),
        ]
    ],
    *[
        refused(
            f"{name} of Refresh Data", refresh_data(**{name: value}), 400, SAYS[name], field=name
        )
        for name, value in [("start", "\x00"), ("tz", "\x00"), ("days", "7\x00")]
    ],
    refused(
        "NUL in userId of token usage", token_usage(userId="alice\x00"), 400, "userId", code=USER_ID
    ),
    refused(
        "a newline in userId of token usage",
        token_usage(userId="alice\n"),
        400,
        "userId",
        code=USER_ID,
    ),
    refused("NUL in a zone to save", save_zone("UTC\x00"), 400, "Null characters", field="tz"),
]

rejected = record_case("wrong types for every field")
WRONG_TYPES_FOR_EVERY_FIELD = [
    *[
        rejected(
            f"{key} as {type_name}",
            one_record(**{key: value}),
            (0, key, WRONG_TYPE_MESSAGE[meaning]),
        )
        for meaning, keys in MEANINGS.items()
        for key in keys
        for type_name, value in WRONG_TYPES[meaning]
    ],
    *[
        rejected(
            f"{key} as null, so missing", one_record(**{key: None}), (0, meaning, "is required")
        )
        for meaning in ("modelName", "imageCount")
        for key in MEANINGS[meaning]
    ],
    rejected(
        "every field of one record at once",
        records({"modelName": 1, "imageCount": "1", "userId": 1, "timestamp": True, "id": 1}),
        (0, "userId", NOT_OWNER),
        (0, "modelName", IS_STRING),
        (0, "imageCount", INTEGER),
        (0, "timestamp", WHEN_TYPE),
        (0, "id", IS_STRING),
    ),
    rejected(
        "a bad userId and a bad email",
        one_record(userId=1, email=1),
        (0, "userId", NOT_OWNER),
        (0, "email", NOT_EMAIL),
    ),
]

refused, rejected = (
    case("timestamps far in the past and future"),
    record_case("timestamps far in the past and future"),
)
FAR_TIMESTAMPS = [
    *[
        rejected(
            label,
            records(later(lambda when=when: record(timestamp=when()))),
            (0, "timestamp", message),
        )
        for label, when, message in [
            ("year 1", lambda: "0001-01-01T00:00:00Z", TOO_OLD),
            ("year 1 at +14:00", lambda: "0001-01-01T00:00:00+14:00", OUT_OF_RANGE),
            ("the Unix epoch", lambda: "1970-01-01T00:00:00Z", TOO_OLD),
            ("epoch milliseconds 0", lambda: 0, TOO_OLD),
            ("year 1 in epoch milliseconds", lambda: -62135596800000, TOO_OLD),
            ("-10**20 epoch milliseconds", lambda: -(10**20), OUT_OF_RANGE),
            ("400 days ago", lambda: moment(-timedelta(days=400)), TOO_OLD),
            ("10 minutes ahead", lambda: moment(timedelta(minutes=10)), TOO_NEW),
            ("a year ahead", lambda: moment(timedelta(days=365)), TOO_NEW),
            ("year 3000", lambda: "3000-01-01T00:00:00Z", TOO_NEW),
            ("year 9999", lambda: "9999-12-31T23:59:59Z", TOO_NEW),
            ("year 9999 at -14:00", lambda: "9999-12-31T23:59:59-14:00", OUT_OF_RANGE),
            ("year 9999 in epoch milliseconds", lambda: 253402300799999, TOO_NEW),
            ("10**20 epoch milliseconds", lambda: 10**20, OUT_OF_RANGE),
            ("year 10000", lambda: "+10000-01-01T00:00:00Z", NOT_ISO),
            ("epoch milliseconds in a string", lambda: "1795167000000", NOT_ISO),
        ]
    ],
    refused("a summary from 1900", summary(start="1900-01-01"), 400, "between", field="start"),
    refused("a summary to 9999", summary(end="9999-01-01"), 400, "between", field="end"),
    refused(
        "a summary from 1971 to 9998",
        summary(start="1971-01-01", end="9998-12-31"),
        400,
        "longer than",
        field="start",
    ),
    refused("records from year 1", listing(start="0001-01-01"), 400, "between", field="start"),
    refused("records to year 9999", listing(end="9999-12-31"), 400, "between", field="end"),
    refused(
        "a cursor in year 9999 at -14:00",
        listing(cursor=cursor_of(b'["9999-12-31T23:59:59-14:00", 1]')),
        400,
        "cursor",
        field="cursor",
    ),
]

refused, rejected = case("ids too long"), record_case("ids too long")
IDS_TOO_LONG = [
    *[
        rejected(f"{label} as {key}", one_record(**{key: value}), (0, key, ID_LENGTH))
        for key in ("id", "eventId")
        for label, value in [
            ("101 characters", "e" * 101),
            ("101 emoji", "🎨" * 101),
            ("three UUIDs", "7d1e0a52-0c2b-4a8e-9d55-2f1e3c4b5a69" * 3),
            ("an empty string", ""),
        ]
    ],
    rejected("a userId of 151 characters", one_record(userId="a" * 151), (0, "userId", NOT_OWNER)),
    refused(
        "an X-User-ID of 151 characters",
        records(record(), HTTP_X_USER_ID="a" * 151),
        403,
        X_USER_ID,
    ),
    refused("userId of token usage", token_usage(userId="a" * 151), 400, "userId", code=USER_ID),
    refused(
        "a cursor with more after it",
        listing(cursor=cursor_of(b'["2026-01-01T00:00:00+00:00", 1]') + "A" * 10_000),
        400,
        "cursor",
        field="cursor",
    ),
    refused(
        "a cursor whose record id is not an integer",
        listing(cursor=cursor_of(b'["2026-01-01T00:00:00+00:00", 1.5]')),
        400,
        "cursor",
        field="cursor",
    ),
]

rejected = record_case("aliases that disagree")
ALIASES_THAT_DISAGREE = [
    *[
        rejected(label, records({**record(), **fields}), (0, key, DISAGREE))
        for label, key, fields in [
            ("two model names", "modelName", {"modelName": "SD", "model": "DALL-E"}),
            ("model names in two cases", "modelName", {"modelName": "SD", "model": "sd"}),
            ("a model name and it with a space", "modelName", {"modelName": "SD", "model": " SD"}),
            ("two counts", "imageCount", {"imageCount": 1, "count": 2}),
            ("a count and it as a float", "imageCount", {"imageCount": 1, "count": 1.0}),
            ("a count and true", "imageCount", {"imageCount": 1, "count": True}),
            ("a count and it as a string", "imageCount", {"imageCount": 1, "count": "1"}),
            ("two users", "userId", {"userId": "alice", "user_id": "bob"}),
            ("two event ids", "id", {"id": "a", "eventId": "b"}),
            ("event ids in two cases", "id", {"id": "a", "eventId": "A"}),
        ]
    ],
    rejected(
        "every pair at once",
        records(
            {
                **{"modelName": "SD", "model": "Flux", "imageCount": 1, "count": 2},
                **{"userId": "alice", "user_id": "bob", "id": "a", "eventId": "b"},
            }
        ),
        (0, "userId", DISAGREE),
        (0, "modelName", DISAGREE),
        (0, "imageCount", DISAGREE),
        (0, "id", DISAGREE),
    ),
]

# The issue's list, item by item; the last item ("<script> and formula model names") is part
# two below: those names are not refused.
BAD_INPUTS = [
    *NON_JSON,
    *WRONG_CONTENT_TYPE,
    *DEEP_NESTING,
    *A_3_MB_BODY,
    *A_100_000_RECORDS,
    *HUGE_STRINGS,
    *CONTROL_CHARACTERS,
    *WRONG_TYPES_FOR_EVERY_FIELD,
    *FAR_TIMESTAMPS,
    *IDS_TOO_LONG,
    *ALIASES_THAT_DISAGREE,
]


def _param(entry) -> object:
    return pytest.param(entry, id=entry.id) if isinstance(entry, Bad) else entry


@pytest.fixture(scope="module")
def clients() -> tuple[APIClient, Client]:
    """One token client and one browser for the whole table: a new client builds the
    middleware again, which costs more than most cases here."""
    return APIClient(), Client()


@pytest.fixture
def baseline(owner, other) -> None:
    """Something to leave unchanged: records and rollups of both users, and a saved zone."""
    cache.clear()  # no throttle counts from earlier cases
    now = timezone.now()
    make_record(owner, now - timedelta(hours=2), "Baseline", 3)
    make_record(other, now - timedelta(days=3), "Other", 5)
    Profile.objects.create(user=owner, time_zone="Europe/Paris")


def state() -> dict[str, list]:
    """Everything a refused request must leave as it was."""
    return {
        "records": list(UsageRecord.objects.order_by("pk").values_list()),
        "hourly": list(UsageRollup.objects.order_by("pk").values_list()),
        "daily": list(DailyUsageRollup.objects.order_by("pk").values_list()),
        "ledger": list(PluginGeneration.objects.order_by("pk").values_list()),
        "zones": list(Profile.objects.order_by("pk").values_list()),
        "tokens": list(ApiToken.objects.order_by("pk").values_list("pk", "name", "revoked_at")),
    }


def send(ask: Ask, client):
    if ask.method == "GET":
        return client.get(ask.path, ask.params, **ask.headers)
    body = ask.body() if callable(ask.body) else ask.body
    # generic(), not post(): it sends the body and Content-Type exactly as given, none too.
    return client.generic("POST", ask.path, body, content_type=ask.content_type, **ask.headers)


@pytest.mark.parametrize("bad", [_param(entry) for entry in BAD_INPUTS])
def test_a_bad_input_gets_a_clear_json_error_and_changes_nothing(
    bad: Bad, baseline, owner, owner_token, clients, request
):
    api, browser = clients
    if bad.ask.session:
        browser.force_login(owner)
    else:
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {owner_token.raw}")
    # The stand-in of the external API, for the endpoints that would call it.
    upstream = request.getfixturevalue("upstream") if bad.ask.path in UPSTREAM_PATHS else None
    before = state()

    response = send(bad.ask, browser if bad.ask.session else api)

    assert response.status_code == bad.status, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    answer = response.json()
    assert isinstance(answer["error"], str)
    assert bad.says in answer["error"]
    assert answer["error"].endswith("."), "a sentence"
    # The answer names the problem; it never sends a huge input back.
    assert len(response.content) < 2000
    reported = [(e["index"], e["field"], e["message"]) for e in answer.get("errors", [])]
    assert [(index, key) for index, key, _ in reported] == [(i, k) for i, k, _ in bad.errors]
    for (_, key, message), (_, _, expected) in zip(reported, bad.errors, strict=True):
        assert expected in message
        assert key is None or message.startswith(f"'{key}'"), "the message names the key"
    if bad.errors:
        assert (answer["accepted"], answer["duplicates"]) == (0, 0)
        assert answer["rejected"] == len({index for index, _, _ in bad.errors})
    assert answer.get("field") == bad.field
    assert answer["code"] == expected_code(bad)

    assert state() == before
    if upstream is not None:
        assert upstream.received == []


@pytest.mark.parametrize("path", ["/dashboard/", REFRESH, "/dashboard/export.csv"])
def test_staff_asking_for_a_username_with_nul_get_404_not_a_server_error(staff, path):
    browser = logged_in(staff)
    browser.raise_request_exception = False

    response = browser.get(path, {"user": "alice\x00"})

    assert response.status_code == 404


def test_a_token_with_nul_in_its_prefix_gets_401_not_a_server_error(owner, owner_token):
    # gunicorn refuses NUL in a header before Django sees it; Django's own server does not.
    api = APIClient(raise_request_exception=False)
    api.credentials(HTTP_AUTHORIZATION="Bearer usg_\x00" + owner_token.raw[5:])

    response = api.get(INGEST)

    assert response.status_code == 401
    assert response.json()["error"]


def test_the_table_has_every_item_of_the_issues_list():
    items = {
        (entry.values[0] if not isinstance(entry, Bad) else entry).item for entry in BAD_INPUTS
    }
    assert items == {
        "non-JSON",
        "wrong content type",
        "deep nesting",
        "a 3 MB body",
        "100 000 records",
        "huge strings",
        "NUL and control characters",
        "wrong types for every field",
        "timestamps far in the past and future",
        "ids too long",
        "aliases that disagree",
    }


def test_the_table_sends_every_field_of_a_record_with_every_wrong_json_type():
    sent = {
        (entry.ask.path, entry.case)
        for entry in BAD_INPUTS
        if isinstance(entry, Bad) and entry.item == "wrong types for every field"
    }
    for keys in MEANINGS.values():
        for key in keys:
            for type_name in ("true", "false", "a float", "an array", "an object"):
                assert (INGEST, f"{key} as {type_name}") in sent


# ================================================================================================
# Part two: <script> and formula model names, hostile token names and usernames
# ================================================================================================

# The names themselves are in tests/hostile_names.py, shared with the browser's tests.
FORMULA_STARTS = ("=", "+", "-", "@")


def as_spreadsheet_text(value: str) -> str:
    """What a CSV cell must hold: the value, with a quote before a formula start."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


class Html(HTMLParser):
    """The elements, text and script contents of a page, as a browser would parse them."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.texts: list[str] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._script: tuple[dict, list[str]] | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag == "script":
            self._script = (dict(attrs), [])

    def handle_endtag(self, tag):
        if tag == "script" and self._script is not None:
            self.scripts.append((self._script[0], "".join(self._script[1])))
            self._script = None

    def handle_data(self, data):
        if self._script is not None:
            self._script[1].append(data)
        else:
            self.texts.append(data.strip())

    def injected(self) -> list:
        """Anything that runs: an event-handler attribute, the payloads' image, or a script
        that is neither a file nor JSON data."""
        handlers = [(tag, a) for tag, a in self.elements if any(k.startswith("on") for k in a)]
        images = [(tag, a) for tag, a in self.elements if tag == "img" and a.get("src") == "x"]
        inline = [
            a for a, _ in self.scripts if "src" not in a and a.get("type") != "application/json"
        ]
        return handlers + images + inline

    def json_data(self, element_id: str):
        (content,) = [text for a, text in self.scripts if a.get("id") == element_id]
        return json.loads(content)

    def times_shown(self, text: str) -> int:
        return sum(text in shown for shown in self.texts)


def assert_shown_as_text(html: str, *texts: str, times: int = 1) -> Html:
    page = Html(html)
    assert page.injected() == []
    for a, content in page.scripts:
        if a.get("type") == "application/json":
            json.loads(content)  # whole: no name broke out of it
    for text in texts:
        assert page.times_shown(text) >= times, text
    return page


@pytest.fixture
def hostile(owner, owner_token) -> list[UsageRecord]:
    """The hostile names, accepted through the API from a token with a hostile name, with
    more images the earlier they are in the list."""
    ApiToken.objects.filter(pk=owner_token.token.pk).update(name=HOSTILE_TOKEN_NAME)
    now = timezone.now()
    batch = [
        {
            "modelName": name,
            "imageCount": 10 - rank,
            "timestamp": (now - timedelta(hours=rank)).isoformat(),
        }
        for rank, name in enumerate(HOSTILE_NAMES)
    ]
    batch[0]["id"] = HOSTILE_EVENT_ID
    response = post_usage(bearer(owner_token), batch)
    assert response.status_code == 201
    assert response.json()["accepted"] == len(HOSTILE_NAMES)
    return list(UsageRecord.objects.filter(owner=owner).order_by("-image_count"))


def test_hostile_names_are_stored_exactly_as_sent(hostile):
    assert [record.model for record in hostile] == HOSTILE_NAMES
    assert hostile[0].event_id == HOSTILE_EVENT_ID


def test_the_dashboard_shows_hostile_names_as_text_in_every_table_and_chart(hostile, owner):
    response = logged_in(owner).get("/dashboard/", {"days": "7", "tz": "UTC"})

    assert response.status_code == 200
    # The usage table's header, the share table and the recent records: three times each.
    page = assert_shown_as_text(response.content.decode(), *HOSTILE_NAMES, times=3)
    # and the most used model's card, with its change against the days before in words
    assert page.times_shown(HOSTILE_NAMES[0]) == 5
    chart = page.json_data("chart-data")
    assert [dataset["label"] for dataset in chart["datasets"]] == HOSTILE_NAMES
    assert chart["share"]["labels"] == HOSTILE_NAMES


def test_refresh_data_sends_hostile_names_as_text_in_its_html_and_as_data_for_the_charts(
    hostile, owner
):
    response = logged_in(owner).get(REFRESH, {"days": "7", "tz": "UTC"})

    assert response["Content-Type"] == "application/json"
    answer = response.json()
    assert_shown_as_text(answer["html"]["cards"], HOSTILE_NAMES[0])
    for region in ("usage-table", "share-table", "recent-records"):
        assert_shown_as_text(answer["html"][region], *HOSTILE_NAMES)
    assert [dataset["label"] for dataset in answer["chart"]["datasets"]] == HOSTILE_NAMES
    assert answer["chart"]["share"]["labels"] == HOSTILE_NAMES


def test_a_hostile_query_reflected_on_the_dashboard_is_text(owner):
    script = "<script>alert(1)</script>"

    response = logged_in(owner).get("/dashboard/", {"tz": script, "start": script})

    assert response.status_code == 400
    assert_shown_as_text(response.content.decode(), "Showing the last 30 days instead.")
    assert script not in response.content.decode()


def test_the_api_answers_hostile_names_literally_as_json(hostile, owner_api):
    listed = owner_api.get(INGEST)
    totals = owner_api.get(SUMMARY)

    for response in (listed, totals):
        assert response["Content-Type"] == "application/json"
        assert response["X-Content-Type-Options"] == "nosniff"
    assert [record["model"] for record in listed.json()["results"]] == HOSTILE_NAMES
    assert listed.json()["results"][0]["eventId"] == HOSTILE_EVENT_ID
    assert [model["model"] for model in totals.json()["models"]] == HOSTILE_NAMES


def csv_rows(response) -> list[dict[str, str]]:
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment;")
    assert response["X-Content-Type-Options"] == "nosniff"
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_the_records_csv_neutralises_formula_starts_and_keeps_the_rest_literal(hostile, owner):
    rows = csv_rows(logged_in(owner).get("/dashboard/export.csv", {"days": "7", "tz": "UTC"}))

    assert sorted(row["model"] for row in rows) == sorted(map(as_spreadsheet_text, HOSTILE_NAMES))
    (first,) = [row for row in rows if row["event_id"]]
    assert first["event_id"] == "'" + HOSTILE_EVENT_ID


def test_the_daily_totals_csv_neutralises_formula_starts_too(hostile, owner):
    rows = csv_rows(logged_in(owner).get("/dashboard/daily-totals.csv", {"days": "7", "tz": "UTC"}))

    assert sorted(row["model"] for row in rows) == sorted(map(as_spreadsheet_text, HOSTILE_NAMES))


def test_the_admin_csv_neutralises_formula_starts_in_names_usernames_and_ids(hostile, staff):
    formula_user = get_user_model().objects.create_user(FORMULA_USERNAME)
    make_record(formula_user, timezone.now(), "-2+3", 1)
    records = UsageRecord.objects.all()

    response = logged_in(staff).post(
        "/admin/usage/usagerecord/",
        {"action": "export_csv", "_selected_action": [r.pk for r in records], "index": 0},
    )

    rows = csv_rows(response)
    assert sorted(row["model"] for row in rows) == sorted(
        map(as_spreadsheet_text, [*HOSTILE_NAMES, "-2+3"])
    )
    assert sorted(row["username"] for row in rows) == ["'@eve"] + ["alice"] * len(HOSTILE_NAMES)
    assert "'" + HOSTILE_EVENT_ID in [row["event_id"] for row in rows]


def test_the_admin_shows_hostile_names_as_text_on_record_pages(hostile, staff):
    admin = logged_in(staff)
    url = "/admin/usage/usagerecord/"

    changelist = admin.get(url)
    # Each record's row, and the model filter's choice.
    page = assert_shown_as_text(changelist.content.decode(), *HOSTILE_NAMES, times=2)
    # The token's name is in the title of its prefix: an attribute's text, never markup.
    assert any(HOSTILE_TOKEN_NAME in (a.get("title") or "") for _, a in page.elements)
    for record in hostile:
        change = admin.get(f"{url}{record.pk}/change/")
        delete = admin.get(f"{url}{record.pk}/delete/")
        assert change.status_code == delete.status_code == 200
        assert_shown_as_text(change.content.decode(), record.model)
        assert_shown_as_text(delete.content.decode(), record.model)


def test_the_admin_filters_and_searches_by_a_hostile_name_as_text(hostile, staff):
    admin = logged_in(staff)
    name = HOSTILE_NAMES[1]

    filtered = admin.get("/admin/usage/usagerecord/", {"model": name})
    searched = admin.get("/admin/usage/usagerecord/", {"q": name})

    for response in (filtered, searched):
        assert [record.model for record in response.context["cl"].result_list] == [name]
        assert_shown_as_text(response.content.decode(), name)


def test_hostile_token_names_are_text_wherever_tokens_are_shown(owner, staff):
    browser = logged_in(owner)

    created = browser.post("/dashboard/tokens/", {"name": HOSTILE_TOKEN_NAME}, follow=True)
    token = ApiToken.objects.get(owner=owner)
    confirm = browser.get(f"/dashboard/tokens/{token.pk}/revoke/")
    revoked = browser.post(f"/dashboard/tokens/{token.pk}/revoke/", follow=True)

    assert created.status_code == 200
    # The new token's heading and its row in the list.
    assert_shown_as_text(created.content.decode(), HOSTILE_TOKEN_NAME, times=2)
    assert_shown_as_text(confirm.content.decode(), HOSTILE_TOKEN_NAME)
    # The list, and the message saying it was revoked.
    assert_shown_as_text(revoked.content.decode(), HOSTILE_TOKEN_NAME, times=2)
    admin = logged_in(staff)
    for url in (
        "/admin/usage/apitoken/",
        f"/admin/usage/apitoken/{token.pk}/change/",
        "/admin/usage/auditevent/",
    ):
        assert_shown_as_text(admin.get(url).content.decode(), HOSTILE_TOKEN_NAME)


def test_hostile_usernames_are_text_on_the_staff_view_and_in_the_admin(staff):
    user = get_user_model().objects.create_user(HOSTILE_USERNAME)
    make_record(user, timezone.now() - timedelta(hours=1), "SD", 2)
    create_token(user, "Laptop")
    admin = logged_in(staff)

    dashboard = admin.get("/dashboard/", {"user": HOSTILE_USERNAME, "days": "7"})
    refresh = admin.get(REFRESH, {"user": HOSTILE_USERNAME, "days": "7"})

    assert dashboard.status_code == 200
    # The title, the heading and the notice that staff view someone else's dashboard.
    assert_shown_as_text(dashboard.content.decode(), HOSTILE_USERNAME, times=3)
    assert refresh.status_code == 200
    for url in (
        "/admin/usage/usagerecord/",
        "/admin/usage/apitoken/",
        "/admin/auth/user/",
        "/admin/usage/auditevent/",
    ):
        assert_shown_as_text(admin.get(url).content.decode(), HOSTILE_USERNAME)


def test_a_user_with_a_hostile_username_sees_it_as_text_in_the_page_header():
    user = get_user_model().objects.create_user(HOSTILE_USERNAME)

    response = logged_in(user).get("/dashboard/tokens/")

    assert_shown_as_text(response.content.decode(), HOSTILE_USERNAME)


def test_a_hostile_username_and_next_typed_at_login_come_back_as_text(client, db):
    response = client.post(
        f"/accounts/login/?next={quote(HOSTILE_USERNAME)}",
        {"username": HOSTILE_USERNAME, "password": "wrong", "next": HOSTILE_USERNAME},
    )

    assert response.status_code == 200
    page = assert_shown_as_text(response.content.decode())
    fields = {a.get("name"): a.get("value") for tag, a in page.elements if tag == "input"}
    assert fields["username"] == fields["next"] == HOSTILE_USERNAME
