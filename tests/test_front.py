"""The production front as ``./dev.py serve`` starts it: nginx (deploy/nginx.conf) buffering
every request and answer for gunicorn (gunicorn.conf.py), which listens on a Unix socket.

Slow clients: connections that send their headers a byte at a time hold a gunicorn thread
each until they finish; 45 of them starve the 16 threads of the default server, and health
probes time out. nginx reads whole requests before it passes them on, so through it the
probes answer at once. Forwarded headers: only nginx writes them, and gunicorn believes none
of them; whether a request came over HTTPS is the site's setting alone.
"""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from django.conf import settings

from tests.live_server import HOST, PROJECT, Server, free_port, gunicorn, manage, poll, site_env
from usage.errors import problem_response
from usage.ingest import MAX_BODY_BYTES, body_too_large
from usage_site.security import content_security_policy

pytestmark = pytest.mark.slow
CHARTJS_URL = settings.CHARTJS_URL


# --- gunicorn believes no forwarded header --------------------------------------------------


@pytest.fixture(scope="module")
def database_url(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('front') / 'site.sqlite3'}"


@pytest.fixture(scope="module")
def https_only(database_url, tmp_path_factory) -> Iterator[Server]:
    """A real gunicorn with gunicorn.conf.py, HTTPS_ONLY=1 and no trusted proxy."""
    log = tmp_path_factory.mktemp("https-only") / "gunicorn.log"
    with gunicorn(database_url, log, env={"HTTPS_ONLY": "1"}) as server:
        yield server


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Ssl", "on"),
        ("X-Forwarded-Protocol", "ssl"),
        ("SCRIPT_NAME", "/elsewhere"),
    ],
)
def test_a_plain_http_post_that_claims_https_is_redirected_by_gunicorn(https_only, header, value):
    headers = {header: value, "Content-Type": "application/json"}

    reply = https_only.request("POST", "/api/model-usage", b"{}", headers)

    assert reply.status == 301
    assert reply.headers["Location"] == f"https://{HOST}:{https_only.port}/api/model-usage"


def test_with_a_trusted_proxy_its_x_forwarded_proto_counts(database_url, tmp_path):
    env = {"HTTPS_ONLY": "1", "TRUST_X_FORWARDED_PROTO": "1"}
    with gunicorn(database_url, tmp_path / "gunicorn.log", env=env) as server:
        claimed = server.request("POST", "/api/model-usage", b"{}", {"X-Forwarded-Proto": "https"})
        plain = server.request("POST", "/api/model-usage", b"{}", {})

    assert claimed.status == 401  # HTTPS: on to the API, which wants a token
    assert plain.status == 301


# --- ./dev.py serve: nginx in front -------------------------------------------------------------

SERVE_START_SECONDS = 120  # collectstatic and migrate first
# The README's production server: 2 processes of 8 threads, no access log to slow it.
SERVER_ENV = {"WEB_CONCURRENCY": "2", "WEB_THREADS": "8", "ACCESS_LOG": ""}


@contextmanager
def dev_serve(database_url: str, log: Path, **env: str) -> Iterator[Server]:
    """``./dev.py serve`` on a free port: the documented production front, as it starts."""
    port = free_port()
    full_env = site_env(database_url, **SERVER_ENV, BIND=f"{HOST}:{port}", **env)
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "dev.py", "serve"],
            cwd=PROJECT,
            env=full_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(port, process, log)
    try:
        poll(
            lambda: server.answers("/api/health/simple", 200), SERVE_START_SECONDS, "no answer", log
        )
        yield server
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def front(database_url, tmp_path_factory) -> Iterator[Server]:
    with dev_serve(database_url, tmp_path_factory.mktemp("serve") / "serve.log") as server:
        yield server


# Slow clients

SLOW_CLIENTS = 45
PROBES = 9
PROBE_EVERY = 0.5  # seconds between probes
PROBE_TIMEOUT = 3.0
# The slow clients hold on until the last probe has had its whole time; nginx would cut
# them off after 10 s (client_header_timeout), so they connect again when it does.
HOLD = PROBES * PROBE_EVERY + PROBE_TIMEOUT + 1


