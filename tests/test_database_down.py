"""A real gunicorn whose database is unreachable: 503s, never 500s, and recovery without a restart.

No mocks: the server is a separate process, talked to over loopback HTTP. Its database is
either a port with nothing listening, or (on PostgreSQL) the test database itself, stopped
and started again with ``pg_ctl``.
"""

import http.client
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

from usage.auth import create_token
from usage.models import UsageRecord

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parent.parent
GUNICORN = PROJECT / ".venv" / "bin" / "gunicorn"
HOST = "127.0.0.1"
WELL_FORMED_FAKE_TOKEN = "usg_" + "A" * 51
START_SECONDS = 20
RECOVER_SECONDS = 20


@dataclass(frozen=True)
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    def json(self):
        assert self.content_type.startswith("application/json"), (self.status, self.body[:300])
        return json.loads(self.body)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def poll(check: Callable[[], bool], seconds: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            pytest.fail(f"{what} within {seconds} s\n{tail}")
        time.sleep(0.05)


@dataclass
class Server:
    port: int
    process: subprocess.Popen
    log: Path

    def request(self, method: str, path: str, body=None, headers=None) -> Reply:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=15)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            conn.close()

    def get(self, path: str, token: str | None = None, **headers) -> Reply:
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.request("GET", path, headers=headers)

    def post_usage(self, token: str, body) -> Reply:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        return self.request("POST", "/api/model-usage", json.dumps(body).encode(), headers)

    def answers(self, path: str, status: int) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"gunicorn exited with {self.process.returncode}\n{self.log.read_text()}")
        try:
            return self.get(path).status == status
        except OSError:  # not listening yet
            return False


@contextmanager
def gunicorn(database_url: str, log: Path) -> Iterator[Server]:
    port = free_port()
    env = {
        **os.environ,
        "SECRET_KEY": "t",
        "DEBUG": "0",
        "ALLOWED_HOSTS": HOST,
        "DATABASE_URL": database_url,
    }
    argv = [str(GUNICORN), "usage_site.wsgi", "-b", f"{HOST}:{port}", "--workers", "1"]
    argv += ["--graceful-timeout", "5"]
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            argv, cwd=PROJECT, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    server = Server(port, process, log)
    try:
        poll(lambda: server.answers("/api/health/simple", 200), START_SECONDS, "no answer", log)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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


def pg_ctl(*args: str) -> None:
    argv = [str(Path(os.environ["PG_BINDIR"]) / "pg_ctl"), "-D", os.environ["PGDATA"], *args]
    if os.environ.get("PG_RUN_AS"):
        argv = ["runuser", "-u", os.environ["PG_RUN_AS"], "--", *argv]
    # The server's user may not be able to enter this directory; its data directory's parent
    # is its own.
    cwd = Path(os.environ["PGDATA"]).parent
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=90)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed:\n{result.stdout}{result.stderr}")


def start_postgres() -> None:
    pg_ctl("-l", os.environ["PG_LOGFILE"], "-w", "-t", "60", "start")


def url_of(settings_dict: dict) -> str:
    user = quote(settings_dict["USER"], safe="")
    password = f":{quote(settings_dict['PASSWORD'], safe='')}" if settings_dict["PASSWORD"] else ""
    host = settings_dict["HOST"] or HOST
    port = settings_dict["PORT"] or "5432"
    return f"postgres://{user}{password}@{host}:{port}/{quote(settings_dict['NAME'])}"


@pytest.fixture
def postgres_test_database(transactional_db) -> str:
    if connection.vendor != "postgresql":
        pytest.skip("stops and starts the database server: needs PostgreSQL, not SQLite")
    if not os.environ.get("PGDATA") or not os.environ.get("PG_BINDIR"):
        pytest.skip("PGDATA/PG_BINDIR are not set: run under scripts/with_postgres.py")
    # Committed rows (transactional_db) in the database pytest-django made: test_<NAME>.
    return url_of(connection.settings_dict)


def test_the_server_recovers_when_the_database_comes_back_without_a_restart(
    postgres_test_database, owner, tmp_path
):
    token = create_token(owner, "Work laptop").raw
    with gunicorn(postgres_test_database, tmp_path / "gunicorn.log") as server:
        assert server.get("/api/health").json() == {"status": "ok", "database": "ok"}
        # Leaves the worker holding a persistent connection that the stop will break.
        assert server.post_usage(token, {"model": "before", "count": 1}).status == 201

        try:
            pg_ctl("-m", "immediate", "stop")
            health = server.get("/api/health")
            assert health.status == 503
            assert health.json()["database"] == "unavailable"
            post = server.post_usage(token, {"model": "during", "count": 1})
            assert post.status == 503
            assert post.json()["error"]
            assert int(post.headers["Retry-After"]) > 0
        finally:
            start_postgres()
            # This test's own connection died with the server; the next query reconnects.
            connection.close()

        poll(lambda: server.answers("/api/health", 200), RECOVER_SECONDS, "no recovery")
        assert server.process.poll() is None  # the same gunicorn, never restarted
        after = server.post_usage(token, {"model": "after", "count": 2})
        assert after.status == 201, after.body
        assert after.json()["accepted"] == 1

    stored = UsageRecord.objects.filter(owner=owner).order_by("id")
    assert list(stored.values_list("model", "image_count")) == [("before", 1), ("after", 2)]
