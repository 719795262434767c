"""JSON request bodies as the API reads them: strict, within the size limit, and a
``Problem`` (400 or 413) when unusable, never an exception of the parser's own.

``StrictJSONParser`` is REST framework's parser (``DEFAULT_PARSER_CLASSES``), so that
anything reading ``request.data`` reads the same way as ``usage.request_body``. REST
framework's own JSONParser lets a RecursionError through (a 500) and accepts ``NaN``.
"""

from typing import Any

from rest_framework.parsers import JSONParser

from usage import strict_json
from usage.ingest import MAX_BODY_BYTES, body_too_large
from usage.problems import InvalidBody


def parsed(raw: bytes) -> Any:
    """``raw`` as strict JSON (``usage.strict_json``), or the API's 400 or 413."""
    if len(raw) > MAX_BODY_BYTES:
        raise body_too_large()
    try:
        return strict_json.loads(raw)
    except ValueError:
        raise InvalidBody("The body is not valid JSON.") from None


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        return parsed(stream.read(MAX_BODY_BYTES + 1) if stream is not None else b"")
