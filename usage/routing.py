"""One URL, one view per operation: ``by_method(GET=ListView.as_view(), POST=...)``.

Each operation keeps its own authentication, throttles and schema; the URL only chooses
between them by method (as healthchecks does in ``hc/api/views.py``). The GET view also
answers HEAD, OPTIONS and the methods nobody serves (405), and every ``Allow`` header says
what the URL as a whole accepts. ``usage.openapi.SchemaGenerator`` documents each
operation from its own view.
"""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt


def by_method(**views: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    fallback = views["GET"]
    allow = ", ".join([*views, "HEAD", "OPTIONS"])

    # Exempt here as REST framework's views are: their session authentication checks CSRF.
    @csrf_exempt
    def switch(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        response = views.get(request.method, fallback)(request, *args, **kwargs)
        if response.has_header("Allow"):
            response["Allow"] = allow
        return response

    switch.views = views
    return switch
