"""A real gunicorn whose database is unreachable: 503s, never 500s, and recovery without a restart.

No mocks: the server is a separate process, talked to over loopback HTTP. Its database is
either a port with nothing listening, or (on PostgreSQL) the test database itself, stopped
and started again with ``pg_ctl``.
"""

from collections.abc import Iterator

import pytest
from django.db import connection

from tests.live_server import HOST, Server, free_port, gunicorn, poll, url_of
from tests.production_site import Cluster, require_cluster
from usage.models import UsageRecord
from usage.tokens import create_token

pytestmark = pytest.mark.slow

CLUSTER = Cluster()
WELL_FORMED_FAKE_TOKEN = "usg_" + "A" * 51
RECOVER_SECONDS = 20


@pytest.fixture(scope="module")
def down_server(tmp_path_factory) -> Iterator[Server]:
    # A port that was free a moment ago: connecting to it is refused at once.
    url = f"postgres://nobody@{HOST}:{free_port()}/nothing"
    with gunicorn(url, tmp_path_factory.mktemp("down") / "gunicorn.log") as server:
        yield server


# --- A database that never answers ---------------------------------------------------------


def test_simple_health_answers_without_the_database(down_server):
    reply = down_server.get("/api/health/simple")
    assert reply.status == 200
    assert reply.json() == {"status": "ok"}


def test_health_reports_the_database_unavailable_with_retry_after(down_server):
    for _ in range(2):  # and again, once the broken connection has been dropped
        reply = down_server.get("/api/health")
        assert reply.status == 503
        assert reply.json()["database"] == "unavailable"
        assert reply.json()["status"] == "unavailable"
        assert int(reply.headers["Retry-After"]) > 0


def test_posting_records_gets_a_json_503_with_retry_after(down_server):
    reply = down_server.post_usage(WELL_FORMED_FAKE_TOKEN, {"modelName": "SD", "imageCount": 1})
    assert reply.status == 503
    assert reply.json()["error"]
    assert int(reply.headers["Retry-After"]) > 0


def test_posting_a_batch_gets_a_json_503_too(down_server):
    batch = [{"modelName": "SD", "imageCount": n, "id": f"evt-{n}"} for n in range(1, 51)]
    reply = down_server.post_usage(WELL_FORMED_FAKE_TOKEN, batch)
    assert reply.status == 503
    assert reply.json()["error"]


def test_posting_without_a_token_is_still_refused_with_401(down_server):
    # Refusing a request with no credentials needs no database.
    reply = down_server.request(
        "POST", "/api/model-usage", b"{}", {"Content-Type": "application/json"}
    )
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == "Bearer"


def test_the_summary_gets_a_json_503(down_server):
    reply = down_server.get("/api/model-usage/summary", token=WELL_FORMED_FAKE_TOKEN)
    assert reply.status == 503
    assert reply.json()["error"]
    assert int(reply.headers["Retry-After"]) > 0


def test_reading_records_with_a_token_or_a_session_cookie_gets_a_json_503(down_server):
    by_token = down_server.get("/api/model-usage", token=WELL_FORMED_FAKE_TOKEN)
    by_session = down_server.get("/api/model-usage", Cookie="sessionid=abcdefghijklmnop")
    for reply in (by_token, by_session):
        assert reply.status == 503
        assert reply.json()["error"]


@pytest.mark.parametrize("path", ["/admin/login/", "/admin/", "/admin/usage/usagerecord/"])
def test_a_page_gets_an_html_503_that_says_the_service_is_temporarily_unavailable(
    down_server, path
):
    # The session cookie makes the page load its session, the first thing that needs the
    # database. (Without one, the login form needs no database at all.)
    reply = down_server.get(path, Cookie="sessionid=abcdefghijklmnopqrstuvwxyz012345")
    assert reply.status == 503
    assert reply.content_type.startswith("text/html")
    assert b"Temporarily unavailable" in reply.body
    assert int(reply.headers["Retry-After"]) > 0


def test_the_worker_survives_the_failures_and_still_answers(down_server):
    down_server.post_usage(WELL_FORMED_FAKE_TOKEN, {"modelName": "SD", "imageCount": 1})
    assert down_server.get("/api/health").status == 503
    assert down_server.get("/api/health/simple").status == 200
    assert down_server.process.poll() is None


# --- The real database stopping and starting again (PostgreSQL only) ----------------------


@pytest.fixture
def postgres_test_database(transactional_db) -> str:
    require_cluster()
    # Committed rows (transactional_db) in the database pytest-django made: test_<NAME>.
    return url_of(connection.settings_dict)


def test_the_server_recovers_when_the_database_comes_back_without_a_restart(
    postgres_test_database, owner, tmp_path
):
    token = create_token(owner, "Work laptop").raw
    with gunicorn(postgres_test_database, tmp_path / "gunicorn.log") as server:
        health = server.get("/api/health").json()
        assert (health["status"], health["database"]) == ("ok", "ok")
        # Leaves the worker holding a persistent connection that the stop will break.
        assert server.post_usage(token, {"model": "before", "count": 1}).status == 201

        try:
            CLUSTER.crash()
            health = server.get("/api/health")
            assert health.status == 503
            assert health.json()["database"] == "unavailable"
            post = server.post_usage(token, {"model": "during", "count": 1})
            assert post.status == 503
            assert post.json()["error"]
            assert int(post.headers["Retry-After"]) > 0
        finally:
            CLUSTER.start()
            # This test's own connection died with the server; the next query reconnects.
            connection.close()

        poll(lambda: server.answers("/api/health", 200), RECOVER_SECONDS, "no recovery")
        assert server.process.poll() is None  # the same gunicorn, never restarted
        # Every thread's connection died with the database: none may fail a request now.
        for n in range(24):
            after = server.post_usage(token, {"model": "after", "count": n + 1})
            assert after.status == 201, after.body
            assert after.json()["accepted"] == 1

    stored = UsageRecord.objects.filter(owner=owner).order_by("id")
    assert list(stored.values_list("model", "image_count")) == [("before", 1)] + [
        ("after", n + 1) for n in range(24)
    ]
