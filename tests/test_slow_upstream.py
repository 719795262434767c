"""A slow upstream does not starve the site: the production server, 20 hanging generations.

gunicorn runs as the README's ``./dev.py serve`` runs it (gunicorn.conf.py: 2 processes of
8 threads, collected static files), against the stand-in upstream, which holds every
generation until the test releases it. While they hang, ingestion and the dashboard must
be answered; afterwards every generation must have had an answer: its plugin, or a 503
``busy`` from the bulkhead (EXTERNAL_API_MAX_CONCURRENT per process), never nothing.
"""

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.db import connection

from scripts.standin_upstream import StandIn
from tests.live_server import Reply, Server, gunicorn, log_in, manage, poll, url_of

pytestmark = pytest.mark.slow

GENERATIONS = 20
WORKERS, THREADS, MAX_CONCURRENT = 2, 8, 4  # the README's defaults
# Far longer than the test holds the generations: only the test's release ends them.
GENERATE_TIMEOUT = 300
PASSWORD = "dana-password-1"
CREATE_USER = (
    "from django.contrib.auth.models import User; "
    f"User.objects.create_user('dana', password='{PASSWORD}')"
)


@dataclass
class Site:
    server: Server
    token: str
    upstream: StandIn

    def bearer(self, **headers) -> dict:
        return {"Authorization": f"Bearer {self.token}", **headers}


@pytest.fixture
def database_url(transactional_db, tmp_path) -> str:
    """The test database on PostgreSQL (what gunicorn writes is cleared after); on SQLite,
    where the test database is in memory, a file of its own."""
    if connection.vendor == "postgresql":
        return url_of(connection.settings_dict)
    url = f"sqlite:///{tmp_path / 'site.sqlite3'}"
    manage(url, "migrate", "--no-input", "--verbosity", "0")
    return url


@pytest.fixture
def site(database_url, tmp_path) -> Iterator[Site]:
    manage(database_url, "collectstatic", "--no-input", "--verbosity", "0")
    manage(database_url, "shell", "-c", CREATE_USER)
    token = manage(database_url, "create_api_token", "dana").strip().splitlines()[-1]
    env = {
        "WEB_CONCURRENCY": str(WORKERS),
        "WEB_THREADS": str(THREADS),
        "EXTERNAL_API_MAX_CONCURRENT": str(MAX_CONCURRENT),
        "EXTERNAL_API_GENERATE_TIMEOUT": str(GENERATE_TIMEOUT),
        "THROTTLE_PLUGIN_RATE": "1000/min",
        "ACCESS_LOG": "",
    }
    with StandIn() as upstream:
        env["EXTERNAL_API_URL"] = upstream.url
        with gunicorn(database_url, tmp_path / "gunicorn.log", env=env, workers=None) as server:
            yield Site(server, token, upstream)


def test_hanging_generations_do_not_starve_ingestion_or_the_dashboard(site):
    site.upstream.hang("generate")
    browser = log_in(site.server, "dana", PASSWORD)
    replies: list[Reply] = []

    def generate(n: int) -> None:
        body = json.dumps({"prompt": f"Plugin number {n}"}).encode()
        headers = site.bearer(**{"Content-Type": "application/json"})
        reply = site.server.request(
            "POST", "/api/plugin/generate", body, headers, timeout=GENERATE_TIMEOUT
        )
        replies.append(reply)

    generations = [threading.Thread(target=generate, args=(n,)) for n in range(GENERATIONS)]
    for thread in generations:
        thread.start()
    try:
        # Every generation is either held by the upstream or already refused as busy.
        poll(
            lambda: len(site.upstream.received_for("generate")) + len(replies) == GENERATIONS,
            60,
            "every generation accounted for",
            site.server.log,
        )
        hanging = len(site.upstream.received_for("generate"))
        # Generations leave one slot per process free for the token panel's reads.
        assert 0 < hanging <= WORKERS * (MAX_CONCURRENT - 1)

        # While they hang, the rest of the site answers.
        for n in range(5):
            ingested = site.server.post_usage(site.token, {"modelName": "SD", "imageCount": n + 1})
            assert ingested.status == 201, ingested.body[:300]
        dashboard = site.server.get("/dashboard/", Cookie=browser)
        assert dashboard.status == 200, dashboard.body[:300]
        assert b"dana" in dashboard.body
        summary = site.server.get("/api/model-usage/summary", token=site.token)
        totals = summary.json()["totals"]
        assert (totals["images"], totals["events"]) == (15, 5)
        for _ in range(4):  # whichever process takes them, reads are not busy
            analytics = site.server.get("/api/user/token-usage", token=site.token)
            assert (analytics.status, analytics.json()["noUsageYet"]) == (200, True)
        health = site.server.get("/api/health")
        assert (health.status, health.json()["externalApi"]) == (200, "ok")
        assert len(replies) == GENERATIONS - hanging  # still held, not dropped
    finally:
        site.upstream.release()
        for thread in generations:
            thread.join(GENERATE_TIMEOUT)

    statuses = sorted(reply.status for reply in replies)
    assert len(replies) == GENERATIONS
    assert statuses == [200] * hanging + [503] * (GENERATIONS - hanging)
    for reply in replies:
        if reply.status == 200:
            assert reply.json()["tokenUsage"]["totalTokens"] > 0
        else:
            assert reply.json()["code"] == "busy"
            assert int(reply.headers["Retry-After"]) > 0
