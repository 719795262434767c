"""Rate limits that hold across every server process: fixed windows counted in the cache.

A limit such as ``600/min`` allows that many requests per key in each clock-aligned window
(a minute here). Each request adds one to its window's counter with the cache's atomic
``incr``, and is allowed when the count it got back is within the limit, so concurrent
requests, on one process or on many sharing Redis, can never be allowed more than the
limit between them. (DRF's own throttles read a list, append and write it back, which
loses counts when two servers do it at once.) The price of fixed windows is that a
client may spend one window's allowance at its end and the next one's at once.

The counters live in the configured cache: with ``REDIS_URL``, one Redis for every
process and machine; without it, each process's memory, which is right for the
single-process development server only. When the cache cannot answer, requests are
allowed (``usage_site.cache``): a Redis outage must not stop ingestion.
"""

import contextlib
import hashlib
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.throttling import BaseThrottle

from usage_site.cache import or_fallback


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> "Rate":
        """``600/min``; the period may be spelled s/sec/second, m/min, h/hour or d/day."""
        count, _, period = text.partition("/")
        seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[period[:1]]
        return cls(int(count), seconds)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int  # seconds until the window ends; 0 when allowed


ALLOWED = Verdict(True, 0)


def rate_for(scope: str) -> Rate:
    return Rate.parse(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][scope])


def _key(scope: str, ident: str, window: int) -> str:
    # Hashed: usernames and addresses of any length and alphabet make short, safe keys.
    digest = hashlib.sha256(ident.encode()).hexdigest()[:24]
    return f"throttle:{scope}:{digest}:{window}"


def hit(scope: str, ident: str, *, now: float | None = None) -> Verdict:
    """Count one request for ``ident`` in ``scope`` and say whether it is within the limit."""
    rate = rate_for(scope)
    now = time.time() if now is None else now
    window = int(now // rate.seconds)
    key = _key(scope, ident, window)

    # The counter expires a little after its window ends.
    count = or_fallback(
        lambda: _count_one(key, rate.seconds + 5),
        None,
        f"throttle {scope} not counted, request allowed",
    )
    if count is None or count <= rate.count:
        return ALLOWED
    return Verdict(False, max(1, math.ceil((window + 1) * rate.seconds - now)))


def _count_one(key: str, expires_in: int) -> int:
    """Add one to the counter ``key`` (created at 1, expiring in ``expires_in`` seconds);
    returns the new count. Atomic: concurrent callers each get a count of their own."""
    backend = caches["default"]  # ``cache`` is a proxy of it, not a RedisCache itself
    if isinstance(backend, RedisCache):
        # One round trip: create the counter at 0 with its expiry unless it exists, then add
        # one, as one MULTI/EXEC. Django's own incr asks EXISTS and then INCR, and a
        # missing key costs an ADD and another INCR; on the single-record post those were
        # four round trips of its two limits. Stored as Django stores an int, so get, incr
        # and decr read it as usual.
        name = backend.make_and_validate_key(key)
        pipeline = backend._cache.get_client(name, write=True).pipeline(transaction=True)
        pipeline.set(name, 0, ex=expires_in, nx=True)
        pipeline.incr(name)
        return pipeline.execute()[1]
    try:
        return cache.incr(key)
    except ValueError:  # the window's first request: start its counter at 1, unless
        # another request just did
        return 1 if cache.add(key, 1, expires_in) else cache.incr(key)


def give_back(scope: str, ident: str, *, now: float | None = None) -> None:
    """Uncount a request counted by ``hit`` in the same window (a sign-in that succeeded)."""
    rate = rate_for(scope)
    now = time.time() if now is None else now

    def uncount_one() -> None:
        # ValueError: the window ended and its counter expired; nothing to give back.
        with contextlib.suppress(ValueError):
            cache.decr(_key(scope, ident, int(now // rate.seconds)))

    or_fallback(uncount_one, None, f"throttle {scope} not uncounted")


class WindowThrottle(BaseThrottle):
    """A REST framework throttle over ``hit``; subclasses say what one key is."""

    scope = ""

    def ident_of(self, request, view) -> str | None:
        raise NotImplementedError

    def allow_request(self, request, view) -> bool:
        ident = self.ident_of(request, view)
        if ident is None:  # nothing to count by (refused before this, e.g. no token)
            return True
        self.verdict = hit(self.scope, ident)
        return self.verdict.allowed

    def wait(self) -> int:
        return self.verdict.retry_after


class IngestUserThrottle(WindowThrottle):
    """Every app of one user together: ``THROTTLE_INGEST_RATE``."""

    scope = "ingest"

    def ident_of(self, request, view) -> str | None:
        return str(request.user.pk) if request.user else None


class IngestTokenThrottle(WindowThrottle):
    """One API token, so that one runaway app cannot spend its user's whole allowance."""

    scope = "ingest_token"

    def ident_of(self, request, view) -> str | None:
        return str(request.auth.pk) if request.auth is not None else None


class PluginUserThrottle(WindowThrottle):
    """Plugin generations per user: ``THROTTLE_PLUGIN_RATE``."""

    scope = "plugin"

    def ident_of(self, request, view) -> str | None:
        return str(request.user.pk) if request.user else None
