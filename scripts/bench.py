"""The performance benchmark of issue 14: one command measures every target, side by side.

Run it as ``./dev.py bench`` (or ``make bench``), which sets up the virtual environment,
installs ``wrk`` where it is missing and runs this script under ``scripts/with_postgres.py``:

    python scripts/with_postgres.py -- .venv/bin/python scripts/bench.py [options]

It migrates the throwaway database, starts the production server as ``./dev.py serve``
does (gunicorn with ``gunicorn.conf.py``) and, beside it, a naive peer (``scripts/bench_peer``:
a plain Django REST framework project on the same database and gunicorn settings), grows
the data in steps up to ten million records, measures each scenario with ``wrk``, prints a
table of targets and figures, and writes them between the markers of
``docs/performance.md`` with a chart beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import queue
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WRK_SCRIPT = ROOT / "scripts" / "bench_wrk.lua"
DOC = ROOT / "docs" / "performance.md"
MARK_START, MARK_END = "<!-- bench:start -->", "<!-- bench:end -->"

STEPS = (10_000, 100_000, 1_000_000, 10_000_000)
OTHER_USERS = 100
MEASURED_SHARE = 10  # one record in ten belongs to the measured user
SUMMARY_DAYS = 90
# The ingest throttle is per user and the whole load comes from one user: at the default
# 600/min the benchmark would measure 429s. Per second, not per minute, so that DRF's
# throttle history (a list it rewrites on every request) stays no longer than in production.
THROTTLE_RATE = "1000000/s"
SERVER_START_TIMEOUT = 60
TIME_LIMIT_SECONDS = 15 * 60  # the whole command, set-up included, at ten million records
WRK_THREADS = 2
# Below this many new rows, loading with the indexes in place is as fast as rebuilding them.
INDEX_REBUILD_MIN_ROWS = 100_000
CHUNK_ROWS = 250_000
MEMORY_SAMPLE_SECONDS = 0.5
# The connections the issue names for the summary and the dashboard; every other scenario
# keeps its own below (scenarios()).
SUMMARY_CONNECTIONS = 2
DASHBOARD_CONNECTIONS = 4
APP_USERS = 16  # users posting single records, one desktop app each
# Measured at every data step, for the flat curves of target 6. Batched ingestion is not:
# a few seconds of it store more records than the smaller steps hold.
STEP_SCENARIOS = ("summary", "dashboard", "ingest-single")
# The site and the peer are measured in turns, this many runs each, sharing the duration.
ROUNDS = 3
SITE_TABLE = "usage_usagerecord"
PEER_TABLE = "bench_peer_usagerecord"  # scripts/bench_peer's records, apart from the site's
PEER_SETTINGS = "scripts.bench_peer.settings"
# Models and their weights, images per record, and the hours (UTC) when people generate.
MODELS = {
    "Stable Diffusion XL": 30,
    "Flux.1 dev": 20,
    "DALL-E 3": 15,
    "Midjourney v7": 12,
    "Stable Diffusion 1.5": 8,
    "Imagen 4": 6,
    "Ideogram 3": 5,
    "Kandinsky 3": 4,
}
IMAGE_COUNTS = {1: 45, 2: 20, 4: 25, 8: 10}
HOUR_WEIGHTS = (1, 1, 1, 1, 1, 2, 3, 5, 8, 10, 11, 11, 10, 11, 12, 12, 11, 9, 7, 6, 5, 4, 3, 2)
WEEKDAY_WEIGHT, WEEKEND_WEIGHT = 3, 1

# Issue 14's targets, numbered as the issue numbers them.
TARGETS = {
    "single_vs_peer": 1.2,  # 1. single records, req/s, against the naive peer's
    "single_share_of_health": 0.30,  # 2. ... against the site's /api/health/simple
    "batch_share_of_copy": 0.60,  # 3. batched, records stored/s, against a raw COPY
    "summary_p95_ms": 10.0,  # 4. at SUMMARY_CONNECTIONS, at the largest step
    "summary_share_of_health": 0.20,  # 4. req/s against health's
    "dashboard_p95_ms": 40.0,  # 5. at DASHBOARD_CONNECTIONS
    "worker_rss_mb": 200.0,  # 6. the site's workers
    # 6. "Everything measured stays flat" has no number; this is the bench's reading of
    # it: p95 at every step at most 1.5 times, or 5 ms more than, p95 at the smallest step
    # (a few milliseconds of jitter are not a trend).
    "flatness": 1.5,
    "flatness_slack_ms": 5.0,
    "health_vs_bare_drf": 0.9,  # the floor: the site's health against a bare DRF view
}


class BenchError(Exception):
    """Something broke: the message says what, and the bench exits non-zero."""


class Terminated(Exception):
    """SIGTERM, raised so that the server is stopped like on Ctrl-C."""


# --- timing and progress ------------------------------------------------------------------


@dataclass
class Phases:
    durations: list[tuple[str, float]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        say(f"== {name}")
        begun = time.monotonic()
        try:
            yield
        finally:
            seconds = time.monotonic() - begun
            self.durations.append((name, seconds))
            say(f"   {name}: {seconds:.1f} s")

    def total(self) -> float:
        return time.monotonic() - self.started


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Progress:
    """A progress bar on stderr: redrawn on a terminal, a line per tenth in a log."""

    def __init__(self, label: str, total: int, unit: str = "rows"):
        self.label, self.total, self.unit = label, max(total, 1), unit
        self.begun = time.monotonic()
        self.drawn_at = 0.0
        self.tenths_shown = -1
        self.tty = sys.stderr.isatty()
        self.lock = threading.Lock()
        self.done = 0

    def add(self, amount: int) -> None:
        with self.lock:
            self.done += amount
            self.draw(final=self.done >= self.total)

    def draw(self, final: bool = False) -> None:
        now = time.monotonic()
        tenths = 10 * self.done // self.total
        if self.tty and not final and now - self.drawn_at < 0.2:
            return
        if not self.tty and not final and tenths == self.tenths_shown:
            return
        self.drawn_at, self.tenths_shown = now, tenths
        width = 30
        filled = width * min(self.done, self.total) // self.total
        line = (
            f"   {self.label} [{'#' * filled}{'.' * (width - filled)}] "
            f"{self.done:,}/{self.total:,} {self.unit} {now - self.begun:.1f} s"
        )
        end = "\n" if final or not self.tty else ""
        print(("\r" if self.tty else "") + line, end=end, file=sys.stderr, flush=True)


# --- the production server --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(port: int) -> dict[str, str]:
    """The environment of ``./dev.py serve`` in production, plus the bench's changes: a
    higher ingest throttle, and plain HTTP on loopback."""
    return {
        "DJANGO_SETTINGS_MODULE": "usage_site.settings",
        "DEBUG": "0",
        "HTTPS_ONLY": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        "BIND": f"127.0.0.1:{port}",
        # A log line per request would measure the terminal, not the site.
        "ACCESS_LOG": "",
        "THROTTLE_INGEST_RATE": THROTTLE_RATE,
        "THROTTLE_INGEST_TOKEN_RATE": THROTTLE_RATE,
    }


def manage(*args: str) -> None:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, check=False)
    if result.returncode:
        raise BenchError(f"manage.py {' '.join(args)} failed (exit {result.returncode}).")


def peer_env(port: int, owner_id: int) -> dict[str, str]:
    """The site's environment (so the same database settings), but the peer's project."""
    return {
        "DJANGO_SETTINGS_MODULE": PEER_SETTINGS,
        "BIND": f"127.0.0.1:{port}",
        "BENCH_PEER_OWNER_ID": str(owner_id),
    }


@dataclass
class Server:
    """gunicorn started as ``./dev.py serve`` starts it; always stopped on the way out.

    The site is ``usage_site.wsgi``; the peer is ``scripts.bench_peer.wsgi`` with the same
    ``gunicorn.conf.py``, so the same workers, threads and restarts.
    """

    port: int
    log_path: Path
    app: str = "usage_site.wsgi"
    health_path: str = "/api/health/simple"
    env: dict[str, str] = field(default_factory=dict)  # on top of the bench's environment
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", self.app]
        with open(self.log_path, "ab") as log:
            # A session of its own: Ctrl-C reaches the bench, which then stops the server
            # in order, instead of both racing.
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env={**os.environ, **self.env},
            )
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"gunicorn ({self.app}) exited at start.\n{self.log_tail()}")
            if get_status(self.port, self.health_path) == 200:
                return
            time.sleep(0.2)
        raise BenchError(
            f"gunicorn ({self.app}) did not answer within {SERVER_START_TIMEOUT} s.\n"
            f"{self.log_tail()}"
        )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def worker_pids(self) -> list[int]:
        if self.process is None:
            return []
        master = str(self.process.pid)
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the process ended meanwhile
            if fields[1] == master:
                pids.append(int(entry.name))
        return pids

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "--- last lines of the server log ---\n" + "\n".join(text[-lines:])


def get_status(port: int, path: str, headers: dict[str, str] | None = None) -> int | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        connection.close()


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None  # a worker that gunicorn recycled meanwhile (max_requests)
    return None


class MemorySampler:
    """Every worker's resident memory, twice a second, while a scenario runs."""

    def __init__(self, server: Server):
        self.server = server

    @contextmanager
    def sampling(self) -> Iterator[list[float]]:
        peaks: list[float] = [0.0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                for pid in self.server.worker_pids():
                    peaks[0] = max(peaks[0], rss_mb(pid) or 0.0)
                stop.wait(MEMORY_SAMPLE_SECONDS)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            yield peaks
        finally:
            stop.set()
            sampler.join()


# --- data ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accounts:
    measured_id: int
    other_ids: list[int]
    token: str
    token_id: int
    session_cookie: str
    app_tokens: tuple[str, ...]  # one each for the first APP_USERS other users


def create_accounts() -> Accounts:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from usage.models import Budget
    from usage.tokens import create_token

    user_model = get_user_model()
    measured = user_model.objects.create_user("bench", password=secrets.token_urlsafe(16))
    user_model.objects.bulk_create(
        user_model(username=f"bench-user-{n:03d}", password="!") for n in range(OTHER_USERS)
    )
    others = list(
        user_model.objects.filter(username__startswith="bench-user-").values_list("pk", flat=True)
    )
    token = create_token(measured, "bench")
    apps = user_model.objects.filter(pk__in=others[:APP_USERS])
    # Budgets active for the users who post, so that the worker beside the site checks them
    # all through the run (alerts are never the ingestion request's work).
    Budget.objects.bulk_create(
        Budget(owner_id=pk, image_limit=1_000_000) for pk in [measured.pk, *others[:APP_USERS]]
    )
    set_prices()
    app_tokens = tuple(create_token(user, "bench app").raw for user in apps)
    browser = Client()
    browser.force_login(measured)
    cookie = browser.cookies[settings.SESSION_COOKIE_NAME].value
    return Accounts(measured.pk, others, token.raw, token.token.pk, cookie, app_tokens)


def set_prices() -> None:
    """Prices for six of the eight models, three of them changing at 13:15 UTC in the middle
    of the summary's range, so that summaries and the dashboard work out costs (split
    inside a day, too) as a site with prices does; two models stay unpriced."""
    from decimal import Decimal

    from usage.models import ModelPrice

    now = datetime.now(UTC)
    start = (now - timedelta(days=SUMMARY_DAYS + 30)).replace(minute=0, second=0, microsecond=0)
    change = (now - timedelta(days=SUMMARY_DAYS // 2)).replace(
        hour=13, minute=15, second=0, microsecond=0
    )
    priced = list(MODELS)[:6]
    ModelPrice.objects.bulk_create(
        [
            ModelPrice(model=model, price_per_image=Decimal(4 + n) / 100, valid_from=start)
            for n, model in enumerate(priced)
        ]
        + [
            ModelPrice(model=model, price_per_image=Decimal(35 + 10 * n) / 1000, valid_from=change)
            for n, model in enumerate(priced[:3])
        ]
    )


def weighted(weights: dict) -> list:
    return [value for value, weight in weights.items() for _ in range(weight)]


def day_offsets() -> list[int]:
    """0 (today) to 89 days back, weekdays three times as often as weekends."""
    today = datetime.now(UTC).date()
    offsets = []
    for back in range(SUMMARY_DAYS):
        weekday = (today - timedelta(days=back)).weekday() < 5
        offsets += [back] * (WEEKDAY_WEIGHT if weekday else WEEKEND_WEIGHT)
    return offsets


# One chunk of generated records, made by PostgreSQL itself: no row crosses the socket.
# Event ids are shaped like the UUIDs desktop clients send (36 characters) but numbered,
# because gen_random_uuid() alone costs as much as the insert. Their event ids go into the
# key table too (usage.models.RecordKey), as ingestion would have put them there.
GENERATE_SQL = """
WITH stored AS (
INSERT INTO usage_usagerecord
    (owner_id, model, image_count, occurred_at, received_at, event_id, token_id)
SELECT owner_id, model, image_count, occurred_at,
       occurred_at + (1 + random() * 60) * interval '1 second', event_id, NULL
FROM (
    SELECT
        CASE WHEN n %% %(share)s = 0 THEN %(measured)s
             ELSE (%(others)s::int[])[1 + (n / %(share)s) %% %(n_others)s] END AS owner_id,
        (%(models)s::text[])[1 + floor(random() * %(n_models)s)::int] AS model,
        (%(counts)s::int[])[1 + floor(random() * %(n_counts)s)::int] AS image_count,
        least(
            %(midnight)s::timestamptz
            - (%(days)s::int[])[1 + floor(random() * %(n_days)s)::int] * interval '1 day'
            + (%(hours)s::int[])[1 + floor(random() * %(n_hours)s)::int] * interval '1 hour'
            + random() * interval '1 hour',
            %(now)s::timestamptz - random() * interval '1 hour'
        ) AS occurred_at,
        '00000000-0000-4000-8000-' || lpad(to_hex(n), 12, '0') AS event_id
    FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n
) AS generated
RETURNING owner_id, event_id, occurred_at
)
INSERT INTO usage_recordkey (owner_id, event_id, occurred_at)
SELECT owner_id, event_id, occurred_at FROM stored
"""


def generate_params(accounts: Accounts) -> dict:
    now = datetime.now(UTC)
    hours = weighted(dict(enumerate(HOUR_WEIGHTS)))
    days, models, counts = day_offsets(), weighted(MODELS), weighted(IMAGE_COUNTS)
    return {
        "share": MEASURED_SHARE,
        "measured": accounts.measured_id,
        "others": accounts.other_ids,
        "n_others": len(accounts.other_ids),
        "models": models,
        "n_models": len(models),
        "counts": counts,
        "n_counts": len(counts),
        "midnight": now.replace(hour=0, minute=0, second=0, microsecond=0),
        "now": now,
        "days": days,
        "n_days": len(days),
        "hours": hours,
        "n_hours": len(hours),
    }


def connect():
    import psycopg

    return psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)


@dataclass
class Loader:
    accounts: Accounts
    workers: int = 2
    stored: int = 0

    def grow_to(self, total: int, timings: dict[str, float]) -> None:
        """Add generated records until the table holds ``total``; time each part."""
        adding = total - self.stored
        rebuild_indexes = adding >= INDEX_REBUILD_MIN_ROWS and adding >= self.stored
        begun = time.monotonic()
        dropped = drop_secondary_indexes() if rebuild_indexes else []
        self.insert(self.stored, adding)
        timings["insert"] = time.monotonic() - begun
        begun = time.monotonic()
        if dropped:
            recreate_indexes(dropped)
        timings["indexes"] = time.monotonic() - begun
        self.stored = total

    def insert(self, first: int, count: int) -> None:
        params = generate_params(self.accounts)
        chunks: queue.Queue[tuple[int, int]] = queue.Queue()
        for start in range(first, first + count, CHUNK_ROWS):
            chunks.put((start, min(start + CHUNK_ROWS, first + count) - 1))
        progress = Progress(f"{first + count:>11,} records", count)
        failures: list[BaseException] = []

        def work() -> None:
            try:
                with connect() as connection:
                    # Only this loading session waits for no WAL flush: a crash would lose
                    # generated rows, which the bench makes again anyway.
                    connection.execute("SET synchronous_commit = off")
                    while not failures:
                        try:
                            low, high = chunks.get_nowait()
                        except queue.Empty:
                            return
                        connection.execute(GENERATE_SQL, {**params, "first": low, "last": high})
                        progress.add(high - low + 1)
            except BaseException as exc:
                failures.append(exc)

        # Daemons: on Ctrl-C the bench stops the server and leaves; a chunk still being
        # inserted dies with its connection.
        threads = [threading.Thread(target=work, daemon=True) for _ in range(self.workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise BenchError(f"loading records failed: {failures[0]}")


@dataclass(frozen=True)
class Dropped:
    name: str
    definition: str
    is_constraint: bool


def drop_secondary_indexes(table: str = SITE_TABLE) -> list[Dropped]:
    """Drop every index and constraint on the records but the primary key and checks.

    Building an index once from sorted data is several times faster than keeping it up to
    date row by row; the foreign keys go too because each inserted row would check its
    owner, one lookup at a time.
    """
    dropped = []
    with connect() as connection:
        constraints = connection.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype IN ('u', 'f')",
            [table],
        ).fetchall()
        indexes = connection.execute(
            "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
            "WHERE indrelid = %s::regclass AND NOT indisprimary "
            "AND indexrelid NOT IN (SELECT conindid FROM pg_constraint "
            "WHERE conrelid = %s::regclass)",
            [table, table],
        ).fetchall()
        for name, definition in constraints:
            connection.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
            dropped.append(Dropped(name, definition, True))
        for name, definition in indexes:
            connection.execute(f"DROP INDEX {name}")
            dropped.append(Dropped(name, definition, False))
    return dropped


def recreate_indexes(dropped: list[Dropped], table: str = SITE_TABLE) -> None:
    progress = Progress("indexes and constraints", len(dropped), "built")
    with connect() as connection:
        connection.execute("SET maintenance_work_mem = '1GB'")
        for item in dropped:
            if item.is_constraint:
                connection.execute(
                    f'ALTER TABLE {table} ADD CONSTRAINT "{item.name}" {item.definition}'
                )
            else:
                # An index of the partitioned table reads "ON ONLY" the parent: built that
                # way it would cover no partition.
                connection.execute(item.definition.replace(" ON ONLY ", " ON ", 1))
            progress.add(1)


def fill_rollups() -> int:
    """Recount the rollups from the raw records; returns the rollup rows written.

    One statement over the whole table (``usage.rollups.rebuild()``), not user by user as
    ``manage.py rebuild_rollups`` goes: at ten million records each user's recount reads a
    fifth of the table's pages, because every page holds records of many users.
    """
    from django.db import connection

    from usage.rollups import rebuild

    say("   rollups: recounting every user's in one statement ...")
    rows = rebuild()
    connection.close()
    return rows


def rollup_rows_in_range(owner_id: int) -> int:
    """The daily rollup rows a UTC summary of the measured user reads."""
    since = datetime.now(UTC).date() - timedelta(days=SUMMARY_DAYS)
    with connect() as connection:
        row = connection.execute(
            "SELECT count(*) FROM usage_dailyusagerollup WHERE owner_id = %s AND day >= %s",
            [owner_id, since],
        ).fetchone()
    return row[0]


def fill_peer_table() -> int:
    """Give the peer's table a copy of every record in the site's, so that both insert into
    a table of the same size, with its indexes as deep: the same database, not an empty
    table beside a full one. Returns the rows copied."""
    dropped = drop_secondary_indexes(PEER_TABLE)
    with connect() as connection:
        connection.execute(f"TRUNCATE {PEER_TABLE}")
        copied = connection.execute(
            f"INSERT INTO {PEER_TABLE} (owner_id, model, image_count, occurred_at, "
            "received_at, event_id) SELECT owner_id, model, image_count, occurred_at, "
            f"received_at, event_id FROM {SITE_TABLE}"
        ).rowcount
    recreate_indexes(dropped, PEER_TABLE)
    with connect() as connection:
        connection.execute(f"VACUUM (ANALYZE) {PEER_TABLE}")
        connection.execute("CHECKPOINT")
    return copied


def vacuum_analyze() -> None:
    # After a bulk load autovacuum would start in the middle of a measurement; doing it now
    # also sets the visibility map and hint bits, as on a table that has been live a while.
    with connect() as connection:
        for table in (
            "usage_usagerecord",
            "usage_recordkey",
            "usage_usagerollup",
            "usage_dailyusagerollup",
        ):
            connection.execute(f"VACUUM (ANALYZE) {table}")
        # And write the load's dirty pages out now, not during the next measurement.
        connection.execute("CHECKPOINT")


# --- load generation ----------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    requests: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    non2xx: int
    socket_errors: int
    timeouts: int
    # The latency at the middle of each thousandth of the requests (bench_wrk.lua).
    quantiles_us: tuple[int, ...] = ()

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def failures(self) -> int:
        return self.non2xx + self.socket_errors + self.timeouts

    @classmethod
    def pooled(cls, loads: list[Load]) -> Load:
        """Several runs of one scenario as one: their requests, time and errors added up,
        their percentiles those of all their requests together.

        Each run's thousand quantiles stand for a thousandth of its requests each, so a
        run of many requests weighs more than a short one.
        """
        points = sorted(
            (q, load.requests / len(load.quantiles_us)) for load in loads for q in load.quantiles_us
        )
        total = sum(weight for _, weight in points)

        def percentile(p: float) -> float:
            seen = 0.0
            for value, weight in points:
                seen += weight
                if seen >= total * p / 100:
                    return value / 1000
            return points[-1][0] / 1000 if points else 0.0

        return cls(
            requests=sum(load.requests for load in loads),
            seconds=sum(load.seconds for load in loads),
            p50_ms=percentile(50),
            p95_ms=percentile(95),
            p99_ms=percentile(99),
            max_ms=max(load.max_ms for load in loads),
            non2xx=sum(load.non2xx for load in loads),
            socket_errors=sum(load.socket_errors for load in loads),
            timeouts=sum(load.timeouts for load in loads),
        )


def run_wrk(
    url: str,
    connections: int,
    seconds: float,
    headers: dict[str, str],
    env: dict[str, str] | None = None,
) -> Load:
    command = [
        "wrk",
        f"-t{min(WRK_THREADS, connections)}",  # wrk wants a connection per thread
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_SCRIPT),
    ]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=seconds + 60,
        check=False,
    )
    for line in result.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            data = json.loads(line.removeprefix("BENCH_RESULT "))
            return Load(
                requests=data["requests"],
                seconds=data["duration_us"] / 1e6,
                p50_ms=data["p50_us"] / 1000,
                p95_ms=data["p95_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                max_ms=data["max_us"] / 1000,
                non2xx=data["non2xx"],
                socket_errors=data["socket_errors"],
                timeouts=data["timeouts"],
                quantiles_us=tuple(data["quantiles_us"]),
            )
    raise BenchError(
        f"wrk gave no result (exit {result.returncode}): {shlex.join(command)}\n"
        f"{result.stdout}{result.stderr}"
    )


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    connections: int
    headers: dict[str, str] = field(default_factory=dict)
    batch: int = 0  # records per POST; 0 for a GET
    tokens: tuple[str, ...] = ()  # when given, each request posts with the next of them
    server: str = "site"  # or "peer", or "site-table-cache" (the site without Redis)
    table: str = SITE_TABLE  # where its records land, for ingestion

    def env(self, run: str) -> dict[str, str]:
        if not self.batch:
            return {"BENCH_MODE": "get"}
        env = {"BENCH_MODE": "ingest", "BENCH_BATCH": str(self.batch), "BENCH_RUN": run}
        if self.tokens:
            env["BENCH_TOKENS"] = ",".join(self.tokens)
        return env


@dataclass(frozen=True)
class Measured:
    scenario: Scenario
    load: Load
    peak_rss_mb: float
    stored: int | None = None  # rows really stored, for ingestion
    # WAL written from just before the measured run to just after its last commit, and the
    # rows stored in that same window (the in-flight ones included), for ingestion.
    wal_bytes: int | None = None
    window_rows: int | None = None

    @property
    def stored_rate(self) -> float:
        return (self.stored or 0) / self.load.seconds if self.load.seconds else 0.0

    @property
    def wal_per_record(self) -> float | None:
        if self.wal_bytes is None or not self.window_rows:
            return None
        return self.wal_bytes / self.window_rows


@dataclass(frozen=True)
class Round:
    """One measured wrk run, and for ingestion what reached the table and the WAL."""

    load: Load
    stored: int | None = None
    wal_bytes: int | None = None
    window_rows: int | None = None


@dataclass
class Bench:
    servers: dict[str, Server]  # "site", "peer" and "site-table-cache"
    warmup: float
    duration: float
    runs: int = 0

    def measure(self, scenario: Scenario, duration: float | None = None) -> Measured:
        """A warm-up run that is thrown away, then the measured run; memory throughout."""
        return self.compare([scenario], 1, duration)[0]

    def compare(
        self, scenarios: list[Scenario], rounds: int, duration: float | None = None
    ) -> list[Measured]:
        """Each scenario warmed up, then measured in turns: ``rounds`` runs each, sharing
        out its duration, so that whatever else the machine does weighs on all of them
        alike. Each scenario's runs are then pooled into one; memory throughout."""
        for scenario in scenarios:
            self.check(scenario)
        if any(scenario.batch for scenario in scenarios):
            # Ingestion starts from a checkpoint, and each warm-up takes the full-page
            # images of the pages it touches first: the measured runs' WAL is then the
            # steady state, whichever of the site and the peer ran first.
            checkpoint()
        seconds = (duration or self.duration) / rounds
        taken: dict[str, list[Round]] = {scenario.name: [] for scenario in scenarios}
        with ExitStack() as stack:
            peaks = {
                name: stack.enter_context(MemorySampler(server).sampling())
                for name, server in self.servers.items()
                if any(scenario.server == name for scenario in scenarios)
            }
            for scenario in scenarios:
                self.wrk(scenario, self.warmup, "w")
                if scenario.batch:
                    time.sleep(1)  # the warm-up's last requests may still be committing
            for _ in range(rounds):
                for scenario in scenarios:
                    taken[scenario.name].append(self.round(scenario, seconds))
        measured = [pool(scenario, taken[scenario.name], peaks[scenario.server][0])
                    for scenario in scenarios]  # fmt: skip
        for m in measured:
            say(describe(m))
        return measured

    def round(self, scenario: Scenario, seconds: float) -> Round:
        if not scenario.batch:
            return Round(self.wrk(scenario, seconds, "m"))
        before, lsn = max_record_id(scenario.table), wal_lsn()
        started = datetime.now(UTC)
        load = self.wrk(scenario, seconds, "m")
        time.sleep(1)  # let the requests in flight when wrk stopped commit
        return Round(
            load,
            stored=records_stored(
                scenario.table, before, started + timedelta(seconds=load.seconds)
            ),
            wal_bytes=wal_since(lsn),
            window_rows=records_stored(scenario.table, before),
        )

    def wrk(self, scenario: Scenario, seconds: float, kind: str) -> Load:
        self.runs += 1
        server = self.servers[scenario.server]
        return run_wrk(
            f"http://127.0.0.1:{server.port}{scenario.path}",
            scenario.connections,
            seconds,
            scenario.headers,
            scenario.env(f"{kind}{self.runs}-{secrets.token_hex(3)}"),
        )

    def check(self, scenario: Scenario) -> None:
        """One request first, so that a 302 to the login page cannot pass for a page."""
        if scenario.batch:
            return  # a POST would store records; wrk counts anything but 2xx
        server = self.servers[scenario.server]
        status = get_status(server.port, scenario.path, scenario.headers)
        if status != 200:
            raise BenchError(
                f"{scenario.name}: GET {scenario.path} answered {status}, not 200.\n"
                f"{server.log_tail()}"
            )


def pool(scenario: Scenario, rounds: list[Round], peak_rss_mb: float) -> Measured:
    load = rounds[0].load if len(rounds) == 1 else Load.pooled([r.load for r in rounds])

    def total(values: list[int | None]) -> int | None:
        return None if None in values else sum(values)

    return Measured(
        scenario,
        load,
        peak_rss_mb,
        stored=total([r.stored for r in rounds]),
        wal_bytes=total([r.wal_bytes for r in rounds]),
        window_rows=total([r.window_rows for r in rounds]),
    )


def max_record_id(table: str = SITE_TABLE) -> int:
    with connect() as connection:
        row = connection.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()
    return row[0]


def records_stored(table: str, after_id: int, until: datetime | None = None) -> int:
    """Rows stored since ``after_id``, by requests that reached the view before ``until``.

    Requests still in flight when wrk stops are not in its count or its time, so their
    rows are left out too (their ``received_at`` is the view's clock, after ``until``).
    """
    query, params = f"SELECT count(*) FROM {table} WHERE id > %s", [after_id]
    if until is not None:
        query, params = query + " AND received_at < %s", [after_id, until]
    with connect() as connection:
        row = connection.execute(query, params).fetchone()
    return row[0]


def delete_records_after(after_id: int) -> None:
    """Take out what a smaller step's ingestion stored, so the next step holds what it says.

    The rollups still count them until the next step recounts every rollup from the records.
    """
    with connect() as connection:
        connection.execute(f"DELETE FROM {SITE_TABLE} WHERE id > %s", [after_id])


def checkpoint() -> None:
    with connect() as connection:
        connection.execute("CHECKPOINT")


def wal_lsn() -> str:
    with connect() as connection:
        return connection.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]


