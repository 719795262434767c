"""The JSON API, one view per operation. Each reads the request, calls one function, and
shapes the answer; failures are ``usage.problems.Problem``s, answered by ``usage.errors``."""

import logging
import time

from django.db import DatabaseError, connection
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from usage import audit, budgets, openapi, plugins, token_usage
from usage.auth import BearerTokenAuthentication
from usage.costs import summarize_with_costs
from usage.devices import parse_token
from usage.ingest import ingest, parse_body
from usage.problems import DatabaseUnavailable
from usage.records import (
    encode_cursor,
    kept_from_text,
    list_records,
    parse_record_query,
    record_as_dict,
)
from usage.renderers import FastJSONRenderer
from usage.request_body import json_object, read_body, require_json
from usage.routing import by_method
from usage.summary import parse_granularity, parse_range
from usage.throttles import IngestThrottle, PluginUserThrottle
from usage.upstream_health import upstream_health
from usage.user_header import check_claimed_user

log = logging.getLogger("usage.ingest")


class IngestView(APIView):
    """``POST``: store the records a desktop app sends, with its API token."""

    authentication_classes = [BearerTokenAuthentication]
    throttle_classes = [IngestThrottle]

    def check_throttles(self, request: Request) -> None:
        # In order, stopping at the first refusal: REST framework would ask the user's
        # throttle too, so an app past its token's limit would spend its user's allowance.
        for throttle in self.get_throttles():
            if not throttle.allow_request(request, self):
                self.throttled(request, throttle.wait())

    def initial(self, request: Request, *args, **kwargs) -> None:
        self.started = time.perf_counter()
        super().initial(request, *args, **kwargs)

    def finalize_response(self, request: Request, response: Response, *args, **kwargs):
        # Here, not in post(), so that refused requests (403, 413, 415, 429...) log too.
        log_ingestion(request, response, time.perf_counter() - self.started)
        return super().finalize_response(request, response, *args, **kwargs)

    @extend_schema(**openapi.INGEST)
    def post(self, request: Request) -> Response:
        check_claimed_user(request, request.user)
        require_json(request)
        items = parse_body(read_body(request))
        result = ingest(request.user, request.auth, items, timezone.now())
        return Response(result.as_dict(), status=result.status)


class RecordListView(APIView):
    """``GET``: the caller's records back, newest first, a page at a time."""

    @extend_schema(**openapi.LIST_RECORDS)
    def get(self, request: Request) -> Response:
        query = parse_record_query(request.query_params)
        records, more = list_records(request.user, query)
        next_url = None
        if more:
            params = request.query_params.copy()
            params["cursor"] = encode_cursor(records[-1])
            next_url = request.build_absolute_uri(f"{request.path}?{params.urlencode()}")
        body = {"results": [record_as_dict(r) for r in records], "next": next_url}
        return Response({**body, "recordsKeptFrom": kept_from_text()})


model_usage = by_method(GET=RecordListView.as_view(), POST=IngestView.as_view())


def log_ingestion(request: Request, response: Response, seconds: float) -> None:
    """One line per ingestion request; the token by its public prefix only."""
    counts = response.data if isinstance(response.data, dict) else {}
    token = request.auth
    log.info(
        "ingest user=%s token=%s accepted=%s duplicates=%s rejected=%s status=%d duration_ms=%.1f",
        request.user.get_username() if request.user else "-",
        token.display_prefix if token else "-",
        counts.get("accepted", 0),
        counts.get("duplicates", 0),
        counts.get("rejected", 0),
        response.status_code,
        seconds * 1000,
    )


class UsageSummaryView(APIView):
    """The caller's totals, per model, per bucket and per token, for a range of local days,
    with costs."""

    renderer_classes = [FastJSONRenderer]  # its 40 KB answer, written in a tenth of the time

    @extend_schema(**openapi.SUMMARY)
    def get(self, request: Request) -> Response:
        date_range = parse_range(request.query_params)
        granularity = parse_granularity(request.query_params.get("granularity"), date_range.days)
        token = parse_token(request.user, request.query_params.get("token"))
        return Response(summarize_with_costs(request.user, date_range, granularity, token))


class TokenUsageView(APIView):
    """Token usage from the external API: the caller's own, or anyone's for staff."""

    @extend_schema(**openapi.TOKEN_USAGE)
    def get(self, request: Request) -> Response:
        user_id = token_usage.readable_user_id(request.user, request.query_params.get("userId"))
        audit.staff_viewed(request, user_id)
        refresh = request.query_params.get("refresh", "").lower() in ("1", "true")
        return Response(token_usage.usage_for(user_id, refresh=refresh))


class PluginGenerateView(APIView):
    """A plugin generated by the external API for the caller; rate-limited per user."""

    throttle_classes = [PluginUserThrottle]

    @extend_schema(**openapi.PLUGIN_GENERATE)
    def post(self, request: Request) -> Response:
        generation = plugins.generate(request.user, json_object(request))
        return Response(
            {"result": generation.result, "tokenUsage": generation.token_usage},
            status=generation.status,
        )


class BudgetView(APIView):
    """The caller's budget and where this month stands against it."""

    @extend_schema(**openapi.BUDGET)
    def get(self, request: Request) -> Response:
        return Response(budgets.budget_status(request.user))


class SimpleHealthView(APIView):
    """Up or not, without touching the database: for load balancers."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(**openapi.HEALTH_SIMPLE)
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


class HealthView(APIView):
    """Up, whether the database answers, and whether the external API does.

    The external API's state is reported, never a reason for a 503: the site works
    (ingestion, dashboards) without it.
    """

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(**openapi.HEALTH)
    def get(self, request: Request) -> Response:
        external = upstream_health()
        if database_answers():
            return Response({"status": "ok", "database": "ok", "externalApi": external})
        down = DatabaseUnavailable("The database is unavailable.")
        return Response(
            {"status": "unavailable", "database": "unavailable", "externalApi": external}
            | down.as_body(),
            status=down.status,
            headers={"Retry-After": str(down.retry_after)},
        )


def database_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except DatabaseError:
        # Drop the broken connection so that the next request opens a fresh one.
        connection.close()
        return False
