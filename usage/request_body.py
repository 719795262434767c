"""Request bodies: never more than MAX_BODY_BYTES on any URL, and JSON only for the API.

A body over the limit is refused (413) from its ``Content-Length`` before any of it is
read, and a chunked body (no ``Content-Length``) is read up to one byte past the limit.
``BodyLimitMiddleware`` does this for every URL (the sign-in form would otherwise read, and
spool to disk, a body of any size); ``read_body`` again for the API's own reads.
"""

import io
import logging

from django.http import HttpRequest, HttpResponse
from django.template import loader
from rest_framework.request import Request

from usage.errors import API_PREFIX, problem_response, with_headers
from usage.ingest import MAX_BODY_BYTES, body_too_large
from usage.parsers import parsed
from usage.problems import InvalidBody, Problem

log = logging.getLogger("usage.ingest")


class UnsupportedMediaType(Problem):
    status = 415
    code = "unsupported_media_type"


class BodyLimitMiddleware:
    """No body over MAX_BODY_BYTES is read, on any URL: 413, as JSON under /api/, else a page.

    Last in MIDDLEWARE: the others' request phases read no body, and CSRF's view phase
    (which reads a form) comes after this; the answer goes back out through all of them,
    security headers included.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        declared = request.META.get("CONTENT_LENGTH") or ""
        if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return refused(request, body_too_large())
        if not declared and _chunked(request):
            # Django reads a body without Content-Length as empty, but the API reads the
            # server's stream itself (read_body): read it here, within the limit, and
            # leave the API what was read.
            try:
                body = request.META["wsgi.input"].read(MAX_BODY_BYTES + 1)
            except Exception as exc:  # the server's own types for a cut or badly framed body
                log.warning("body read failed path=%s: %r", request.path, exc)
                return refused(request, unreadable_body())
            if len(body) > MAX_BODY_BYTES:
                return refused(request, body_too_large())
            request.META["wsgi.input"] = io.BytesIO(body)
        return self.get_response(request)


def _chunked(request: HttpRequest) -> bool:
    # gunicorn marks its stream terminated: it ends where the chunked body ends.
    return bool(request.META.get("HTTP_TRANSFER_ENCODING")) and bool(
        request.META.get("wsgi.input_terminated")
    )


def refused(request: HttpRequest, problem: Problem) -> HttpResponse:
    """``problem`` in the API's shape under /api/, as a plain page elsewhere."""
    if request.path.startswith(API_PREFIX):
        return problem_response(problem)
    page = loader.render_to_string(f"{problem.status}.html")
    return with_headers(HttpResponse(page, status=problem.status), problem)


def unreadable_body() -> InvalidBody:
    return InvalidBody("The body could not be read: it was cut short or badly framed.")


def require_json(request: Request) -> None:
    if request.content_type.split(";")[0].strip().lower() != "application/json":
        media_type = request.content_type or "none"
        raise UnsupportedMediaType(f'Unsupported media type "{media_type}" in request.')


def read_body(request: Request) -> bytes:
    """The raw body, refusing (413) anything over the limit before reading it all."""
    django_request = request._request
    declared = django_request.META.get("CONTENT_LENGTH") or ""
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise body_too_large()
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
        raise unreadable_body() from exc


def json_object(request: Request) -> dict:
    """The body as one JSON object, read with the same size limit as ingestion."""
    require_json(request)
    body = parsed(read_body(request))
    if not isinstance(body, dict):
        raise InvalidBody("The body must be a JSON object.")
    return body