def wal_since(lsn: str) -> int:
    with connect() as connection:
        row = connection.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)::bigint", [lsn]
        ).fetchone()
    return row[0]


def describe(measured: Measured) -> str:
    load = measured.load
    text = (
        f"   {measured.scenario.name}: {load.rate:,.0f} req/s, p50 {load.p50_ms:.1f} ms, "
        f"p95 {load.p95_ms:.1f} ms, p99 {load.p99_ms:.1f} ms, non-2xx {load.non2xx}, "
        f"peak worker RSS {measured.peak_rss_mb:.0f} MB"
    )
    if measured.stored is not None:
        text += f", {measured.stored_rate:,.0f} records stored/s"
    if measured.wal_per_record is not None:
        text += f", {measured.wal_per_record:,.0f} WAL bytes/record"
    return text


COPY_SQL = (
    "COPY usage_usagerecord (owner_id, model, image_count, occurred_at, received_at, event_id, "
    "token_id) FROM STDIN"
)


def copy_rate(accounts: Accounts, rows: int) -> float:
    """Records per second that a raw COPY of ``rows`` equivalent records achieves."""
    rows = max(rows, 1000)
    now = datetime.now(UTC)
    run = secrets.token_hex(4)
    models = list(MODELS)
    lines = []
    for n in range(rows):
        moment = (now - timedelta(seconds=n % 7200)).isoformat()
        lines.append(
            f"{accounts.measured_id}\t{models[n % len(models)]}\t{1 + n % 4}\t{moment}\t"
            f"{now.isoformat()}\tcopy-{run}-{n}\t{accounts.token_id}\n"
        )
    data = "".join(lines).encode()
    with connect() as connection:
        begun = time.perf_counter()
        with connection.transaction(), connection.cursor() as cursor, cursor.copy(COPY_SQL) as copy:
            for start in range(0, len(data), 1 << 20):
                copy.write(data[start : start + (1 << 20)])
        seconds = time.perf_counter() - begun
    return rows / seconds


