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
    return hit_in_order([(scope, ident)], now=now)


def hit_in_order(counted: list[tuple[str, str]], *, now: float | None = None) -> Verdict:
    """``hit`` each ``(scope, ident)`` in order, stopping at the first over its limit (the
    ones after it are not counted), in one round trip to Redis for all of them: the
    single-record post has two limits. The verdict is the first refusal's, if any."""
    now = time.time() if now is None else now
    windows = []
    for scope, ident in counted:
        rate = rate_for(scope)
        window = int(now // rate.seconds)
        # The counter expires a little after its window ends.
        windows.append((rate, window, _key(scope, ident, window), rate.seconds + 5))
    scopes = " and ".join(scope for scope, _ in counted)
    counts = or_fallback(
        lambda: _count_in_order([(key, rate.count, expires) for rate, _, key, expires in windows]),
        [],
        f"throttle {scopes} not counted, request allowed",
    )
    for (rate, window, _, _), count in zip(windows, counts, strict=False):
        if count > rate.count:
            return Verdict(False, max(1, math.ceil((window + 1) * rate.seconds - now)))
    return ALLOWED


# Each counter in turn: created at 0 with its expiry unless it exists, plus one; stops after
# the first over its limit. KEYS are the counters, ARGV each one's limit and expiry.
_COUNT_IN_ORDER = """
local counts = {}
for i, key in ipairs(KEYS) do
  redis.call('SET', key, 0, 'EX', ARGV[2 * i], 'NX')
  counts[i] = redis.call('INCR', key)
  if counts[i] > tonumber(ARGV[2 * i - 1]) then break end
end
return counts
"""


def _count_in_order(counters: list[tuple[str, int, int]]) -> list[int]:
    """Add one to each counter ``(key, limit, expires_in)`` in order (one created at 1,
    expiring in ``expires_in`` seconds), stopping after the first whose new count is over
    its limit; returns the new counts. Atomic: concurrent callers each get counts of their
    own, and a refusal by one counter never spends the next one's allowance."""
    backend = caches["default"]  # ``cache`` is a proxy of it, not a RedisCache itself
    if isinstance(backend, RedisCache):
        # One round trip, one script. Django's own incr asks EXISTS and then INCR, and a
        # missing key costs an ADD and another INCR: on the single-record post those were
        # four round trips of its two limits. Stored as Django stores an int, so get, incr
        # and decr read it as usual. Every write goes to the first server (Django's client
        # picks it for writes whatever the key), so one script sees every counter.
        names = [backend.make_and_validate_key(key) for key, _, _ in counters]
        client = backend._cache.get_client(names[0], write=True)
        arguments = [value for _, limit, expires in counters for value in (limit, expires)]
        # Sent by its SHA-1 (EVALSHA), and whole only when Redis does not know it yet.
        return client.register_script(_COUNT_IN_ORDER)(keys=names, args=arguments)
    counts = []
    for key, limit, expires_in in counters:
        counts.append(_count_one(key, expires_in))
        if counts[-1] > limit:
            break
    return counts


def _count_one(key: str, expires_in: int) -> int:
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


class IngestThrottle(BaseThrottle):
    """Ingestion's two limits, counted in one round trip and in this order: each API token
    on its own (``THROTTLE_INGEST_TOKEN_RATE``, scope ``ingest_token``), then every app of
    one user together (``THROTTLE_INGEST_RATE``, ``ingest``). A request its token's limit
    refuses is not counted against its user: one runaway app cannot spend its user's
    whole allowance."""

    def allow_request(self, request, view) -> bool:
        counted = []
        if request.auth is not None:
            counted.append(("ingest_token", str(request.auth.pk)))
        if request.user:
            counted.append(("ingest", str(request.user.pk)))
        if not counted:  # nothing to count by (refused before this, e.g. no token)
            return True
        self.verdict = hit_in_order(counted)
        return self.verdict.allowed

    def wait(self) -> int:
        return self.verdict.retry_after


class PluginUserThrottle(WindowThrottle):
    """Plugin generations per user: ``THROTTLE_PLUGIN_RATE``."""

    scope = "plugin"

    def ident_of(self, request, view) -> str | None:
        return str(request.user.pk) if request.user else None
