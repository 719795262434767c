"""The external API's health as ``/api/health`` reports it, asked at most every few seconds."""

import hashlib

from django.conf import settings

from usage import external_api
from usage_site.cache import cache_call

HEALTH_CACHE_SECONDS = 5


def upstream_health() -> str:
    """``"ok"``, ``"unreachable"`` or ``"not configured"``, asked at most every few seconds."""
    url = settings.EXTERNAL_API_URL
    if not url:
        return "not configured"
    key = "external-api-health:" + hashlib.sha256(url.encode()).hexdigest()[:32]
    state = cache_call("get", key, what="upstream health")
    if state is None:
        state = external_api.health()
        cache_call("set", key, state, HEALTH_CACHE_SECONDS, what="upstream health")
    return state