# --- the run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    records: int
    measured_records: int
    measured_rollup_rows: int  # the measured user's, in the summary's range
    load_seconds: float
    index_seconds: float
    rollup_seconds: float
    vacuum_seconds: float
    measured: dict[str, Measured]  # STEP_SCENARIOS at this many records


@dataclass
class Results:
    options: argparse.Namespace
    steps: list[Step] = field(default_factory=list)
    scenarios: dict[str, Measured] = field(default_factory=dict)
    copy_rate: float = 0.0
    phases: Phases = field(default_factory=Phases)
    machine: dict[str, str] = field(default_factory=dict)
    # Other work on the machine slows every figure; this is the only trace of it.
    load_before: tuple[float, float, float] = field(default_factory=os.getloadavg)


def summary_path() -> str:
    end = datetime.now(UTC).date()
    start = end - timedelta(days=SUMMARY_DAYS - 1)
    return f"/api/model-usage/summary?start={start}&end={end}"


def scenarios(accounts: Accounts, options: argparse.Namespace) -> dict[str, Scenario]:
    """Every scenario, in the order of the report; ``peer`` ones go to the naive peer."""
    bearer = {"Authorization": f"Bearer {accounts.token}"}
    cookie = {"Cookie": f"sessionid={accounts.session_cookie}"}
    return {
        "health": Scenario("health", "/api/health/simple", 16),
        "peer-bare-drf": Scenario("peer-bare-drf", "/api/health/bare-drf", 16, server="peer"),
        "peer-plain": Scenario("peer-plain", "/api/health/plain", 16, server="peer"),
        "summary": Scenario("summary", summary_path(), options.summary_connections, bearer),
        "dashboard": Scenario(
            "dashboard", f"/dashboard/?days={SUMMARY_DAYS}", options.dashboard_connections, cookie
        ),
        # Sixteen desktop apps of sixteen users, each posting one record at a time.
        "ingest-single": Scenario(
            "ingest-single", "/api/model-usage", 16, batch=1, tokens=accounts.app_tokens
        ),
        # The same as ingest-single, on a second site server without Redis: its rate limits
        # count in the database's cache table (usage_site/database_cache.py).
        "ingest-single-table-cache": Scenario(
            "ingest-single-table-cache",
            "/api/model-usage",
            16,
            batch=1,
            tokens=accounts.app_tokens,
            server="site-table-cache",
        ),
        # The same requests without a token: the peer has no authentication.
        "peer-ingest-single": Scenario(
            "peer-ingest-single", "/api/model-usage", 16, batch=1, server="peer", table=PEER_TABLE
        ),
        "ingest-batch": Scenario("ingest-batch", "/api/model-usage", 4, bearer, batch=500),
    }


