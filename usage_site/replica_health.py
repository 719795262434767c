"""Whether the read replica may serve reads now: it answers, and it lags less than the bound.

Each server process asks the replica at most once every ``CHECK_SECONDS`` (one thread asks;
the others go on with the last answer), so a dashboard request pays no extra round trip.
A replica that cannot be reached is left alone for ``DOWN_SECONDS``, then asked again, and
reads go back to it once it answers within ``DATABASE_REPLICA_MAX_LAG_SECONDS``.

The lag is ``now() - pg_last_xact_replay_timestamp()``, the age of the last transaction the
replica replayed, but only while it has received WAL that it has not replayed yet. An idle
primary commits nothing, so that timestamp grows old on a replica that is fully caught up:
one that has replayed all it received, and is streaming, lags by nothing. Just after a
commit following a quiet spell the figure overstates the lag for a moment; that sends reads
to the primary, never to stale data.
"""

import logging
import threading
import time

from django.conf import settings
from django.db import DatabaseError, connections

log = logging.getLogger(__name__)

REPLICA = "replica"
CHECK_SECONDS = 1.0
DOWN_SECONDS = 5.0

# One row: the lag in seconds (0 when caught up; NULL when the replica cannot tell yet,
# just after it started). Not in recovery: a promoted replica or the primary itself.
LAG_SQL = """
SELECT CASE
    WHEN NOT pg_is_in_recovery() THEN 0
    WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()
         AND coalesce((SELECT status FROM pg_stat_wal_receiver), 'streaming') = 'streaming'
        THEN 0
    ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())
END
"""

_lock = threading.Lock()
_usable = False
_lag: float | None = None
_next_check = 0.0  # time.monotonic() of the next question to the replica


def replica_usable() -> bool:
    """The last known answer, asked again when it is older than the check interval."""
    if time.monotonic() >= _next_check and _lock.acquire(blocking=False):
        try:
            if time.monotonic() >= _next_check:
                _check()
        finally:
            _lock.release()
    return _usable


def recheck() -> bool:
    """Ask the replica now (a read on it has just failed); whether it may serve reads."""
    with _lock:
        _check()
    return _usable


def last_lag() -> float | None:
    """The lag seen at the last check, in seconds; None when the replica did not answer."""
    return _lag


def forget() -> None:
    """Ask again at the next read (tests that stop the replica and start it again)."""
    global _usable, _lag, _next_check
    with _lock:
        _usable, _lag, _next_check = False, None, 0.0


def assume(usable: bool) -> None:
    """Take ``usable`` as the answer until ``forget()``: for tests of the routing alone (the
    answers themselves are tested against a real standby, tests/test_replica_standby.py)."""
    global _usable, _lag, _next_check
    with _lock:
        _usable, _lag, _next_check = usable, 0.0 if usable else None, float("inf")


def _check() -> None:
    global _usable, _lag, _next_check
    was_usable = _usable
    try:
        lag = _ask_lag()
    except DatabaseError as exc:
        _usable, _lag = False, None
        _next_check = time.monotonic() + DOWN_SECONDS
        # The broken connection goes, so that the next check opens a fresh one.
        connections[REPLICA].close()
        if was_usable:
            log.warning("read replica unavailable, reading from the primary: %r", exc)
        return
    _lag = lag
    _usable = lag is not None and lag <= settings.DATABASE_REPLICA_MAX_LAG_SECONDS
    _next_check = time.monotonic() + CHECK_SECONDS
    if was_usable and not _usable:
        log.warning("read replica lags %s s, reading from the primary", lag)
    elif _usable and not was_usable:
        log.info("read replica back, lag %.3f s", lag)


def _ask_lag() -> float | None:
    if connections[REPLICA].vendor != "postgresql":
        return 0.0  # a SQLite "replica" is a file of its own that nothing replays into
    with connections[REPLICA].cursor() as cursor:
        cursor.execute(LAG_SQL)
        (lag,) = cursor.fetchone()
    return None if lag is None else max(0.0, float(lag))
