"""One error shape for the whole API: ``{"error": "...", ...}``, never an HTML page.

DRF views report through ``api_exception_handler``. Everything else under ``/api/`` (an
unknown URL, Django's own error pages, its DEBUG pages) is turned into the same shape by
``ApiErrorMiddleware`` on the way out. A database that is down anywhere, in a view or in
the session middleware, is a 503: JSON under ``/api/``, a friendly page elsewhere.
"""

import logging
import sys
from http import HTTPStatus

from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from usage.external_api import Busy, ExternalApiError, Rejected
from usage.ingest import BodyError
from usage.summary import QueryError
from usage.token_usage import Refused

log = logging.getLogger(__name__)

API_PREFIX = "/api/"
RETRY_AFTER_DB_SECONDS = 5
DATABASE_DOWN = "The database is unavailable; try again shortly."
RETRY_AFTER_BUSY_SECONDS = 5
# This site's answer to each failure of the external API (a Rejected passes on its 4xx).
EXTERNAL_API_STATUS = {
    "invalid_user_id": 400,
    "unknown_user": 404,
    "upstream_unreachable": 502,
    "upstream_error": 502,
    "not_configured": 503,
    "busy": 503,
    "upstream_timeout": 504,
}


def is_database_down(exc: BaseException | None) -> bool:
    # OperationalError covers refused connections and servers shutting down mid-query;
    # InterfaceError a connection object that the restart left closed.
    return isinstance(exc, OperationalError | InterfaceError)


def error_body(message: str, **extra) -> dict:
    return {"error": message, **extra}


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's handler, reshaped to ``{"error": ...}``, plus database faults and body size."""
    if is_database_down(exc):
        log.warning("database unavailable: %s", exc.__class__.__name__)
        return Response(
            error_body(DATABASE_DOWN),
            status=503,
            headers={"Retry-After": str(RETRY_AFTER_DB_SECONDS)},
        )
    if isinstance(exc, BodyError):
        return Response(error_body(exc.message), status=exc.status)
    if isinstance(exc, QueryError):
        return Response(error_body(exc.message, field=exc.field), status=400)
    if isinstance(exc, ExternalApiError):
        return external_api_error(exc)
    if isinstance(exc, Refused):
        return Response(error_body(exc.message, code=exc.code), status=exc.status)
    if isinstance(exc, RequestDataTooBig):
        exc = exceptions.APIException("The request body is too large.")
        exc.status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    response.data = _reshape(response.data)
    return response


def external_api_error(exc: ExternalApiError) -> Response:
    """Never the upstream's body, status line or a traceback: a fixed sentence and a code."""
    answer = exc.status if isinstance(exc, Rejected) else EXTERNAL_API_STATUS[exc.code]
    # Every 429 and busy 503 says when to try again, the upstream's own 429 passed on too.
    retry = isinstance(exc, Busy) or answer == 429
    headers = {"Retry-After": str(RETRY_AFTER_BUSY_SECONDS)} if retry else None
    return Response(error_body(exc.message, code=exc.code), status=answer, headers=headers)


def _reshape(data) -> dict:
    if isinstance(data, dict) and set(data) == {"detail"}:
        return error_body(str(data["detail"]))
    # Validation errors: keep DRF's per-field detail beside one readable message.
    return error_body("The request is invalid.", details=data)


class ApiErrorMiddleware:
    """JSON answers for exceptions that escape a view under /api/, 503 pages elsewhere."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # Django's own error pages (and its DEBUG pages) are HTML; API clients get JSON.
        if (
            request.path.startswith(API_PREFIX)
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return _as_json(response)
        return response

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        # Anything else goes on to Django's handler500 (which logs it), then to __call__.
        return database_unavailable(request) if is_database_down(exc) else None


def _as_json(response: HttpResponse) -> JsonResponse:
    status_code = response.status_code
    replacement = JsonResponse(
        error_body(HTTPStatus(status_code).phrase.capitalize() + "."), status=status_code
    )
    for header in ("Retry-After", "Allow", "WWW-Authenticate"):
        if header in response:
            replacement[header] = response[header]
    return replacement


def database_unavailable(request: HttpRequest) -> HttpResponse:
    if request.path.startswith(API_PREFIX):
        response = JsonResponse(error_body(DATABASE_DOWN), status=503)
    else:
        response = render(request, "503.html", status=503)
    response["Retry-After"] = str(RETRY_AFTER_DB_SECONDS)
    return response


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: a 503 when the database is down (say, in the session middleware)."""
    # Django calls this inside its except block, so the exception is still at hand.
    if is_database_down(sys.exception()):
        return database_unavailable(request)
    return render(request, "500.html", status=500)