def data_steps(max_records: int) -> list[int]:
    return [step for step in STEPS if step < max_records] + [max_records]


def grow_and_measure(
    results: Results, bench: Bench, loader: Loader, plan: dict[str, Scenario], options
) -> None:
    steps = data_steps(options.max_records)
    for number, records in enumerate(steps, start=1):
        top = number == len(steps)
        with results.phases.phase(f"data step {number}: {records:,} records"):
            timings: dict[str, float] = {}
            loader.grow_to(records, timings)
            begun = time.monotonic()
            rollup_rows = fill_rollups()
            rollup_seconds = time.monotonic() - begun
            begun = time.monotonic()
            vacuum_analyze()
            vacuum_seconds = time.monotonic() - begun
            say(
                f"   inserted in {timings['insert']:.1f} s, indexes {timings['indexes']:.1f} s, "
                f"rollups {rollup_seconds:.1f} s ({rollup_rows:,} rows), "
                f"vacuum {vacuum_seconds:.1f} s"
            )
            rollup_rows_read = rollup_rows_in_range(loader.accounts.measured_id)
        if top:
            with results.phases.phase(f"the peer's table filled with the same {records:,} records"):
                say(f"   the peer's table: {fill_peer_table():,} records copied")
        what = "ingest-single (the site's and the peer's, in turns)" if top else "ingest-single"
        with results.phases.phase(f"summary, dashboard, {what} at {records:,} records"):
            # The top step's runs are the scenarios themselves, measured for the full time.
            measured = measure_step(bench, plan, None if top else options.step_duration, top)
        results.steps.append(
            Step(
                records=records,
                measured_records=records // MEASURED_SHARE,
                measured_rollup_rows=rollup_rows_read,
                load_seconds=timings["insert"],
                index_seconds=timings["indexes"],
                rollup_seconds=rollup_seconds,
                vacuum_seconds=vacuum_seconds,
                measured=measured,
            )
        )
    results.scenarios.update(results.steps[-1].measured)


