"""OpenAPI descriptions of the API, kept beside the views that they describe.

Written as plain OpenAPI fragments rather than serializers: the API validates with plain
code (see ``usage.ingest``), and a fragment can say exactly what it accepts, aliases and
one-object-or-array bodies included.
"""

from drf_spectacular import generators
from drf_spectacular.authentication import SessionScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from usage.devices import DELETED_TOKEN_NAME, NO_TOKEN_NAME, NO_TOKEN_PARAM
from usage.ingest import MAX_BATCH
from usage.models import EVENT_ID_MAX_LENGTH, MAX_IMAGE_COUNT, MODEL_NAME_MAX_LENGTH
from usage.records import MAX_LIMIT
from usage.summary import GRANULARITIES


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "usage.auth.BearerTokenAuthentication"
    name = "bearerToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token, `usg_` followed by 51 characters.",
        }


class CsrfSessionScheme(SessionScheme):
    """The session cookie, as drf-spectacular describes REST framework's own session class."""

    target_class = "usage.auth.CsrfSessionAuthentication"


_ERROR_PROPERTIES = {
    "error": {"type": "string", "description": "A sentence saying what is wrong."},
    "code": {
        "type": "string",
        "description": "A stable name for the error (`docs/api.md` lists them), e.g. `busy`.",
    },
}


def _error(description: str, **extra_properties) -> OpenApiResponse:
    """Every error: ``{"error": ..., "code": ...}`` and any ``extra_properties``."""
    return OpenApiResponse(
        description=description,
        response={
            "type": "object",
            "required": ["error", "code"],
            "properties": {**_ERROR_PROPERTIES, **extra_properties},
        },
    )


_string = {"type": "string"}
_timestamp = {
    "oneOf": [
        {"type": "string", "format": "date-time", "description": "ISO 8601 with offset or Z"},
        {"type": "integer", "description": "epoch milliseconds"},
    ],
    "description": "When it happened: at most 5 minutes ahead, at most 366 days ago. "
    "Default: when the server receives it.",
}
_model_name = {"type": "string", "minLength": 1, "maxLength": MODEL_NAME_MAX_LENGTH}
_count = {"type": "integer", "minimum": 1, "maximum": MAX_IMAGE_COUNT}
_event_id = {"type": "string", "minLength": 1, "maxLength": EVENT_ID_MAX_LENGTH}

RECORD_IN = {
    "type": "object",
    "description": (
        "One generation. Each meaning has aliases (`modelName`/`model`, `imageCount`/`count`, "
        "`userId`/`user_id`, `id`/`eventId`); send one of each, or both with the same value. "
        "`null` counts as not sent. Unknown keys are ignored."
    ),
    # null counts as not sent, for every key.
    "properties": {
        name: {**value, "nullable": True}
        for name, value in {
            "modelName": {**_model_name, "description": "Required (or `model`)."},
            "model": {**_model_name, "description": "Alias of `modelName`."},
            "imageCount": {**_count, "description": "Required (or `count`)."},
            "count": {**_count, "description": "Alias of `imageCount`."},
            "userId": {**_string, "description": "If given, the token owner's username."},
            "user_id": {**_string, "description": "Alias of `userId`."},
            "email": {**_string, "description": "If given, the token owner's email (any case)."},
            "timestamp": _timestamp,
            "id": {**_event_id, "description": "Idempotency key, unique per user."},
            "eventId": {**_event_id, "description": "Alias of `id`."},
        }.items()
    },
    "example": {
        "modelName": "Stable Diffusion",
        "imageCount": 4,
        "timestamp": "2026-11-21T09:30:00Z",
        "id": "0b8f4c5e-2f7e-4b53-9a53-0c6f8e0e6d11",
    },
}