class SlowClients:
    """Connections that send a request's headers one byte every half second, never ending."""

    def __init__(self, port: int, count: int):
        self.port = port
        self.sockets = []
        for _ in range(count):
            self.sockets.append(self.connect())
            # A moment between connections, as clients arrive, so that every server process
            # accepts its share (all at once, one process may take nearly all of them).
            time.sleep(0.02)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.trickle, daemon=True)

    def connect(self) -> socket.socket:
        sock = socket.create_connection((HOST, self.port), timeout=5)
        sock.sendall(b"GET /api/health/simple HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        return sock

    def trickle(self) -> None:
        while not self.stop.wait(0.5):
            for n, sock in enumerate(self.sockets):
                try:
                    sock.sendall(b"a")
                except OSError:  # cut off by the server: come back, as an attacker would
                    sock.close()
                    with suppress(OSError):
                        self.sockets[n] = self.connect()

    def __enter__(self) -> "SlowClients":
        self.thread.start()
        time.sleep(1)  # every connection has sent its first bytes and waits in the server
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        for sock in self.sockets:
            sock.close()


def probe(port: int) -> float | None:
    """Seconds a health probe took to answer 200, or None if it got no answer in time."""
    started = time.monotonic()
    try:
        with socket.create_connection((HOST, port), timeout=PROBE_TIMEOUT) as sock:
            sock.sendall(b"GET /api/health/simple HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = sock.recv(64)
    except OSError:  # timed out
        return None
    return time.monotonic() - started if answer.startswith(b"HTTP/1.1 200") else None


def probes_under_slow_clients(port: int) -> list[float | None]:
    """Health probes, one every PROBE_EVERY seconds, while SLOW_CLIENTS trickle in."""
    results: list[float | None] = [None] * PROBES

    def run(n: int) -> None:
        results[n] = probe(port)

    with SlowClients(port, SLOW_CLIENTS):
        threads = []
        for n in range(PROBES):
            threads.append(threading.Thread(target=run, args=(n,)))
            threads[-1].start()
            time.sleep(PROBE_EVERY)
        for thread in threads:
            thread.join()
    return results


def shown(latencies: list[float | None]) -> str:
    return ", ".join("timeout" if s is None else f"{s * 1000:.0f} ms" for s in latencies)


def test_through_the_front_health_probes_answer_at_once_under_slow_clients(front):
    latencies = probes_under_slow_clients(front.port)

    print(f"\nnginx in front, {SLOW_CLIENTS} slow clients: {shown(latencies)}")
    assert all(latency is not None and latency < 1.0 for latency in latencies)
    assert front.get("/api/health/simple").status == 200  # and the slow ones did no harm


# Forwarded headers and body limits through the front


def test_the_front_passes_the_clients_own_address_whatever_it_forges(front, database_url):
    manage(
        database_url,
        "shell",
        "-c",
        "from django.contrib.auth.models import User; User.objects.create_user('fran')",
    )
    token = manage(database_url, "create_api_token", "fran").strip().splitlines()[-1]
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "X-Forwarded-For": "203.0.113.9",
    }
    body = json.dumps({"model": "Flux", "count": 1}).encode()

    reply = front.request("POST", "/api/model-usage", body, headers)

    assert reply.status == 201, reply.body[:300]
    with sqlite3.connect(database_url.removeprefix("sqlite:///")) as db:
        addresses = db.execute("SELECT last_used_address FROM usage_apitoken").fetchall()
    assert addresses == [(HOST,)]


def test_a_body_over_the_limit_gets_the_sites_own_413_from_the_front(front):
    too_large = b"[" + b"1," * (MAX_BODY_BYTES // 2) + b"1]"
    headers = {"Content-Type": "application/json", "Authorization": "Bearer usg_x"}

    api = front.request("POST", "/api/model-usage", too_large, headers)
    page = front.request("POST", "/accounts/login/", too_large, {"Content-Type": "text/plain"})

    assert (api.status, api.body) == (413, problem_response(body_too_large()).content)
    assert api.content_type == "application/json"
    assert page.status == 413
    for answer in (api, page):
        assert answer.headers["Content-Security-Policy"] == content_security_policy(CHARTJS_URL)
        assert answer.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize(
    "path",
    [
        "/static/dashboard/index.css",
        "/static/drf_spectacular_sidecar/swagger-ui-dist/oauth2-redirect.html",
    ],
)
def test_static_files_through_the_front_carry_the_policy_and_the_frame_denial(front, path):
    reply = front.get(path)

    assert reply.status == 200
    assert reply.headers["Content-Security-Policy"] == content_security_policy(CHARTJS_URL)
    assert reply.headers["X-Frame-Options"] == "DENY"
