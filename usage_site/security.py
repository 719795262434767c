"""The Content-Security-Policy header: scripts, styles and everything else from this site
only, plus the one pinned Chart.js file the dashboard loads.

Django 5.2 has no CSP of its own (6.0 adds one). The pages are written for this policy: no
inline scripts or styles, no ``eval``; data reaches scripts through ``json_script``, which
a policy does not block because the browser never runs it.
"""

from functools import lru_cache
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse


@lru_cache(maxsize=4)
def content_security_policy(chartjs_url: str) -> str:
    scripts = ["'self'"]
    if urlsplit(chartjs_url).netloc:  # an absolute URL: that one file, not its whole host
        scripts.append(chartjs_url)
    directives = {
        "default-src": ["'self'"],
        "script-src": scripts,
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # Read per request (and built once per URL), so that a test's CHARTJS_URL counts.
        policy = content_security_policy(settings.CHARTJS_URL)
        response.headers.setdefault("Content-Security-Policy", policy)
        return response