INGEST_RESULT = {
    "type": "object",
    "required": ["accepted", "duplicates", "rejected", "errors"],
    "properties": {
        "accepted": {"type": "integer"},
        "duplicates": {"type": "integer"},
        "rejected": {"type": "integer"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "field": {"type": "string", "nullable": True},
                    "message": {"type": "string"},
                },
            },
        },
    },
}
# Every 400 has "error" and "code"; when the records were read but all rejected
# (`records_rejected`), the counts are there too.
INGEST_REFUSED = {
    **INGEST_RESULT,
    "required": ["error", "code"],
    "properties": {**_ERROR_PROPERTIES, **INGEST_RESULT["properties"]},
}

_AUTH_ERRORS = {
    401: _error("Missing, unknown or revoked token (with `WWW-Authenticate: Bearer`)."),
    429: _error("Too many requests; see `Retry-After`."),
    503: _error("The database is unavailable; see `Retry-After`."),
}


def _retry_after(*statuses: int, required: bool = True) -> OpenApiParameter:
    return OpenApiParameter(
        "Retry-After",
        {"type": "integer", "minimum": 1},
        OpenApiParameter.HEADER,
        required=required,
        description="Seconds to wait before trying again.",
        response=list(statuses),
    )


_WWW_AUTHENTICATE = OpenApiParameter(
    "WWW-Authenticate",
    str,
    OpenApiParameter.HEADER,
    required=True,
    description="`Bearer`: the scheme that this operation accepts.",
    response=[401],
)

INGEST = {
    "operation_id": "model_usage_create",
    "summary": "Store usage records",
    "description": (
        "One record (a JSON object) or a batch (an array of 1 to "
        f"{MAX_BATCH} records), at most 1 MiB. Each record is accepted, a duplicate "
        "(its event id is already stored) or rejected; all accepted records are committed "
        "before the response. An optional `X-User-ID` header must name the token's owner."
    ),
    "request": {
        "application/json": {
            "oneOf": [
                RECORD_IN,
                {"type": "array", "items": RECORD_IN, "minItems": 1, "maxItems": MAX_BATCH},
            ]
        }
    },
    "parameters": [
        OpenApiParameter(
            "X-User-ID",
            {"type": "string", "example": "alice"},
            OpenApiParameter.HEADER,
            description="The token owner's username. Empty, `undefined` or `null` count as "
            "not sent.",
        ),
        _WWW_AUTHENTICATE,
        _retry_after(429, 503),
    ],
    "responses": {
        201: OpenApiResponse(INGEST_RESULT, description="Nothing rejected."),
        207: OpenApiResponse(INGEST_RESULT, description="Some rejected, some stored."),
        400: OpenApiResponse(
            INGEST_REFUSED,
            description="The body is unusable (not JSON, too deep, not 1 to "
            f"{MAX_BATCH} records), or every record was rejected (with the counts and errors).",
        ),
        403: _error("`X-User-ID` names someone else."),
        413: _error("The body is over 1 MiB."),
        415: _error("The body is not `application/json`."),
        **_AUTH_ERRORS,
    },
    "auth": [{"bearerToken": []}],
    "tags": ["model-usage"],
}

RECORD_OUT = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "model": {"type": "string"},
        "imageCount": {"type": "integer"},
        "timestamp": {"type": "string", "format": "date-time"},
        "eventId": {"type": "string", "nullable": True},
        "receivedAt": {"type": "string", "format": "date-time"},
    },
}

_RANGE_PARAMETERS = [
    OpenApiParameter("start", OpenApiTypes.DATE, description="First local day (inclusive)."),
    OpenApiParameter("end", OpenApiTypes.DATE, description="Last local day (inclusive)."),
    OpenApiParameter(
        "tz",
        {"type": "string", "example": "Europe/Paris"},
        description="IANA time zone of the days; default UTC.",
    ),
    _WWW_AUTHENTICATE,
    _retry_after(503),
]

