"""The production front as ``./dev.py serve`` starts it: nginx (deploy/nginx.conf) buffering
every request and answer for gunicorn (gunicorn.conf.py), which listens on a Unix socket.

Slow clients: connections that send their headers a byte at a time hold a gunicorn thread
each until they finish; 45 of them starve the 16 threads of the default server, and health
probes time out. nginx reads whole requests before it passes them on, so through it the
probes answer at once. Forwarded headers: only nginx writes them, and gunicorn believes none
of them; whether a request came over HTTPS is the site's setting alone.
"""

from collections.abc import Iterator

import pytest

from tests.live_server import HOST, Server, gunicorn

pytestmark = pytest.mark.slow


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
