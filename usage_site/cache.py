"""The shared cache as an aid the site can lose, never a reason for an error.

Throttle counts, cached token usage and the replica pins live in the cache (one Redis with
``REDIS_URL``). When it fails, each caller goes on without it, with the answer it names.
For ``SKIP_SECONDS`` after a failure this process does not ask the cache again, so a Redis
that hangs costs one request its socket timeout (a second), not every request several.
"""

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.core.cache import cache

log = logging.getLogger(__name__)

SKIP_SECONDS = 5.0
T = TypeVar("T")

_skip_until = 0.0


def or_fallback(call: Callable[[], T], fallback: T, what: str) -> T:
    """``call()``, or ``fallback`` when the cache fails or failed in the last few seconds."""
    global _skip_until
    if time.monotonic() < _skip_until:
        return fallback
    try:
        return call()
    except Exception as exc:  # the backend's own error types (redis-py's)
        _skip_until = time.monotonic() + SKIP_SECONDS
        log.warning(
            "cache unavailable (%s); going on without it for %.0f s: %r", what, SKIP_SECONDS, exc
        )
        return fallback


def forget_failures() -> None:
    """Ask the cache again at once (tests that take it down and bring it back)."""
    global _skip_until
    _skip_until = 0.0


def cache_call(method: str, *args, fallback=None, what: str):
    """``cache.<method>(*args)``, or ``fallback`` when the cache cannot answer: a miss for a
    read, a lost write for a write. ``what`` names the caller in the log."""
    return or_fallback(lambda: getattr(cache, method)(*args), fallback, f"{what} {method}")
