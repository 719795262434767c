"""Reading a request's body for the API: JSON only, and never more than MAX_BODY_BYTES.

A body over the limit is refused (413) from its ``Content-Length`` before any of it is
read, and a chunked body (no ``Content-Length``) is read up to one byte past the limit.
"""

import logging

from rest_framework.request import Request

from usage import strict_json
from usage.ingest import MAX_BODY_BYTES, body_too_large
from usage.problems import InvalidBody, Problem

log = logging.getLogger("usage.ingest")


class UnsupportedMediaType(Problem):
    status = 415
    code = "unsupported_media_type"


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
        raise InvalidBody("The body could not be read: it was cut short or badly framed.") from exc


def json_object(request: Request) -> dict:
    """The body as one JSON object, read with the same size limit as ingestion."""
    require_json(request)
    raw = read_body(request)
    if len(raw) > MAX_BODY_BYTES:
        raise body_too_large()
    try:
        body = strict_json.loads(raw)
    except ValueError:
        raise InvalidBody("The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidBody("The body must be a JSON object.")
    return body
