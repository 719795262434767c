"""The site's use of the external API: token usage per user, plugin generation, health.

Between the views and ``usage.external_api``: who may read whose usage, the per-user cache
(fresh for TOKEN_USAGE_CACHE_SECONDS, and the last good copy kept an hour to serve,
marked stale, while the upstream fails), the ledger row of every generation that reached
the upstream, and the upstream's health as /api/health reports it.
"""

import hashlib
import logging
import time
from datetime import UTC, datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import DatabaseError

from usage import external_api
from usage.external_api import ExternalApiError, Generation
from usage.models import PluginGeneration
from usage_site.cache import or_fallback

log = logging.getLogger(__name__)

STALE_SECONDS = 3600
HEALTH_CACHE_SECONDS = 5
# Failures that say nothing about the data itself: a recent copy is still worth showing.
STALE_SERVABLE = (
    external_api.Busy,
    external_api.Unreachable,
    external_api.Timeout,
    external_api.UpstreamError,
)


class Refused(Exception):
    """A request this site refuses before asking the upstream anything."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def readable_user_id(user: AbstractBaseUser, requested: str | None) -> str:
    """Whose usage ``user`` asks for: their own by default, anyone's only for staff."""
    own = user.get_username()
    user_id = external_api.validate_user_id(own if requested is None else requested)
    if user_id != own and not user.is_staff:
        raise Refused("forbidden", "Only staff can read another user's token usage.", 403)
    return user_id


# --- Token usage -----------------------------------------------------------------------------


def _cache(method: str, *args, fallback=None):
    """A call to the cache that, when the cache is down (Redis), is a miss or a lost write:
    this module's answers come from the upstream without it, only more slowly."""
    return or_fallback(lambda: getattr(cache, method)(*args), fallback, f"token usage {method}")


def _keys(user_id: str) -> tuple[str, str]:
    # Hashed: any username makes a short key that every cache backend accepts.
    digest = hashlib.sha256(user_id.encode()).hexdigest()[:32]
    return f"token-usage:fresh:{digest}", f"token-usage:last:{digest}"


def usage_for(user_id: str, *, refresh: bool = False) -> dict:
    """The user's analytics with ``fetchedAt`` and ``stale``, from the cache or the upstream.

    ``refresh`` skips the fresh cache. When the upstream fails for a reason in
    STALE_SERVABLE and a copy under an hour old exists, that copy is served, marked stale.
    """
    fresh_key, last_key = _keys(user_id)
    if not refresh:
        cached = _cache("get_many", [fresh_key, last_key], fallback={})
        if fresh_key in cached and last_key in cached:
            return {**cached[last_key], "stale": False}
    try:
        usage = external_api.fetch_token_usage(user_id)
    except STALE_SERVABLE as exc:
        last = _cache("get", last_key)
        log.warning("token usage user=%s failed (%s): %s", user_id, exc.code, exc.detail)
        if last is None:
            raise
        return {**last, "stale": True, "staleReason": exc.code}
    copy = {**usage, "fetchedAt": external_api.iso_utc(datetime.now(UTC))}
    _cache("set", last_key, copy, STALE_SECONDS)
    # Only a marker: "the copy is fresh". A generation deletes it and keeps the copy.
    _cache("set", fresh_key, True, settings.TOKEN_USAGE_CACHE_SECONDS)
    return {**copy, "stale": False}


def forget_fresh_usage(user_id: str) -> None:
    _cache("delete", _keys(user_id)[0])


# --- Plugin generation -----------------------------------------------------------------------


def generate(user: AbstractBaseUser, request: dict) -> Generation:
    """Generate a plugin for ``user``; record it in the ledger if it reached the upstream."""
    user_id = user.get_username()
    started = time.monotonic()
    try:
        generation = external_api.generate_plugin(user_id, request)
    except ExternalApiError as exc:
        if exc.reached:  # tokens may have been spent: keep a trace
            record(user, started, exc.upstream_status, exc.code, None)
        # A refused request is the user's; anything else is the upstream's, worth a warning.
        level = logging.INFO if isinstance(exc, external_api.Rejected) else logging.WARNING
        log.log(level, "generation user=%s failed (%s): %s", user_id, exc.code, exc.detail)
        raise
    record(user, started, generation.status, PluginGeneration.Outcome.OK, generation.token_usage)
    forget_fresh_usage(user_id)
    return generation


def record(
    user: AbstractBaseUser,
    started: float,
    status: int | None,
    outcome: str,
    token_usage: dict | None,
) -> None:
    """The ledger row, in its own autocommit: the upstream call is already over."""
    usage = token_usage or {}
    fields = {
        "user": user,
        "upstream_status": status,
        "outcome": outcome,
        "duration_ms": round((time.monotonic() - started) * 1000),
        "prompt_tokens": usage.get("promptTokens"),
        "completion_tokens": usage.get("completionTokens"),
        "total_tokens": usage.get("totalTokens"),
    }
    try:
        PluginGeneration.objects.create(**fields)
    except DatabaseError:
        # The user already has (or lost) their generation; losing its answer too because
        # the database hiccuped would be worse. The log keeps what the row would have.
        log.exception("ledger row not written: %s", {**fields, "user": user.get_username()})


# --- Health ----------------------------------------------------------------------------------


def upstream_health() -> str:
    """``"ok"``, ``"unreachable"`` or ``"not configured"``, asked at most every few seconds."""
    url = settings.EXTERNAL_API_URL
    if not url:
        return "not configured"
    key = "external-api-health:" + hashlib.sha256(url.encode()).hexdigest()[:32]
    state = _cache("get", key)
    if state is None:
        state = external_api.health()
        _cache("set", key, state, HEALTH_CACHE_SECONDS)
    return state