def measure_step(
    bench: Bench, plan: dict[str, Scenario], duration: float | None, top: bool
) -> dict[str, Measured]:
    """The summary, the dashboard and single records at one step; at the top one the
    peer's single records too, in turns with the site's (``Bench.compare``)."""
    measured = {name: bench.measure(plan[name], duration) for name in ("summary", "dashboard")}
    if top:
        names = ("ingest-single", "peer-ingest-single", "ingest-single-table-cache")
        trio = bench.compare([plan[name] for name in names], ROUNDS)
        measured.update((m.scenario.name, m) for m in trio)
    else:
        before = max_record_id()
        measured["ingest-single"] = bench.measure(plan["ingest-single"], duration)
        delete_records_after(before)
    return measured


@contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A throwaway redis-server on a loopback port, as production's shared cache; its URL."""
    port = free_port()
    log = open(workdir / "redis.log", "ab")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        stdout=log, stderr=log, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"redis-server did not start; see {workdir / 'redis.log'}")
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def run(options: argparse.Namespace, results: Results) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    with redis_server(workdir) as redis_url:
        serve_and_measure(options, results, workdir, redis_url)


def serve_and_measure(
    options: argparse.Namespace, results: Results, workdir: Path, redis_url: str
) -> None:
    phases = results.phases
    port, peer_port, plain_port = distinct_free_ports(3)
    os.environ.update(server_env(port))
    # The site as production runs it: its cache (rate limits, cached answers) in Redis.
    site = Server(port, workdir / "gunicorn.log", env={"REDIS_URL": redis_url})
    peer = Server(
        peer_port,
        workdir / "gunicorn-peer.log",
        app="scripts.bench_peer.wsgi",
        health_path="/api/health/plain",
    )
    # And without Redis, as ./dev.py serve runs it by default: the cache in a table.
    table_cache = Server(
        plain_port,
        workdir / "gunicorn-table-cache.log",
        env={"REDIS_URL": "", "BIND": f"127.0.0.1:{plain_port}"},
    )
    servers = {"site": site, "peer": peer, "site-table-cache": table_cache}
    worker = None
    try:
        with phases.phase("migrate and collect static files"):
            manage("collectstatic", "--no-input", "--verbosity", "0")
            manage("migrate", "--no-input", "--verbosity", "0")
            # The peer's own table, beside the site's (the other apps are the site's).
            manage("migrate", "--settings", PEER_SETTINGS, "--no-input", "--verbosity", "0")
            import django

            django.setup()
        results.machine = machine(results.load_before)
        accounts = create_accounts()
        peer.env = peer_env(peer_port, accounts.measured_id)
        with phases.phase("start gunicorn: the site, the peer, the site without Redis"):
            for name, server in servers.items():
                server.start()
                say(f"   {name} on 127.0.0.1:{server.port}, log in {server.log_path}")
            # The background worker, as ./dev.py serve starts it beside the site.
            worker = start_worker(workdir, redis_url)
        bench = Bench(servers, options.warmup, options.duration)
        plan = scenarios(accounts, options)
        loader = Loader(accounts, workers=options.loaders)
        grow_and_measure(results, bench, loader, plan, options)
        with phases.phase("health: the site's, the peer's bare DRF and plain Django, in turns"):
            trio = [plan[name] for name in ("health", "peer-bare-drf", "peer-plain")]
            results.scenarios.update((m.scenario.name, m) for m in bench.compare(trio, ROUNDS))
        with phases.phase("scenario ingest-batch"):
            results.scenarios["ingest-batch"] = bench.measure(plan["ingest-batch"])
        with phases.phase("raw COPY of as many records as ingest-batch stored"):
            stored = results.scenarios["ingest-batch"].stored or 0
            results.copy_rate = copy_rate(accounts, stored)
            say(f"   COPY: {results.copy_rate:,.0f} records/s ({max(stored, 1000):,} records)")
    except BenchError:
        for server in servers.values():
            server.stop()
        say(f"bench: the server logs are kept in {workdir}")
        raise
    finally:
        for server in servers.values():
            server.stop()
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
    shutil.rmtree(workdir, ignore_errors=True)


def start_worker(workdir: Path, redis_url: str) -> subprocess.Popen[bytes]:
    """``manage.py run_huey`` (budget checks every BUDGET_SWEEP_SECONDS) on the site's Redis."""
    with open(workdir / "worker.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "manage.py", "run_huey"],
            cwd=ROOT,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env={**os.environ, "REDIS_URL": redis_url},
        )


def distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


# --- verdicts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    target: str
    goal: str
    measured: str
    ratio: str
    passed: bool
    informational: bool = False  # reported beside the targets, never missed

    @property
    def word(self) -> str:
        return "info" if self.informational else "pass" if self.passed else "MISS"


