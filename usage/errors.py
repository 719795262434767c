"""One error shape for the whole API: ``{"error": "...", "code": "...", ...}``, never HTML.

Every failure the site reports is a ``usage.problems.Problem``; this module is where one
becomes an HTTP answer. REST framework views report through ``api_exception_handler``,
which also turns REST framework's and Django's own exceptions into problems. Everything
else under ``/api/`` (an unknown URL, Django's own error pages, its DEBUG pages) is given
the same shape by ``ApiErrorMiddleware`` on the way out. A database that is down anywhere,
in a view or in the session middleware, is a 503: JSON under ``/api/``, a page elsewhere.
"""

import logging
import sys
from http import HTTPStatus

from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from usage.problems import BodyTooLarge, DatabaseUnavailable, Problem

log = logging.getLogger(__name__)

API_PREFIX = "/api/"
# Codes for the answers that Django or REST framework make rather than a Problem; the
# rest are REST framework's own codes (``not_authenticated``, ``throttled``, ...).
STATUS_CODES = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "invalid_body",
    415: "unsupported_media_type",
    500: "server_error",
}
DRF_CODES = {
    "permission_denied": "forbidden",
    "error": "bad_request",
    "parse_error": "invalid_body",
}


def is_database_down(exc: BaseException | None) -> bool:
    # OperationalError covers refused connections and servers shutting down mid-query;
    # InterfaceError a connection object that the restart left closed.
    return isinstance(exc, OperationalError | InterfaceError)


def headers_of(problem: Problem) -> dict[str, str]:
    return {"Retry-After": str(problem.retry_after)} if problem.retry_after else {}


def with_headers(response: HttpResponse, problem: Problem) -> HttpResponse:
    """``response`` with the headers ``problem`` calls for (an HTML page's, say)."""
    for name, value in headers_of(problem).items():
        response[name] = value
    return response


def problem_response(problem: Problem) -> JsonResponse:
    """A problem as a plain Django JSON answer (the dashboard's JSON views use it too)."""
    return JsonResponse(problem.as_body(), status=problem.status, headers=headers_of(problem))


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    """REST framework's handler: any problem, and DRF's own exceptions, in the one shape."""
    if is_database_down(exc):
        log.warning("database unavailable: %s", exc.__class__.__name__)
        exc = DatabaseUnavailable()
    elif isinstance(exc, RequestDataTooBig):
        exc = BodyTooLarge()
    if isinstance(exc, Problem):
        return Response(exc.as_body(), status=exc.status, headers=headers_of(exc))
    # DRF's handler turns Http404 and PermissionDenied into its own, and sets the headers
    # (WWW-Authenticate, Retry-After, Allow); only the body is reshaped here.
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    response.data = _reshape(response.data, _code_of(exc, response.status_code))
    return response


def _code_of(exc: Exception, status: int) -> str:
    code = exc.default_code if isinstance(exc, exceptions.APIException) else None
    return DRF_CODES.get(code, code) or STATUS_CODES.get(status, "error")


def _reshape(data, code: str) -> dict:
    if isinstance(data, dict) and set(data) == {"detail"}:
        return {"error": str(data["detail"]), "code": code}
    # Validation errors: keep DRF's per-field detail beside one readable message.
    return {"error": "The request is invalid.", "code": code, "details": data}


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
    status = response.status_code
    problem = Problem(
        HTTPStatus(status).phrase.capitalize() + ".",
        status=status,
        code=STATUS_CODES.get(status, "error"),
    )
    replacement = problem_response(problem)
    for header in ("Retry-After", "Allow", "WWW-Authenticate"):
        if header in response:
            replacement[header] = response[header]
    return replacement


def database_unavailable(request: HttpRequest) -> HttpResponse:
    problem = DatabaseUnavailable()
    if request.path.startswith(API_PREFIX):
        return problem_response(problem)
    return with_headers(render(request, "503.html", status=problem.status), problem)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: a 503 when the database is down (say, in the session middleware)."""
    # Django calls this inside its except block, so the exception is still at hand.
    if is_database_down(sys.exception()):
        return database_unavailable(request)
    return render(request, "500.html", status=500)
