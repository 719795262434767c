"""The SQL that PostgreSQL and SQLite write differently, one module for each database.

``usage.dialects.postgresql`` (what production runs) and ``usage.dialects.sqlite`` (the
zero-install default of ``./dev.py run``) each provide the ``Dialect`` interface below;
``current()`` gives the one of the database in use. Everything else, such as the SQL that
counts records into the rollups (``usage.rollups.count_in_sql``), is written once for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Protocol

from django.core.exceptions import ImproperlyConfigured
from django.db import connection

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.utils import CursorWrapper

    from usage.ingest import CleanRecord

# The columns a record is inserted with, in the order both dialects give their values.
RECORD_COLUMNS = (
    "owner_id",
    "model",
    "image_count",
    "occurred_at",
    "received_at",
    "event_id",
    "token_id",
)


@dataclass(frozen=True)
class Buckets:
    """SQL expressions, over a record's ``occurred_at``, for the rollup rows it counts in."""

    hour: str  # its UTC hour (``UsageRollup.hour``)
    quarter: str  # its quarter of that hour, 0 to 3
    day: str  # its UTC day (``DailyUsageRollup.day``)
    hour_of_day: str  # its hour of that day, 0 to 23


class Dialect(Protocol):
    """What each dialect module provides."""

    BUCKETS: Buckets
    # A SELECT over ``pieces`` (``bucket``, ``model``, ``token_id``, ``images``, ``events``)
    # of ``bucket, model, images, events, token_id``: the sums per bucket and model (with
    # ``token_id`` NULL), then per token (with ``bucket`` and ``model`` NULL); only sums
    # with events (``usage.summary``).
    BY_BUCKET_AND_TOKEN: str

    def insert_and_count(
        self, owner_id: int, token_id: int | None, records: Sequence[CleanRecord], now: datetime
    ) -> int:
        """Insert ``records``, skipping event ids the owner already has, and count the rows
        really inserted into both rollups, or mark them uncounted for ``fold``; returns how
        many. All or nothing: in the caller's transaction if there is one, else in its own."""
        ...

    def count_records(self, ids: list[int], sign: int) -> None:
        """Count these records into both rollups (``sign=-1``: out of them), in the
        caller's transaction."""
        ...

    def fold(self, limit: int) -> int:
        """Count up to ``limit`` uncounted records into the rollups and unmark them, all or
        nothing; returns how many were taken. Safe to run in many processes at once."""
        ...

    def repeating_cursor(self, database: BaseDatabaseWrapper) -> CursorWrapper:
        """A cursor of ``database`` whose statements are prepared once they repeat, and
        reused by the connection, where the database can (Django's own are not)."""
        ...

    def moment(self, value: datetime) -> str:
        """``value`` (aware, whole seconds) as an SQL literal that compares with a record's
        ``occurred_at`` as the time it is."""
        ...

    def prices(self, database: BaseDatabaseWrapper) -> list[tuple[str, datetime, Decimal]]:
        """Every ``ModelPrice`` as ``(model, valid_from, price_per_image)``, in ``database``
        (aware UTC times, exact decimals)."""
        ...

    def lock_records_for_rebuild(self, cursor: CursorWrapper) -> None:
        """Make new records wait until the caller's transaction ends, so that a rebuild of
        the rollups counts each record exactly once."""
        ...


def current() -> Dialect:
    """The dialect of the default database."""
    return _for_vendor(connection.vendor)


@cache
def _for_vendor(vendor: str) -> Dialect:
    # Imported here rather than at the top: both modules import usage.rollups, which
    # imports this package.
    from usage.dialects import postgresql, sqlite

    dialects: dict[str, Dialect] = {"postgresql": postgresql, "sqlite": sqlite}
    if vendor not in dialects:
        raise ImproperlyConfigured(f"Usage is stored on PostgreSQL or SQLite, not on {vendor}.")
    return dialects[vendor]
