"""Token usage from the external API, as the site serves it: whose usage a caller may read,
and the per-user cache in front of the upstream (fresh for TOKEN_USAGE_CACHE_SECONDS, and
the last good copy kept an hour to serve, marked stale, while the upstream fails).

Two things bound the calls one user's reads make: ``?refresh=1`` is honoured at most
``THROTTLE_TOKEN_REFRESH_RATE`` times (past that, a refresh is read like a plain read, from
the cache when it can), and in each server process one call at a time asks for a user's
usage: reads that find one under way take its answer instead of asking again.

Plugin generation is in ``usage.plugins``, the upstream's health in ``usage.upstream_health``,
and the HTTP client of the upstream itself in ``usage.external_api``.
"""

import hashlib
import logging
import threading
from datetime import UTC, datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser

from usage import external_api, throttles
from usage.problems import Forbidden
from usage_site.cache import cache_call

log = logging.getLogger(__name__)

STALE_SECONDS = 3600
# How long a read waits for the call already under way for its user before it gives up
# (the stale copy, or 503 busy): short, because a waiting request holds a server thread.
FLIGHT_WAIT_SECONDS = 2.0
REFRESH_SCOPE = "token_usage_refresh"
# Failures that say nothing about the data itself: a recent copy is still worth showing.
STALE_SERVABLE = (
    external_api.Busy,
    external_api.Unreachable,
    external_api.Timeout,
    external_api.UpstreamError,
)


class NoSuchUser(external_api.UnknownUser):
    """Nobody of this site has the username, and the plugin generator knows of no usage."""

    message = (
        "No user of this site has this username, and the plugin generator has no usage for it."
    )


def readable_user_id(user: AbstractBaseUser, requested: str | None) -> str:
    """Whose usage ``user`` asks for: their own by default, anyone's only for staff."""
    own = user.get_username()
    user_id = external_api.validate_user_id(own if requested is None else requested)
    if user_id != own and not user.is_staff:
        raise Forbidden("Only staff can read another user's token usage.")
    return user_id


def _cache(method: str, *args, fallback=None):
    """A call to the cache that, when the cache is down (Redis), is a miss or a lost write:
    this module's answers come from the upstream without it, only more slowly."""
    return cache_call(method, *args, fallback=fallback, what="token usage")


def _keys(user_id: str) -> tuple[str, str]:
    # Hashed: any username makes a short key that every cache backend accepts.
    digest = hashlib.sha256(user_id.encode()).hexdigest()[:32]
    return f"token-usage:fresh:{digest}", f"token-usage:last:{digest}"


def usage_for(user_id: str, *, refresh: bool = False) -> dict:
    """The user's analytics with ``fetchedAt`` and ``stale``, from the cache or the upstream.

    ``refresh`` skips the fresh cache, within the user's refresh limit; past it, a copy
    still fresh is served with ``"refreshLimited": true``. When the upstream fails for a
    reason in STALE_SERVABLE and a copy under an hour old exists, that copy is served,
    marked stale.
    """
    fresh_key, last_key = _keys(user_id)
    limited = refresh and not throttles.hit(REFRESH_SCOPE, user_id).allowed
    if not refresh or limited:
        cached = _cache("get_many", [fresh_key, last_key], fallback={})
        if fresh_key in cached and last_key in cached:
            marker = {"refreshLimited": True} if limited else {}
            return {**cached[last_key], "stale": False, **marker}
    try:
        fetched = _fetch_once(user_id)
    except STALE_SERVABLE as exc:
        last = _cache("get", last_key)
        log.warning("token usage user=%s failed (%s): %s", user_id, exc.code, exc.detail)
        if last is None:
            raise
        return {**last, "stale": True, "staleReason": exc.code}
    return {**fetched, "stale": False}


def forget_fresh_usage(user_id: str) -> None:
    _cache("delete", _keys(user_id)[0])


class _Flight:
    """One call to the upstream for one user, and the reads waiting for its outcome."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.waiting = 0
        self.copy: dict | None = None
        self.error: Exception | None = None


_flights: dict[str, _Flight] = {}
_flights_lock = threading.Lock()


def _fetch_once(user_id: str) -> dict:
    """A copy just fetched from the upstream (and cached), by one call at a time per user.

    The first read makes the call; reads that come while it is under way wait for its
    outcome (its copy, or its error) for at most FLIGHT_WAIT_SECONDS, then give up as busy.
    Per process: each server process makes its own call.
    """
    with _flights_lock:
        flight = _flights.get(user_id)
        leading = flight is None
        if leading:
            flight = _flights[user_id] = _Flight()
        else:
            flight.waiting += 1
    if leading:
        return _lead(user_id, flight)
    try:
        answered = flight.done.wait(FLIGHT_WAIT_SECONDS)
    finally:
        with _flights_lock:
            flight.waiting -= 1
    if flight.error is not None:
        raise flight.error
    if not answered or flight.copy is None:
        raise external_api.Busy(f"waited {FLIGHT_WAIT_SECONDS} s for the call under way")
    return flight.copy


def _lead(user_id: str, flight: _Flight) -> dict:
    try:
        flight.copy = _fetch_and_keep(user_id)
        return flight.copy
    except Exception as exc:
        flight.error = exc
        raise
    finally:
        with _flights_lock:
            del _flights[user_id]
        flight.done.set()


def _fetch_and_keep(user_id: str) -> dict:
    fresh_key, last_key = _keys(user_id)
    usage = {"noUsageYet": False, **_fetch_or_zeros(user_id)}
    fetched = {**usage, "fetchedAt": external_api.iso_utc(datetime.now(UTC))}
    _cache("set", last_key, fetched, STALE_SECONDS)
    # Only a marker: "the copy is fresh". A generation deletes it and keeps the copy.
    _cache("set", fresh_key, True, settings.TOKEN_USAGE_CACHE_SECONDS)
    return fetched


def _fetch_or_zeros(user_id: str) -> dict:
    """The upstream's numbers; zeros for a user of this site it knows nothing of yet.

    The upstream answers 404 until a user's first generation. For a user of this site that
    is an answer ("nothing yet"), not an error; for a username nobody here has, it stays a
    404 (``NoSuchUser``), so that staff who mistype a name are told so.
    """
    try:
        return external_api.fetch_token_usage(user_id)
    except external_api.UnknownUser as unknown:
        users = get_user_model()._default_manager
        if not users.filter(**{get_user_model().USERNAME_FIELD: user_id}).exists():
            raise NoSuchUser(unknown.detail, upstream_status=404, reached=True) from None
        return {**no_usage(user_id), "noUsageYet": True}


def no_usage(user_id: str) -> dict:
    """The answer of a user with no generation: every count zero, no period, no last time."""
    return {
        "userId": user_id,
        **dict.fromkeys(external_api.COUNTERS, 0),
        "dailyUsage": [],
        "monthlyUsage": [],
        "lastRequestAt": None,
    }


def waiting_for(user_id: str) -> int:
    """How many reads of this process wait for the call under way for ``user_id``."""
    with _flights_lock:
        flight = _flights.get(user_id)
        return flight.waiting if flight else 0