LIST_RECORDS = {
    "operation_id": "model_usage_list",
    "summary": "The caller's records, newest first",
    "parameters": [
        *_RANGE_PARAMETERS,
        OpenApiParameter(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            description="Records per page; default 100.",
        ),
        OpenApiParameter("cursor", str, description="From `next` of the previous page."),
    ],
    "responses": {
        200: OpenApiResponse(
            {
                "type": "object",
                "properties": {
                    "results": {"type": "array", "items": RECORD_OUT},
                    "next": {"type": "string", "format": "uri", "nullable": True},
                    "recordsKeptFrom": {
                        "type": "string",
                        "format": "date-time",
                        "nullable": True,
                        "description": (
                            "Raw records before this moment (UTC) were dropped by the "
                            "site's retention; summaries still count them. Null: every "
                            "record is kept."
                        ),
                    },
                },
            }
        ),
        400: _error("A bad parameter.", field={"type": "string"}),
        401: _AUTH_ERRORS[401],
        503: _AUTH_ERRORS[503],
    },
    "tags": ["model-usage"],
}

_counts = {"type": "integer"}
# Money as a decimal string (never a float), rounded half to even to the currency's usual
# decimals; null when none of the images it covers had a price (docs/costs-and-budgets.md).
_cost = {"type": "string", "nullable": True, "pattern": r"^\d+(\.\d+)?$", "example": "12.34"}
_BY_TOKEN = {
    "type": "object",
    "description": "One API token's part of the range, most images first.",
    "properties": {
        "token": {
            "type": "integer",
            "nullable": True,
            "description": "The token's id; null for the records sent without a token.",
        },
        "name": {
            "type": "string",
            "description": f"The token's name; `{NO_TOKEN_NAME}` without one, "
            f"`{DELETED_TOKEN_NAME}` for a token that no longer exists.",
        },
        "prefix": {
            "type": "string",
            "nullable": True,
            "description": "The token's public prefix, as `usg_` and 8 characters.",
        },
        "revoked": {"type": "boolean"},
        "images": _counts,
        "events": {**_counts, "description": "Generations (records)."},
        "share": {
            "type": "number",
            "description": "Its share of the range's images, 0 to 1, to 4 decimals.",
        },
    },
}
SUMMARY = {
    "operation_id": "model_usage_summary",
    "summary": "The caller's aggregates for a range of local days",
    "description": (
        "Defaults: the last 30 days ending today in `tz`; `granularity` by range length "
        "(day up to 92 days, week up to 731, month beyond). `period` is the first local day "
        "of a bucket (a Monday for weeks, the 1st for months); `periods` lists every bucket "
        "in the range, empty ones included; `series` holds only non-zero buckets. Costs are "
        "decimal strings in `currency` with its usual decimals, each rounded half to even "
        "from its exact sum (so a total can differ from the sum of its rounded parts by the "
        "last digit); `null` when none of the images had a price, and `periodCosts` lists "
        "one per entry of `periods`. "
        "`byToken` splits the range's totals by the API token (desktop app or machine) that "
        "sent the records; with `token`, every figure is that token's alone."
    ),
    "parameters": [
        *_RANGE_PARAMETERS,
        OpenApiParameter("granularity", str, enum=list(GRANULARITIES)),
        OpenApiParameter(
            "token",
            {"type": "string", "example": "42"},
            description=(
                "Only the records sent with this API token: the id of one of the caller's "
                f"tokens (`byToken[].token`), or `{NO_TOKEN_PARAM}` for records sent without one."
            ),
        ),
    ],
    "responses": {
        200: OpenApiResponse(
            {
                "type": "object",
                "properties": {
                    "start": {"type": "string", "format": "date"},
                    "end": {"type": "string", "format": "date"},
                    "tz": {"type": "string"},
                    "granularity": {"type": "string", "enum": list(GRANULARITIES)},
                    "totals": {
                        "type": "object",
                        "properties": {
                            "images": _counts,
                            "events": _counts,
                            "cost": _cost,
                            "unpricedImages": _counts,
                        },
                    },
                    "models": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "model": _string,
                                "images": _counts,
                                "events": _counts,
                                "cost": _cost,
                                "unpricedImages": _counts,
                            },
                        },
                    },
                    "periods": {"type": "array", "items": {"type": "string", "format": "date"}},
                    "periodCosts": {"type": "array", "items": _cost},
                    "byToken": {"type": "array", "items": _BY_TOKEN},
                    "series": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "period": {"type": "string", "format": "date"},
                                "model": _string,
                                "images": _counts,
                                "cost": _cost,
                            },
                        },
                    },
                    "currency": {
                        "type": "string",
                        "description": "ISO 4217 code of every cost (the SITE_CURRENCY setting).",
                    },
                    "unpricedModels": {
                        "type": "array",
                        "items": _string,
                        "description": "Models with images in the range that had no price.",
                    },
                },
            }
        ),
        400: _error(
            "A bad date, zone, range or granularity, or a token that is not one of yours.",
            field={"type": "string"},
        ),
        401: _AUTH_ERRORS[401],
        503: _AUTH_ERRORS[503],
    },
    "tags": ["model-usage"],
}

