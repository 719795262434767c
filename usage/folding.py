"""Counting uncounted records into the rollups, in bulk, in the background of each server.

On PostgreSQL a single record (or a small batch) is stored with a mark that it is not yet in
the rollups (``usage.dialects.postgresql``); reads add the marked records to the rollups, so
nothing waits for this. A thread in each server process, started by the first such record,
counts what is marked about once a second (``ROLLUP_FOLD_SECONDS``), thousands of records
in one statement, so that the rollup rows are rewritten once a second instead of once per
record. Folds in several processes and servers share the work without waiting on each other.

``manage.py fold_rollups`` does the same from the command line, once or for ever.

The same thread runs the daily upkeep of the raw records (``usage.retention.maintain``):
the monthly partitions ahead, and the prune when ``RECORD_RETENTION_MONTHS`` is set.
"""

import logging
import threading
import time

from django.conf import settings
from django.db import connection
from django.utils import timezone

from usage import dialects, retention

logger = logging.getLogger(__name__)

BATCH = 5000  # records per statement: a few milliseconds of work, never a long lock
UPKEEP_EVERY = 24 * 60 * 60  # seconds between runs of the daily upkeep, in each process
UPKEEP_RETRY = 60

_started = threading.Lock()
_folder: threading.Thread | None = None


def fold_all(batch: int = BATCH) -> int:
    """Fold until nothing is left that another fold has not taken; returns how many."""
    total = 0
    while True:
        taken = dialects.current().fold(batch)
        total += taken
        if taken < batch:
            return total


def keep_folding() -> None:
    """Start this process's folding thread, unless it runs or ``ROLLUP_FOLD_SECONDS`` is 0."""
    global _folder
    if _folder is not None and _folder.is_alive():
        return
    seconds = settings.ROLLUP_FOLD_SECONDS
    if seconds <= 0:
        return
    with _started:
        if _folder is None or not _folder.is_alive():
            _folder = threading.Thread(
                target=fold_forever, args=(seconds,), name="rollup-folder", daemon=True
            )
            _folder.start()


def fold_forever(seconds: float) -> None:
    """Fold every ``seconds``. A failure (the database away) is logged and tried again at
    the next turn on a new connection; the marked records wait, still counted by reads.
    The upkeep runs at the first turn and then daily; a failure (a lock not granted in
    time) is logged and tried again a minute later."""
    upkeep_due = time.monotonic()
    while True:
        time.sleep(seconds)
        try:
            fold_all()
        except Exception:
            logger.exception("folding uncounted records failed; trying again")
            connection.close()
        if time.monotonic() >= upkeep_due:
            upkeep_due = time.monotonic() + upkeep()


def upkeep() -> float:
    """Run the daily upkeep; returns the seconds until the next run."""
    try:
        retention.maintain(timezone.now())
    except Exception:
        logger.exception("the daily upkeep of the raw records failed; trying again")
        connection.close()
        return UPKEEP_RETRY
    return UPKEEP_EVERY
