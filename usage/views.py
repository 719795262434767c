"""The JSON API. Each view reads the request, calls one function, and shapes the answer."""

import logging
import time

from django.db import DatabaseError, connection
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from usage import audit, schema, strict_json, token_usage
from usage.auth import BearerTokenAuthentication
from usage.ingest import MAX_BODY_BYTES, BodyError, ingest, parse_body
from usage.records import encode_cursor, list_records, parse_record_query, record_as_dict
from usage.summary import parse_granularity, parse_range, summarize
from usage.throttles import IngestTokenThrottle, IngestUserThrottle, PluginUserThrottle

log = logging.getLogger("usage.ingest")


class ModelUsageView(APIView):
    """``POST`` stores records sent by a desktop app; ``GET`` reads the caller's back."""

    def get_authenticators(self):
        # Posting needs an API token; reading also accepts a logged-in browser session.
        if self._is_post():
            return [BearerTokenAuthentication()]
        return super().get_authenticators()

    def get_throttles(self):
        return [IngestTokenThrottle(), IngestUserThrottle()] if self._is_post() else []

    def check_throttles(self, request: Request) -> None:
        # In order, stopping at the first refusal: REST framework would ask the user's
        # throttle too, so an app past its token's limit would spend its user's allowance.
        for throttle in self.get_throttles():
            if not throttle.allow_request(request, self):
                self.throttled(request, throttle.wait())

    def _is_post(self) -> bool:
        # The schema generator asks for authenticators before it sets a request.
        return getattr(self.request, "method", None) == "POST"

    def initial(self, request: Request, *args, **kwargs) -> None:
        self.started = time.perf_counter()
        super().initial(request, *args, **kwargs)

    def finalize_response(self, request: Request, response: Response, *args, **kwargs):
        # Here, not in post(), so that refused requests (403, 413, 415, 429...) log too.
        if self._is_post():
            log_ingestion(request, response, time.perf_counter() - self.started)
        return super().finalize_response(request, response, *args, **kwargs)

    @extend_schema(**schema.INGEST)
    def post(self, request: Request) -> Response:
        claimed = request.headers.get("X-User-ID")
        if claimed is not None and claimed != request.user.get_username():
            raise exceptions.PermissionDenied("X-User-ID does not name the owner of the token.")
        require_json(request)
        items = parse_body(read_body(request))
        result = ingest(request.user, request.auth, items, timezone.now())
        return Response(result.as_dict(), status=result.status)

    @extend_schema(**schema.LIST_RECORDS)
    def get(self, request: Request) -> Response:
        query = parse_record_query(request.query_params)
        records, more = list_records(request.user, query)
        next_url = None
        if more:
            params = request.query_params.copy()
            params["cursor"] = encode_cursor(records[-1])
            next_url = request.build_absolute_uri(f"{request.path}?{params.urlencode()}")
        return Response({"results": [record_as_dict(r) for r in records], "next": next_url})


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


def require_json(request: Request) -> None:
    if request.content_type.split(";")[0].strip().lower() != "application/json":
        raise exceptions.UnsupportedMediaType(request.content_type or "none")


def read_body(request: Request) -> bytes:
    """The raw body, refusing (413) anything over the limit before reading it all."""
    django_request = request._request
    declared = django_request.META.get("CONTENT_LENGTH") or ""
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BodyError.too_large()
    stream = django_request
    if not declared and django_request.META.get("wsgi.input_terminated"):
        # A chunked body has no Content-Length, so Django reads it as empty; the server's
        # own stream (gunicorn marks it terminated) ends where the body ends.
        stream = django_request.META["wsgi.input"]
    try:
        # One byte past the limit tells a body of exactly the limit from a larger one.
        return stream.read(MAX_BODY_BYTES + 1)
    except Exception as exc:  # a cut connection or bad chunk framing, in the server's own types
        log.warning("body read failed user=%s: %r", request.user.get_username(), exc)
        raise BodyError("The body could not be read: it was cut short or badly framed.") from exc


class UsageSummaryView(APIView):
    """The caller's totals, per model and per bucket, for a range of local days."""

    @extend_schema(**schema.SUMMARY)
    def get(self, request: Request) -> Response:
        date_range = parse_range(request.query_params)
        granularity = parse_granularity(request.query_params.get("granularity"), date_range.days)
        return Response(summarize(request.user, date_range, granularity))


class TokenUsageView(APIView):
    """Token usage from the external API: the caller's own, or anyone's for staff."""

    @extend_schema(**schema.TOKEN_USAGE)
    def get(self, request: Request) -> Response:
        user_id = token_usage.readable_user_id(request.user, request.query_params.get("userId"))
        audit.staff_viewed(request, user_id)
        refresh = request.query_params.get("refresh", "").lower() in ("1", "true")
        return Response(token_usage.usage_for(user_id, refresh=refresh))


class PluginGenerateView(APIView):
    """A plugin generated by the external API for the caller; rate-limited per user."""

    throttle_classes = [PluginUserThrottle]

    @extend_schema(**schema.PLUGIN_GENERATE)
    def post(self, request: Request) -> Response:
        generation = token_usage.generate(request.user, json_object(request))
        return Response(
            {"result": generation.result, "tokenUsage": generation.token_usage},
            status=generation.status,
        )


def json_object(request: Request) -> dict:
    """The body as one JSON object, read with the same size limit as ingestion."""
    require_json(request)
    try:
        body = strict_json.loads(read_body(request))
    except BodyError as exc:
        raise token_usage.Refused("invalid_body", exc.message, exc.status) from None
    except ValueError:
        raise token_usage.Refused("invalid_body", "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise token_usage.Refused("invalid_body", "The body must be a JSON object.")
    return body


class SimpleHealthView(APIView):
    """Up or not, without touching the database: for load balancers."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(**schema.HEALTH_SIMPLE)
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


class HealthView(APIView):
    """Up, whether the database answers, and whether the external API does.

    The external API's state is reported, never a reason for a 503: the site works
    (ingestion, dashboards) without it.
    """

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(**schema.HEALTH)
    def get(self, request: Request) -> Response:
        external = token_usage.upstream_health()
        if database_answers():
            return Response({"status": "ok", "database": "ok", "externalApi": external})
        return Response(
            {
                "status": "unavailable",
                "database": "unavailable",
                "externalApi": external,
                "error": "The database is unavailable.",
            },
            status=503,
            headers={"Retry-After": "5"},
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