HEALTH_SIMPLE = {
    "operation_id": "health_simple",
    "summary": "Liveness, without the database",
    "responses": {200: OpenApiResponse({"type": "object", "properties": {"status": _string}})},
    "tags": ["health"],
}

_external_api_state = {
    "type": "string",
    "enum": ["ok", "unreachable", "not configured", "unknown"],
    "description": "The external API's /health, asked at most every 5 seconds, by one "
    "check at a time per server process (`unknown`: a new process whose first check is "
    "still under way). Never a reason for a 503 by itself.",
}

HEALTH = {
    "operation_id": "health",
    "summary": "Readiness: does the database answer? (and the external API, for information)",
    "parameters": [_retry_after(503)],
    "responses": {
        200: OpenApiResponse(
            {
                "type": "object",
                "properties": {
                    "status": _string,
                    "database": _string,
                    "externalApi": _external_api_state,
                },
            }
        ),
        503: _error(
            "The database is unavailable.",
            database=_string,
            status=_string,
            externalApi=_external_api_state,
        ),
    },
    "tags": ["health"],
}

_UPSTREAM_ERRORS = {
    502: _error(
        "`upstream_unreachable` (connection refused or lost) or `upstream_error` (a 5xx, "
        "a redirect, an answer too large or not the expected JSON, this site's key refused)."
    ),
    503: _error(
        "`not_configured` (no EXTERNAL_API_URL), `busy` (too many calls already waiting on "
        "the external API in this server process; see `Retry-After`), or the database is "
        "unavailable."
    ),
    504: _error("`upstream_timeout`: the external API did not answer in time."),
}

_token_counts = {
    "promptTokens": _counts,
    "completionTokens": _counts,
    "totalTokens": _counts,
}
_period_counts = {**_token_counts, "requestCount": _counts}

TOKEN_USAGE_OUT = {
    "type": "object",
    "required": [
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
    ],
    "properties": {
        "userId": _string,
        **_period_counts,
        "dailyUsage": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"date": {"type": "string", "format": "date"}, **_period_counts},
            },
        },
        "monthlyUsage": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"month": {"type": "string", "example": "2026-11"}, **_period_counts},
            },
        },
        "lastRequestAt": {"type": "string", "format": "date-time", "nullable": True},
        "fetchedAt": {
            "type": "string",
            "format": "date-time",
            "description": "When this site got these numbers from the external API.",
        },
        "stale": {
            "type": "boolean",
            "description": "True when the external API failed and this is a copy under an "
            "hour old.",
        },
        "staleReason": {
            "type": "string",
            "description": "Only when stale: the error code the request would have had.",
        },
        "noUsageYet": {
            "type": "boolean",
            "description": "True when the plugin generator has no usage for this user of the "
            "site yet (no generation): every count is 0 and both lists are empty.",
        },
        "refreshLimited": {
            "type": "boolean",
            "enum": [True],
            "description": "Only when `refresh=1` was past the user's refresh limit "
            "(`THROTTLE_TOKEN_REFRESH_RATE`): this is the copy cached in the last "
            "`TOKEN_USAGE_CACHE_SECONDS`, as `fetchedAt` says.",
        },
    },
}

