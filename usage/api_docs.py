"""The API's description as the site serves it: the OpenAPI schema and the docs page.

drf-spectacular's views, changed where a request could make them fail or write the answer:

- The schema's file name is fixed (``usage-site-api.yaml`` or ``.json``). drf-spectacular
  puts the caller's ``?version=`` into ``Content-Disposition``, where a newline was a 500
  and a quote let the caller write the header. The API has one version, so ``?version=``
  (and ``?lang=``: the site speaks English only) are ignored.
- A browser is shown the schema rather than handed a file: to a request that accepts
  ``text/html`` the YAML is ``text/plain; charset=utf-8`` and the JSON ``application/json``
  (both ``inline``), which browsers display; the OpenAPI media types made them download it.
  ``?download=1`` asks for the file (``attachment``, the OpenAPI media type) instead.
- ``OPTIONS`` answers ``Allow`` with an empty body. REST framework would describe the view
  with the page's own renderer, which has no template for that: a 500.
- Neither view looks at credentials: both are public, so a stale token or a session
  without its CSRF token changes nothing (a POST is a 405 like any other).
"""

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

SCHEMA_FILE_NAME = "usage-site-api"


class _PublicDocument:
    authentication_classes = []
    permission_classes = [AllowAny]

    def options(self, request: Request, *args, **kwargs) -> HttpResponse:
        # REST framework's finalize_response adds Allow (and Vary) to every answer.
        return HttpResponse()


# What a browser displays, by the schema's format.
DISPLAYED_TYPES = {"yaml": "text/plain; charset=utf-8", "json": "application/json"}


class SchemaView(_PublicDocument, SpectacularAPIView):
    """``/api/schema/``: YAML, or JSON with ``?format=json``; a file with ``?download=1``."""

    @extend_schema(exclude=True)
    def get(self, request: Request, *args, **kwargs) -> Response:
        generator = self.generator_class(urlconf=self.urlconf, patterns=self.patterns)
        schema = generator.get_schema(request=request, public=self.serve_public)
        suffix = self.perform_content_negotiation(request, force=True)[0].format
        download = request.query_params.get("download", "").lower() in ("1", "true")
        disposition = "attachment" if download else "inline"
        headers = {"Content-Disposition": f'{disposition}; filename="{SCHEMA_FILE_NAME}.{suffix}"'}
        shown = not download and "text/html" in request.headers.get("Accept", "")
        content_type = DISPLAYED_TYPES.get(suffix) if shown else None
        return Response(schema, headers=headers, content_type=content_type)


class DocsView(_PublicDocument, SpectacularSwaggerSplitView):
    """``/api/docs/``: Swagger UI, its start-up script at ``?script=`` (the CSP allows no
    inline script)."""
