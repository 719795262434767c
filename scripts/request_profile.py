"""Where a request's time goes: the single-record post, the 90-day summary and the dashboard
page, in-process.

Run it against a throwaway PostgreSQL with durability on, as the bench does:

    PG_EXTRA_OPTIONS="-c fsync=on" python3 scripts/with_postgres.py -- \\
        .venv/bin/python scripts/request_profile.py

Each request goes through Django's WSGI handler (every middleware, no network), many times
over; the script reports per request the wall time, the statements sent, the time spent
waiting on them (round trip and server time together), and the rest: Python. For the
ingestion statement it also asks PostgreSQL (EXPLAIN ANALYZE) how long it plans and runs.
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "usage_site.settings")
os.environ.setdefault("SECRET_KEY", "request-profile-only")
os.environ.setdefault("HTTPS_ONLY", "0")
os.environ.setdefault("LOG_LEVEL", "WARNING")  # the ingestion log line is not what is measured
os.environ.setdefault("THROTTLE_INGEST_RATE", "1000000/s")
os.environ.setdefault("THROTTLE_INGEST_TOKEN_RATE", "1000000/s")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from scripts.bench import MODELS, SUMMARY_DAYS, set_prices  # noqa: E402
from usage.folding import fold_all  # noqa: E402
from usage.ingest import CleanRecord, store  # noqa: E402
from usage.models import Budget  # noqa: E402
from usage.tokens import create_token  # noqa: E402

ROUNDS = int(os.environ.get("PROFILE_ROUNDS", "2000"))


class StatementClock:
    """A Django execute wrapper: how many statements, and how long each was waited on."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - started
            self.count += 1


def wsgi_call(handler: WSGIHandler, method: str, path: str, body: bytes, **headers: str) -> str:
    path, _, query = path.partition("?")
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "127.0.0.1:8000",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json",
    }
    environ.update({"HTTP_" + k.upper(): v for k, v in headers.items()})
    status: list[str] = []
    b"".join(handler(environ, lambda line, headers, *rest: status.append(line)))
    return status[0]


def profile(name: str, request: Callable[[], str]) -> dict:
    for _ in range(200):  # warm: connections, prepared statements, remembered tokens
        request()
    clock = StatementClock()
    walls = []
    # PROFILE_PSTATS=DIR writes DIR/<name>.pstats, a cProfile of the timed rounds (their
    # wall times then include the profiler's own cost).
    profiler = cProfile.Profile() if os.environ.get("PROFILE_PSTATS") else None
    with connection.execute_wrapper(clock):
        if profiler:
            profiler.enable()
        for _ in range(ROUNDS):
            started = time.perf_counter()
            status = request()
            walls.append(time.perf_counter() - started)
        if profiler:
            profiler.disable()
            profiler.dump_stats(Path(os.environ["PROFILE_PSTATS"]) / f"{slug(name)}.pstats")
    wall = statistics.fmean(walls) * 1000
    waited = clock.seconds / ROUNDS * 1000
    return {
        "request": name,
        "status": status,
        "wall_ms": round(wall, 3),
        "statements": round(clock.count / ROUNDS, 2),
        "waiting_on_database_ms": round(waited, 3),
        "python_ms": round(wall - waited, 3),
    }


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower())


def explain_ingestion(owner_id: int) -> list[dict]:
    """Planning and execution time of the ingestion statements, as PostgreSQL reports them:
    a single record's (inserted and marked uncounted) and a larger batch's (counted at once)."""
    from usage.dialects import postgresql

    now = timezone.now()
    params = [owner_id, now, None, ["SD"], [1], [now], [str(uuid.uuid4())]]
    results = []
    for name, sql in (
        ("single record: insert and mark", postgresql._insert_and_defer_sql()),
        ("batch: insert and count", postgresql._insert_and_count_sql()),
    ):
        with connection.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
            plan = cursor.fetchone()[0]
            cursor.execute("ROLLBACK")
        plan = plan[0] if isinstance(plan, list) else json.loads(plan)[0]
        results.append(
            {
                "statement": name,
                "statement_characters": len(sql),
                "unprepared_planning_ms": plan["Planning Time"],
                "execution_ms": plan["Execution Time"],
            }
        )
    return results


def main() -> None:
    call_command("migrate", verbosity=0)
    owner = get_user_model().objects.create_user(f"profile-{uuid.uuid4().hex[:8]}")
    raw = create_token(owner, "profile").raw
    now = timezone.now()
    rng = random.Random(1)
    history = [
        CleanRecord(
            rng.choice(list(MODELS)),
            rng.choice((1, 2, 4)),
            now - timedelta(minutes=rng.randrange(SUMMARY_DAYS * 24 * 60)),
            None,
        )
        for _ in range(20_000)
    ]
    for start in range(0, len(history), 1000):
        store(owner, None, history[start : start + 1000], now)
    # As the bench: prices for six models (three change mid-range), a budget for the owner.
    set_prices()
    Budget.objects.create(owner=owner, image_limit=1_000_000)
    if connection.vendor == "postgresql":  # as the bench does after loading
        with connection.cursor() as cursor:
            cursor.execute("VACUUM (ANALYZE)")
    handler = WSGIHandler()
    bearer = f"Bearer {raw}"
    today = timezone.now().date()
    summary = (
        f"/api/model-usage/summary?start={today - timedelta(days=SUMMARY_DAYS - 1)}"
        f"&end={today}&tz=America/New_York&granularity=day"
    )

    def post() -> str:
        body = {"modelName": "SD", "imageCount": 1, "id": str(uuid.uuid4())}
        return wsgi_call(
            handler, "POST", "/api/model-usage", json.dumps(body).encode(), AUTHORIZATION=bearer
        )

    def batch() -> str:
        # As the bench's batches: 500 records of the last two hours, fresh event ids.
        moment = timezone.now()
        body = [
            {
                "modelName": rng.choice(list(MODELS)),
                "imageCount": rng.randint(1, 8),
                "timestamp": (moment - timedelta(minutes=rng.randrange(120))).isoformat(),
                "id": str(uuid.uuid4()),
            }
            for _ in range(500)
        ]
        return wsgi_call(
            handler, "POST", "/api/model-usage", json.dumps(body).encode(), AUTHORIZATION=bearer
        )

    browser = Client()
    browser.force_login(owner)
    cookie = f"sessionid={browser.cookies['sessionid'].value}"
    dashboard = "/dashboard/?days=90&tz=America/New_York"

    requests = {
        "post": ("POST /api/model-usage, one record", post),
        # Not by default: 2,000 of them would store a million records.
        "batch": ("POST /api/model-usage, 500 records", batch),
        "summary": (
            "GET 90-day summary by day",
            lambda: wsgi_call(handler, "GET", summary, b"", AUTHORIZATION=bearer),
        ),
        "dashboard": (
            "GET the dashboard page, 90 days",
            lambda: wsgi_call(handler, "GET", dashboard, b"", COOKIE=cookie),
        ),
        "health": (
            "GET /api/health/simple",
            lambda: wsgi_call(handler, "GET", "/api/health/simple", b""),
        ),
    }
    # PROFILE_ONLY=summary,dashboard measures only those.
    only = [name for name in os.environ.get("PROFILE_ONLY", "").split(",") if name]
    default = [name for name in requests if name != "batch"]
    results = []
    for name in only or default:
        results.append(profile(*requests[name]))
        fold_all()  # as each server's fold thread does about once a second
    if connection.vendor == "postgresql" and not only:
        results += explain_ingestion(owner.pk)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