TOKEN_USAGE = {
    "operation_id": "token_usage",
    "summary": "Token usage from the external API",
    "description": (
        "The caller's token usage (or, for staff, any user's), as the external API counts "
        "it, cached per user for `TOKEN_USAGE_CACHE_SECONDS` (default 15). When the external "
        "API fails and a copy under an hour old exists, that copy is served with "
        '`"stale": true`.'
    ),
    "parameters": [
        OpenApiParameter(
            "userId",
            {
                "type": "string",
                "pattern": r"^[\w.@+-]{1,150}$",
                "not": {"pattern": r"^\.+$"},
                "example": "alice",
            },
            description="A username (not only dots); default: the caller's.",
        ),
        OpenApiParameter(
            "refresh",
            str,
            enum=["1"],
            description="Skip the cache, up to `THROTTLE_TOKEN_REFRESH_RATE` times per user "
            '(then the cached copy, with `"refreshLimited": true`).',
        ),
        _WWW_AUTHENTICATE,
        # Not when the external API is not configured: retrying will not help.
        _retry_after(503, required=False),
    ],
    "responses": {
        200: OpenApiResponse(TOKEN_USAGE_OUT),
        400: _error("`invalid_user_id`: not a username (1 to 150 of letters, digits, @.+-_)."),
        401: _AUTH_ERRORS[401],
        403: _error("`forbidden`: another user's id, and the caller is not staff."),
        404: _error(
            "`unknown_user`: no user of this site has this username (staff asking about "
            "someone), and the plugin generator has no usage for it. A user of the site "
            'with no usage yet gets a 200 with zeros and `"noUsageYet": true`.'
        ),
        **_UPSTREAM_ERRORS,
    },
    "tags": ["token-usage"],
}

GENERATED = {
    "type": "object",
    "required": ["result", "tokenUsage"],
    "properties": {
        "result": {"type": "object", "description": "The generated plugin."},
        "tokenUsage": {"type": "object", "nullable": True, "properties": _token_counts},
    },
}

PLUGIN_GENERATE = {
    "operation_id": "plugin_generate",
    "summary": "Generate a plugin through the external API",
    "description": (
        "Forwards the JSON object to the external API with `userId` set to the caller's "
        "username (a `userId` in the body is overwritten), and answers with the external "
        "API's status and result. A logged-in session must send its CSRF token "
        "(`X-CSRFToken`). Each call that reaches the external API is kept in a ledger, "
        "browsable in the admin."
    ),
    "request": {
        "application/json": {
            "type": "object",
            "description": "The user's request, passed on as it is. `prompt` must be text "
            "with something other than spaces.",
            "required": ["prompt"],
            "properties": {"prompt": {"type": "string", "description": "What to generate."}},
            "example": {"prompt": "A plugin that counts the words of a page"},
        }
    },
    "parameters": [_WWW_AUTHENTICATE, _retry_after(429), _retry_after(503, required=False)],
    "responses": {
        200: OpenApiResponse(GENERATED, description="Generated."),
        # The external API's own status is passed on, whichever 2xx or 4xx it is.
        "2XX": OpenApiResponse(GENERATED, description="Generated, with another 2xx status."),
        400: _error(
            "`invalid_body` (not JSON or not an object), `empty_prompt` (no `prompt`, or only "
            "spaces: refused here, the external API is not asked) or `rejected_by_upstream` "
            "(the external API refused the request: its own 4xx status and message are "
            "passed on)."
        ),
        "4XX": _error(
            "`rejected_by_upstream`: the external API refused the request with this status "
            "(never 401, 403, 404 or 407, which are this site's problem with it: a 502)."
        ),
        401: _AUTH_ERRORS[401],
        403: _error("A session without a valid CSRF token."),
        413: _error("`invalid_body`: the body is over 1 MiB."),
        415: _error("The body is not `application/json`."),
        429: _error("Too many generations for this user (`THROTTLE_PLUGIN_RATE`)."),
        **_UPSTREAM_ERRORS,
    },
    "tags": ["token-usage"],
}