def share(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def verdicts(results: Results) -> list[Verdict]:
    s, t = results.scenarios, TARGETS
    health, bare, plain = (s[n].load for n in ("health", "peer-bare-drf", "peer-plain"))
    single, peer_single = s["ingest-single"], s["peer-ingest-single"]
    batch, summary, dashboard = s["ingest-batch"], s["summary"], s["dashboard"]
    single_vs_peer = share(single.load.rate, peer_single.load.rate)
    single_share = share(single.load.rate, health.rate)
    batch_share = share(batch.stored_rate, results.copy_rate)
    summary_share = share(summary.load.rate, health.rate)
    floor = share(health.rate, bare.rate)
    top_records = f"{results.steps[-1].records:,}"
    peak = max(m.peak_rss_mb for m in site_measurements(results))
    return [
        Verdict(
            "1. single-record ingestion, req/s, against the naive peer",
            f">= {t['single_vs_peer']:g}x the peer's",
            f"{single.load.rate:,.0f}/s vs peer {peer_single.load.rate:,.0f}/s",
            f"{single_vs_peer:.2f}x",
            single_vs_peer >= t["single_vs_peer"],
        ),
        Verdict(
            "2. single-record ingestion, req/s, against health",
            f">= {t['single_share_of_health']:.0%} of /api/health/simple",
            f"{single.load.rate:,.0f}/s vs health {health.rate:,.0f}/s; "
            f"p99 {single.load.p99_ms:.1f} ms (peer {peer_single.load.p99_ms:.1f} ms)",
            f"{single_share:.0%}",
            single_share >= t["single_share_of_health"],
        ),
        Verdict(
            f"3. batched ingestion ({batch.scenario.batch} a request), records stored/s",
            f">= {t['batch_share_of_copy']:.0%} of a raw COPY",
            f"{batch.stored_rate:,.0f}/s vs COPY {results.copy_rate:,.0f}/s",
            f"{batch_share:.0%}",
            batch_share >= t["batch_share_of_copy"],
        ),
        Verdict(
            f"4. summary, {SUMMARY_DAYS} days by day, p95 at "
            f"{summary.scenario.connections} connections, {top_records} records",
            f"<= {t['summary_p95_ms']:g} ms",
            f"{summary.load.p95_ms:.1f} ms",
            f"{summary.load.p95_ms / t['summary_p95_ms']:.2f}x the limit",
            summary.load.p95_ms <= t["summary_p95_ms"],
        ),
        Verdict(
            "4. summary, req/s, against health",
            f">= {t['summary_share_of_health']:.0%} of /api/health/simple",
            f"{summary.load.rate:,.0f}/s vs health {health.rate:,.0f}/s",
            f"{summary_share:.0%}",
            summary_share >= t["summary_share_of_health"],
        ),
        Verdict(
            f"5. dashboard page, p95 at {dashboard.scenario.connections} connections",
            f"<= {t['dashboard_p95_ms']:g} ms",
            f"{dashboard.load.p95_ms:.1f} ms",
            f"{dashboard.load.p95_ms / t['dashboard_p95_ms']:.2f}x the limit",
            dashboard.load.p95_ms <= t["dashboard_p95_ms"],
        ),
        *flatness_verdicts(results),
        Verdict(
            "6. site worker resident memory, peak",
            f"< {t['worker_rss_mb']:g} MB",
            f"{peak:.0f} MB",
            f"{peak / t['worker_rss_mb']:.2f}x the limit",
            peak < t["worker_rss_mb"],
        ),
        Verdict(
            "floor: /api/health/simple, req/s, against a bare DRF view",
            f">= {t['health_vs_bare_drf']:g}x the peer's bare DRF",
            f"{health.rate:,.0f}/s vs bare DRF {bare.rate:,.0f}/s "
            f"(plain Django {plain.rate:,.0f}/s)",
            f"{floor:.2f}x",
            floor >= t["health_vs_bare_drf"],
        ),
        wal_verdict(single, peer_single),
        table_cache_verdict(single, s["ingest-single-table-cache"], peer_single),
    ]


def table_cache_verdict(single: Measured, table_cache: Measured, peer: Measured) -> Verdict:
    """What the site's single records cost without Redis: two more statements per post."""
    rate = table_cache.load.rate
    return Verdict(
        "single-record ingestion without Redis (rate limits counted in a database table)",
        "reported (against the site with Redis, and the peer)",
        f"{rate:,.0f}/s vs {single.load.rate:,.0f}/s with Redis; "
        f"p99 {table_cache.load.p99_ms:.1f} ms",
        f"{share(rate, single.load.rate):.2f}x with Redis, {share(rate, peer.load.rate):.2f}x "
        "the peer",
        True,
        informational=True,
    )


def flatness_verdicts(results: Results) -> list[Verdict]:
    first_step, last_step = results.steps[0], results.steps[-1]
    t = TARGETS
    rows = []
    for name in STEP_SCENARIOS:
        loads = [step.measured[name].load for step in results.steps]
        first = loads[0].p95_ms
        worst = max(load.p95_ms for load in loads)
        limit = max(t["flatness"] * first, first + t["flatness_slack_ms"])
        rows.append(
            Verdict(
                f"6. {name} p95 flat, {first_step.records:,} to {last_step.records:,} records",
                f"every step <= {t['flatness']:g}x (or +{t['flatness_slack_ms']:g} ms) "
                "the first step's",
                f"{first:.1f} ms at first, at most {worst:.1f} ms",
                f"{share(worst, first):.2f}x",
                worst <= limit,
            )
        )
    return rows


def wal_verdict(single: Measured, peer_single: Measured) -> Verdict:
    site_wal, peer_wal = single.wal_per_record, peer_single.wal_per_record
    known = site_wal is not None and peer_wal is not None
    return Verdict(
        "WAL written per record stored, single records",
        "reported (site against peer)",
        f"site {site_wal or 0:,.0f} B vs peer {peer_wal or 0:,.0f} B",
        f"{share(site_wal, peer_wal):.2f}x the peer's" if known else "-",
        True,
        informational=True,
    )


def site_measurements(results: Results) -> list[Measured]:
    """Every run against the site, the smaller data steps' included (for its memory)."""
    runs = [m for step in results.steps for m in step.measured.values()]
    runs += list(results.scenarios.values())
    return [m for m in runs if m.scenario.server == "site"]


def failures(results: Results) -> list[str]:
    """Runs where any request failed: the figures of those runs mean little."""
    runs = [(f"{name} at {step.records:,} records", m) for step in results.steps[:-1]
            for name, m in step.measured.items()]  # fmt: skip
    runs += list(results.scenarios.items())
    return [
        f"{name}: {m.load.non2xx} non-2xx, {m.load.socket_errors} socket errors, "
        f"{m.load.timeouts} timeouts"
        for name, m in runs
        if m.load.failures
    ]


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown_table(rows: list[list[str]], right: set[int] = frozenset()) -> str:
    header, *body = rows
    rule = ["---:" if i in right else "---" for i in range(len(header))]
    return "\n".join("| " + " | ".join(row) + " |" for row in [header, rule, *body])


def verdict_rows(results: Results) -> list[list[str]]:
    rows = [["target", "goal", "measured", "ratio", "verdict"]]
    for v in verdicts(results):
        rows.append([v.target, v.goal, v.measured, v.ratio, v.word])
    return rows


def scenario_rows(results: Results) -> list[list[str]]:
    rows = [["scenario", "server", "path", "conns", "requests", "req/s", "p50 ms", "p95 ms",
             "p99 ms", "non-2xx", "peak RSS MB", "WAL B/record"]]  # fmt: skip
    for m in ordered(results).values():
        load, scenario = m.load, m.scenario
        rate = f"{load.rate:,.0f}"
        if m.stored is not None:
            rate += f" ({m.stored_rate:,.0f} records stored/s)"
        method = "POST" if scenario.batch else "GET"
        wal = m.wal_per_record
        rows.append([
            scenario.name, scenario.server, f"{method} {scenario.path.split('?')[0]}",
            str(scenario.connections), f"{load.requests:,}", rate,
            f"{load.p50_ms:.1f}", f"{load.p95_ms:.1f}", f"{load.p99_ms:.1f}",
            str(load.failures), f"{m.peak_rss_mb:.0f}", "" if wal is None else f"{wal:,.0f}",
        ])  # fmt: skip
    return rows


def ordered(results: Results) -> dict[str, Measured]:
    """The scenarios in the report's order (scenarios()), whatever order they ran in."""
    names = ("health", "peer-bare-drf", "peer-plain", "summary", "dashboard", "ingest-single",
             "peer-ingest-single", "ingest-single-table-cache", "ingest-batch")  # fmt: skip
    return {name: results.scenarios[name] for name in names if name in results.scenarios}


def peer_rows(results: Results) -> list[list[str]]:
    """The site's figures beside the naive peer's, from the same run, and their ratios."""
    s = results.scenarios
    site, peer = s["ingest-single"], s["peer-ingest-single"]
    rows = [["measure", "site", "naive peer", "site / peer"]]

    def row(label: str, mine: float | None, theirs: float | None, unit: str = "") -> None:
        ratio = f"{mine / theirs:.2f}x" if mine is not None and theirs else "-"
        fmt = "{:,.1f}" if unit == "ms" else "{:,.0f}"
        shown = ["-" if v is None else fmt.format(v) for v in (mine, theirs)]
        rows.append([label, *shown, ratio])

    row("single record: req/s", site.load.rate, peer.load.rate)
    row("single record: records stored/s", site.stored_rate, peer.stored_rate)
    row("single record: p50 ms", site.load.p50_ms, peer.load.p50_ms, "ms")
    row("single record: p95 ms", site.load.p95_ms, peer.load.p95_ms, "ms")
    row("single record: p99 ms", site.load.p99_ms, peer.load.p99_ms, "ms")
    row("single record: WAL bytes per record", site.wal_per_record, peer.wal_per_record)
    row("single record: peak worker RSS MB", site.peak_rss_mb, peer.peak_rss_mb)
    for name, label in (
        ("peer-bare-drf", "a bare DRF view"),
        ("peer-plain", "a plain Django view"),
    ):
        theirs = s[name].load
        row(f"health against {label}: req/s", s["health"].load.rate, theirs.rate)
        row(f"health against {label}: p99 ms", s["health"].load.p99_ms, theirs.p99_ms, "ms")
    return rows


def step_rows(results: Results) -> list[list[str]]:
    rows = [["records stored", "measured user's", "daily rollup rows read", "insert s", "indexes s",
             "rollups s", "vacuum s"]]  # fmt: skip
    for step in results.steps:
        rows.append([
            f"{step.records:,}", f"{step.measured_records:,}",
            f"{step.measured_rollup_rows:,}", f"{step.load_seconds:.1f}",
            f"{step.index_seconds:.1f}", f"{step.rollup_seconds:.1f}",
            f"{step.vacuum_seconds:.1f}",
        ])  # fmt: skip
    return rows


def flat_rows(results: Results) -> list[list[str]]:
    rows = [["records stored"]]
    for name in STEP_SCENARIOS:
        rows[0] += [f"{name} p50 ms", "p95 ms", "req/s"]
    for step in results.steps:
        row = [f"{step.records:,}"]
        for name in STEP_SCENARIOS:
            load = step.measured[name].load
            row += [f"{load.p50_ms:.1f}", f"{load.p95_ms:.1f}", f"{load.rate:,.0f}"]
        rows.append(row)
    return rows


def phase_rows(results: Results) -> list[list[str]]:
    rows = [["phase", "seconds"]]
    whole = whole_command_seconds()
    if whole:
        before = whole - results.phases.total()
        rows.append(["set-up by dev.py: venv, wrk, PostgreSQL (about)", f"{before:.1f}"])
    rows += [[name, f"{seconds:.1f}"] for name, seconds in results.phases.durations]
    rows.append(["total of scripts/bench.py", f"{results.phases.total():.1f}"])
    if whole:
        rows.append(["the whole command", f"{whole:.1f}"])
    return rows


# --- the report ---------------------------------------------------------------------------


PG_SETTINGS = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "shared_buffers",
    "max_wal_size",
)


def machine(load: tuple[float, float, float]) -> dict[str, str]:
    import django
    import gunicorn

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    memory_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    with connect() as connection:
        settings = {name: connection.execute(f"SHOW {name}").fetchone()[0] for name in PG_SETTINGS}
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "CPU": f"{cpu}, {os.cpu_count()} cores",
        "memory": f"{memory_kb / 1024 / 1024:.1f} GiB",
        "system": f"{platform.system()} {platform.release()}",
        "PostgreSQL": (
            f"{settings['server_version']} (fsync {settings['fsync']}, synchronous_commit "
            f"{settings['synchronous_commit']}, full_page_writes {settings['full_page_writes']}"
            f", shared_buffers {settings['shared_buffers']}, max_wal_size "
            f"{settings['max_wal_size']})"
        ),
        "Python": platform.python_version(),
        "Django": django.get_version(),
        "gunicorn": (
            f"{gunicorn.__version__}, {os.environ.get('WEB_CONCURRENCY', '2')} workers x "
            f"{os.environ.get('WEB_THREADS', '8')} threads (gthread)"
        ),
        "wrk": (wrk.stdout.splitlines() or ["unknown"])[0].split(" [")[0],
        "load average before the run": " / ".join(f"{value:.2f}" for value in load)
        + " (1, 5, 15 min)",
    }


def command_line(options: argparse.Namespace) -> str:
    return "./dev.py bench" + "".join(f" {shlex.quote(arg)}" for arg in options.argv)


