"""Token usage from the external API, as the site serves it: whose usage a caller may read,
and the per-user cache in front of the upstream (fresh for TOKEN_USAGE_CACHE_SECONDS, and
the last good copy kept an hour to serve, marked stale, while the upstream fails).

Plugin generation is in ``usage.plugins``, the upstream's health in ``usage.upstream_health``,
and the HTTP client of the upstream itself in ``usage.external_api``.
"""

import hashlib
import logging
from datetime import UTC, datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from usage import external_api
from usage.problems import Forbidden
from usage_site.cache import cache_call

log = logging.getLogger(__name__)

STALE_SECONDS = 3600
# Failures that say nothing about the data itself: a recent copy is still worth showing.
STALE_SERVABLE = (
    external_api.Busy,
    external_api.Unreachable,
    external_api.Timeout,
    external_api.UpstreamError,
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