def canonical_paths(endpoints: list) -> list:
    """Document ``/api/model-usage``, not the ``/api/model-usage/`` that ``/?$`` reads as."""
    return [
        (path.rstrip("/"), regex, method, callback) for path, regex, method, callback in endpoints
    ]


class _Endpoints(generators.EndpointEnumerator):
    """Sees through ``usage.routing.by_method``: each method is its own view's operation."""

    def get_api_endpoints(self, patterns=None, prefix=""):
        endpoints = super().get_api_endpoints(patterns, prefix)
        return [
            (path, regex, method, _views(callback).get(method, callback))
            for path, regex, method, callback in endpoints
        ]

    def should_include_endpoint(self, path, callback) -> bool:
        include = super().should_include_endpoint
        return all(include(path, view) for view in _views(callback).values() or [callback])

    def get_allowed_methods(self, callback) -> list[str]:
        return list(_views(callback)) or super().get_allowed_methods(callback)


def _views(callback) -> dict:
    return getattr(callback, "views", {})


class SchemaGenerator(generators.SchemaGenerator):
    endpoint_inspector_cls = _Endpoints


_percent = {"type": "number", "description": "Of the limit, to one decimal place."}
_amount = {
    "description": "Whole images (an integer) for a budget in images; for a budget in "
    'money, a decimal string in `currency` with its usual decimals, e.g. `"12.50"`.',
}
BUDGET = {
    "operation_id": "budget",
    "summary": "The caller's monthly budget: used, left and the forecast for the month",
    "description": (
        "The month is the current calendar month in the budget's time zone. `used` counts "
        "the records that happened in it, late arrivals included: their images, or, for a "
        "budget in money, what they cost, each image at its model's price in force when it "
        "was made (images of a model without a price then count for nothing: "
        "`unpricedImages`). `forecast` is `used` scaled by the whole month's length over "
        "the part gone: the month's end at the pace so far. `crossed` lists the thresholds "
        "reached, `alerts` those alerted (one per threshold per month, sent by the "
        "background worker within a minute). Without a budget, `budget` is null and the "
        "other fields are absent. The dashboard's budget card shows the same numbers."
    ),
    "parameters": [_WWW_AUTHENTICATE, _retry_after(503)],
    "responses": {
        200: OpenApiResponse(
            {
                "type": "object",
                "required": ["budget"],
                "properties": {
                    "budget": {
                        "type": "object",
                        "nullable": True,
                        "properties": {
                            "unit": {"type": "string", "enum": ["images", "money"]},
                            "limit": _amount,
                            "currency": {
                                "type": "string",
                                "nullable": True,
                                "description": "ISO 4217, for a budget in money; else null.",
                            },
                            "thresholds": {"type": "array", "items": _counts},
                            "timeZone": _string,
                        },
                    },
                    "month": {
                        "type": "object",
                        "properties": {
                            "start": {"type": "string", "format": "date"},
                            "end": {"type": "string", "format": "date"},
                        },
                    },
                    "used": _amount,
                    "left": _amount,
                    "percent": _percent,
                    "forecast": _amount,
                    "forecastPercent": _percent,
                    "images": _counts,
                    "unpricedImages": _counts,
                    "crossed": {"type": "array", "items": _counts},
                    "alerts": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "threshold": _counts,
                                "at": {"type": "string", "format": "date-time"},
                            },
                        },
                    },
                },
            }
        ),
        401: _AUTH_ERRORS[401],
        503: _AUTH_ERRORS[503],
    },
    "tags": ["budget"],
}