def scaled_down(options: argparse.Namespace) -> list[str]:
    notes = []
    if options.max_records < STEPS[-1]:
        notes.append(
            f"the largest data step is {options.max_records:,} records, not {STEPS[-1]:,} "
            f"(`--max-records`); the measured user owns {options.max_records // 10:,} of them"
        )
    defaults = parser().parse_args([])
    if (options.duration, options.warmup) < (defaults.duration, defaults.warmup):
        notes.append(
            f"each scenario ran {options.duration:g} s after {options.warmup:g} s of warm-up "
            f"(defaults: {defaults.duration:g} and {defaults.warmup:g} s)"
        )
    wanted = (SUMMARY_CONNECTIONS, DASHBOARD_CONNECTIONS)
    if (options.summary_connections, options.dashboard_connections) != wanted:
        notes.append(
            f"the summary ran at {options.summary_connections} connections and the dashboard "
            f"at {options.dashboard_connections}, not the issue's {wanted[0]} and {wanted[1]}"
        )
    return notes


def whole_command_seconds() -> float | None:
    started = os.environ.get("BENCH_STARTED_AT")
    try:
        return time.time() - float(started) if started else None
    except ValueError:
        return None


def markdown(results: Results, chart_name: str | None) -> str:
    options = results.options
    whole = whole_command_seconds()
    seconds = whole or results.phases.total()
    took = f"{seconds / 60:.1f} minutes"
    if seconds > TIME_LIMIT_SECONDS:
        took += f", over the {TIME_LIMIT_SECONDS // 60} minutes the issue allows"
    lines = [
        f"Run of {results.machine['date']}: `{command_line(options)}`, which took {took} in "
        "all (set-up, PostgreSQL, data, every scenario, the site's and the peer's).",
        "",
    ]
    notes = scaled_down(options)
    if notes:
        lines += ["**Scaled down:**", "", *(f"- {note};" for note in notes[:-1])]
        lines += [f"- {notes[-1]}.", ""]
    lines += [
        "### Targets",
        "",
        markdown_table(verdict_rows(results)),
        "",
        verdict_count(results),
    ]
    for problem in failures(results):
        lines.append(f"\n**Requests failed** in {problem}: those figures are not trustworthy.")
    lines += [
        "",
        "### The site beside the naive peer",
        "",
        "The same run, the same database, the same gunicorn settings; the peer is "
        "`scripts/bench_peer` (described below). The site and the peer were measured in "
        f"turns, {ROUNDS} runs each, so that other work on the machine weighs on both alike.",
        "",
        markdown_table(peer_rows(results), right={1, 2, 3}),
        "",
        "### Scenarios",
        "",
        markdown_table(scenario_rows(results), right=set(range(3, 12))),
        "",
        "### Against records stored",
        "",
    ]
    if chart_name:
        lines += [f"![p95 latency against records stored]({chart_name})", ""]
    lines += [
        markdown_table(flat_rows(results), right=set(range(0, 10))),
        "",
        "Loading each step:",
        "",
        markdown_table(step_rows(results), right=set(range(0, 7))),
        "",
        "### Time taken",
        "",
        markdown_table(phase_rows(results), right={1}),
        "",
        "### Machine",
        "",
        markdown_table([["", ""], *([k, v] for k, v in results.machine.items())]),
        "",
        "### How it was measured",
        "",
        *method_notes(results),
    ]
    return "\n".join(lines)


def verdict_count(results: Results) -> str:
    targets = [v for v in verdicts(results) if not v.informational]
    missed = [v for v in targets if not v.passed]
    if not missed:
        return f"Every one of the {len(targets)} targets is met."
    return f"**{len(missed)} of {len(targets)} targets missed.**"


def method_notes(results: Results) -> list[str]:
    o = results.options
    s = results.scenarios
    summary, dashboard = s["summary"].scenario, s["dashboard"].scenario
    return [
        "- **Server.** `./dev.py serve` exactly: `manage.py collectstatic`, `manage.py migrate`, "
        "then `gunicorn --config gunicorn.conf.py usage_site.wsgi` with `DEBUG=0`, a freshly "
        "generated `SECRET_KEY` and `ALLOWED_HOSTS=127.0.0.1`. Three settings differ from the "
        'defaults: the access log is off (`ACCESS_LOG=""`; the site\'s own one line per '
        "ingestion request still goes to a file); `THROTTLE_INGEST_RATE` and "
        f"`THROTTLE_INGEST_TOKEN_RATE` are {THROTTLE_RATE}, because the whole load comes "
        "from a few users and the defaults would turn the benchmark into a test of the "
        "throttle (which still counts every request); and `HTTPS_ONLY=0`, because wrk "
        "speaks plain HTTP to the loopback address.",
        "- **The naive peer.** A second gunicorn, started by the bench beside the site with "
        "the same `gunicorn.conf.py` (so the same workers, threads and `max_requests`) and "
        "the same environment, on its own port: `scripts.bench_peer.wsgi`, a project as "
        "`django-admin startproject` writes it (its seven default middleware, auth, "
        "contenttypes, sessions, messages, staticfiles) plus REST framework with its "
        "defaults and one app. Its `DATABASES` is the site's own (`usage_site.settings`: "
        "`DATABASE_URL`, `CONN_MAX_AGE`, the same options), so the same PostgreSQL "
        "database. `POST /api/model-usage` is a `CreateAPIView` with a `ModelSerializer` "
        "per record (the site's body: `modelName`, `imageCount`, `timestamp`, `id`, mapped "
        "to the model's fields) and `serializer.save()`, that is `objects.create`, with no "
        "authentication and no throttles; every record belongs to the bench's user. Its "
        f"records go to its own table (`{PEER_TABLE}`, made by its own migration): owner "
        "(a foreign key to `auth_user`, with Django's default index), model, image count, "
        "occurred and received times, event id, and a unique (owner, event id) constraint "
        "like the site's. The site's table also has its (owner, time) index and the token "
        "column, and each of its records updates two rollups; the peer's table starts "
        "empty, where the site's holds the data steps' records (the flat curves below say "
        "what that costs the site). `GET /api/health/bare-drf` is a bare REST framework "
        '`APIView` (no authentication, `AllowAny`) answering `{"status": "ok"}`, '
        "`GET /api/health/plain` a plain Django view answering the same with "
        "`JsonResponse`: the floors the site's `/api/health/simple` is held to.",
        "- **Database.** A throwaway PostgreSQL cluster started and removed by "
        "`scripts/with_postgres.py`, with durability back on (`fsync`, `full_page_writes`; "
        "the test suite turns them off) and `max_wal_size=4GB`, so that commits cost what "
        "they cost in production. Both servers' sessions keep `synchronous_commit=on`.",
        f"- **Load generator.** `wrk` from Debian, {WRK_THREADS} threads, on the same "
        f"{os.cpu_count()} cores as gunicorn and PostgreSQL: wrk's own CPU time is taken "
        "from the server, so every rate here is lower than a separate load machine would "
        f"see. Each scenario runs {o.warmup:g} s of warm-up that is not counted, then "
        f"{o.duration:g} s measured (at the smaller data steps {o.step_duration:g} s). "
        "Latencies are wrk's, from sending a request to reading the whole response over "
        "loopback: server time, plus a few microseconds of network and whatever waiting for "
        "a core that wrk's own threads add. Percentiles come from wrk's "
        "`latency:percentile()`; every answer outside 2xx is counted (`non-2xx` above, with "
        "socket errors and timeouts). Only one server is under load at a time; the other "
        "waits, idle. Scenarios compared with each other (single records on the site and "
        "the peer; the site's health, the bare DRF view and the plain view) are each warmed "
        f"up, then measured in turns, {ROUNDS} runs each sharing out the measured time "
        "(A B A B A B), so that a change in what else the machine runs weighs on both "
        "sides; each scenario's runs are then pooled (their requests over their time, and "
        "percentiles of all their requests: wrk's script reports each run's latency at "
        "every thousandth, weighted by the run's requests).",
        f"- **Data.** {OTHER_USERS} users plus the measured one, who owns one record in "
        f"{MEASURED_SHARE}. Records spread over the last {SUMMARY_DAYS} days, weekdays three "
        f"times as busy as weekends, most between 8:00 and 19:00 UTC, across {len(MODELS)} "
        "models of unequal popularity, 1 to 8 images each, each with a 36-character event "
        "id like the UUIDs desktop clients send. PostgreSQL generates them itself "
        f"(`INSERT ... SELECT ... FROM generate_series`, {CHUNK_ROWS:,} rows a statement, "
        f"{o.loaders} sessions in parallel, `synchronous_commit=off` in those sessions "
        "only); no table is UNLOGGED. When a step at least doubles the table and adds "
        f"{INDEX_REBUILD_MIN_ROWS:,} rows or more, the unique constraint, the secondary "
        "indexes and the foreign keys are dropped first and rebuilt after (the foreign keys "
        "re-validated), which is several times faster than maintaining them row by row. "
        "Then the rollups are recounted from the raw records in one statement "
        "(`usage.rollups.rebuild()`, what `manage.py rebuild_rollups` does user by user) "
        "and the tables get `VACUUM (ANALYZE)` and a `CHECKPOINT`, so that neither "
        "autovacuum nor the load's dirty pages land in a measurement. Six of the models "
        "have a price (three of them change price at 13:15 UTC mid-range), two have none, "
        "so every summary and dashboard works out costs; the measured user and the app "
        "users have monthly budgets, checked by the worker (`manage.py run_huey`) that runs "
        "beside the site through the whole bench.",
        f"- **At every data step** the summary, the dashboard and single-record ingestion "
        "are measured, for target 6's flat curves; at the largest step those runs are the "
        "scenarios themselves. The records a smaller step's ingestion stored are deleted "
        "after it, so that each step holds the records it says (the next step recounts the "
        "rollups). Batched ingestion is measured at the largest step only: a few seconds of "
        "it store more records than the smaller steps hold. The bench reads 'flat' as p95 "
        f"at every step at most {TARGETS['flatness']:g} times p95 at the smallest step, or "
        f"at most {TARGETS['flatness_slack_ms']:g} ms more (a few milliseconds of jitter are "
        "no trend).",
        f"- **Summary.** `GET {summary.path}` (the last {SUMMARY_DAYS} days, by day, in UTC) "
        f"for the measured user with a bearer token, {summary.connections} connections, as "
        "the issue says. It reads one daily rollup row per UTC day and model with records: "
        "the measured user's rows in the range grow with the data until every day of the "
        f"{SUMMARY_DAYS} days has every model, and stop growing after that.",
        f"- **Dashboard.** `GET {dashboard.path}` with the session cookie of the measured "
        f"user (logged in through Django's test client), {dashboard.connections} "
        "connections, as the issue says: the whole HTML page, not its static files.",
        "- **Ingestion.** `POST /api/model-usage` with the same wrk script "
        "(`scripts/bench_wrk.lua`) for the site and the peer; each request's records get "
        "fresh event ids, with timestamps from the last two hours. Single: one record a "
        f"request, 16 connections; to the site from {APP_USERS} users' desktop apps in turn "
        "(a bearer token each), as many apps would send them, to the peer the same body "
        "without a token. Batched: 500 records a request, 4 connections, with the measured "
        "user's token; *records stored per second* counts the rows that really reached the "
        "table (ids above the largest before the run, received before wrk's measured time "
        "ended) over that time, not requests x 500.",
        "- **WAL per record.** Each ingestion run starts with a `CHECKPOINT`, so that its "
        "warm-up pays the full-page images of the pages it touches first, whichever server "
        "ran first; `pg_current_wal_lsn()` is read after the warm-up and again a second "
        "after the measured run, and the WAL between them is divided by every record stored "
        "in between. It is the whole cluster's WAL, autovacuum's included, if it ran.",
        "- **COPY.** In the same run, right after the batched ingestion: as many records "
        "as it stored, with the same columns (owner, model, image count, occurred and "
        "received times, a fresh event id, the token), in one `COPY ... FROM STDIN` of "
        "data encoded beforehand (psycopg 3 `cursor.copy`), timed from its start to its "
        "commit, into the same table with the same indexes and constraints. COPY skips "
        "what the API must do besides storing rows: HTTP, authentication, throttling, "
        "parsing, validation and the rollups.",
        f"- **Memory.** The resident set (VmRSS) of every child of each gunicorn master, "
        f"every {MEMORY_SAMPLE_SECONDS:g} s during warm-up and measurement; the tables show "
        "the largest any worker reached in each scenario, and target 6 the largest of the "
        "site's over every run. gunicorn replaces a worker after about 20,000 requests "
        "(`max_requests`), so a fast scenario may include a restart, and its first slower "
        "requests, as in production.",
    ]


