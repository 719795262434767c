"""Which database a query goes to when a read replica is configured (docs/scaling.md).

``ReplicaRouter`` sends reads of the hourly rollups, the aggregates behind the summary
and the dashboards, to the ``replica`` alias, and everything else to the primary: every
write, every migration, and every read of raw records, users, sessions and tokens. A
replica lags its primary, so a user whose request wrote something reads from the primary
for ``DATABASE_REPLICA_PIN_SECONDS`` afterwards. The desktop app posts with a token and
the browser refreshes with a session, so the pin is per user and lives in the shared cache
(Redis), where every server process sees it; ``PrimaryPinMiddleware`` sets it, and tells
the router whose request is running.

A replica that lags more than ``DATABASE_REPLICA_MAX_LAG_SECONDS``, or cannot be reached,
reads nothing (``usage_site.replica_health``): every read goes to the primary until it is
back. A request whose read failed on the replica (stopped while the request ran, or a query
cancelled by a conflict with recovery) is answered again from the primary, so the switch
costs no one an error.
"""

from collections.abc import Callable
from contextvars import ContextVar

from django.conf import settings
from django.core.cache import cache
from django.db import models, transaction
from django.http import HttpRequest, HttpResponse

from usage_site import replica_health
from usage_site.cache import or_fallback

PRIMARY = "default"
REPLICA = "replica"
# Reads that may lag the primary by a moment: the aggregates. Raw records stay on the
# primary because the dashboard's recent-records table and the CSV must be exact.
REPLICA_MODELS = frozenset({"usage.usagerollup", "usage.dailyusagerollup"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


_current_request: ContextVar[HttpRequest | None] = ContextVar("current_request", default=None)


def pin_key(user_id: object) -> str:
    return f"replica-pin:{user_id}"


# While the cache cannot answer, every read goes to the primary (a lookup that fails counts
# as pinned), so a pin that could not be set then hides nothing, and the request that wrote
# still gets its answer.


def pin_to_primary(user_id: object) -> None:
    or_fallback(
        lambda: cache.set(pin_key(user_id), 1, settings.DATABASE_REPLICA_PIN_SECONDS),
        None,
        "replica pin not set",
    )


def is_pinned(user_id: object) -> bool:
    return or_fallback(
        lambda: cache.get(pin_key(user_id)) is not None, True, "replica pin unknown, primary read"
    )


class ReplicaRouter:
    """Rollup reads to the replica when that cannot hide a write; all else to the primary."""

    def db_for_read(self, model: type[models.Model], **hints) -> str:
        # getattr: the database cache asks too, for a stand-in model without label_lower.
        label = getattr(model._meta, "label_lower", "")
        if label in REPLICA_MODELS and replica_is_fresh_enough():
            return REPLICA
        # Said outright, not left to Django: its fallback would read a related object (a
        # rollup's owner) from the database its parent came from, the replica.
        return PRIMARY

    def db_for_write(self, model: type[models.Model], **hints) -> str:
        return PRIMARY

    def allow_relation(self, obj1: models.Model, obj2: models.Model, **hints) -> bool:
        # Both aliases hold the same rows.
        return True

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints):
        return db == PRIMARY


def replica_is_fresh_enough() -> bool:
    """Whether this read may come from a replica that is a moment behind the primary."""
    request = _current_request.get()
    # Management commands and shells are not requests, and read what they may then write.
    if request is None or request.method not in SAFE_METHODS:
        return False
    # Inside a transaction the read must see that transaction's own writes.
    if transaction.get_connection(PRIMARY).in_atomic_block:
        return False
    if not hasattr(request, "_reads_replica"):
        user = getattr(request, "user", None)
        # Decided once a request, so that its reads all come from the same database.
        request._reads_replica = bool(
            user is not None
            and user.is_authenticated
            and not is_pinned(user.pk)
            and replica_health.replica_usable()
        )
    return request._reads_replica


class PrimaryPinMiddleware:
    """Makes the request known to the router; pins a user who sent a write to the primary."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _current_request.set(request)
        try:
            response = self.get_response(request)
            # A database error is a 503 (usage.errors). A request that read from the replica
            # only read (SAFE_METHODS), so it is answered again from the primary, whether the
            # replica went away under it or cancelled its query (a conflict with the WAL it
            # replays); the replica is asked again at once, for the requests after it.
            if response.status_code == 503 and getattr(request, "_reads_replica", False):
                replica_health.recheck()
                request._reads_replica = False
                response = self.get_response(request)
        finally:
            _current_request.reset(token)
        # Every write attempt, answered or refused: a refused one costs a few primary reads,
        # a missed one could show a dashboard without the records just sent. The API sets
        # request.user from the token only inside the view, so this comes after it.
        user = getattr(request, "user", None)
        if request.method not in SAFE_METHODS and user is not None and user.is_authenticated:
            pin_to_primary(user.pk)
        return response
