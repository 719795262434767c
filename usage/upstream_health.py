"""The external API's health as ``/api/health`` reports it, asked at most every few seconds.

The answer is cached for HEALTH_CACHE_SECONDS, and in each server process one check at a
time asks the upstream: while it does, other checks answer at once with the last state
this process knew, or, when it knows none yet, wait for that one check for at most
``external_api.HEALTH_TIMEOUT`` and then say ``"unknown"``. A hung upstream therefore costs
one call per process every few seconds, however many checks arrive.
"""

import hashlib
import threading

from django.conf import settings

from usage import external_api
from usage_site.cache import cache_call

HEALTH_CACHE_SECONDS = 5
UNKNOWN = "unknown"

_asking = threading.Lock()
_last_known: dict[str, str] = {}  # by EXTERNAL_API_URL: this process's last answer


def upstream_health() -> str:
    """``"ok"``, ``"unreachable"``, ``"not configured"`` or, rarely, ``"unknown"``."""
    url = settings.EXTERNAL_API_URL
    if not url:
        return "not configured"
    key = "external-api-health:" + hashlib.sha256(url.encode()).hexdigest()[:32]
    state = _cached(key)
    if state is not None:
        return state
    if not _asking.acquire(blocking=False):
        return _while_another_asks(url, key)
    try:
        state = _cached(key)  # the check before this one may have just stored it
        if state is None:
            state = external_api.health()
            _last_known[url] = state
            cache_call("set", key, state, HEALTH_CACHE_SECONDS, what="upstream health")
        return state
    finally:
        _asking.release()


def _while_another_asks(url: str, key: str) -> str:
    known = _last_known.get(url)
    if known is not None:
        return known
    # Nothing known yet (a new process): wait for the one check, as long as it may take.
    if _asking.acquire(timeout=external_api.HEALTH_TIMEOUT):
        _asking.release()
    return _cached(key) or _last_known.get(url, UNKNOWN)


def forget_last_known() -> None:
    """Forget this process's last known states (tests, which start each with none)."""
    _last_known.clear()


def _cached(key: str) -> str | None:
    return cache_call("get", key, what="upstream health")