def draw_chart(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.ticker import FuncFormatter, NullLocator

    records = [step.records for step in results.steps]
    figure, axes = pyplot.subplots(figsize=(8, 4.5), dpi=100)
    highest = 0.0
    for name in STEP_SCENARIOS:
        p95 = [step.measured[name].load.p95_ms for step in results.steps]
        connections = results.steps[-1].measured[name].scenario.connections
        axes.plot(records, p95, marker="o", label=f"{name} p95 ({connections} connections)")
        highest = max(highest, *p95)
    for name, key in (("summary", "summary_p95_ms"), ("dashboard", "dashboard_p95_ms")):
        limit = TARGETS[key]
        axes.axhline(limit, color="grey", linestyle="--", linewidth=1)
        axes.annotate(f"{name} target {limit:g} ms", (records[0], limit), fontsize=8,
                      xytext=(2, 2), textcoords="offset points", color="grey")  # fmt: skip
        highest = max(highest, limit)
    axes.set_xscale("log")
    axes.set_xticks(records)
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    axes.xaxis.set_minor_locator(NullLocator())
    axes.set_ylim(0, highest * 1.2)
    axes.set_xlabel("records stored (log scale); the measured user owns one in ten")
    axes.set_ylabel("p95 latency, ms")
    axes.set_title(f"p95 against records stored ({results.machine.get('date', '')})")
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


def write_doc(results: Results, doc: Path) -> None:
    chart = doc.with_suffix(".png")
    doc.parent.mkdir(parents=True, exist_ok=True)
    draw_chart(results, chart)
    block = f"{MARK_START}\n{markdown(results, chart.name)}\n{MARK_END}"
    if not doc.exists():
        doc.write_text(f"# Performance\n\n{block}\n")
        return
    text = doc.read_text()
    start, end = text.find(MARK_START), text.find(MARK_END)
    if start == -1 or end < start:
        doc.write_text(text.rstrip("\n") + f"\n\n{block}\n")
        return
    doc.write_text(text[:start] + block + text[end + len(MARK_END) :])


def print_report(results: Results) -> None:
    for rows in (
        scenario_rows(results),
        peer_rows(results),
        flat_rows(results),
        step_rows(results),
        phase_rows(results),
        verdict_rows(results),
    ):
        print()
        print(text_table(rows))
    print()
    print(verdict_count(results).replace("**", ""))
    whole = whole_command_seconds()
    if whole:
        print(f"\nThe whole command so far: {whole / 60:.1f} minutes.")
        if whole > TIME_LIMIT_SECONDS:
            print(f"That is over the {TIME_LIMIT_SECONDS // 60} minutes the issue allows.")
    for note in scaled_down(results.options):
        print(f"Scaled down: {note}.")


# --- command line -------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="./dev.py bench",
        description=__doc__.split("\n\n")[0].strip(),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--max-records", type=int, default=STEPS[-1], help="records at the largest data step"
    )
    p.add_argument("--duration", type=float, default=12, help="measured seconds per scenario")
    p.add_argument("--warmup", type=float, default=3, help="uncounted warm-up seconds before each")
    p.add_argument(
        "--step-duration",
        type=float,
        default=8,
        help="measured seconds of each scenario at the smaller data steps",
    )
    p.add_argument(
        "--quick", action="store_true", help="short runs to try the bench: 3 s, 1 s warm-up"
    )
    p.add_argument(
        "--summary-connections",
        type=int,
        default=SUMMARY_CONNECTIONS,
        help="wrk connections for the summary (the issue's target is at 2)",
    )
    p.add_argument(
        "--dashboard-connections",
        type=int,
        default=DASHBOARD_CONNECTIONS,
        help="wrk connections for the dashboard (the issue's target is at 4)",
    )
    p.add_argument("--loaders", type=int, default=2, help="sessions that generate records")
    p.add_argument(
        "--doc", type=Path, default=DOC, help="the Markdown file to write; the chart goes beside it"
    )
    p.add_argument("--no-doc", action="store_true", help="print the figures only")
    return p


def parse_options(argv: list[str]) -> argparse.Namespace:
    options = parser().parse_args(argv)
    if options.quick:
        options.duration, options.warmup, options.step_duration = 3, 1, 2
    if options.max_records < 1000:
        parser().error("--max-records must be at least 1000")
    if min(options.summary_connections, options.dashboard_connections) < 1:
        parser().error("connections must be at least 1")
    options.argv = argv
    return options


def preflight() -> None:
    if not shutil.which("wrk"):
        raise BenchError("wrk is not installed: `apt-get install wrk` (./dev.py bench does it).")
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        raise BenchError(
            "DATABASE_URL is not a PostgreSQL database: run the bench as `./dev.py bench`, "
            "or under `python scripts/with_postgres.py -- ...`."
        )


def _terminate(signum, frame) -> None:
    raise Terminated


def main(argv: list[str]) -> int:
    options = parse_options(argv)
    signal.signal(signal.SIGTERM, _terminate)
    results = Results(options)
    try:
        preflight()
        run(options, results)
    except BenchError as exc:
        say(f"bench: {exc}")
        return 1
    except (KeyboardInterrupt, Terminated):
        say("bench: interrupted; the server is stopped.")
        return 130
    print_report(results)
    if not options.no_doc:
        try:
            write_doc(results, options.doc)
        except ImportError as exc:  # run without requirements-bench.txt
            say(f"bench: cannot draw the chart ({exc}); `./dev.py bench` installs matplotlib.")
            return 1
        say(f"Wrote {options.doc} and {options.doc.with_suffix('.png')}.")
    problems = failures(results)
    for problem in problems:
        say(f"bench: requests failed in {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    sys.exit(main(sys.argv[1:]))
